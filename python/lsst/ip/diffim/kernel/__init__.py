"""kernel subpackage."""
