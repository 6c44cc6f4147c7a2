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
"""Rescale a variance plane to the noise measured in its image.

The task of ``lsst.meas.algorithms.ScaleVarianceTask`` (formerly in
``lsst.pipe.tasks``), on `lsst.images.MaskedImage` objects.
"""

from __future__ import annotations

__all__ = ["ExceedsMaxVarianceScaleError", "ScaleVarianceConfig", "ScaleVarianceTask"]

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import MaskedImage
from lsst.utils.timer import timeMethod

from .math.background import SubtractBackgroundConfig
from .math.binnedBackground import binnedBackgroundImage
from .math.masks import anyMaskPlaneSet
from .math.pixelNoise import neighbourDifferenceVariance

#: Robust sigma of a Gaussian from its interquartile range (upstream's rounded 1/1.349).
_IQR_TO_SIGMA = 0.74

_IGNORED = ["DETECTED", "DETECTED_NEGATIVE", "BAD", "SAT", "NO_DATA", "INTRP"]


class ExceedsMaxVarianceScaleError(pipeBase.AlgorithmError):
    """The variance scale factor is above ``ScaleVarianceConfig.limit`` by both estimators.

    Parameters
    ----------
    scaleVarianceValue : `float`
        The factor found (the image-based one, tried last).
    scaleVarianceLimit : `float`
        The configured limit.
    """

    def __init__(self, scaleVarianceValue: float, scaleVarianceLimit: float) -> None:
        super().__init__(
            f"Variance rescaling factor ({scaleVarianceValue}) exceeds configured limit "
            f"({scaleVarianceLimit}): the variance plane does not describe the image noise."
        )
        self.scaleVarianceValue = float(scaleVarianceValue)
        self.scaleVarianceLimit = float(scaleVarianceLimit)

    @property
    def metadata(self) -> dict[str, float]:
        """Return the measured variance scale and the largest allowed."""
        return {"scaleVarianceValue": self.scaleVarianceValue, "scaleVarianceLimit": self.scaleVarianceLimit}


class ScaleVarianceConfig(pexConfig.Config):
    """Configuration of `ScaleVarianceTask`."""

    background = pexConfig.ConfigField[SubtractBackgroundConfig](
        dtype=SubtractBackgroundConfig,
        doc="Background removed (for the measurement only) before the noise is measured.",
    )
    maskPlanes = pexConfig.ListField[str](
        dtype=str,
        default=list(_IGNORED),
        doc="Mask planes for pixels to ignore when scaling variance.",
    )
    limit = pexConfig.Field[float](dtype=float, default=10.0, doc="Maximum variance scaling value to permit.")
    noiseRatioWarnLimit = pexConfig.Field[float](
        dtype=float,
        default=0.2,
        doc="Warn when the measured and the predicted noise (sqrt of the factor) differ by more than "
        "this fraction (not in upstream).",
    )

    structureLimit = pexConfig.Field[float](
        dtype=float,
        default=0.87,
        check=lambda x: 0.0 <= x <= 1.0,
        doc="Crowded fields (not in upstream): when the pixel-to-pixel noise (neighbour differences "
        "2 px apart, which noise correlated over a pixel or two does not lower) is below this fraction "
        "of the pixel-based factor, the excess of the pixel scatter is taken as unresolved signal "
        "(stars below the detection threshold), not noise, and the factor is the lag-1 "
        "neighbour-difference one. Noise correlated 2 px away by more than 1 - structureLimit (heavier "
        "smoothing than resampling leaves) would be taken for crowding: give 0 for such images. "
        "0 turns the test off (upstream's behaviour).",
    )

    crowdedMaskedFraction = pexConfig.Field[float](
        dtype=float,
        default=0.45,
        check=lambda x: 0.0 <= x <= 1.0,
        doc="The structureLimit test applies only to crowded fields: at least this fraction of the "
        "finite pixels has one of maskPlanes set (detected sources cover 54-81% of the SAAO bulge "
        "frames, at most 35% of the DECam, JWST and ZTF ones). Elsewhere excess scatter on large "
        "scales (scattered light, extended sources) is left to the pixel-based factor, as upstream.",
    )

    def setDefaults(self) -> None:
        """Set a background of 32-pixel bins that ignores the masked pixels."""
        super().setDefaults()
        self.background.binSize = 32
        self.background.undersampleStyle = "REDUCE_INTERP_ORDER"
        self.background.ignoredPixelMask = list(_IGNORED)


