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
"""Aperture fluxes of given positions on the local sky of an image.

Used by the variable-candidate test (`lsst.ip.diffim.variableCandidates`)
and the kernel-sum check (`lsst.ip.diffim.kernelSumCheck`), which measure
the kernel candidates in both images of a pair.
"""

from __future__ import annotations

__all__ = ["candidateFluxes"]

import math
from typing import TYPE_CHECKING

import numpy as np

from .imageTypes import MaskedImageLike
from .math.apertureMask import maskedOverlap
from .math.masks import anyMaskPlaneSet
from .math.usablePixels import finiteWithPositiveVariance

if TYPE_CHECKING:
    from .math.meshBackground import MeshBackground

#: Mask planes whose pixels spoil an aperture.
_FLAGGED = ["SAT", "NO_DATA", "BAD", "STREAK", "EDGE"]


def _planes(mi: MaskedImageLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The planes in their own precision (float32 views: float64 copies cost more than the photometry
    # at 4096^2); sep's background is computed in float32 whatever the input.
    image = np.asarray(mi.image.array)
    if image.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        image = image.astype(np.float32)
    variance = np.asarray(mi.variance.array, dtype=image.dtype)
    good = finiteWithPositiveVariance(image, variance)
    flagged = anyMaskPlaneSet(mi.mask, _FLAGGED)
    if flagged is not None:
        good &= ~flagged
    return image, variance, good


def candidateFluxes(
    maskedImage: MaskedImageLike,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    *,
    background: MeshBackground | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return background-subtracted aperture fluxes and their errors at ``(x, y)``.

    The background is a `sep` background map (boxes of half the smaller
    image side, 8-64 px), so that neighbours inside a local annulus do not
    bias small cutouts.  Apertures with a flagged pixel (SAT, NO_DATA, BAD,
    STREAK, EDGE) or reaching off the image get NaN.

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage`
        The image.
    x, y : `numpy.ndarray`
        Centres, in array pixels (0-based, relative to the image origin).
    radius : `float`
        Aperture radius in pixels.
    background : `~lsst.ip.diffim.math.meshBackground.MeshBackground`, optional
        A background already fitted to this image (the candidate
        detection's): used instead of a new fit when it is the one this
        function would fit (same box and masked pixels, float32 pixels).

    Returns
    -------
    flux, fluxErr : `numpy.ndarray`
        Aperture sums and their 1-sigma errors.
    """
    import sep

    image, variance, good = _planes(maskedImage)
    nan = np.full(len(x), math.nan)
    if len(x) == 0 or np.count_nonzero(good) < 100:
        return nan, nan.copy()
    bad = ~good
    # One copy, background-subtracted in place; the unusable pixels' values do not matter: sep's
    # background masks them, the sums skip them and an aperture holding one is rejected below.
    data = np.where(good, image, image.dtype.type(0))
    box = max(8, min(64, min(data.shape) // 2))
    try:
        if background is not None and image.dtype == np.float32 and background.fits(bad, box):
            fitted = background.background
        else:
            fitted = sep.Background(data, mask=bad, bw=box, bh=box)
        fitted.subfrom(data)
        del fitted
        xs = np.ascontiguousarray(x, dtype=np.float64)
        ys = np.ascontiguousarray(y, dtype=np.float64)
        flux, fluxErr, flag = sep.sum_circle(
            data, xs, ys, radius, var=np.ascontiguousarray(variance), mask=bad
        )
        del data
        badSum = maskedOverlap(bad, xs, ys, radius, flag)
    except Exception:  # sep raises plain Exceptions on degenerate input
        return nan, nan.copy()
    ny, nx = image.shape
    inside = (xs >= radius) & (xs <= nx - 1 - radius) & (ys >= radius) & (ys <= ny - 1 - radius)
    ok = inside & (badSum == 0) & (fluxErr > 0)
    return np.where(ok, flux, math.nan), np.where(ok, fluxErr, math.nan)
