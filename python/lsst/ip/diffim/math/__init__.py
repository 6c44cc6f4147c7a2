"""afw.math-like primitives: kernels, spatial functions and cells, statistics, PCA.

Nothing here knows about tasks or kernel fitting.
"""

from .background import *
from .exceptions import *
from .functions import *
from .imagePca import *
from .kernels import *
from .masks import *
from .spatialCell import *
from .statistics import *
from .warper import *
