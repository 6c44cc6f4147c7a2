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
            factor = self.pixelBased(maskedImage)
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

    def computeScaleFactors(self, maskedImage: MaskedImage) -> pipeBase.Struct:
        """Return both factors without changing ``maskedImage``.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``pixelFactor`` and ``imageFactor`` (`float`; 1 when fewer than
            two pixels are usable).
        """
        with self.subtractedBackground(maskedImage):
            pixelFactor = self.pixelBased(maskedImage)
            imageFactor = self.imageBased(maskedImage)
        return pipeBase.Struct(pixelFactor=pixelFactor, imageFactor=imageFactor)

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
