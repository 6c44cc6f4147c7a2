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
"""Which debug displays a module draws: its own variables, or a default set.

Upstream draws nothing when ``display`` (the master switch) is the only
variable set.  Here ``display = True`` alone draws the module's default set
(`DEFAULT_DISPLAYS`) and logs, once per module, every variable that can be
set instead.  Setting any of a module's display variables draws exactly
those, as upstream.
"""

from __future__ import annotations

__all__ = ["DEFAULT_DISPLAYS", "DISPLAY_VARIABLES", "OPTION_VARIABLES", "isEnabled"]

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lsstDebug

    from lsst.utils.logging import LsstLoggers

#: The display variables of each module, in the order they draw.
DISPLAY_VARIABLES: dict[str, tuple[str, ...]] = {
    "lsst.ip.diffim.psfMatch": (
        "displayCandidates",
        "displayKernelBasis",
        "displayKernelMosaic",
        "plotKernelSpatialModel",
        "plotKernelCoefficients",
    ),
    "lsst.ip.diffim.imagePsfMatch": (
        "displayTemplate",
        "displaySciIm",
        "displaySpatialCells",
        "displayDiffIm",
    ),
    "lsst.ip.diffim.modelPsfMatch": ("displaySpatialCells",),
}

#: What ``display = True`` alone draws for each module.
DEFAULT_DISPLAYS: dict[str, tuple[str, ...]] = {
    "lsst.ip.diffim.psfMatch": ("displayKernelMosaic", "plotKernelSpatialModel"),
    "lsst.ip.diffim.imagePsfMatch": ("displaySpatialCells", "displayDiffIm"),
    "lsst.ip.diffim.modelPsfMatch": ("displaySpatialCells",),
}

#: Variables that change how the displays draw (not what).
OPTION_VARIABLES: dict[str, tuple[str, ...]] = {
    "lsst.ip.diffim.psfMatch": (
        "showBadCandidates",
        "candidatesPerPage",
        "maxCandidatePages",
        "maxMapPoints",
        "maskTransparency",
    ),
    "lsst.ip.diffim.imagePsfMatch": ("maxMapPoints", "maskTransparency"),
    "lsst.ip.diffim.modelPsfMatch": ("maxMapPoints", "maskTransparency"),
}

#: Modules whose default set was announced in this process.
_announced: set[str] = set()


def isEnabled(info: lsstDebug.Info, moduleName: str, variable: str, log: LsstLoggers | None = None) -> bool:
    """Return whether display ``variable`` of ``moduleName`` should draw.

    Parameters
    ----------
    info : `lsstDebug.Info`
        The module's debug variables.
    moduleName : `str`
        A key of `DISPLAY_VARIABLES`.
    variable : `str`
        The display variable asked about.
    log : `logging.Logger` or `lsst.utils.logging.LsstLogAdapter`, optional
        Where the default set is announced.

    Returns
    -------
    enabled : `bool`
        `False` unless ``display`` is set; then `True` if ``variable`` is
        set, or if no display variable of the module is set and
        ``variable`` is in the module's default set.
    """
    if not info.display:
        return False
    if getattr(info, variable):
        return True
    variables = DISPLAY_VARIABLES[moduleName]
    if any(getattr(info, v) for v in variables):
        return False
    defaults = DEFAULT_DISPLAYS[moduleName]
    if moduleName not in _announced and log is not None:
        _announced.add(moduleName)
        log.info(
            "lsstDebug: %s has display=True and no display variable set: drawing the default set (%s). "
            "Set any of %s to choose; options: %s.",
            moduleName,
            ", ".join(defaults),
            ", ".join(variables),
            ", ".join(OPTION_VARIABLES[moduleName]),
        )
    return variable in defaults
