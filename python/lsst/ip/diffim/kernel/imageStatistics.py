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
"""Residual statistics of difference stamps in units of their noise."""

from __future__ import annotations

__all__ = ["ImageStatistics", "ImageStatisticsD", "ImageStatisticsF", "ImageStatisticsI"]

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lsst.images import MaskedImage

from ..math.masks import anyMaskPlaneSet
from .settings import KernelFitSettings, asSettings


class ImageStatisticsError(ArithmeticError):
    """Raised when the statistics sums are not finite (afw's 'Nan/Inf')."""


class ImageStatistics:
    """Mean and scatter of ``image / sqrt(variance)`` over unmasked pixels.

    Parameters
    ----------
    ps : `KernelFitSettings`, `lsst.pex.config.Config` or mapping
        Provides ``badMaskPlanes``: pixels with any of those planes set are
        skipped (unknown plane names are ignored).

    Notes
    -----
    Pixels whose inverse variance is not finite (variance 0) are skipped;
    pixels with infinite variance are kept with zero weight, as upstream.
    """

    def __init__(self, ps: KernelFitSettings | Mapping[str, Any] | Any) -> None:
        self._badMaskPlanes = list(asSettings(ps).badMaskPlanes)
        self.reset()

    def reset(self) -> None:
        """Forget the pixels accumulated so far."""
        self._xsum = 0.0
        self._x2sum = 0.0
        self._npix = 0

    def setBpMask(self, planes: list[str]) -> None:
        """Set the mask planes whose pixels are left out of the statistics."""
        self._badMaskPlanes = list(planes)

    def apply(self, maskedImage: MaskedImage, core: int = 0) -> None:
        """Accumulate the statistics of ``maskedImage``.

        Parameters
        ----------
        maskedImage : `lsst.images.MaskedImage`
            The difference stamp.
        core : `int`, optional
            If positive, use only the ``(2 core + 1)^2`` central pixels.

        Raises
        ------
        ImageStatisticsError
            If the sums are not finite.
        """
        image = maskedImage.image.array
        variance = maskedImage.variance.array
        bad = anyMaskPlaneSet(maskedImage.mask, self._badMaskPlanes)
        if core > 0:
            h, w = image.shape
            ys = slice(max(h // 2 - core, 0), min(h // 2 + core + 1, h))
            xs = slice(max(w // 2 - core, 0), min(w // 2 + core + 1, w))
            image, variance, bad = image[ys, xs], variance[ys, xs], bad[ys, xs]
        self.applyArrays(image, variance, bad)

    def applyArrays(self, image: np.ndarray, variance: np.ndarray, bad: np.ndarray | None = None) -> None:
        """Like `apply`, on plain arrays (``bad`` is `True` where skipped)."""
        self.reset()
        with np.errstate(divide="ignore", invalid="ignore"):
            ivar = 1.0 / variance.astype(float)
        use = np.isfinite(ivar)
        if bad is not None:
            use &= ~bad
        values = image.astype(float)[use]
        ivar = ivar[use]
        with np.errstate(invalid="ignore"):
            xsum = float(np.sum(values * np.sqrt(ivar)))
            x2sum = float(np.sum(values * values * ivar))
        self._npix = int(values.size)
        if not (math.isfinite(xsum) and math.isfinite(x2sum)):
            raise ImageStatisticsError("Nan/Inf in ImageStatistics.apply")
        self._xsum = xsum
        self._x2sum = x2sum

    def getMean(self) -> float:
        """Return the mean of the accumulated pixels (NaN if there are none)."""
        return self._xsum / self._npix if self._npix > 0 else math.nan

    def getVariance(self) -> float:
        """Return the unbiased variance of the accumulated pixels (NaN for fewer than 2)."""
        n = self._npix
        if n <= 1:
            return math.nan
        mean = self._xsum / n
        return (self._x2sum / n - mean * mean) * n / (n - 1.0)

    def getRms(self) -> float:
        """Return the square root of the variance (NaN if it is undefined or negative)."""
        var = self.getVariance()
        return math.sqrt(var) if var >= 0 else math.nan

    def getNpix(self) -> int:
        """Return the number of pixels accumulated."""
        return self._npix

    def evaluateQuality(self, ps: KernelFitSettings | Mapping[str, Any] | Any) -> bool:
        """Return `False` if the residuals exceed the configured limits."""
        settings = asSettings(ps)
        if abs(self.getMean()) > settings.candidateResidualMeanMax:
            return False
        return not self.getRms() > settings.candidateResidualStdMax


ImageStatisticsF = ImageStatistics
ImageStatisticsD = ImageStatistics
ImageStatisticsI = ImageStatistics
