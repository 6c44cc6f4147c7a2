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
"""Decorrelation of the noise of difference and score images (the A&L "afterburner").

Notes
-----
Deviations from upstream, both numerical-only: the filter is applied as a
compact real-space kernel by the tiled overlap-save correlation of
`lsst.ip.diffim.math.convolveImage` (upstream multiplies a zero-padded
whole-image FFT; the results agree to the truncation of the filter's
impulse response, which ``kernelSizeFactor`` controls), and the clipped
means of the variance planes are taken on every ``statisticsStride``-th
pixel along each axis.  The spatially varying variant
(`DecorrelateALKernelSpatialTask` with ``spatiallyVarying=True``)
computes the filter on a grid of nodes and interpolates the filter
bilinearly between them (upstream runs the task on overlapping sub-images).
"""

from __future__ import annotations

__all__ = [
    "DecorrelateALKernelConfig",
    "DecorrelateALKernelSpatialConfig",
    "DecorrelateALKernelSpatialTask",
    "DecorrelateALKernelTask",
    "decorrelateDifference",
]

import math
from typing import ClassVar, Unpack, cast

import numpy as np

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import Box, MaskedImage
from lsst.images.psfs import PointSpreadFunction
from lsst.utils.timer import timeMethod

from .imageTypes import ExposureLike, MaskedImageLike
from .math.convolveImage import convolveSpatiallyVarying
from .math.decorrelation import (
    DecorrelationFilter,
    applyFilterKernel,
    computeCommonShape,
    computeDiffimCorrection,
    computeScoreCorrection,
    filterKernel,
    padCenterOriginArray,
)
from .math.gaussian import SIGMA2FWHM
from .math.kernels import Kernel
from .math.masks import anyMaskPlaneSet
from .math.statistics import Property, StatisticsControl, makeStatistics
from .taskArguments import TaskArguments


class DecorrelateALKernelConfig(pexConfig.Config):
    """Configuration of `DecorrelateALKernelTask`."""

    ignoreMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        doc="Mask planes ignored by the sigma-clipped variance means.",
        default=("INTRP", "EDGE", "DETECTED", "SAT", "CR", "BAD", "NO_DATA", "DETECTED_NEGATIVE"),
    )
    completeVarPlanePropagation = pexConfig.Field[bool](
        dtype=bool,
        default=False,
        doc="Convolve the input variance planes with the squared overall kernels; otherwise the variance "
        "is the weighted sum of the input variance planes (the weights being the kernels' sums of squares).",
    )
    kernelSizeFactor = pexConfig.RangeField(
        dtype=float,
        default=2.0,
        min=1.0,
        doc="Half-size of the real-space decorrelation kernel, in units of the largest of the matching "
        "kernel and PSF (and pre-convolution kernel) sizes (not in upstream, which uses whole-image FFTs).",
    )
    statisticsStride = pexConfig.RangeField(
        dtype=int,
        default=4,
        min=1,
        doc="Clipped variance means use every statisticsStride-th pixel along each axis (not in upstream).",
    )


def _kernelImage(kernel: Kernel, x: float, y: float) -> np.ndarray:
    return np.asarray(kernel.getArray(x, y), dtype=float)


def _psfImage(psf: PointSpreadFunction, x: float, y: float) -> np.ndarray:
    image = np.asarray(psf.compute_kernel_image(x=x, y=y).array, dtype=float)
    return image


def _averagePsfImage(psf: PointSpreadFunction, bbox: Box, buffer: float = 0.05, grid: int = 10) -> np.ndarray:
    """Mean PSF image over a grid of the box (upstream's ``computeAveragePsf``)."""
    width, height = bbox.x.max - bbox.x.min, bbox.y.max - bbox.y.min
    xs = np.linspace(bbox.x.min + buffer * width, bbox.x.max - buffer * width, grid)
    ys = np.linspace(bbox.y.min + buffer * height, bbox.y.max - buffer * height, grid)
    total = None
    n = 0
    for x in xs:
        for y in ys:
            try:
                image = _psfImage(psf, float(x), float(y))
            except Exception:  # PSF models raise many types off their domain
                continue
            total = image if total is None else total + image
            n += 1
    if total is None:
        raise ValueError("Unable to evaluate the PSF anywhere on the grid.")
    return total / n


