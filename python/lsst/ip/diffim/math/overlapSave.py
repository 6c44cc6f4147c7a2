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
"""Overlap-save FFT correlation of a plane with weighted kernels.

The engine of the whole-image convolution
(`lsst.ip.diffim.math.convolveImage`): ``sum_j wY[j, y] wX[j, x]
(K_j ⋆ plane)(y, x)`` on the valid region, where ``⋆`` is afw's
convolution, a cross-correlation.  The plane is cut into tiles of a few
hundred pixels (`fftTileShape`); each tile is transformed once, multiplied
by the spectrum of every ``K_j`` (`OverlapSaveCorrelator.kernelSpectra`,
computed once at the tile size) and transformed back in one batched call,
and the tiles are shared between threads.  Small FFTs stay in the CPU
caches, so this is several times faster than whole-image FFTs.
"""

from __future__ import annotations

__all__ = [
    "OverlapSaveCorrelator",
    "correlateFixed",
    "correlateTerms",
    "fftTileShape",
    "goodRegion",
]

import threading
from collections.abc import Sequence

import numpy as np
import scipy.fft

from .threads import ThreadPool, threadCount


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
# of the ``n log2 n`` FFT cost model of `fftTileShape`.
_TILE_OVERHEAD = 2.0e5


def _fastLengths(low: int, high: int) -> list[int]:
    """Return the fast real-FFT lengths in ``[low, high]``."""
    lengths = []
    n = scipy.fft.next_fast_len(max(low, 1), real=True)
    while n <= high:
        lengths.append(n)
        n = scipy.fft.next_fast_len(n + 1, real=True)
    return lengths


def fftTileShape(validShape: tuple[int, int], kernelShape: tuple[int, int]) -> tuple[int, int]:
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
    merged: list[np.ndarray] = []
    mergedY: list[np.ndarray] = []
    starts: list[int] = []
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


class OverlapSaveCorrelator:
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


def correlateTerms(
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
    fftShape = fftTileShape((gy, gx), (kh, kw))
    ty, tx = fftShape[0] - kh + 1, fftShape[1] - kw + 1
    origins = [(y0, x0) for y0 in range(0, gy, ty) for x0 in range(0, gx, tx)]
    threads = min(workers, len(origins))
    # One FFT worker per tile, always: a multi-worker FFT batches its 1-d
    # transforms differently and changes the last bits with the thread count.
    corr = OverlapSaveCorrelator(plane, (kh, kw), fftShape, dtype, 1)
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

    with ThreadPool(threads) as pool:
        pool.forEach(task, origins)
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
    return correlateTerms(
        plane.astype(dtype, copy=False),
        np.asarray(kernel)[np.newaxis],
        ones[1],
        ones[0],
        dtype,
        threadCount(workers),
        out=out,
    )
