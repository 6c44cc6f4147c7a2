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
"""Whole-image convolution with a spatially varying linear-combination kernel.

The kernel at parent pixel ``(x, y)`` is ``K(x, y) = sum_j f_j(x, y) K_j``
with separable spatial terms ``f_j(x, y) = termY[j, y] * termX[j, x]``
(true of the polynomial and Chebyshev spatial models).  As the model is
linear, the image plane is exactly ``sum_j f_j (K_j ⋆ I)``, exact at every
pixel.  ``⋆`` is afw's convolution, a cross-correlation:
``out(x, y) = sum_ij in(x + i - ctrX, y + j - ctrY) K[j, i]``.

`convolveSpatiallyVarying` puts the planes together from one engine per
module:

- image: overlap-save FFTs on tiles (`lsst.ip.diffim.math.overlapSave`);
- variance: the squared kernel, exact or interpolated between tiles
  (`lsst.ip.diffim.math.varianceConvolution`);
- mask: a dilation of the bits by the kernel's support
  (`lsst.ip.diffim.math.maskDilation`);
- threads: `lsst.ip.diffim.math.threads`.

Non-finite input pixels make every output pixel whose footprint contains
them NaN (variance +inf), as a direct sum would.  ``correlateFixed``,
``goodRegion`` and ``fftWorkers`` (`~lsst.ip.diffim.math.threads.threadCount`)
are importable from here as before.
"""

from __future__ import annotations

__all__ = [
    "ConvolutionResult",
    "OutputArrays",
    "convolveSpatiallyVarying",
    "correlateFixed",
    "fftWorkers",
    "goodRegion",
]

from dataclasses import dataclass

import numpy as np

from .maskDilation import dilate, dilateMask
from .overlapSave import correlateFixed, correlateTerms, goodRegion
from .statistics import allFinite
from .threads import forEachRowBand, threadCount
from .varianceConvolution import varianceExact, varianceTiled

#: The thread count of every threaded step (`lsst.ip.diffim.math.threads.threadCount`).
fftWorkers = threadCount


@dataclass
class ConvolutionResult:
    """Planes of a convolved masked image."""

    image: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray | None


@dataclass
class OutputArrays:
    """Arrays to write the planes of a convolution or a difference into.

    A plane that is `None`, or of the wrong shape or type, is allocated by
    the function that fills it.
    """

    image: np.ndarray | None = None
    variance: np.ndarray | None = None
    mask: np.ndarray | None = None


def _border(rows: slice, cols: slice) -> tuple[tuple[slice, slice], ...]:
    """Return the index tuples of the four strips around ``[rows, cols]``."""
    return (
        (slice(None, rows.start), slice(None)),
        (slice(rows.stop, None), slice(None)),
        (rows, slice(None, cols.start)),
        (rows, slice(cols.stop, None)),
    )


