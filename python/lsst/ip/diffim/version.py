"""The package version (read by setuptools for the distribution's metadata)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
