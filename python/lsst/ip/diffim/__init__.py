"""PSF matching and image subtraction (a pip-installable ``lsst.ip.diffim``)."""

from .version import *