def _centre(bbox: Box) -> tuple[float, float]:
    return 0.5 * (bbox.x.start + bbox.x.stop), 0.5 * (bbox.y.start + bbox.y.stop)


class DecorrelateALKernelTask(pipeBase.Task):
    """Remove the noise correlation a PSF-matching convolution leaves in a difference image.

    See DMTN-021 (difference images) and DMTN-179 (score images).  The
    corrected image has (for constant input variances) white noise of
    variance ``svar + tvar kSum^2`` and unchanged point-source fluxes.
    """

    ConfigClass: ClassVar[type[DecorrelateALKernelConfig]] = DecorrelateALKernelConfig
    _DefaultName = "ip_diffim_decorrelateALKernel"
    config: DecorrelateALKernelConfig

    def __init__(self, config: pexConfig.Config | None = None, **kwargs: Unpack[TaskArguments]) -> None:
        super().__init__(config, **kwargs)
        self.statsControl = StatisticsControl(numSigmaClip=3.0, numIter=3)
        self.freqSpaceShape: tuple[int, int] | None = None

    def computeVarianceMean(self, exposure: MaskedImageLike) -> float:
        """Return the clipped mean of a variance plane, ignoring ``ignoreMaskPlanes``."""
        step = self.config.statisticsStride
        sample = (slice(None, None, step), slice(None, None, step))
        bad = anyMaskPlaneSet(exposure.mask, self.config.ignoreMaskPlanes)
        values = exposure.variance.array[sample]
        stats = makeStatistics(
            values, Property.MEANCLIP, self.statsControl, mask=None if bad is None else bad[sample]
        )
        return stats.getValue(Property.MEANCLIP)

    def computeCommonShape(self, *shapes: tuple[int, int]) -> None:
        """Set ``freqSpaceShape`` (see `lsst.ip.diffim.math.decorrelation.computeCommonShape`)."""
        self.freqSpaceShape = computeCommonShape(*shapes)
        self.log.debug("Common frequency space shape %s", self.freqSpaceShape)

    def _commonShape(self) -> tuple[int, int]:
        """Return ``freqSpaceShape``, set by `computeCommonShape`.

        Raises
        ------
        RuntimeError
            If `computeCommonShape` has not been called.
        """
        if self.freqSpaceShape is None:
            raise RuntimeError("computeCommonShape must be called before the filter is computed")
        return self.freqSpaceShape

    def computeDiffimCorrection(self, kappa: np.ndarray, svar: float, tvar: float) -> pipeBase.Struct:
        """Return the difference-image filter ``corrft`` and the transfer functions ``cnft, crft``."""
        f = computeDiffimCorrection(kappa, svar, tvar, self._commonShape())
        return pipeBase.Struct(corrft=f.corrft, cnft=f.cnft, crft=f.crft)

    def computeScoreCorrection(
        self, kappa: np.ndarray, svar: float, tvar: float, preConvArr: np.ndarray
    ) -> pipeBase.Struct:
        """Return the score-image filter ``corrft`` and the transfer functions ``cnft, crft``."""
        f = computeScoreCorrection(kappa, svar, tvar, preConvArr, self._commonShape())
        return pipeBase.Struct(corrft=f.corrft, cnft=f.cnft, crft=f.crft)

    padCenterOriginArray = staticmethod(padCenterOriginArray)

    @staticmethod
    def estimateVariancePlane(
        vplane1: np.ndarray, vplane2: np.ndarray, c1ft: np.ndarray, c2ft: np.ndarray
    ) -> np.ndarray:
        """Return ``vplane1 mean|c1ft|^2 + vplane2 mean|c2ft|^2`` (the default variance rule)."""
        w1 = float(np.mean(np.abs(c1ft) ** 2))
        w2 = float(np.mean(np.abs(c2ft) ** 2))
        return vplane1 * w1 + vplane2 * w2

    def computeCorrectedImage(self, corrft: np.ndarray, imgOld: np.ndarray) -> np.ndarray:
        """Return ``imgOld`` filtered by ``corrft`` (non-finite pixels kept), as a new array."""
        return applyFilterKernel(imgOld, filterKernel(corrft))

    def _kernelHalfSize(self, *shapes: tuple[int, int]) -> tuple[int, int]:
        ry = int(math.ceil(self.config.kernelSizeFactor * max(s[0] for s in shapes) / 2))
        rx = int(math.ceil(self.config.kernelSizeFactor * max(s[1] for s in shapes) / 2))
        return ry, rx

    def _filter(
        self,
        kArr: np.ndarray,
        psfShape: tuple[int, int],
        varianceMean: float,
        targetVarianceMean: float,
        preConvImg: np.ndarray | None,
    ) -> tuple[DecorrelationFilter, tuple[int, int]]:
        """Return the filter and the half-size of its real-space kernel."""
        shapes = [kArr.shape, psfShape] + ([preConvImg.shape] if preConvImg is not None else [])
        ry, rx = self._kernelHalfSize(*shapes)
        # The grid is the real-space kernel plus the largest input, so that
        # the impulse response does not wrap onto the kept kernel.
        self.computeCommonShape((2 * ry + 1, 2 * rx + 1), *shapes)
        if preConvImg is not None:
            f = computeScoreCorrection(
                kArr, varianceMean, targetVarianceMean, preConvImg, self._commonShape()
            )
        else:
            f = computeDiffimCorrection(kArr, varianceMean, targetVarianceMean, self._commonShape())
        return f, (ry, rx)

    @timeMethod
    def run(
        self,
        scienceExposure: MaskedImageLike,
        templateExposure: MaskedImageLike,
        subtractedExposure: MaskedImageLike,
        psfMatchingKernel: Kernel,
        preConvKernel: np.ndarray | Kernel | None = None,
        xcen: float | None = None,
        ycen: float | None = None,
        svar: float | None = None,
        tvar: float | None = None,
        templateMatched: bool = True,
        preConvMode: bool = False,
        **kwargs: object,
    ) -> pipeBase.Struct:
        """Decorrelate a difference (or, with ``preConvMode``, a score) image in place.

        Parameters
        ----------
        scienceExposure : `lsst.images.VisitImage`
            The science image (before any pre-convolution).
        templateExposure : `lsst.images.VisitImage` or `lsst.images.MaskedImage`
            The template, warped but not PSF-matched.
        subtractedExposure : `lsst.images.DifferenceImage` or `lsst.images.MaskedImage`
            The difference; its image and variance planes are replaced.
        psfMatchingKernel : `lsst.ip.diffim.math.Kernel`
            The matching kernel, evaluated at ``(xcen, ycen)``.
        preConvKernel : `numpy.ndarray` or `lsst.ip.diffim.math.Kernel`, optional
            Kernel the science image was pre-convolved with (only with
            ``templateMatched`` and ``preConvMode``); default the science PSF
            at the image centre.
        xcen, ycen : `float`, optional
            Where the kernel is evaluated; default the difference's centre.
        svar, tvar : `float`, optional
            Mean science and template variances; default the clipped means of
            their variance planes.
        templateMatched : `bool`, optional
            Was the template convolved (else the science image)?
        preConvMode : `bool`, optional
            Is ``subtractedExposure`` a score image?
        **kwargs
            Ignored (``spatiallyVarying`` from the subtraction tasks).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``correctedExposure`` : the decorrelated ``subtractedExposure``.

        Raises
        ------
        ValueError
            If ``preConvKernel`` is given without ``templateMatched`` and ``preConvMode``.
        """
        if preConvKernel is not None and not (templateMatched and preConvMode):
            raise ValueError(
                "Pre-convolution kernel is allowed only if preConvMode==True and templateMatched==True."
            )
        bbox = subtractedExposure.bbox
        cx, cy = _centre(bbox)
        xcen = cx if xcen is None else xcen
        ycen = cy if ycen is None else ycen
        self.log.info("Using matching kernel computed at (%d, %d)", xcen, ycen)
        kArr = _kernelImage(psfMatchingKernel, xcen, ycen)
        preConvImg = self._preConvImage(scienceExposure, preConvKernel) if preConvMode else None
        if svar is None:
            svar = self.computeVarianceMean(scienceExposure)
        if tvar is None:
            tvar = self.computeVarianceMean(templateExposure)
        self.log.info("Original variance plane means. Science:%.5e, warped template:%.5e)", svar, tvar)
        if not (np.isfinite(svar) and np.isfinite(tvar)):
            if np.all(np.isnan(scienceExposure.image.array)) or np.all(
                np.isnan(templateExposure.image.array)
            ):
                self.log.warning("Template or science image is entirely NaNs: skipping decorrelation.")
                return pipeBase.Struct(correctedExposure=subtractedExposure)
        varianceMean, targetVarianceMean, variance, targetVariance, psfImg = self._roles(
            scienceExposure, templateExposure, svar, tvar, xcen, ycen, templateMatched
        )
        if varianceMean > 0 and targetVarianceMean / varianceMean > 1e8:
            self.log.warning(
                "Diverging correction: matched image variance is much larger than the unconvolved one's, "
                "targetVarianceMean/varianceMean:%.2e",
                targetVarianceMean / varianceMean,
            )
        filt, half = self._filter(kArr, psfImg.shape, varianceMean, targetVarianceMean, preConvImg)
        self.log.info("Decorrelation of %s image", "likelihood" if preConvMode else "difference")
        image = subtractedExposure.image.array
        applyFilterKernel(image, filterKernel(filt.corrft, half), out=image)
        newVariance = self._variance(filt, half, variance, targetVariance, varianceMean, targetVarianceMean)
        kSum = float(np.sum(kArr))
        if not templateMatched:
            newVariance /= kSum * kSum
        subtractedExposure.variance.array[...] = newVariance
        self.metadata["decorrelationVarianceScience"] = float(svar)
        self.metadata["decorrelationVarianceTemplate"] = float(tvar)
        return pipeBase.Struct(correctedExposure=subtractedExposure)

    def _preConvImage(
        self, scienceExposure: MaskedImageLike, preConvKernel: np.ndarray | Kernel | None
    ) -> np.ndarray:
        if preConvKernel is None:
            psf = cast(ExposureLike, scienceExposure).psf  # no kernel given: the science image has a PSF
            cx, cy = _centre(psf.bounds.bbox)
            image = _psfImage(psf, cx, cy)
        elif isinstance(preConvKernel, np.ndarray):
            image = np.asarray(preConvKernel, dtype=float)
        else:
            image = np.asarray(preConvKernel.getArray(), dtype=float)
        return image / image.sum()

    def _roles(
        self,
        science: MaskedImageLike,
        template: MaskedImageLike,
        svar: float,
        tvar: float,
        xcen: float,
        ycen: float,
        templateMatched: bool,
    ) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
        """Return the variances and PSF in the roles of unconvolved / convolved image."""
        # The PSF only sizes the filter (with the kernel); an image without a PSF model (a plain
        # MaskedImage) leaves the size to the kernel.
        noPsf = np.zeros((1, 1))
        if templateMatched:
            self.log.info("Decorrelation after template image convolution")
            psf = getattr(science, "psf", None)
            psfImg = noPsf if psf is None else _psfImage(psf, xcen, ycen)
            return svar, tvar, science.variance.array, template.variance.array, psfImg
        self.log.info("Decorrelation after science image convolution")
        psf = getattr(template, "psf", None)
        if psf is None:
            return tvar, svar, template.variance.array, science.variance.array, noPsf
        try:
            psfImg = _psfImage(psf, xcen, ycen)
        except Exception:  # PSF models raise many types off their domain
            psfImg = _averagePsfImage(psf, template.bbox, 0.05, 100)
        return tvar, svar, template.variance.array, science.variance.array, psfImg

    def _variance(
        self,
        filt: DecorrelationFilter,
        half: tuple[int, int],
        variance: np.ndarray,
        targetVariance: np.ndarray,
        varianceMean: float,
        targetVarianceMean: float,
    ) -> np.ndarray:
        if not self.config.completeVarPlanePropagation:
            w1, w2 = filt.varianceWeights()
            out = np.multiply(variance, np.float32(w1), dtype=np.float32)
            out += np.float32(w2) * np.asarray(targetVariance, dtype=np.float32)
            return out
        self.log.debug("Using full variance plane calculation in decorrelation")
        out = None
        for ft, plane, mean in (
            (filt.cnft, variance, varianceMean),
            (filt.crft, targetVariance, targetVarianceMean),
        ):
            # Squared impulse response; the complete one fits twice the half-size.
            kernel = filterKernel(ft, (2 * half[0], 2 * half[1]))
            term = applyFilterKernel(plane, kernel * kernel, fill=mean)
            out = term if out is None else out + term
        return out


