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
"""Match an image's PSF to a model PSF."""

from __future__ import annotations

__all__ = [
    "ModelPsfMatchConfig",
    "ModelPsfMatchTask",
    "PsfComputeShapeError",
    "WarpedPsfTransformTooBigError",
    "nextOddInteger",
]

import math
from typing import ClassVar, cast

import numpy as np

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import Box, Image, MaskedImage
from lsst.images.psfs import PointSpreadFunction
from lsst.utils.timer import timeMethod

from .imageTypes import ExposureLike
from .kernel.candidate import makeKernelCandidate
from .kernel.solution import SpatialKernelSolution
from .makeKernelBasisList import makeKernelBasisList, sigma2fwhm
from .math.convolve import ConvolutionControl, convolve
from .math.functions import Function2
from .math.kernels import Kernel, LinearCombinationKernel
from .math.masks import makeDifferenceMaskSchema
from .math.spatialCell import SpatialCellSet
from .psfMatch import PsfMatchConfigAL, PsfMatchTask


def nextOddInteger(x: float) -> int:
    """Return the smallest odd integer ``>= x``."""
    n = int(math.ceil(x))
    return n + 1 if n % 2 == 0 else n


class WarpedPsfTransformTooBigError(pipeBase.AlgorithmError):
    """The transform of a warped PSF is too large to evaluate."""

    @property
    def metadata(self) -> dict:
        """Return the error's metadata (none)."""
        return {}


class PsfComputeShapeError(pipeBase.AlgorithmError):
    """The PSF could not be evaluated at a position.

    Parameters
    ----------
    x, y : `float`
        The position.
    """

    def __init__(self, x: float, y: float) -> None:
        super().__init__(f"Unable to compute the PSF shape at ({x}, {y}).")
        self._x, self._y = float(x), float(y)

    @property
    def metadata(self) -> dict:
        """Return the position at which the PSF shape could not be computed."""
        return {"position": {"x": self._x, "y": self._y}}


class ModelPsfMatchConfig(pexConfig.Config):
    """Configuration of matching an image to a model PSF."""

    kernel = pexConfig.ConfigChoiceField(
        doc="Kernel configuration (only Alard-Lupton).",
        typemap=dict(AL=PsfMatchConfigAL),
        default="AL",
    )
    doAutoPadPsf = pexConfig.Field[bool](
        dtype=bool,
        doc="Pad the PSF stamps automatically to at least autoPadPsfTo times the kernel size.",
        default=True,
    )
    autoPadPsfTo = pexConfig.RangeField(
        dtype=float,
        doc="Minimum PSF stamp size as a multiple of kernelSize, with doAutoPadPsf.",
        default=1.4,
        min=1.0,
        max=2.0,
        inclusiveMax=True,
    )
    padPsfBy = pexConfig.Field[int](
        dtype=int,
        doc="Pixels added to the PSF stamp size when doAutoPadPsf is False; must be even.",
        default=0,
    )

    def setDefaults(self) -> None:
        """Fit a model PSF: no clipping, constant variance weights, no FWHM scaling."""
        super().setDefaults()
        self.kernel.active.singleKernelClipping = False
        self.kernel.active.kernelSumClipping = False
        self.kernel.active.spatialKernelClipping = False
        self.kernel.active.checkConditionNumber = False
        self.kernel.active.constantVarianceWeighting = True
        self.kernel.active.scaleByFwhm = False


def _psfKernelArray(psf: PointSpreadFunction, x: float, y: float) -> np.ndarray:
    return np.asarray(psf.compute_kernel_image(x=x, y=y).array, dtype=float)


