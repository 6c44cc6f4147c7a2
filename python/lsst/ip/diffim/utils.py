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
"""Small calculations used around PSF matching (upstream's ``utils.py``)."""

from __future__ import annotations

__all__ = [
    "angleMean",
    "computePSFNoiseEquivalentArea",
    "computeRobustStatistics",
    "evaluateMeanPsfFwhm",
    "getKernelCenterDisplacement",
    "getPsfFwhm",
]

import math
from typing import TYPE_CHECKING

import numpy as np

from .adapters.psf import evaluateMeanPsfFwhm, getPsfFwhm
from .math.kernels import Kernel
from .math.masks import anyMaskPlaneSet
from .math.statistics import Property, StatisticsControl, makeStatistics

if TYPE_CHECKING:
    import numpy.typing as npt

    from lsst.images.psfs import PointSpreadFunction

    from .imageTypes import MaskedImageLike


def angleMean(angles: npt.ArrayLike) -> float:
    """Return the circular mean of angles (radians), in ``(-pi, pi]``."""
    a = np.asarray(angles, dtype=float)
    return float(math.atan2(np.mean(np.sin(a)), np.mean(np.cos(a))))


def getKernelCenterDisplacement(
    kernel: Kernel, x: float, y: float
) -> tuple[float, float, float, float, float]:
    """Return the kernel sum and the offset of its centroid at ``(x, y)``.

    Returns
    -------
    kernelSum, dx, dy, direction, length : `float`
        Sum of the kernel image; the centroid offset (pixels) from the kernel
        centre along x and y (from the normalized marginal sums); its
        direction ``atan2(dy, dx)`` and length.
    """
    image = kernel.getArray(x, y)
    total = float(image.sum())
    vx = image.sum(axis=0) / total
    vy = image.sum(axis=1) / total
    dx = float(np.dot(np.arange(vx.size), vx) - kernel.getCtrX())
    dy = float(np.dot(np.arange(vy.size), vy) - kernel.getCtrY())
    return total, dx, dy, math.atan2(dy, dx), math.hypot(dx, dy)


def computePSFNoiseEquivalentArea(
    psf: PointSpreadFunction, x: float | None = None, y: float | None = None
) -> float:
    """Return the noise-equivalent area ``1 / sum(psf^2)`` of a unit-sum PSF image (pixels)."""
    if x is None or y is None:
        bbox = psf.bounds.bbox
        x, y = bbox.x.center, bbox.y.center
    image = np.asarray(psf.compute_kernel_image(x=x, y=y).array, dtype=float)
    image = image / image.sum()
    return float(1.0 / np.sum(image**2))


def computeRobustStatistics(
    maskedImage: MaskedImageLike,
    badMaskPlanes: tuple[str, ...] = ("NO_DATA", "EDGE", "SAT", "BAD", "DETECTED"),
    statistic: Property = Property.MEANCLIP,
    control: StatisticsControl | None = None,
) -> float:
    """Return a clipped statistic of an image's pixels, ignoring masked ones."""
    bad = anyMaskPlaneSet(maskedImage.mask, badMaskPlanes)
    return makeStatistics(maskedImage.image.array, statistic, control, mask=bad).getValue(statistic)