class DecorrelateALKernelSpatialConfig(pexConfig.Config):
    """Configuration of `DecorrelateALKernelSpatialTask`."""

    decorrelateConfig = pexConfig.ConfigField[DecorrelateALKernelConfig](
        dtype=DecorrelateALKernelConfig,
        doc="Configuration of the decorrelation (used for both variants).",
    )
    gridSpacing = pexConfig.RangeField(
        dtype=int,
        default=512,
        min=16,
        doc="Largest spacing (pixels) of the nodes at which the spatially varying filter is computed; the "
        "filter is interpolated bilinearly between them (replaces upstream's map-reduce sub-images).",
    )
    ignoreMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        doc="Mask planes ignored by the sigma-clipped variance means.",
        default=("INTRP", "EDGE", "DETECTED", "SAT", "CR", "BAD", "NO_DATA", "DETECTED_NEGATIVE"),
    )


def _nodes(start: int, stop: int, spacing: int) -> np.ndarray:
    n = max(2, int(math.ceil((stop - start) / spacing)) + 1)
    return np.linspace(start, stop - 1, n)


def _hats(nodes: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear interpolation weights ``(nNodes, nCoords)`` (constant beyond the end nodes)."""
    c = np.clip(coords, nodes[0], nodes[-1])
    weights = np.zeros((nodes.size, coords.size))
    idx = np.clip(np.searchsorted(nodes, c, side="right") - 1, 0, nodes.size - 2)
    frac = (c - nodes[idx]) / (nodes[idx + 1] - nodes[idx])
    cols = np.arange(coords.size)
    weights[idx, cols] = 1.0 - frac
    weights[idx + 1, cols] += frac
    return weights


class DecorrelateALKernelSpatialTask(pipeBase.Task):
    """Decorrelate with a constant filter, or one that follows the spatially varying kernel and PSF."""

    ConfigClass: ClassVar[type[DecorrelateALKernelSpatialConfig]] = DecorrelateALKernelSpatialConfig
    _DefaultName = "ip_diffim_decorrelateALKernelSpatial"
    config: DecorrelateALKernelSpatialConfig

    @timeMethod
    def run(
        self,
        scienceExposure: MaskedImageLike,
        templateExposure: MaskedImageLike,
        subtractedExposure: MaskedImageLike,
        psfMatchingKernel: Kernel,
        spatiallyVarying: bool = True,
        preConvKernel: np.ndarray | Kernel | None = None,
        templateMatched: bool = True,
        preConvMode: bool = False,
    ) -> pipeBase.Struct:
        """Decorrelate ``subtractedExposure`` in place (see `DecorrelateALKernelTask.run`).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``correctedExposure`` : the decorrelated difference.
        """
        self.log.info("Running A&L decorrelation: spatiallyVarying=%r", spatiallyVarying)
        task = DecorrelateALKernelTask(
            config=self.config.decorrelateConfig, name="decorrelate", parentTask=self
        )
        if not spatiallyVarying:
            return task.run(
                scienceExposure,
                templateExposure,
                subtractedExposure,
                psfMatchingKernel,
                preConvKernel=preConvKernel,
                templateMatched=templateMatched,
                preConvMode=preConvMode,
            )
        svar = task.computeVarianceMean(scienceExposure)
        tvar = task.computeVarianceMean(templateExposure)
        bbox = subtractedExposure.bbox
        xNodes = _nodes(bbox.x.start, bbox.x.stop, self.config.gridSpacing)
        yNodes = _nodes(bbox.y.start, bbox.y.stop, self.config.gridSpacing)
        preConvImg = task._preConvImage(scienceExposure, preConvKernel) if preConvMode else None
        kernels: list[DecorrelationFilter] = []
        weights: list[tuple[float, float]] = []
        half: tuple[int, int] | None = None
        for y in yNodes:
            for x in xNodes:
                kArr = _kernelImage(psfMatchingKernel, float(x), float(y))
                varMean, targetVarMean, variance, targetVariance, psfImg = task._roles(
                    scienceExposure, templateExposure, svar, tvar, float(x), float(y), templateMatched
                )
                filt, h = task._filter(kArr, psfImg.shape, varMean, targetVarMean, preConvImg)
                half = h if half is None else (max(half[0], h[0]), max(half[1], h[1]))
                kernels.append(filt)
                w1, w2 = filt.varianceWeights()
                kSum = float(np.sum(kArr))
                norm = 1.0 if templateMatched else 1.0 / (kSum * kSum)
                weights.append((w1 * norm, w2 * norm))
        # One kernel shape for all nodes (their grids can differ by the PSF size).
        assert half is not None  # there are at least 2 x 2 nodes
        terms = np.stack([filterKernel(f.corrft, half)[::-1, ::-1] for f in kernels])
        ry, rx = half
        image = subtractedExposure.image.array
        finite = np.isfinite(image)
        work = np.where(finite, image, np.float32(np.mean(image[finite]))) if not finite.all() else image
        padded = np.pad(np.asarray(work, dtype=np.float32), ((ry, ry), (rx, rx)))
        xs = np.arange(bbox.x.start - rx, bbox.x.stop + rx, dtype=float)
        ys = np.arange(bbox.y.start - ry, bbox.y.stop + ry, dtype=float)
        hx, hy = _hats(xNodes, xs), _hats(yNodes, ys)
        nx = xNodes.size
        termX = np.stack([hx[j % nx] for j in range(len(kernels))])
        termY = np.stack([hy[j // nx] for j in range(len(kernels))])
        result = convolveSpatiallyVarying(padded, None, None, terms, termX, termY, edgeMode="copy")
        corrected = result.image[ry : ry + image.shape[0], rx : rx + image.shape[1]]
        if not finite.all():
            corrected = np.where(finite, corrected, image)
        image[...] = corrected
        # Variance: the node weights, interpolated like the filter.
        w = np.asarray(weights)
        hxs, hys = hx[:, rx : rx + image.shape[1]], hy[:, ry : ry + image.shape[0]]
        w1 = np.einsum(
            "jy,jx->yx",
            np.stack([hys[j // nx] for j in range(len(kernels))]) * w[:, :1],
            np.stack([hxs[j % nx] for j in range(len(kernels))]),
        )
        w2 = np.einsum(
            "jy,jx->yx",
            np.stack([hys[j // nx] for j in range(len(kernels))]) * w[:, 1:],
            np.stack([hxs[j % nx] for j in range(len(kernels))]),
        )
        if templateMatched:
            variance, targetVariance = scienceExposure.variance.array, templateExposure.variance.array
        else:
            variance, targetVariance = templateExposure.variance.array, scienceExposure.variance.array
        subtractedExposure.variance.array[...] = (w1 * variance + w2 * targetVariance).astype(np.float32)
        return pipeBase.Struct(correctedExposure=subtractedExposure)


def decorrelateDifference(
    result: pipeBase.Struct,
    template: MaskedImage,
    science: MaskedImage,
    *,
    score: bool = False,
    sciencePsfFwhm: float | None = None,
    config: DecorrelateALKernelConfig | None = None,
) -> pipeBase.Struct:
    """Decorrelate (or turn into a decorrelated score image) the difference of an `ImagePsfMatchTask` run.

    The planes of ``result.subtractedMaskedImage`` (and of
    ``result.subtractedExposure``, if it has its own) are replaced in place.

    Parameters
    ----------
    result : `lsst.pipe.base.Struct`
        Output of `ImagePsfMatchTask.run` / ``subtractExposures``
        (``psfMatchingKernel``, ``convolveTemplate``, ``warpedExposure``).
    template, science : `lsst.images.VisitImage` or `lsst.images.MaskedImage`
        The inputs (the science PSF is used in score mode, unless
        ``sciencePsfFwhm`` is given).
    score : `bool`, optional
        Make the score image: the difference correlated with the science
        PSF, which is the pre-convolved difference of
        `AlardLuptonPreconvolveSubtractTask` for the kernel ``K * P``, then
        decorrelated as a likelihood image (its pixels divided by
        ``sqrt(variance)`` are the point-source detection S/N).
    sciencePsfFwhm : `float`, optional
        Science PSF FWHM (pixels) for the score image: a circular Gaussian
        of this width replaces ``science.psf`` (for inputs without a PSF
        model).
    config : `DecorrelateALKernelConfig`, optional
        Decorrelation configuration.

    Returns
    -------
    result : `lsst.pipe.base.Struct`
        ``result`` itself, with ``decorrelated=True`` and ``score``.

    Raises
    ------
    ValueError
        If ``score`` is requested when the science image was convolved.
    """
    from .math.kernels import FixedKernel

    convolveTemplate = bool(getattr(result, "convolveTemplate", True))
    warped = getattr(result, "warpedExposure", None) or template
    difference = result.subtractedMaskedImage
    kernel = result.psfMatchingKernel
    task = DecorrelateALKernelTask(config=config)
    work = MaskedImage(difference.image.copy(), mask=difference.mask, variance=difference.variance.copy())
    if score:
        if not convolveTemplate:
            raise ValueError("A score image needs the template convolved (convolve template, not science).")
        if sciencePsfFwhm is not None:
            sigma = sciencePsfFwhm / SIGMA2FWHM
            r = max(3, int(math.ceil(4.0 * sigma)))
            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            psf = np.exp(-(xx**2 + yy**2) / (2.0 * sigma * sigma))
        else:
            psf = _psfImage(cast(ExposureLike, science).psf, *_centre(science.bbox))
        psf = psf / psf.sum()
        preConv = FixedKernel(psf[::-1, ::-1].copy())
        # Score = D correlated with P: the kernel matching T to S * P is K * P.
        kArr = _kernelImage(kernel, *_centre(difference.bbox))
        from scipy.signal import fftconvolve

        kernelScore = FixedKernel(fftconvolve(kArr, psf, mode="full"))
        work.image.array[...] = applyFilterKernel(work.image.array, psf[::-1, ::-1])
        task.run(
            science, warped, work, kernelScore, preConvKernel=preConv, templateMatched=True, preConvMode=True
        )
    else:
        task.run(science, warped, work, kernel, templateMatched=convolveTemplate)
    targets = [difference]
    exposure = getattr(result, "subtractedExposure", None)
    if exposure is not None and exposure is not difference:
        targets.append(exposure)
    for target in targets:
        if not np.shares_memory(target.image.array, work.image.array):
            target.image.array[...] = work.image.array
            target.variance.array[...] = work.variance.array
    result.decorrelated = True
    result.score = score
    return result
