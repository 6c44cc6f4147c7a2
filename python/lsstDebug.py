# This file is part of lsst-ip-diffim.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""Debug switches, compatible with the LSST stack's ``lsstDebug`` module.

Code asks ``lsstDebug.Info(__name__).someVariable``: every variable is
`False` unless a user's ``debug.py`` (imported by ``pipetask run --debug``,
or by hand in a notebook) turned it on, typically by replacing ``Info``::

    import lsstDebug

    def DebugInfo(name):
        di = lsstDebug.getInfo(name)      # the original Info, still reachable
        if name == "lsst.ip.diffim.psfMatch":
            di.display = True
            di.displayKernelMosaic = True
        return di

    lsstDebug.Info = DebugInfo

``lsstDebug.frame`` is the global display-frame counter.  Our addition:
`displayDir` gives the folder where headless displays write PNG files
(``$IPDIFFIM_DEBUG_DIR``, or a ``displayDir`` debug variable, or
``./debug_displays``).
"""

from __future__ import annotations

__all__ = ["Info", "displayDir", "frame", "getInfo"]

import os
import sys
from typing import Any

#: Global display frame counter; displays use it and increment it.
frame: int = 0


class Info:
    """The debug variables of one module; unknown variables are `False`.

    Parameters
    ----------
    modname : `str`
        Name of the module asking (``__name__``).
    """

    _cache: dict[str, Info] = {}

    def __new__(cls, modname: str) -> Info:
        # One object per module, so settings made on it persist.
        """Return the one `Info` object of ``modname``, creating it on first use."""
        if modname in cls._cache:
            return cls._cache[modname]
        self = super().__new__(cls)
        cls._cache[modname] = self
        return self

    def __init__(self, modname: str) -> None:
        self.__dict__.setdefault("_modname", modname)

    def __getattr__(self, what: str) -> Any:
        if what.startswith("__"):
            raise AttributeError(what)
        return False

    def __repr__(self) -> str:
        items = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return f"lsstDebug.Info({self.__dict__['_modname']!r}, {items})"


#: The original `Info` class, kept reachable after users replace ``Info``.
getInfo = Info


def displayDir(info: object = None) -> str:
    """Return the folder for headless debug displays (created if needed)."""
    path = os.environ.get("IPDIFFIM_DEBUG_DIR") or (getattr(info, "displayDir", None) if info else None)
    path = path or os.path.join(os.getcwd(), "debug_displays")
    os.makedirs(path, exist_ok=True)
    return path


# Re-exporting this module under its own name keeps ``import lsstDebug``
# working when it is reached through another path.
sys.modules.setdefault("lsstDebug", sys.modules[__name__])
