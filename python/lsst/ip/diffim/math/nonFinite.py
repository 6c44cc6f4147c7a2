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
"""Flag non-finite pixels of a masked image as NO_DATA.

A NaN or infinite pixel that no mask plane flags would be spread by the
convolution over the kernel footprint and leave an unflagged hole in the
difference.  Flagged NO_DATA, it is kept out of kernel stamps and its mask
bit is grown by the kernel footprint like any other plane.
"""

from __future__ import annotations

__all__ = ["flagNonFinitePixels"]

import numpy as np

from lsst.images import Mask, MaskedImage

from .masks import anyMaskPlaneSet, resolveMaskPlane
from .statistics import allFinite


def flagNonFinitePixels(maskedImage: MaskedImage, plane: str = "NO_DATA") -> MaskedImage:
    """Return ``maskedImage`` with its non-finite pixels flagged in ``plane``.

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage`
        The input; it is not modified.
    plane : `str`, optional
        Mask plane to set (legacy or `lsst.images` name).

    Returns
    -------
    flagged : `lsst.images.MaskedImage`
        ``maskedImage`` itself when every non-finite pixel (image or
        variance) is already flagged or the schema lacks ``plane``;
        otherwise a masked image sharing the image and variance planes with
        a new mask.
    """
    image = maskedImage.image.array
    variance = maskedImage.variance.array
    if allFinite(image) and allFinite(variance):
        return maskedImage
    bad = ~(np.isfinite(image) & np.isfinite(variance))
    mask = maskedImage.mask
    name = resolveMaskPlane(mask.schema, plane)
    if name is None:
        return maskedImage
    flagged = anyMaskPlaneSet(mask, [name])
    if flagged is not None and not (bad & ~flagged).any():
        return maskedImage
    newMask = Mask(mask.array.copy(), schema=mask.schema, bbox=mask.bbox)
    newMask.set(name, bad)
    return MaskedImage(
        maskedImage.image,
        mask=newMask,
        variance=maskedImage.variance,
        sky_projection=maskedImage.sky_projection,
    )