def _determinantFwhm(image: np.ndarray) -> float:
    """Return ``2.3548 * (Ixx Iyy - Ixy^2)^(1/4)`` of a PSF image's second moments."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    total = image.sum()
    xc = (image * xx).sum() / total
    yc = (image * yy).sum() / total
    ixx = (image * (xx - xc) ** 2).sum() / total
    iyy = (image * (yy - yc) ** 2).sum() / total
    ixy = (image * (xx - xc) * (yy - yc)).sum() / total
    return sigma2fwhm * (ixx * iyy - ixy * ixy) ** 0.25


class ModelPsfMatchTask(PsfMatchTask):
    """Convolve an image so that its PSF becomes a given model PSF.

    Kernel candidates are the two PSFs realized at the centre of every
    spatial cell of the (grown) image box; the fitted kernel is normalized
    to ``kernelSum`` and the image is convolved with it, normalized per pixel.
    """

    ConfigClass: ClassVar[type[ModelPsfMatchConfig]] = ModelPsfMatchConfig
    config: ModelPsfMatchConfig

    @timeMethod
    def run(
        self, exposure: ExposureLike, referencePsfModel: PointSpreadFunction, kernelSum: float = 1.0
    ) -> pipeBase.Struct:
        """Match ``exposure``'s PSF to ``referencePsfModel``.

        Parameters
        ----------
        exposure : `lsst.images.VisitImage`
            The image to convolve; must carry a PSF.
        referencePsfModel : `lsst.images.psfs.PointSpreadFunction`
            The PSF to match to.
        kernelSum : `float`, optional
            Sum of the returned kernel (the output image is normalized per
            pixel regardless).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``psfMatchedExposure``, ``psfMatchingKernel``, ``kernelCellSet``,
            ``metadata``.

        Raises
        ------
        RuntimeError
            If the exposure has no PSF.
        ValueError
            If the kernel does not fit in the PSF stamps.
        """
        psf = getattr(exposure, "psf", None)
        if psf is None:
            raise RuntimeError("exposure does not contain a PSF model")
        result = self._buildCellSet(exposure, referencePsfModel)
        kernelCellSet = result.kernelCellSet
        referencePsfModel = result.referencePsfModel
        bbox = exposure.bbox
        xc, yc = bbox.x.center, bbox.y.center
        fwhmScience = self._safeFwhm(psf, xc, yc)
        fwhmModel = _determinantFwhm(_psfKernelArray(referencePsfModel, xc, yc))
        basisList = makeKernelBasisList(self.kConfig, fwhmScience, fwhmModel, metadata=self.metadata)
        _, solvedKernel, _ = self._solve(kernelCellSet, basisList)
        psfMatchingKernel = cast(LinearCombinationKernel, solvedKernel)  # the fit's kernel
        if psfMatchingKernel.isSpatiallyVarying():
            spatialParams = [list(row) for row in psfMatchingKernel.getSpatialParameters()]
            spatialParams[0][0] = kernelSum
            psfMatchingKernel.setSpatialParameters(spatialParams)
        else:
            params = psfMatchingKernel.getKernelParameters()
            params[0] = kernelSum
            psfMatchingKernel.setKernelParameters(params)
        maskedImage = MaskedImage(exposure.image, mask=exposure.mask, variance=exposure.variance)
        convolved = convolve(maskedImage, psfMatchingKernel, ConvolutionControl(doNormalize=True))
        psfMatchedExposure = self._makeOutput(exposure, convolved, referencePsfModel)
        return pipeBase.Struct(
            psfMatchedExposure=psfMatchedExposure,
            psfMatchingKernel=psfMatchingKernel,
            kernelCellSet=kernelCellSet,
            metadata=self.metadata,
        )

    def _safeFwhm(self, psf: PointSpreadFunction, x: float, y: float) -> float:
        """Return the PSF's determinant-radius FWHM, retrying at jittered positions."""
        rng = np.random.default_rng(seed=40)
        positions = [(x, y)] + [(x + rng.uniform(-2, 2), y + rng.uniform(-2, 2)) for _ in range(4)]
        for px, py in positions:
            try:
                return _determinantFwhm(_psfKernelArray(psf, px, py))
            except Exception:  # PSF models raise many exception types off their domain
                continue
        raise PsfComputeShapeError(x, y)

    def _diagnostic(
        self,
        kernelCellSet: SpatialCellSet,
        spatialSolution: SpatialKernelSolution,
        spatialKernel: Kernel,
        spatialBg: Function2,
    ) -> None:
        """No diagnostics for model matching (the fit is noise-free)."""

    @staticmethod
    def _makeOutput(exposure: ExposureLike, convolved: MaskedImage, psf: PointSpreadFunction) -> MaskedImage:
        from lsst.images import VisitImage

        if isinstance(exposure, VisitImage):
            return VisitImage(
                convolved.image,
                mask=convolved.mask,
                variance=convolved.variance,
                sky_projection=exposure.sky_projection,
                obs_info=exposure.obs_info,
                psf=psf,
                detector=exposure.detector,
                band=exposure.band,
            )
        return convolved

    def _makePsfMaskedImage(self, psf: PointSpreadFunction, x: float, y: float, size: int) -> MaskedImage:
        """Realize a PSF at ``(x, y)`` in a ``size x size`` stamp (padded or clipped, centred)."""
        array = _psfKernelArray(psf, x, y)
        out = np.zeros((size, size), dtype=np.float32)
        h, w = array.shape
        oy, ox = (size - h) // 2, (size - w) // 2
        ys = slice(max(oy, 0), min(oy + h, size))
        xs = slice(max(ox, 0), min(ox + w, size))
        out[ys, xs] = array[ys.start - oy : ys.stop - oy, xs.start - ox : xs.stop - ox]
        bbox = Box.from_shape((size, size))
        return MaskedImage(
            Image(out, bbox=bbox),
            variance=Image(np.ones((size, size), dtype=np.float32), bbox=bbox),
            mask_schema=makeDifferenceMaskSchema(),
        )

    def _buildCellSet(
        self, exposure: ExposureLike, referencePsfModel: PointSpreadFunction
    ) -> pipeBase.Struct:
        """Fill a cell set with PSF-pair candidates at the cell centres.

        Raises
        ------
        ValueError
            If the grown box holds no full cell, ``padPsfBy`` is odd, or the
            kernel is larger than the PSF stamps allow.
        """
        kc = self.kConfig
        sizeCellX, sizeCellY = kc.sizeCellX, kc.sizeCellY
        bbox = exposure.bbox
        grown = Box.factory[
            bbox.y.start - sizeCellY : bbox.y.stop + sizeCellY,
            bbox.x.start - sizeCellX : bbox.x.stop + sizeCellX,
        ]
        cellSet = SpatialCellSet(grown, sizeCellX, sizeCellY)
        refShape = _psfKernelArray(referencePsfModel, bbox.x.center, bbox.y.center).shape
        nCellX = grown.x.size // sizeCellX
        nCellY = grown.y.size // sizeCellY
        if nCellX == 0 or nCellY == 0:
            raise ValueError(f"Image {bbox} is smaller than one {sizeCellX}x{sizeCellY} cell.")
        centres = [
            (
                sizeCellX * col + sizeCellX // 2 + grown.x.start,
                sizeCellY * row + sizeCellY // 2 + grown.y.start,
            )
            for row in range(nCellY)
            for col in range(nCellX)
        ]
        psf = exposure.psf
        sizes: list[int] = []
        for x, y in centres:
            try:
                sizes.extend(_psfKernelArray(psf, x, y).shape)
            except Exception as exc:  # PSF models raise many exception types off their domain
                raise PsfComputeShapeError(x, y) from exc
        psfSize = max(sizes)
        if self.config.doAutoPadPsf:
            minPsfSize = nextOddInteger(kc.kernelSize * self.config.autoPadPsfTo)
            padPsfBy = max(0, minPsfSize - psfSize)
        else:
            padPsfBy = self.config.padPsfBy
            if padPsfBy % 2 != 0:
                raise ValueError(f"padPsfBy ({padPsfBy}) must be even so the PSF stays centred.")
        psfSize += padPsfBy
        maxKernelSize = psfSize - 1
        if maxKernelSize % 2 == 0:
            maxKernelSize -= 1
        if kc.kernelSize > maxKernelSize:
            raise ValueError(
                f"Kernel size ({kc.kernelSize}) too big to match PSFs of size {psfSize}: use a smaller "
                f"kernelSize, set doAutoPadPsf=True, or set padPsfBy >= {kc.kernelSize - maxKernelSize}."
            )
        if refShape != (psfSize, psfSize):
            referencePsfModel = self._resizedPsf(referencePsfModel, psfSize)
        ps = self._kernelSettings()
        for x, y in centres:
            scienceStamp = self._makePsfMaskedImage(psf, x, y, psfSize)
            referenceStamp = self._makePsfMaskedImage(referencePsfModel, x, y, psfSize)
            cellSet.insertCandidate(makeKernelCandidate(x, y, scienceStamp, referenceStamp, ps))
        import lsstDebug

        from .display.switches import isEnabled

        info = lsstDebug.Info(__name__)
        if isEnabled(info, __name__, "displaySpatialCells", self.log):
            from .display.imageDisplays import displaySpatialCells

            maskedImage = MaskedImage(exposure.image, mask=exposure.mask, variance=exposure.variance)
            displaySpatialCells(__name__, self.log, info, maskedImage, cellSet, title="Image to be convolved")
        return pipeBase.Struct(kernelCellSet=cellSet, referencePsfModel=referencePsfModel)

    def _resizedPsf(self, psf: PointSpreadFunction, size: int) -> PointSpreadFunction:
        from lsst.images.psfs import GaussianPointSpreadFunction

        if isinstance(psf, GaussianPointSpreadFunction):
            return GaussianPointSpreadFunction(psf.sigma, bounds=psf.bounds, stamp_size=size)
        self.log.warning(
            "Unable to resize the reference PSF model to %dx%d; stamps are padded instead", size, size
        )
        return psf