class ScaleVarianceTask(pipeBase.Task):
    """Scale a variance plane to match the noise seen in its image.

    Convolution, warping and coaddition move variance into covariance, and
    images without a recorded variance get a modelled one; either way the
    variance plane may not describe the pixel-to-pixel noise.  This task
    measures the ratio of the empirical noise to the predicted one on the
    background pixels (the pixels with none of ``config.maskPlanes`` set,
    after a binned background is removed) and rescales the variance plane
    by its square.

    Two estimators are provided, as upstream:

    - pixel-based (`pixelBased`): the squared robust standard deviation
      (0.74 x interquartile range) of ``image / sqrt(variance)``;
    - image-based (`imageBased`): the squared ratio of the robust standard
      deviation of the image to the square root of the median variance.

    `run` uses the pixel-based factor, falls back to the image-based one
    when it exceeds ``config.limit``, raises `ExceedsMaxVarianceScaleError`
    when both do, and applies the factor to the variance plane in place
    (as upstream does).  Beyond upstream, it logs a warning when the
    measured and predicted noise differ by more than
    ``config.noiseRatioWarnLimit`` (20%) and the factor is recorded in the
    task metadata as ``factor``.

    Deviation from upstream (``config.structureLimit``; 0 restores
    upstream's behaviour): in a crowded field the stars below the detection
    threshold are not masked, and their light inflates the pixel-based
    factor (2.2-2.7 on the crowded SAAO bulge frames, whose gain/Poisson
    variance is right).  That light is smooth on the scale of the PSF, so
    it hardly changes the difference of neighbouring pixels
    (`lsst.ip.diffim.math.pixelNoise`).  In a crowded field (at least
    ``crowdedMaskedFraction`` of the pixels masked as sources), when the
    lag-2 neighbour-difference
    factor is below ``structureLimit`` times the pixel-based one (noise
    correlated over a pixel or two, as in resampled images, keeps the two
    close), the lag-1 neighbour-difference factor is used instead; the
    metadata records ``pixelFactor``, ``neighbourFactor1``,
    ``neighbourFactor2`` and ``crowded``.
    """

    ConfigClass = ScaleVarianceConfig
    _DefaultName = "scaleVariance"
    config: ScaleVarianceConfig

    def _isGood(self, maskedImage: MaskedImage, planes: list[str]) -> np.ndarray:
        image = maskedImage.image.array
        variance = maskedImage.variance.array
        good = np.isfinite(image) & np.isfinite(variance) & (variance > 0)
        flagged = anyMaskPlaneSet(maskedImage.mask, planes)
        if flagged is not None:
            good &= ~flagged
        return good

    def fitBackground(self, maskedImage: MaskedImage) -> np.ndarray:
        """Return the binned background image of ``maskedImage`` (``config.background``)."""
        bg = self.config.background
        good = self._isGood(maskedImage, list(bg.ignoredPixelMask))
        return binnedBackgroundImage(
            np.asarray(maskedImage.image.array, dtype=float),
            good,
            bg.binSize,
            statistic=bg.statisticsProperty,
            algorithm=bg.algorithm,
            undersampleStyle=bg.undersampleStyle,
        )

    @contextmanager
    def subtractedBackground(self, maskedImage: MaskedImage) -> Iterator[None]:
        """Subtract the background from ``maskedImage`` for the duration of the context.

        The image is restored on exit, also when the body raises.
        """
        background = self.fitBackground(maskedImage).astype(maskedImage.image.array.dtype)
        maskedImage.image.array[...] -= background
        try:
            yield
        finally:
            maskedImage.image.array[...] += background

    @timeMethod
    def run(self, maskedImage: MaskedImage) -> float:
        """Rescale the variance of ``maskedImage`` in place.

        Parameters
        ----------
        maskedImage : `lsst.images.MaskedImage`
            Image whose variance plane is rescaled (modified in place; the
            image plane is left as it was).

        Returns
        -------
        factor : `float`
            The factor the variance was multiplied by.

        Raises
        ------
        ExceedsMaxVarianceScaleError
            If both the pixel-based and image-based factors exceed
            ``config.limit``.
        """
        with self.subtractedBackground(maskedImage):
            factor = self.structureCorrected(maskedImage, self.pixelBased(maskedImage))
            if not factor <= self.config.limit:
                self.log.warning(
                    "Pixel-based variance rescaling factor (%f) exceeds configured limit (%f); "
                    "trying image-based method",
                    factor,
                    self.config.limit,
                )
                factor = self.imageBased(maskedImage)
                if not factor <= self.config.limit:
                    raise ExceedsMaxVarianceScaleError(factor, self.config.limit)
        self.log.info("Renormalizing variance by %f", factor)
        self.warnIfDiscrepant(factor)
        maskedImage.variance.array[...] *= np.float32(factor)
        self.metadata["factor"] = float(factor)
        return float(factor)

    def warnIfDiscrepant(self, factor: float, label: str = "image") -> bool:
        """Log a warning if the noise ratio ``sqrt(factor)`` is off 1 by more than the limit.

        Returns
        -------
        warned : `bool`
            Whether the warning was logged.
        """
        ratio = math.sqrt(factor) if factor >= 0 else math.nan
        if not abs(ratio - 1.0) <= self.config.noiseRatioWarnLimit:
            self.log.warning(
                "The measured noise of the %s is %.3g times the noise its variance predicts (more than "
                "%.0f%% off); the variance plane is rescaled by %.4g.",
                label,
                ratio,
                100 * self.config.noiseRatioWarnLimit,
                factor,
            )
            return True
        return False

    def neighbourBased(self, maskedImage: MaskedImage, lag: int = 1) -> float:
        """Return the neighbour-difference factor at ``lag`` pixels (NaN if too few pixel pairs).

        The robust variance of the differences of ``image / sqrt(variance)``
        between good pixels ``lag`` apart, halved
        (`lsst.ip.diffim.math.pixelNoise.neighbourDifferenceVariance`).
        """
        good = self._isGood(maskedImage, list(self.config.maskPlanes))
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = maskedImage.image.array / np.sqrt(maskedImage.variance.array, dtype=float)
        value, _ = neighbourDifferenceVariance(snr, good, lag=lag, iqrToSigma=_IQR_TO_SIGMA)
        return value

    def structureCorrected(self, maskedImage: MaskedImage, pixelFactor: float) -> float:
        """Return ``pixelFactor``, or the lag-1 neighbour factor if the image is crowded.

        See the class documentation (``config.structureLimit``).  The image
        is expected background-subtracted (as inside `run`).
        """
        self.metadata["pixelFactor"] = float(pixelFactor)
        self.metadata["crowded"] = False
        if not self.config.structureLimit > 0 or not math.isfinite(pixelFactor) or pixelFactor <= 0:
            return pixelFactor
        finite = np.isfinite(maskedImage.image.array) & np.isfinite(maskedImage.variance.array)
        nFinite = int(finite.sum())
        masked = 1.0 - float(self._isGood(maskedImage, list(self.config.maskPlanes)).sum()) / max(nFinite, 1)
        self.metadata["maskedFraction"] = masked
        if masked < self.config.crowdedMaskedFraction:
            return pixelFactor
        lag1 = self.neighbourBased(maskedImage, 1)
        lag2 = self.neighbourBased(maskedImage, 2)
        self.metadata["neighbourFactor1"] = float(lag1)
        self.metadata["neighbourFactor2"] = float(lag2)
        if not (math.isfinite(lag1) and math.isfinite(lag2) and lag1 > 0):
            return pixelFactor
        if lag2 >= self.config.structureLimit * pixelFactor:
            return pixelFactor
        self.log.info(
            "Crowded field: the pixel-to-pixel noise (neighbour-difference factors %.4g at 1 px, %.4g at "
            "2 px) is below the pixel scatter (factor %.4g), which unresolved sources inflate; using %.4g.",
            lag1,
            lag2,
            pixelFactor,
            lag1,
        )
        self.metadata["crowded"] = True
        return lag1

    def computeScaleFactors(self, maskedImage: MaskedImage) -> pipeBase.Struct:
        """Return both factors without changing ``maskedImage``.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``pixelFactor`` and ``imageFactor`` (`float`; 1 when fewer than
            two pixels are usable), and ``neighbourFactor1``,
            ``neighbourFactor2`` (`float`; the neighbour-difference factors
            at 1 and 2 px, NaN with too few pixel pairs).
        """
        with self.subtractedBackground(maskedImage):
            pixelFactor = self.pixelBased(maskedImage)
            imageFactor = self.imageBased(maskedImage)
            lag1 = self.neighbourBased(maskedImage, 1)
            lag2 = self.neighbourBased(maskedImage, 2)
        return pipeBase.Struct(
            pixelFactor=pixelFactor, imageFactor=imageFactor, neighbourFactor1=lag1, neighbourFactor2=lag2
        )

    def pixelBased(self, maskedImage: MaskedImage) -> float:
        """Return the pixel-based factor: robust variance of ``image / sqrt(variance)``.

        The image is expected background-subtracted (as inside `run`).
        Returns 1 when fewer than two pixels are usable.
        """
        good = self._isGood(maskedImage, list(self.config.maskPlanes))
        nGood = int(good.sum())
        self.log.debug("Number of selected background pixels: %d of %d.", nGood, good.size)
        if nGood < 2:
            return 1.0
        snr = maskedImage.image.array[good] / np.sqrt(maskedImage.variance.array[good], dtype=float)
        q1, q3 = np.percentile(snr, (25.0, 75.0))
        return float((_IQR_TO_SIGMA * (q3 - q1)) ** 2)

    def imageBased(self, maskedImage: MaskedImage) -> float:
        """Return the image-based factor: (robust std of the image)^2 / median variance.

        The image is expected background-subtracted (as inside `run`).
        Returns 1 when fewer than two pixels are usable.
        """
        good = self._isGood(maskedImage, list(self.config.maskPlanes))
        nGood = int(good.sum())
        self.log.debug("Number of selected background pixels: %d of %d.", nGood, good.size)
        if nGood < 2:
            return 1.0
        q1, q3 = np.percentile(np.asarray(maskedImage.image.array[good], dtype=float), (25.0, 75.0))
        medianVariance = float(np.median(maskedImage.variance.array[good]))
        return float((_IQR_TO_SIGMA * (q3 - q1)) ** 2 / medianVariance)

    def computePixelScaleFactor(self, maskedImage: MaskedImage) -> float:
        """Return the pixel-based factor of ``maskedImage`` (background removed first), unchanged."""
        with self.subtractedBackground(maskedImage):
            return self.pixelBased(maskedImage)

    def computeImageScaleFactor(self, maskedImage: MaskedImage) -> float:
        """Return the image-based factor of ``maskedImage`` (background removed first), unchanged."""
        with self.subtractedBackground(maskedImage):
            return self.imageBased(maskedImage)
