"""PSF matching and image subtraction (a pip-installable ``lsst.ip.diffim``).

The flat namespace holds upstream's public names: the tasks and configs, the
basis generators, and the kernel-fitting core (``makeKernelCandidate``,
the visitors, ``KernelCandidateF`` ...).  The afw.math-like primitives
(``SpatialCellSet``, ``FixedKernel`` ...) live in `lsst.ip.diffim.math`.
"""

from .imagePsfMatch import *
from .inputChecks import *
from .kernel import *
from .kernelConversion import *
from .makeKernelBasisList import *
from .modelPsfMatch import *
from .notebook import *
from .psfMatch import *
from .snapPsfMatch import *
from .subtractImages import *
from .utils import *
from .version import *
