"""Placeholder; replaced by the debug-switch module."""
