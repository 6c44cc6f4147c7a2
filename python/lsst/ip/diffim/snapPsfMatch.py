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
"""PSF matching of two snaps of one visit (nearly identical PSFs, same grid)."""

from __future__ import annotations

__all__ = ["SnapPsfMatchConfig", "SnapPsfMatchConfigAL", "SnapPsfMatchConfigDF", "SnapPsfMatchTask"]

from typing import ClassVar

import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import MaskedImage
from lsst.utils.timer import timeMethod

from .exclusions import ExclusionRegions
from .imagePsfMatch import ImagePsfMatchConfig, ImagePsfMatchTask
from .psfMatch import PsfMatchConfigAL, PsfMatchConfigDF


class SnapPsfMatchConfigDF(PsfMatchConfigDF):
    """Delta-function kernel for snaps: no regularization, PCA of 5 components."""

    def setDefaults(self) -> None:
        """Use a PCA basis of five components and no regularization."""
        super().setDefaults()
        self.useRegularization = False
        self.usePcaForSpatialKernel = True
        self.subtractMeanForPca = True
        self.numPrincipalComponents = 5


class SnapPsfMatchConfigAL(PsfMatchConfigAL):
    """A small Alard-Lupton basis for snaps: 2 Gaussians (sigma 1.0, 2.5; degrees 4, 2)."""

    def setDefaults(self) -> None:
        """Use two narrow Gaussians (degrees 4 and 2) for nearly identical PSFs."""
        super().setDefaults()
        self.alardNGauss = 2
        self.alardDegGauss = (4, 2)
        self.alardSigGauss = (1.0, 2.5)


class SnapPsfMatchConfig(ImagePsfMatchConfig):
    """Configuration of snap matching: a constant, small kernel and no background."""

    kernel = pexConfig.ConfigChoiceField(
        doc="Kernel basis and fitting configuration.",
        typemap=dict(AL=SnapPsfMatchConfigAL, DF=SnapPsfMatchConfigDF),
        default="AL",
    )
    doWarping = pexConfig.Field[bool](
        dtype=bool,
        doc="Warp the first snap onto the second's grid when they are not registered.",
        default=False,
    )

    def setDefaults(self) -> None:
        """Fit a constant 7-pixel kernel without background or spatial clipping."""
        super().setDefaults()
        for name in ("AL", "DF"):
            kernelConfig = self.kernel[name]
            kernelConfig.spatialKernelOrder = 0
            kernelConfig.fitForBackground = False
            kernelConfig.kernelSize = 7
            kernelConfig.spatialKernelClipping = False


class SnapPsfMatchTask(ImagePsfMatchTask):
    """Match and subtract two snaps taken back to back.

    The snaps' astrometric and PSF differences are expected to be tiny, so the
    default kernel is small and constant across the image, with no
    differential background and no spatial clipping.
    """

    ConfigClass: ClassVar[type[SnapPsfMatchConfig]] = SnapPsfMatchConfig
    config: SnapPsfMatchConfig

    @timeMethod
    def subtractExposures(
        self,
        templateExposure: MaskedImage,
        scienceExposure: MaskedImage,
        templateFwhmPix: float | None = None,
        scienceFwhmPix: float | None = None,
        candidateList: Table | None = None,
        doWarping: bool | None = None,
        convolveTemplate: bool = True,
        *,
        exclude: ExclusionRegions | None = None,
        sourceMask: np.ndarray | None = None,
    ) -> pipeBase.Struct:
        """Subtract the first snap from the second (``doWarping`` from config; see the base class)."""
        return super().subtractExposures(
            templateExposure,
            scienceExposure,
            templateFwhmPix=templateFwhmPix,
            scienceFwhmPix=scienceFwhmPix,
            candidateList=candidateList,
            doWarping=self.config.doWarping if doWarping is None else doWarping,
            convolveTemplate=convolveTemplate,
            exclude=exclude,
            sourceMask=sourceMask,
        )
