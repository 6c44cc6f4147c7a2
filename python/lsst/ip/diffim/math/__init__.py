"""math subpackage."""
