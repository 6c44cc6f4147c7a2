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
"""An image's planes prepared for a threshold detection: bad pixels filled, the sky subtracted.

The source mask of the off-source background
(`lsst.ip.diffim.offSourceBackground.detectedSourceMask`) and the shared
3-sigma footprints (`lsst.ip.diffim.adapters.sourceFootprints`) detect on
the same planes: non-finite pixels, pixels with a variance that is not
positive and ``NO_DATA`` pixels are flagged and filled with the median of
the others (image and variance alike), and a `sep.Background` of
``max(8, min(64, side // 4))`` pixel boxes is subtracted.
"""

from __future__ import annotations

__all__ = ["SkySubtractedPlanes", "skySubtractedPlanes"]

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .masks import anyMaskPlaneSet

if TYPE_CHECKING:
    from lsst.images import MaskedImage


@dataclass(frozen=True)
class SkySubtractedPlanes:
    """The planes `skySubtractedPlanes` returns (C-contiguous float32)."""

    #: Image with its bad pixels filled and the sky subtracted.
    data: np.ndarray
    #: Variance with its bad pixels filled.
    variance: np.ndarray
    #: `True` on the bad pixels.
    bad: np.ndarray


def skySubtractedPlanes(maskedImage: MaskedImage) -> SkySubtractedPlanes | None:
    """Return an image's planes ready for detection, or `None` if no pixel is usable.

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage` or `lsst.images.VisitImage`
        The image, with a meaningful variance plane; not modified.

    Returns
    -------
    planes : `SkySubtractedPlanes` or `None`
        See the module documentation.
    """
    import sep

    image = np.asarray(maskedImage.image.array, dtype=np.float32)
    variance = np.asarray(maskedImage.variance.array, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(image) & np.isfinite(variance) & (variance > 0))
    noData = anyMaskPlaneSet(maskedImage.mask, ["NO_DATA"])
    if noData is not None:
        bad |= noData
    if bad.any():
        good = ~bad
        if not good.any():
            return None
        data = np.where(bad, np.float32(np.median(image[good])), image)
        var = np.where(bad, np.float32(np.median(variance[good])), variance)
    else:
        data = image.copy()
        var = variance
    data = np.ascontiguousarray(data, dtype=np.float32)
    var = np.ascontiguousarray(var, dtype=np.float32)
    size = max(8, min(64, min(data.shape) // 4))
    background = sep.Background(data, mask=bad, bw=size, bh=size)
    background.subfrom(data)
    return SkySubtractedPlanes(data=data, variance=var, bad=bad)
