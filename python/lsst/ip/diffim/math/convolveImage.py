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

The correlations are computed by overlap-save FFTs on tiles of a few
hundred pixels (`_Correlator`): each tile of the input is transformed once,
multiplied by the spectrum of every ``K_j`` (computed once at the tile
size) and transformed back in one batched call, and the tiles are shared
between ``workers`` threads.  Small FFTs stay in the CPU caches, so this
is several times faster than whole-image FFTs.

Variance: ``var_out(x, y) = sum_k K(x, y; k)^2 var(x + k)``.
``varianceMode="exact"`` expands ``K^2`` into the products of terms (one
inverse FFT per product and tile); ``"tiled"`` (the default for spatially
varying kernels on large images) evaluates ``K^2`` on a grid of nodes
``tileSize`` pixels apart and, on each cell between four nodes, blends the
correlations with the corner kernels with bilinear weights.  For a kernel
whose width changes by 25 % across a 1024-pixel image the tiled variance
is within 0.3 % of the exact one (measured in
``tests/test_convolveImage.py``).

Mask: each output pixel ORs the bits of every input pixel under a non-zero
kernel pixel (the union of the supports of the ``K_j``); this is a dilation
of each set bit plane, done for all bits at once by a separable sliding OR
when the support is the whole kernel box.  Non-finite input pixels make
every output pixel whose footprint contains them NaN, as a direct sum
would.
"""

from __future__ import annotations

__all__ = ["ConvolutionResult", "convolveSpatiallyVarying", "correlateFixed", "fftWorkers", "goodRegion"]

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np
import scipy.fft
from scipy import ndimage

from .statistics import allFinite
from .threads import forEachRowBand


@dataclass
class ConvolutionResult:
    """Planes of a convolved masked image."""

    image: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray | None


def fftWorkers(workers: int | None) -> int:
    if workers is not None:
        return int(workers)
    env = os.environ.get("IPDIFFIM_NUM_THREADS")
    if env:
        return max(1, int(env))
    return os.cpu_count() or 1


def goodRegion(shape: tuple[int, int], kernelShape: tuple[int, int]) -> tuple[slice, slice]:
    """Return the ``(rows, cols)`` slices convolution can compute.

    Raises
    ------
    ValueError
        If the image is smaller than the kernel.
    """
    ny, nx = shape
    kh, kw = kernelShape
    if ny < kh or nx < kw:
        raise ValueError(f"Image of shape {shape} is smaller than the kernel {kernelShape}.")
    cy, cx = kh // 2, kw // 2
    return slice(cy, cy + ny - kh + 1), slice(cx, cx + nx - kw + 1)


# Largest side of an overlap-save FFT tile: larger tiles fall out of the CPU
# caches and gain little, as the overlap is only the kernel size.
_MAX_TILE_LENGTH = 768
# Fixed cost of one tile (Python calls, copies, small arrays), in the units
# of the ``n log2 n`` FFT cost model of `_tileShape`.
_TILE_OVERHEAD = 2.0e5


def _fastLengths(low: int, high: int) -> list[int]:
    """Return the fast real-FFT lengths in ``[low, high]``."""
    lengths = []
    n = scipy.fft.next_fast_len(max(low, 1), real=True)
    while n <= high:
        lengths.append(n)
        n = scipy.fft.next_fast_len(n + 1, real=True)
    return lengths


def _tileShape(validShape: tuple[int, int], kernelShape: tuple[int, int]) -> tuple[int, int]:
    """Return the FFT shape of the overlap-save tiles covering a valid region.

    A tile of FFT length ``n`` along an axis yields ``n - k + 1`` valid
    pixels for a kernel of size ``k``; the shape minimises the modelled cost
    ``nTiles * (fy * fx * log2(fy * fx) + overhead)`` over fast FFT lengths
    up to ``_MAX_TILE_LENGTH`` (or the single tile covering the region).

    Parameters
    ----------
    validShape : `tuple` [`int`, `int`]
        Shape of the valid (output) region.
    kernelShape : `tuple` [`int`, `int`]
        Shape of the kernels.

    Returns
    -------
    shape : `tuple` [`int`, `int`]
        FFT shape of one tile.
    """
    lengths, counts = [], []
    for valid, k in zip(validShape, kernelShape):
        whole = scipy.fft.next_fast_len(valid + k - 1, real=True)
        shortest = min(2 * k - 1, valid + k - 1)
        longest = min(whole, max(_MAX_TILE_LENGTH, scipy.fft.next_fast_len(shortest, real=True)))
        n = np.array(_fastLengths(shortest, longest))
        lengths.append(n)
        counts.append(-(-valid // (n - k + 1)))
    area = np.multiply.outer(lengths[0], lengths[1]).astype(float)
    cost = np.multiply.outer(counts[0], counts[1]) * (area * np.log2(np.maximum(area, 2.0)) + _TILE_OVERHEAD)
    iy, ix = np.unravel_index(np.argmin(cost), cost.shape)
    return int(lengths[0][iy]), int(lengths[1][ix])


def _groupTerms(
    kernels: np.ndarray, wX: np.ndarray, wY: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge terms with identical weights and group those sharing ``wX``.

    Terms whose ``wX`` and ``wY`` rows both match are one term with the sum
    of their kernels; the remaining terms are ordered so that those sharing
    a ``wX`` row are contiguous.

    Parameters
    ----------
    kernels : `numpy.ndarray`
        ``(nTerms, kh, kw)`` kernels.
    wX, wY : `numpy.ndarray`
        ``(nTerms, gx)`` and ``(nTerms, gy)`` weights of each term.

    Returns
    -------
    kernels : `numpy.ndarray`
        ``(nMerged, kh, kw)`` kernels, grouped.
    wY : `numpy.ndarray`
        ``(nMerged, gy)`` row weights, grouped.
    groupX : `numpy.ndarray`
        ``(nGroups, gx)`` column weight of each group.
    starts : `numpy.ndarray`
        Index of the first term of each group.
    """
    groupX: list[np.ndarray] = []
    groups: list[list[int]] = []
    for j in range(len(wX)):
        g = next((g for g, row in enumerate(groupX) if np.array_equal(row, wX[j])), None)
        if g is None:
            groupX.append(wX[j])
            groups.append([])
            g = len(groups) - 1
        groups[g].append(j)
    merged, mergedY, starts = [], [], []
    for members in groups:
        starts.append(len(merged))
        rows: list[np.ndarray] = []
        for j in members:
            match = next((m for m, row in enumerate(rows) if np.array_equal(row, wY[j])), None)
            if match is None:
                rows.append(wY[j])
                merged.append(np.array(kernels[j], dtype=float))
                mergedY.append(wY[j])
            else:
                merged[starts[-1] + match] += kernels[j]
    return np.array(merged), np.array(mergedY), np.array(groupX), np.array(starts)


