"""The kernel-fitting core: candidates, solutions, visitors (upstream's C++ part)."""

from .basisComplexity import *
from .basisLists import *
from .candidate import *
from .cellSetFactory import *
from .imageStatistics import *
from .propertySet import *
from .residualMetrics import *
from .settings import *
from .solution import *
from .stamps import *
from .visitors import *
