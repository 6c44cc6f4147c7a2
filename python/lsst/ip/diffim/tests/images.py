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
"""Small synthetic masked images shared by the tests (the kernel core's delta pair among them)."""

from __future__ import annotations

__all__ = ["makeDeltaPair", "maskedImage"]

import numpy as np

from lsst.images import Box, Image, MaskedImage
from lsst.ip.diffim.math import makeDifferenceMaskSchema


def maskedImage(
    image: np.ndarray, variance: np.ndarray | float = 1.0, start: tuple[int, int] = (0, 0)
) -> MaskedImage:
    """Return a MaskedImage from arrays (``start`` is ``(y0, x0)``)."""
    image = np.asarray(image, dtype=np.float32)
    bbox = Box.from_shape(image.shape, start=start)
    var = np.broadcast_to(np.asarray(variance, dtype=np.float32), image.shape).copy()
    return MaskedImage(
        Image(image, bbox=bbox), variance=Image(var, bbox=bbox), mask_schema=makeDifferenceMaskSchema()
    )


def makeDeltaPair(kSum: float, size: int = 51) -> tuple[MaskedImage, MaskedImage]:
    """Upstream's "delta pair": a unit delta in the template, kSum in the science.

    Variance 1 everywhere, except the science centre pixel whose variance
    is kSum.
    """
    template = np.zeros((size, size))
    science = np.zeros((size, size))
    c = size // 2
    template[c, c] = 1.0
    science[c, c] = kSum
    tVar = np.ones((size, size))
    sVar = np.ones((size, size))
    sVar[c, c] = kSum
    return maskedImage(template, tVar), maskedImage(science, sVar)
