"""The kernel-fitting core: candidates, solutions, visitors (upstream's C++ part)."""

from .basisLists import *
from .candidate import *
from .imageStatistics import *
from .propertySet import *
from .solution import *
from .stamps import *
from .visitors import *
