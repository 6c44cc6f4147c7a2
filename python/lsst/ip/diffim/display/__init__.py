"""display subpackage."""