def _finiteWork(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the plane with non-finite pixels zeroed, and its finite flags.

    The plane itself and `None` when every pixel is finite (no copy).
    """
    if allFinite(plane):
        return plane, None
    finite = np.isfinite(plane)
    return np.where(finite, plane, 0.0), finite


def _outputPlane(
    given: np.ndarray | None,
    shape: tuple[int, ...],
    dtype: np.typing.DTypeLike,
    workers: int = 1,
    zeroed: bool = False,
) -> np.ndarray:
    """Return ``given`` if it is an output plane of this shape and type, else a new one.

    A new plane is zeroed (on the threads) if ``zeroed``; a given one must
    already be.
    """
    if given is not None and given.shape == tuple(shape) and given.dtype == np.dtype(dtype):
        return given
    return _zeros(shape, np.dtype(dtype), workers) if zeroed else np.empty(shape, dtype=dtype)


def _zeros(shape: tuple[int, ...], dtype: np.dtype, workers: int) -> np.ndarray:
    """Return a zeroed array, written by bands of rows on the threads.

    The first write of new memory is a large part of the cost of an image
    plane; sharing it between threads halves that time.
    """
    out = np.empty(shape, dtype=dtype)
    # copyto, as OutputPlanes uses: measured, a fill() in one thread held up the others; copyto did not.
    forEachRowBand(shape[0], lambda rows: np.copyto(out[rows], 0), workers)
    return out


def _fillBorder(plane: np.ndarray, rows: slice, cols: slice, value: np.ndarray | float) -> None:
    """Set the pixels of ``plane`` outside ``[rows, cols]``.

    Parameters
    ----------
    plane : `numpy.ndarray`
        ``(ny, nx)`` array to modify.
    rows, cols : `slice`
        The interior, left untouched.
    value : `numpy.ndarray` or `float`
        Scalar, or ``(ny, nx)`` array whose border pixels are copied.
    """
    for region in _border(rows, cols):
        plane[region] = value[region] if isinstance(value, np.ndarray) else value


def convolveSpatiallyVarying(
    image: np.ndarray,
    variance: np.ndarray | None,
    mask: np.ndarray | None,
    termKernels: np.ndarray,
    termX: np.ndarray,
    termY: np.ndarray,
    *,
    edgeMode: str = "nodata",
    noDataBitmask: np.ndarray | None = None,
    edgeBitmask: np.ndarray | None = None,
    preserveBitmask: np.ndarray | None = None,
    doNormalize: bool = False,
    varianceMode: str = "auto",
    tileSize: int = 256,
    dtype: np.typing.DTypeLike = np.float32,
    workers: int | None = None,
    out: ConvolutionResult | OutputArrays | None = None,
) -> ConvolutionResult:
    """Convolve image, variance and mask planes with a spatially varying kernel.

    Parameters
    ----------
    image : `numpy.ndarray`
        Image ``(ny, nx)``.
    variance : `numpy.ndarray` or `None`
        Variance plane, convolved with the squared kernel.
    mask : `numpy.ndarray` or `None`
        Mask ``(ny, nx, nElem)`` in `lsst.images` layout.
    termKernels : `numpy.ndarray`
        ``(nTerms, kh, kw)`` kernel of each spatial term.
    termX, termY : `numpy.ndarray`
        ``(nTerms, nx)`` and ``(nTerms, ny)`` separable spatial factors.
    edgeMode : `str`, optional
        ``"nodata"``: border pixels get NaN, variance +inf and only the
        NO_DATA bits; ``"copy"``: input values are kept and the EDGE bits
        OR-ed in.
    noDataBitmask, edgeBitmask, preserveBitmask : `numpy.ndarray`, optional
        Per-element bitmasks; ``preserveBitmask`` bits are copied, not
        dilated.
    doNormalize : `bool`, optional
        Divide each pixel by the local kernel sum (variance by its square).
    varianceMode : `str`, optional
        ``"exact"``, ``"tiled"``, or ``"auto"`` (exact for fixed kernels and
        small images, tiled otherwise).
    tileSize : `int`, optional
        Largest spacing of the nodes of the tiled variance, which are also
        the corners of its FFT tiles.
    dtype : dtype, optional
        Floating type of the FFTs and outputs.
    workers : `int`, optional
        Threads, which share the FFT tiles (or split the FFTs of an image
        that fits in one tile); default ``$IPDIFFIM_NUM_THREADS`` or the CPU
        count.
    out : `ConvolutionResult` or `OutputArrays`, optional
        Arrays to write the planes into (the mask one zeroed); a plane that
        is `None` or of the wrong shape or type is allocated instead.

    Returns
    -------
    result : `ConvolutionResult`
    """
    dtype = np.dtype(dtype)
    workers = threadCount(workers)
    nTerms, kh, kw = termKernels.shape
    ny, nx = image.shape
    rows, cols = goodRegion((ny, nx), (kh, kw))
    gy, gx = rows.stop - rows.start, cols.stop - cols.start
    tX = np.asarray(termX, dtype=float)[:, cols]
    tY = np.asarray(termY, dtype=float)[:, rows]

    if edgeMode not in ("copy", "nodata"):
        raise ValueError(f"Unknown edgeMode {edgeMode!r}; use 'nodata' or 'copy'.")

    # Image plane: non-finite pixels are zeroed for the FFT and re-flagged after.
    work, finite = _finiteWork(image)
    outImage = _outputPlane(None if out is None else out.image, (ny, nx), dtype)
    good = correlateTerms(work, termKernels, tX, tY, dtype, workers, out=outImage[rows, cols])
    support = np.any(termKernels != 0.0, axis=0)
    isBox = bool(support.all())
    if finite is not None:
        touched = dilate((~finite).astype(np.uint8), support.astype(np.uint8), isBox)[rows, cols]
        good[touched.astype(bool)] = np.nan

    kSum = None
    if doNormalize:
        sums = termKernels.sum(axis=(1, 2))
        kSum = np.einsum("j,jy,jx->yx", sums, tY, tX, optimize=True).astype(dtype)
        good /= kSum

    _fillBorder(outImage, rows, cols, image if edgeMode == "copy" else np.nan)

    outVar = None
    if variance is not None:
        mode = varianceMode
        if mode == "auto":
            mode = "exact" if nTerms == 1 or (gy * gx) <= 512 * 512 else "tiled"
        vwork, vFinite = _finiteWork(variance)
        outVar = _outputPlane(None if out is None else out.variance, (ny, nx), dtype)
        goodVar = outVar[rows, cols]
        if mode == "exact":
            varianceExact(vwork, termKernels, tX, tY, dtype, workers, goodVar)
        elif mode == "tiled":
            varianceTiled(vwork, termKernels, tX, tY, tileSize, dtype, workers, goodVar)
        else:
            raise ValueError(f"Unknown varianceMode {varianceMode!r}; use 'exact', 'tiled' or 'auto'.")
        if vFinite is not None:
            touched = dilate((~vFinite).astype(np.uint8), support.astype(np.uint8), isBox)[rows, cols]
            goodVar[touched.astype(bool)] = np.inf
        if kSum is not None:
            goodVar /= kSum * kSum
        _fillBorder(outVar, rows, cols, variance if edgeMode == "copy" else np.inf)

    outMask = None
    if mask is not None:
        given = None if out is None else out.mask
        outMask = _outputPlane(given, mask.shape, mask.dtype, workers, zeroed=True)
        dilateMask(mask, support, preserveBitmask, workers, outMask)
        for region in _border(rows, cols):
            if edgeMode == "copy":
                outMask[region] = mask[region]
                if edgeBitmask is not None:
                    outMask[region] |= np.asarray(edgeBitmask, dtype=mask.dtype)
            else:
                outMask[region] = 0 if noDataBitmask is None else np.asarray(noDataBitmask, dtype=mask.dtype)
    return ConvolutionResult(image=outImage, variance=outVar, mask=outMask)
