"""Debug displays on matplotlib, driven by lsstDebug variables (read-only users of the fit)."""
