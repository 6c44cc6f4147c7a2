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
"""Set a mask plane on each image of a pair from a test that compares it with the other.

The streak search (`lsst.ip.diffim.adapters.streakMask`) and the bad-line
search (`lsst.ip.diffim.adapters.badLines`) both flag what one image of a
pair shows and the other does not: `maskPairPlanes` runs such a test on the
template (against the science image) and on the science image (against the
template) and ORs the pixels found into each image's plane.
"""

from __future__ import annotations

__all__ = ["maskPairPlanes"]

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..math.masks import resolveMaskPlane

if TYPE_CHECKING:
    from lsst.images import MaskedImage


def maskPairPlanes(
    template: MaskedImage,
    science: MaskedImage,
    planeName: str,
    pixelsOf: Callable[[int, MaskedImage, MaskedImage], np.ndarray],
) -> tuple[int, int]:
    """OR the pixels ``pixelsOf`` finds on each image of a pair into its ``planeName`` plane.

    Parameters
    ----------
    template, science : `lsst.images.MaskedImage` or `lsst.images.VisitImage`
        The pair; their masks are updated in place.
    planeName : `str`
        The mask plane set; nothing is set on an image whose schema lacks it.
    pixelsOf : callable
        ``pixelsOf(which, image, other)`` returns the boolean pixels to set
        on ``image`` (``which`` is 0 for the template, 1 for the science
        image; ``other`` is the other image of the pair).  Not called when
        the two images differ in shape.

    Returns
    -------
    nTemplate, nScience : `int`
        The number of pixels set in each mask.
    """
    counts = []
    for which, (image, other) in enumerate(((template, science), (science, template))):
        if image.image.array.shape != other.image.array.shape:
            counts.append(0)
            continue
        pixels = pixelsOf(which, image, other)
        plane = resolveMaskPlane(image.mask.schema, planeName)
        if plane is not None and pixels.any():
            image.mask.set(plane, pixels | image.mask.get(plane))
        counts.append(int(pixels.sum()) if plane is not None else 0)
    return counts[0], counts[1]
