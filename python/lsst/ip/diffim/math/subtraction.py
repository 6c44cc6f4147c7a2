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
"""Subtraction of a PSF-matched image: ``science - matched - background``.

Variances add and masks OR.  Each output plane is made once (or taken from
the caller's prepared planes) and filled a band of rows at a time on the
configured threads (`lsst.ip.diffim.math.threads.forEachRowBand`), with no
image-sized temporaries.
"""

from __future__ import annotations

__all__ = ["maskedImageFromPlanes", "subtractMatched"]

import numpy as np

from lsst.images import Box, Image, Mask, MaskedImage

from .convolveImage import ConvolutionResult, OutputArrays
from .functions import Function2
from .maskMerge import mergeMaskPlanes
from .threads import forEachRowBand


def subtractMatched(
    science: MaskedImage,
    matched: MaskedImage,
    background: Function2 | None = None,
    *,
    out: ConvolutionResult | OutputArrays | None = None,
    workers: int | None = None,
) -> MaskedImage:
    """Return ``science - matched - background`` (variances add, masks OR).

    Parameters
    ----------
    science : `lsst.images.MaskedImage`
        The image subtracted from.
    matched : `lsst.images.MaskedImage`
        The PSF-matched image, on the same grid.
    background : `lsst.ip.diffim.math.Function2`, optional
        Differential background (parent coordinates) also subtracted.
    out : `~lsst.ip.diffim.math.convolveImage.OutputArrays`, optional
        Arrays to write the planes into; a plane that is `None` or of the
        wrong shape or type is allocated.  The mask plane is used only when
        the two masks share a schema.
    workers : `int`, optional
        Threads (default ``$IPDIFFIM_NUM_THREADS`` or the CPU count).

    Returns
    -------
    difference : `lsst.images.MaskedImage`
        float32 planes with the bbox, unit and projection of ``science``;
        the science mask's schema.
    """
    bbox = science.bbox
    scienceMask = science.mask
    sameSchema = matched.mask.schema == scienceMask.schema
    shape = science.image.array.shape
    image = _plane(None if out is None else out.image, shape, np.float32)
    variance = _plane(None if out is None else out.variance, shape, np.float32)
    bits = scienceMask.array
    maskArray = _plane(None if out is None else out.mask, bits.shape, bits.dtype) if sameSchema else None

    def band(rows: slice) -> None:
        np.subtract(science.image.array[rows], matched.image.array[rows], out=image[rows])
        if background is not None:
            y0 = bbox.y.start + rows.start
            bandBox = Box.factory[y0 : y0 + rows.stop - rows.start, bbox.x.start : bbox.x.stop]
            background.addTo(image[rows], bandBox, scale=-1.0)
        np.add(science.variance.array[rows], matched.variance.array[rows], out=variance[rows])
        if maskArray is not None:
            np.bitwise_or(scienceMask.array[rows], matched.mask.array[rows], out=maskArray[rows])

    forEachRowBand(shape[0], band, workers)
    if maskArray is not None:
        mask = Mask(maskArray, schema=scienceMask.schema, bbox=scienceMask.bbox)
    else:
        mask = scienceMask.copy()
        mergeMaskPlanes(mask, matched.mask)
    return maskedImageFromPlanes(image, variance, mask, science)


def maskedImageFromPlanes(
    image: np.ndarray, variance: np.ndarray, mask: Mask, like: MaskedImage
) -> MaskedImage:
    """Return float32 planes as a MaskedImage with the bbox, unit and projection of ``like``."""
    bbox, unit = like.bbox, like.unit
    return MaskedImage(
        Image(image.astype(np.float32, copy=False), bbox=bbox, unit=unit),
        mask=mask,
        variance=Image(
            variance.astype(np.float32, copy=False), bbox=bbox, unit=None if unit is None else unit**2
        ),
        sky_projection=like.sky_projection,
    )


def _plane(given: np.ndarray | None, shape: tuple[int, ...], dtype: np.typing.DTypeLike) -> np.ndarray:
    """Return ``given`` if it has this shape and type, else a new (uninitialised) array."""
    if given is not None and given.shape == tuple(shape) and given.dtype == np.dtype(dtype):
        return given
    return np.empty(shape, dtype=dtype)
