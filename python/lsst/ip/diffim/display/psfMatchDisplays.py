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
"""Debug displays of the kernel fit (``lsst.ip.diffim.psfMatch``).

`displayKernelFit` draws, after the spatial fit, each display switched on:
``displayCandidates`` (`displayKernelCandidates`, paged), ``displayKernelBasis``,
``displayKernelMosaic``, ``plotKernelSpatialModel`` and
``plotKernelCoefficients``; ``showBadCandidates`` includes the BAD candidates.
``display = True`` alone draws the default set of `switches`.
"""

from __future__ import annotations

__all__ = ["displayKernelFit"]

from typing import TYPE_CHECKING

from .candidateMosaics import displayKernelCandidates
from .kernelDisplays import displayKernelBasis, displayKernelMosaic
from .spatialModelDisplays import plotKernelCoefficients, plotKernelSpatialModel
from .switches import isEnabled

if TYPE_CHECKING:
    import lsst.pex.config as pexConfig
    from lsst.utils.logging import LsstLoggers

    from ..math.functions import Function2
    from ..math.kernels import LinearCombinationKernel
    from ..math.spatialCell import SpatialCellSet


def displayKernelFit(
    moduleName: str,
    log: LsstLoggers | None,
    cellSet: SpatialCellSet,
    spatialKernel: LinearCombinationKernel,
    spatialBackground: Function2,
    kConfig: pexConfig.Config,
) -> None:
    """Draw every display switched on for ``moduleName`` after the spatial fit."""
    import lsstDebug

    info = lsstDebug.Info(moduleName)
    showBad = bool(info.showBadCandidates)
    if isEnabled(info, moduleName, "displayCandidates", log):
        displayKernelCandidates(info, log, cellSet, spatialKernel, spatialBackground, showBad)
    if isEnabled(info, moduleName, "displayKernelBasis", log):
        displayKernelBasis(info, log, spatialKernel)
    if isEnabled(info, moduleName, "displayKernelMosaic", log):
        displayKernelMosaic(info, log, cellSet.getBBox(), spatialKernel)
    if isEnabled(info, moduleName, "plotKernelSpatialModel", log):
        plotKernelSpatialModel(info, log, cellSet, spatialKernel, showBad)
    if isEnabled(info, moduleName, "plotKernelCoefficients", log):
        plotKernelCoefficients(info, log, cellSet, spatialKernel, showBad)
