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
"""The pixels of detected sources, for residual statistics "away from sources"."""

from __future__ import annotations

__all__ = ["detectedSourceMask"]

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage

from ..math.masks import anyMaskPlaneSet


def detectedSourceMask(images: Iterable[Any], nSigma: float = 3.0, grow: int = 2) -> np.ndarray:
    """Return `True` on the pixels of sources detected on any of ``images``.

    Each image is background-subtracted and thresholded at ``nSigma`` times
    the square root of its variance plane (`sep`, minimum area 5 pixels, no
    smoothing); the union of the segmentation maps is grown by ``grow``
    pixels, so that the faint wings of the sources are excluded too.

    Parameters
    ----------
    images : iterable of `lsst.images.MaskedImage`
        Images on one pixel grid (e.g. the template and the science image).
    nSigma : `float`, optional
        Detection threshold in units of the pixel noise.
    grow : `int`, optional
        Growth of the footprints in pixels.

    Returns
    -------
    mask : `numpy.ndarray`
        Boolean array of the images' shape.
    """
    import sep

    result = None
    for maskedImage in images:
        image = np.asarray(maskedImage.image.array, dtype=np.float32)
        variance = np.asarray(maskedImage.variance.array, dtype=np.float32)
        bad = ~(np.isfinite(image) & np.isfinite(variance) & (variance > 0))
        noData = anyMaskPlaneSet(maskedImage.mask, ["NO_DATA"])
        if noData is not None:
            bad |= noData
        fill = float(np.median(image[~bad])) if (~bad).any() else 0.0
        data = np.ascontiguousarray(np.where(bad, fill, image), dtype=np.float32)
        var = np.ascontiguousarray(np.where(bad, np.float32(np.median(variance[~bad])) if (~bad).any()
                                            else np.float32(1.0), variance), dtype=np.float32)
        size = max(8, min(64, min(data.shape) // 4))
        background = sep.Background(data, mask=bad, bw=size, bh=size)
        background.subfrom(data)
        previous = sep.get_extract_pixstack()
        sep.set_extract_pixstack(max(previous, 2 * data.size))
        try:
            _, segmentation = sep.extract(
                data, nSigma, var=var, mask=bad, minarea=5, filter_kernel=None, segmentation_map=True
            )
        finally:
            sep.set_extract_pixstack(previous)
        found = segmentation > 0
        result = found if result is None else result | found
    if result is None:
        raise ValueError("No images to detect sources on.")
    if grow > 0 and result.any():
        result = ndimage.binary_dilation(result, iterations=grow)
    return result
