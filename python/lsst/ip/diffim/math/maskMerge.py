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
"""Merging the planes of one mask into another with whole-array bit moves.

`lsst.images.Mask.update` merges plane by plane, through a boolean image
and a fancy-indexed ``|=`` per plane: at 4096^2 and the 13-19 planes of
the inputs and the difference images, 0.5-0.8 s per call.  That is the
cost of reading a mask from FITS (one merge per 31-plane array of the
file) and of joining the template's mask to a PSF-matched science
image's.  `mergeMaskPlanes` gives the same result with one mask, shift
and ``|`` per run of planes that move by the same number of bits between
the two layouts (one per array element when the schemas are the same).
"""

from __future__ import annotations

__all__ = ["mergeMaskPlanes"]

from typing import TYPE_CHECKING

import numpy as np

from .masks import bitPosition

if TYPE_CHECKING:
    from lsst.images import Mask


def mergeMaskPlanes(target: Mask, source: Mask) -> None:
    """Set in ``target`` every bit of a plane both masks have that is set in ``source``.

    The same result as ``target.update(source)``: only the overlap of the
    two bounding boxes and the planes present in both schemas (by name) are
    used; bits are only set, never cleared; bits of ``source`` outside its
    planes are ignored.

    Parameters
    ----------
    target : `lsst.images.Mask`
        The mask updated in place.
    source : `lsst.images.Mask`
        The mask whose set bits are merged.
    """
    if source.bbox != target.bbox:
        try:
            bbox = target.bbox.intersection(source.bbox)
        except ValueError:  # lsst.images' NoOverlapError: nothing to merge
            return
        target, source = target[bbox], source[bbox]
    targetSchema, sourceSchema = target.schema, source.schema
    # Runs of planes taken from the same source element into the same target element, moved by the
    # same number of bits.
    runs: dict[tuple[int, int, int], int] = {}
    for name in targetSchema.names & sourceSchema.names:
        src, dst = sourceSchema.bit(name), targetSchema.bit(name)
        key = (src.index, dst.index, bitPosition(dst.mask) - bitPosition(src.mask))
        runs[key] = runs.get(key, 0) | int(src.mask)
    sourceArray, targetArray = source.array, target.array
    # Wide enough for any bit of either layout (masked bits are non-negative whatever the source type).
    wide = np.uint64 if max(sourceArray.dtype.itemsize, targetArray.dtype.itemsize) > 4 else np.uint32
    for (srcIndex, dstIndex, shift), bits in runs.items():
        element = sourceArray[..., srcIndex]
        if shift > 0:
            piece = np.bitwise_and(element, element.dtype.type(bits)).astype(wide)
            np.left_shift(piece, wide(shift), out=piece)
        else:
            piece = np.bitwise_and(element, element.dtype.type(bits))
            if shift < 0:
                np.right_shift(piece, piece.dtype.type(-shift), out=piece)
        # Every moved bit is one of the target element's planes: the cast keeps it.
        destination = targetArray[..., dstIndex]
        np.bitwise_or(destination, piece.astype(destination.dtype, copy=False), out=destination)
