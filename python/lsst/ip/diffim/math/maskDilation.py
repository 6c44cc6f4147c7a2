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
"""Mask planes of a convolution: the OR of the bits under the kernel.

Each output pixel ORs the bits of every input pixel under a non-zero
kernel pixel (the union of the supports of the kernel's terms), in the
correlation orientation of afw's convolution.  This is a dilation of each
set bit plane, done for all bits at once by a separable sliding OR
(`dilateBits`) when the support is the whole kernel box, and bit by bit
with `scipy.ndimage` otherwise.
"""

from __future__ import annotations

__all__ = ["dilate", "dilateBits", "dilateMask", "slidingOr"]

import numpy as np
from scipy import ndimage

from .threads import forEachRowBand


def dilate(plane: np.ndarray, footprint: np.ndarray, isBox: bool) -> np.ndarray:
    """OR of ``plane`` over the kernel footprint, in correlation orientation."""
    if isBox:
        kh, kw = footprint.shape
        out = ndimage.maximum_filter1d(plane, size=kw, axis=1, mode="constant", cval=0)
        return ndimage.maximum_filter1d(out, size=kh, axis=0, mode="constant", cval=0)
    return ndimage.maximum_filter(plane, footprint=footprint, mode="constant", cval=0)


def slidingOr(array: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Return the bitwise OR of every ``size`` consecutive elements along an axis.

    ``out[i] = array[i] | ... | array[i + size - 1]`` (length
    ``n - size + 1``), from ORs over windows doubling in width and two
    overlapping power-of-two windows.

    Parameters
    ----------
    array : `numpy.ndarray`
        Integer array.
    size : `int`
        Window length, at least 1.
    axis : `int`
        Axis along which to slide.

    Returns
    -------
    out : `numpy.ndarray`
        The window ORs.
    """

    def part(start: int, stop: int) -> np.ndarray:
        index = [slice(None)] * array.ndim
        index[axis] = slice(start, stop)
        return array[tuple(index)]

    width = 1
    while 2 * width <= size:
        n = array.shape[axis]
        array = np.bitwise_or(part(0, n - width), part(width, n))
        width *= 2
    if width == size:
        return array
    count = array.shape[axis] - (size - width)
    return np.bitwise_or(part(0, count), part(size - width, size - width + count))


def dilateBits(plane: np.ndarray, shape: tuple[int, int], workers: int) -> np.ndarray:
    """OR every bit of an integer plane over a box, in correlation orientation.

    Equal to OR-ing `dilate` of each bit plane with a full ``shape``
    footprint, for all bits at once: a separable sliding OR, computed in
    bands of rows shared between threads.

    Parameters
    ----------
    plane : `numpy.ndarray`
        ``(ny, nx)`` integer mask plane.
    shape : `tuple` [`int`, `int`]
        ``(kh, kw)`` of the box.
    workers : `int`
        Threads.

    Returns
    -------
    dilated : `numpy.ndarray`
        ``(ny, nx)`` plane of the same type.
    """
    kh, kw = shape
    ny, nx = plane.shape
    above, left = kh // 2, kw // 2
    out = np.empty_like(plane)

    def task(rows: slice) -> None:
        y0, y1 = rows.start, rows.stop
        # Zero-padded input rows y0 - above .. y1 + kh - 1 - above, columns likewise.
        padded = np.zeros((y1 - y0 + kh - 1, nx + kw - 1), dtype=plane.dtype)
        lo, hi = max(y0 - above, 0), min(y1 + kh - 1 - above, ny)
        padded[lo - (y0 - above) : hi - (y0 - above), left : left + nx] = plane[lo:hi]
        out[y0:y1] = slidingOr(slidingOr(padded, kw, axis=1), kh, axis=0)

    forEachRowBand(ny, task, workers)
    return out


def dilateMask(
    mask: np.ndarray,
    support: np.ndarray,
    preserveBitmask: np.ndarray | None,
    workers: int,
    out: np.ndarray,
) -> None:
    """Set ``out`` to the mask OR-ed over a kernel's support.

    Parameters
    ----------
    mask : `numpy.ndarray`
        Mask ``(ny, nx, nElem)`` in `lsst.images` layout.
    support : `numpy.ndarray`
        ``(kh, kw)`` boolean footprint: the kernel's non-zero pixels.
    preserveBitmask : `numpy.ndarray` or `None`
        Per-element bits copied, not dilated.
    workers : `int`
        Threads.
    out : `numpy.ndarray`
        Zeroed array of the mask's shape and type; the border is the
        caller's to set.
    """
    kh, kw = support.shape
    ny, nx = mask.shape[:2]
    isBox = bool(support.all())
    fp = support.astype(np.uint8)
    preserve = None if preserveBitmask is None else np.asarray(preserveBitmask).astype(mask.dtype)
    for e in range(mask.shape[2]):
        plane = mask[:, :, e]
        present = int(np.bitwise_or.reduce(plane, axis=None)) if plane.size else 0
        if present == 0:
            continue
        keep = int(preserve[e]) if preserve is not None else 0
        if isBox:
            acc = dilateBits(plane & ~mask.dtype.type(keep), (kh, kw), workers)
        else:
            acc = np.zeros((ny, nx), dtype=mask.dtype)
            bit = 1
            nbits = mask.dtype.itemsize * 8
            for _ in range(nbits):
                if present & bit and not keep & bit:
                    dil = dilate(((plane & bit) != 0).astype(np.uint8), fp, isBox)
                    acc |= dil.astype(mask.dtype) * mask.dtype.type(bit)
                bit <<= 1
                if bit > present:
                    break
        if keep:
            acc |= plane & mask.dtype.type(keep)
        out[:, :, e] = acc