def _threadPool(threads: int) -> AbstractContextManager[ThreadPoolExecutor | None]:
    """Return a pool of ``threads`` threads, or a null context if there is one thread."""
    return ThreadPoolExecutor(max_workers=threads) if threads > 1 else nullcontext()


def _call(task: Callable[[], None]) -> None:
    """Call ``task``."""
    task()


def _runTasks[T](task: Callable[[T], None], items: Iterable[T], pool: ThreadPoolExecutor | None) -> None:
    """Call ``task`` on every item, on the threads of ``pool`` if any."""
    if pool is None:
        for item in items:
            task(item)
    else:
        for _ in pool.map(task, items):
            pass


class _Correlator:
    """Overlap-save FFT correlation of one plane with weighted kernels.

    Computes ``out(y, x) = sum_j wY[j, y] wX[j, x] (K_j ⋆ plane)(y, x)`` on
    the valid region, one tile at a time.  A tile of ``h`` by ``w`` output
    pixels reads the ``h + kh - 1`` by ``w + kw - 1`` input block at the
    same origin; its correlation with every kernel is one forward real FFT
    of the block at ``fftShape``, a product with each kernel's (conjugate)
    spectrum, an inverse FFT along y, the ``wY`` weighting and a sum over
    the terms sharing a ``wX`` row (which commute with the remaining
    transform along x), one inverse real FFT along x per group, and the
    ``wX`` weighting.  Circular wrap-around only reaches rows and columns
    beyond ``fftShape - kernelShape``, which are never kept.

    Parameters
    ----------
    plane : `numpy.ndarray`
        Input ``(ny, nx)``; must be finite.
    kernelShape : `tuple` [`int`, `int`]
        ``(kh, kw)`` of every kernel.
    fftShape : `tuple` [`int`, `int`]
        FFT shape of one tile.
    dtype : `numpy.dtype`
        Floating type of the FFTs.
    workers : `int`
        Threads of each FFT call.
    """

    def __init__(
        self,
        plane: np.ndarray,
        kernelShape: tuple[int, int],
        fftShape: tuple[int, int],
        dtype: np.dtype,
        workers: int,
    ) -> None:
        self.plane = plane.astype(dtype, copy=False)
        self.kernelShape = kernelShape
        self.fftShape = fftShape
        self.dtype = dtype
        self.workers = workers
        self._local = threading.local()

    @property
    def tileShape(self) -> tuple[int, int]:
        """Largest number of output rows and columns of one tile."""
        return (
            self.fftShape[0] - self.kernelShape[0] + 1,
            self.fftShape[1] - self.kernelShape[1] + 1,
        )

    @property
    def complexDtype(self) -> np.dtype:
        """Type of the spectra."""
        return np.result_type(self.dtype, np.complex64)

    def kernelSpectra(self, kernels: np.ndarray) -> np.ndarray:
        """Return the correlation spectra of kernels at the tile FFT shape.

        Parameters
        ----------
        kernels : `numpy.ndarray`
            ``(n, kh, kw)`` kernels.

        Returns
        -------
        spectra : `numpy.ndarray`
            ``(n, fy, fx // 2 + 1)`` conjugate spectra of the zero-padded
            kernels.
        """
        fy, fx = self.fftShape
        workers = self.workers
        # Transform the kh non-zero rows along x first, then along y with zero padding.
        rows = scipy.fft.rfft(np.asarray(kernels).astype(self.dtype, copy=False), n=fx, workers=workers)
        spectra = scipy.fft.fft(rows, n=fy, axis=-2, overwrite_x=True, workers=workers)
        return np.conj(spectra, out=spectra)

    def _scratch(self, nTerms: int, nGroups: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the calling thread's work arrays for term and group spectra.

        Reusing them, rather than allocating per tile, spares the page
        faults of memory the allocator hands back to the system between
        tiles.
        """
        fy, fx = self.fftShape
        scratch = getattr(self._local, "scratch", None)
        if scratch is None or len(scratch[0]) < nTerms or len(scratch[1]) < nGroups:
            scratch = (
                np.empty((nTerms, fy, fx // 2 + 1), dtype=self.complexDtype),
                np.empty((nGroups, self.tileShape[0], fx // 2 + 1), dtype=self.complexDtype),
            )
            self._local.scratch = scratch
        return scratch[0][:nTerms], scratch[1][:nGroups]

    def tile(
        self,
        y0: int,
        x0: int,
        spectra: np.ndarray | Sequence[np.ndarray],
        wY: np.ndarray,
        wX: np.ndarray,
        starts: np.ndarray | None,
        out: np.ndarray,
    ) -> None:
        """Compute one weighted output tile.

        Parameters
        ----------
        y0, x0 : `int`
            Origin of the tile in the valid region (and of its input block
            in the plane).
        spectra : `numpy.ndarray` or `~collections.abc.Sequence`
            ``nTerms`` kernel spectra ``(fy, fx // 2 + 1)`` from
            `kernelSpectra`, the terms of each group contiguous.
        wY : `numpy.ndarray`
            ``(nTerms, h)`` row weights of the tile's ``h`` rows.
        wX : `numpy.ndarray`
            ``(nGroups, w)`` column weights of the tile's ``w`` columns.
        starts : `numpy.ndarray` or `None`
            First term of each group; `None` if every term is a group.
        out : `numpy.ndarray`
            ``(h, w)`` output pixels to set.
        """
        fy, fx = self.fftShape
        h, w = wY.shape[1], wX.shape[1]
        block = self.plane[y0 : y0 + fy, x0 : x0 + fx]
        spectrum = scipy.fft.rfft2(block, s=self.fftShape, workers=self.workers)
        product, grouped = self._scratch(len(wY), len(wX))
        for term, kernelSpectrum in zip(product, spectra):
            np.multiply(kernelSpectrum, spectrum, out=term)
        columns = scipy.fft.ifft(product, axis=-2, overwrite_x=True, workers=self.workers)[:, :h]
        # Real weights scale the real and imaginary parts alike.
        columns.view(self.dtype)[...] *= wY[:, :, np.newaxis]
        if starts is not None:
            grouped = grouped[:, :h]
            for g, (start, stop) in enumerate(zip(starts, [*starts[1:], len(columns)])):
                np.sum(columns[start:stop], axis=0, out=grouped[g])
            columns = grouped
        rows = scipy.fft.irfft(columns, n=fx, axis=-1, overwrite_x=True, workers=self.workers)
        np.einsum("gx,gyx->yx", wX, rows[:, :, :w], out=out)


def _correlateTerms(
    plane: np.ndarray,
    kernels: np.ndarray,
    wX: np.ndarray,
    wY: np.ndarray,
    dtype: np.dtype,
    workers: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``sum_j wY[j, y] wX[j, x] (K_j ⋆ plane)(y, x)`` on the valid region.

    Parameters
    ----------
    plane : `numpy.ndarray`
        Finite input ``(ny, nx)``.
    kernels : `numpy.ndarray`
        ``(nTerms, kh, kw)`` kernels ``K_j``.
    wX, wY : `numpy.ndarray`
        ``(nTerms, gx)`` and ``(nTerms, gy)`` weights over the valid region.
    dtype : `numpy.dtype`
        Floating type of the FFTs and the output.
    workers : `int`
        Threads: tiles are shared between them.
    out : `numpy.ndarray`, optional
        ``(gy, gx)`` array to fill.

    Returns
    -------
    out : `numpy.ndarray`
        ``(gy, gx)`` valid region.
    """
    _, kh, kw = kernels.shape
    gy, gx = wY.shape[1], wX.shape[1]
    fftShape = _tileShape((gy, gx), (kh, kw))
    ty, tx = fftShape[0] - kh + 1, fftShape[1] - kw + 1
    origins = [(y0, x0) for y0 in range(0, gy, ty) for x0 in range(0, gx, tx)]
    threads = min(workers, len(origins))
    # One FFT worker per tile, always: a multi-worker FFT batches its 1-d
    # transforms differently and changes the last bits with the thread count.
    corr = _Correlator(plane, (kh, kw), fftShape, dtype, 1)
    kernels, wY, groupX, starts = _groupTerms(kernels, wX, wY)
    spectra = corr.kernelSpectra(kernels)
    wY = wY.astype(dtype)
    groupX = groupX.astype(dtype)
    groupStarts = None if len(starts) == len(kernels) else starts
    if out is None:
        out = np.empty((gy, gx), dtype=dtype)

    def task(origin: tuple[int, int]) -> None:
        y0, x0 = origin
        rows, cols = slice(y0, min(y0 + ty, gy)), slice(x0, min(x0 + tx, gx))
        corr.tile(y0, x0, spectra, wY[:, rows], groupX[:, cols], groupStarts, out[rows, cols])

    with _threadPool(threads) as pool:
        _runTasks(task, origins, pool)
    return out


def correlateFixed(
    plane: np.ndarray,
    kernel: np.ndarray,
    dtype: np.typing.DTypeLike = np.float32,
    workers: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Correlate a finite plane with one fixed kernel, on the valid region only.

    Parameters
    ----------
    plane : `numpy.ndarray`
        Finite input ``(ny, nx)``.
    kernel : `numpy.ndarray`
        Kernel ``(kh, kw)``.
    dtype : dtype, optional
        Floating type of the FFTs and the output.
    workers : `int`, optional
        Threads; default ``$IPDIFFIM_NUM_THREADS`` or the CPU count.
    out : `numpy.ndarray`, optional
        Array of the output shape and ``dtype`` to fill (not ``plane``).

    Returns
    -------
    out : `numpy.ndarray`
        ``(ny - kh + 1, nx - kw + 1)``.
    """
    dtype = np.dtype(dtype)
    ny, nx = plane.shape
    kh, kw = kernel.shape
    goodRegion((ny, nx), (kh, kw))
    ones = np.ones((1, max(ny - kh + 1, 0))), np.ones((1, max(nx - kw + 1, 0)))
    return _correlateTerms(
        plane.astype(dtype, copy=False),
        np.asarray(kernel)[np.newaxis],
        ones[1],
        ones[0],
        dtype,
        fftWorkers(workers),
        out=out,
    )


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


def _dilate(plane: np.ndarray, footprint: np.ndarray, isBox: bool) -> np.ndarray:
    """OR of ``plane`` over the kernel footprint, in correlation orientation."""
    if isBox:
        kh, kw = footprint.shape
        out = ndimage.maximum_filter1d(plane, size=kw, axis=1, mode="constant", cval=0)
        return ndimage.maximum_filter1d(out, size=kh, axis=0, mode="constant", cval=0)
    return ndimage.maximum_filter(plane, footprint=footprint, mode="constant", cval=0)


def _slidingOr(array: np.ndarray, size: int, axis: int) -> np.ndarray:
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


def _dilateBits(plane: np.ndarray, shape: tuple[int, int], workers: int) -> np.ndarray:
    """OR every bit of an integer plane over a box, in correlation orientation.

    Equal to OR-ing `_dilate` of each bit plane with a full ``shape``
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
        out[y0:y1] = _slidingOr(_slidingOr(padded, kw, axis=1), kh, axis=0)

    forEachRowBand(ny, task, workers)
    return out


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
    out: ConvolutionResult | None = None,
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
    out : `ConvolutionResult`, optional
        Arrays to write the planes into (the mask one zeroed); a plane that
        is `None` or of the wrong shape or type is allocated instead.

    Returns
    -------
    result : `ConvolutionResult`
    """
    dtype = np.dtype(dtype)
    workers = fftWorkers(workers)
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
    outImage = _outputPlane(out and out.image, (ny, nx), dtype)
    good = _correlateTerms(work, termKernels, tX, tY, dtype, workers, out=outImage[rows, cols])
    support = np.any(termKernels != 0.0, axis=0)
    isBox = bool(support.all())
    if finite is not None:
        touched = _dilate((~finite).astype(np.uint8), support.astype(np.uint8), isBox)[rows, cols]
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
        outVar = _outputPlane(out and out.variance, (ny, nx), dtype)
        goodVar = outVar[rows, cols]
        if mode == "exact":
            _varianceExact(vwork, termKernels, tX, tY, dtype, workers, goodVar)
        elif mode == "tiled":
            _varianceTiled(vwork, termKernels, tX, tY, tileSize, dtype, workers, goodVar)
        else:
            raise ValueError(f"Unknown varianceMode {varianceMode!r}; use 'exact', 'tiled' or 'auto'.")
        if vFinite is not None:
            touched = _dilate((~vFinite).astype(np.uint8), support.astype(np.uint8), isBox)[rows, cols]
            goodVar[touched.astype(bool)] = np.inf
        if kSum is not None:
            goodVar /= kSum * kSum
        _fillBorder(outVar, rows, cols, variance if edgeMode == "copy" else np.inf)

    outMask = None
    if mask is not None:
        outMask = _outputPlane(out and out.mask, mask.shape, mask.dtype, workers, zeroed=True)
        fp = support.astype(np.uint8)
        preserve = None if preserveBitmask is None else np.asarray(preserveBitmask).astype(mask.dtype)
        for e in range(mask.shape[2]):
            plane = mask[:, :, e]
            present = int(np.bitwise_or.reduce(plane, axis=None)) if plane.size else 0
            if present == 0:
                continue
            keep = int(preserve[e]) if preserve is not None else 0
            if isBox:
                acc = _dilateBits(plane & ~mask.dtype.type(keep), (kh, kw), workers)
            else:
                acc = np.zeros((ny, nx), dtype=mask.dtype)
                bit = 1
                nbits = mask.dtype.itemsize * 8
                for _ in range(nbits):
                    if present & bit and not keep & bit:
                        dil = _dilate(((plane & bit) != 0).astype(np.uint8), fp, isBox)
                        acc |= dil.astype(mask.dtype) * mask.dtype.type(bit)
                    bit <<= 1
                    if bit > present:
                        break
            if keep:
                acc |= plane & mask.dtype.type(keep)
            outMask[:, :, e] = acc
        for region in _border(rows, cols):
            if edgeMode == "copy":
                outMask[region] = mask[region]
                if edgeBitmask is not None:
                    outMask[region] |= np.asarray(edgeBitmask, dtype=mask.dtype)
            else:
                outMask[region] = 0 if noDataBitmask is None else np.asarray(noDataBitmask, dtype=mask.dtype)
    return ConvolutionResult(image=outImage, variance=outVar, mask=outMask)


def _varianceExact(
    variance: np.ndarray,
    termKernels: np.ndarray,
    tX: np.ndarray,
    tY: np.ndarray,
    dtype: np.dtype,
    workers: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Variance with the squared kernel expanded into products of terms.

    ``K^2 = sum_j sum_k f_j f_k K_j K_k`` is a linear combination of the
    ``nTerms (nTerms + 1) / 2`` distinct products, each correlated exactly.

    Parameters
    ----------
    variance : `numpy.ndarray`
        Finite variance plane ``(ny, nx)``.
    termKernels : `numpy.ndarray`
        ``(nTerms, kh, kw)`` kernel of each spatial term.
    tX, tY : `numpy.ndarray`
        ``(nTerms, gx)`` and ``(nTerms, gy)`` spatial factors over the
        valid region.
    dtype : `numpy.dtype`
        Floating type of the FFTs and the output.
    workers : `int`
        Threads.
    out : `numpy.ndarray`, optional
        ``(gy, gx)`` array to fill.

    Returns
    -------
    variance : `numpy.ndarray`
        ``(gy, gx)`` valid region.
    """
    first, second = np.triu_indices(len(termKernels))
    factor = np.where(first == second, 1.0, 2.0)
    return _correlateTerms(
        variance,
        termKernels[first] * termKernels[second],
        tX[first] * tX[second],
        factor[:, np.newaxis] * tY[first] * tY[second],
        dtype,
        workers,
        out,
    )


@dataclass
class _Cell:
    """Pixels between two consecutive interpolation nodes along one axis."""

    start: int
    stop: int
    weights: np.ndarray
    """``(2, stop - start)`` linear weights of the lower and upper node."""

    def __len__(self) -> int:
        return self.stop - self.start


def _cells(nodes: np.ndarray, n: int) -> list[_Cell]:
    """Split ``range(n)`` at ``nodes`` into cells with linear (hat) weights.

    Parameters
    ----------
    nodes : `numpy.ndarray`
        Increasing node positions from ``0`` to ``n - 1`` (not necessarily
        integers).
    n : `int`
        Number of pixels.

    Returns
    -------
    cells : `list` [`_Cell`]
        Cell ``i`` holds the pixels ``nodes[i] <= p < nodes[i + 1]`` (the
        last one also ``p = n - 1``); the weights of the two nodes sum to 1.
    """
    cells = []
    for i, (lower, upper) in enumerate(zip(nodes[:-1], nodes[1:])):
        start = int(np.ceil(lower))
        stop = max(start, n if i == len(nodes) - 2 else int(np.ceil(upper)))
        pos = np.arange(start, stop, dtype=float)
        span = upper - lower
        if span > 0:
            weights = np.stack([(upper - pos) / span, (pos - lower) / span])
        else:
            weights = np.stack([np.ones_like(pos), np.zeros_like(pos)])
        cells.append(_Cell(start, stop, weights))
    return cells


def _varianceTiled(
    variance: np.ndarray,
    termKernels: np.ndarray,
    tX: np.ndarray,
    tY: np.ndarray,
    tileSize: int,
    dtype: np.dtype,
    workers: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Variance with squared kernels evaluated on a grid and interpolated.

    The squared kernel is evaluated at grid nodes about ``tileSize`` apart;
    each cell between four nodes is one overlap-save tile, correlated with
    the squared kernels of its corners and blended with bilinear (hat)
    weights, so the result is exact wherever ``K^2`` varies linearly
    between nodes.  The corner spectra are computed once per node: those of
    node row ``i + 2`` alongside the cells between node rows ``i`` and
    ``i + 1``, in a ring of three node rows.

    Parameters
    ----------
    variance : `numpy.ndarray`
        Finite variance plane ``(ny, nx)``.
    termKernels : `numpy.ndarray`
        ``(nTerms, kh, kw)`` kernel of each spatial term.
    tX, tY : `numpy.ndarray`
        ``(nTerms, gx)`` and ``(nTerms, gy)`` spatial factors over the
        valid region.
    tileSize : `int`
        Largest node spacing.
    dtype : `numpy.dtype`
        Floating type of the FFTs and the output.
    workers : `int`
        Threads.
    out : `numpy.ndarray`, optional
        ``(gy, gx)`` array to fill.

    Returns
    -------
    variance : `numpy.ndarray`
        ``(gy, gx)`` valid region.
    """
    _, kh, kw = termKernels.shape
    gy, gx = tY.shape[1], tX.shape[1]
    nodesY = np.linspace(0, gy - 1, max(2, int(np.ceil(gy / tileSize)) + 1))
    nodesX = np.linspace(0, gx - 1, max(2, int(np.ceil(gx / tileSize)) + 1))
    # Spatial terms at the nodes (nodes may fall between pixels).
    nodeY = np.array([np.interp(nodesY, np.arange(gy), t) for t in tY])
    nodeX = np.array([np.interp(nodesX, np.arange(gx), t) for t in tX])
    cellsY, cellsX = _cells(nodesY, gy), _cells(nodesX, gx)
    fftShape = (
        scipy.fft.next_fast_len(max(len(c) for c in cellsY) + kh - 1, real=True),
        scipy.fft.next_fast_len(max(len(c) for c in cellsX) + kw - 1, real=True),
    )
    threads = min(workers, len(cellsX))
    corr = _Correlator(variance, (kh, kw), fftShape, dtype, workers if threads <= 1 else 1)
    nodeRows = np.empty((3, len(nodesX), fftShape[0], fftShape[1] // 2 + 1), dtype=corr.complexDtype)
    chunks = [chunk for chunk in np.array_split(np.arange(len(nodesX)), threads) if len(chunk)]
    weightsX = [cell.weights.astype(dtype) for cell in cellsX]
    # The corners of a cell, ordered (lower y, upper y) within each x node,
    # so that the two sharing a column weight form one group.
    starts = np.array([0, 2])
    if out is None:
        out = np.empty((gy, gx), dtype=dtype)

    def nodeTask(i: int, nodes: np.ndarray) -> None:
        kernels = np.einsum("t,tn,tab->nab", nodeY[:, i], nodeX[:, nodes], termKernels)
        nodeRows[i % 3, nodes] = corr.kernelSpectra(kernels * kernels)

    def cellTask(i: int, j: int) -> None:
        cellY, cellX = cellsY[i], cellsX[j]
        lower, upper = nodeRows[i % 3], nodeRows[(i + 1) % 3]
        corners = (lower[j], upper[j], lower[j + 1], upper[j + 1])
        wY = cellY.weights[[0, 1, 0, 1]].astype(dtype)
        tile = out[cellY.start : cellY.stop, cellX.start : cellX.stop]
        corr.tile(cellY.start, cellX.start, corners, wY, weightsX[j], starts, tile)

    tasks = [partial(nodeTask, i, chunk) for i in (0, 1) for chunk in chunks]
    with _threadPool(threads) as pool:
        for i, cellY in enumerate(cellsY):
            _runTasks(_call, tasks, pool)
            tasks = [partial(cellTask, i, j) for j, cellX in enumerate(cellsX) if len(cellX) and len(cellY)]
            if i + 2 < len(nodesY):
                tasks += [partial(nodeTask, i + 2, chunk) for chunk in chunks]
        _runTasks(_call, tasks, pool)
    return out
