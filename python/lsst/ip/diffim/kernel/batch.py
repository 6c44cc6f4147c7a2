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
"""Batched versions of the per-candidate computations.

The visitors process hundreds to thousands of candidates; doing each
candidate's FFTs and matrix products one at a time costs more in Python
overhead than in arithmetic.  These functions take stacks of equal-sized
stamps and compute, with the same numerics as the one-at-a-time path:

* the normal equations ``M = C^T W C`` and ``b = C^T W y`` of every
  candidate (`batchNormalEquations`);
* the normalized residuals ``D / sqrt(varS + K^2 ⋆ varT)`` with
  ``D = S - (K ⋆ T + bg)`` over each stamp's good region
  (`batchNormalizedResiduals`), for stamps whose masks are clear.
"""

from __future__ import annotations

__all__ = ["batchNormalEquations", "batchNormalizedResiduals"]

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

from ..math.threads import chunkSlices, forEach, singleThreadedBlas
from .separableBasis import SeparableBasis
from .stamps import _kernelSpectra

if TYPE_CHECKING:
    from .stampStack import StampPlane

#: Stamps ``(N, ny, nx)``: stacked, or a `StampPlane` cutting them from their parent image when read.
type Stamps = np.ndarray | StampPlane

#: Upper bound on the bytes of one chunk of candidate spectra.
_CHUNK_BYTES = 4 * 1024 * 1024

#: Same for the separable products (a few dozen candidates: the passes stay in cache).
_SEPARABLE_CHUNK_BYTES = 8 * 1024 * 1024


def _f64(array: np.ndarray) -> np.ndarray:
    """Return the stamps in float64 (stacks keep the images' own type)."""
    return np.asarray(array, dtype=np.float64)


def _take(stamps: Stamps, rows: np.ndarray | None, chunk: slice) -> np.ndarray:
    """Gather the stamps of one chunk of the selected rows, on the chunk's thread.

    Gathering chunk by chunk keeps the copies small (and in memory the
    thread has just used) instead of copying every selected stamp up front.
    """
    return stamps[chunk] if rows is None else stamps[rows[chunk]]


def _fftShape(ny: int, nx: int) -> tuple[int, int]:
    return scipy.fft.next_fast_len(ny, real=True), scipy.fft.next_fast_len(nx, real=True)


def _chunks(n: int, perItemBytes: int, chunkBytes: int = _CHUNK_BYTES) -> list[slice]:
    return chunkSlices(n, chunkBytes // max(perItemBytes, 1))


def _forEachChunk(chunks: list[slice], work: Callable[[slice, int], None]) -> None:
    """Call ``work(chunk, fftWorkers)`` for every chunk, on all configured threads.

    The chunks are the parallelism: with several threads (``$IPDIFFIM_NUM_THREADS``,
    default the CPU count) they run concurrently; each FFT runs on one worker
    and BLAS on one thread (many small products gain nothing from BLAS
    threads), so the results are the same for every thread count.  ``work``
    must write disjoint slices of its outputs.
    """
    # Every chunk runs its FFTs on one worker and BLAS on one thread, whatever the
    # thread count: multi-worker FFTs and BLAS split their sums differently, so
    # the results would depend on $IPDIFFIM_NUM_THREADS (measured: 1-ulp changes).
    with singleThreadedBlas():
        forEach(lambda chunk: work(chunk, 1), chunks)


def _storeChunk(
    mMat: np.ndarray,
    bVec: np.ndarray,
    chunk: slice,
    dtd: np.ndarray,
    dty: np.ndarray,
    columnSums: np.ndarray | None,
    data: np.ndarray,
    weights: np.ndarray,
) -> None:
    """Write one chunk of weighted normal equations.

    Parameters
    ----------
    mMat, bVec : `numpy.ndarray`
        The outputs of every candidate.
    chunk : `slice`
        The candidates of this chunk.
    dtd, dty : `numpy.ndarray`
        ``(m, nb, nb)`` and ``(m, nb)``: ``D D^T`` and ``D y`` of the basis
        design ``D`` and the data ``y`` (unweighted).
    columnSums : `numpy.ndarray` or `None`
        ``(m, nb)`` sums of the design rows; `None` without a background term.
    data : `numpy.ndarray`
        ``(m, nPixels)`` data of the good region.
    weights : `numpy.ndarray`
        ``(m,)`` constant inverse variances.
    """
    nb = dtd.shape[1]
    mMat[chunk, :nb, :nb] = dtd * weights[:, np.newaxis, np.newaxis]
    bVec[chunk, :nb] = dty * weights[:, np.newaxis]
    if columnSums is not None:
        colSum = columnSums * weights[:, np.newaxis]
        mMat[chunk, :nb, nb] = colSum
        mMat[chunk, nb, :nb] = colSum
        mMat[chunk, nb, nb] = data.shape[1] * weights
        bVec[chunk, nb] = data.sum(axis=1) * weights


def batchNormalEquations(
    templates: Stamps,
    sciences: Stamps,
    weights: np.ndarray,
    basis: np.ndarray,
    fitForBackground: bool,
    separable: SeparableBasis | None = None,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the normal equations of many candidates with constant weights.

    Parameters
    ----------
    templates, sciences : `numpy.ndarray` or `StampPlane`
        Stamps ``(N, ny, nx)`` (finite; computed in float64 whatever their type).
    weights : `numpy.ndarray`
        One inverse variance per candidate ``(n,)``.
    basis : `numpy.ndarray`
        Basis images ``(nb, kh, kw)`` (spectra cached; do not modify).
    fitForBackground : `bool`
        Append a constant column.
    separable : `SeparableBasis`, optional
        Separable form of ``basis``; when given (and cheaper for this stamp
        size) the correlations are two 1-d matrix passes instead of FFTs.
    rows : `numpy.ndarray`, optional
        The ``n`` rows of the stamp arrays to use (all ``N`` if not given).

    Returns
    -------
    mMat : `numpy.ndarray`
        ``(n, nloc, nloc)``.
    bVec : `numpy.ndarray`
        ``(n, nloc)``.
    """
    n = len(templates) if rows is None else len(rows)
    ny, nx = templates.shape[1:]
    nb, kh, kw = basis.shape
    if separable is not None and separable.isWorthwhile((ny, nx)):
        return _separableNormalEquations(templates, sciences, weights, separable, fitForBackground, rows)
    shape = _fftShape(ny, nx)
    spectra = _kernelSpectra(basis, shape)
    gy, gx = ny - kh + 1, nx - kw + 1
    nloc = nb + (1 if fitForBackground else 0)
    mMat = np.empty((n, nloc, nloc))
    bVec = np.empty((n, nloc))
    perItem = nb * shape[0] * (shape[1] // 2 + 1) * 16 * 2

    def work(chunk: slice, workers: int) -> None:
        tSpec = scipy.fft.rfft2(_f64(_take(templates, rows, chunk)), s=shape, axes=(-2, -1), workers=workers)
        conv = scipy.fft.irfft2(
            tSpec[:, np.newaxis] * spectra[np.newaxis], s=shape, axes=(-2, -1), workers=workers
        )
        design = conv[:, :, kh - 1 : ny, kw - 1 : nx].reshape(conv.shape[0], nb, gy * gx)
        science = _take(sciences, rows, chunk)
        data = _f64(science[:, kh // 2 : kh // 2 + gy, kw // 2 : kw // 2 + gx]).reshape(-1, gy * gx)
        _storeChunk(
            mMat,
            bVec,
            chunk,
            np.matmul(design, design.transpose(0, 2, 1)),
            np.einsum("kip,kp->ki", design, data),
            design.sum(axis=2) if fitForBackground else None,
            data,
            weights[chunk],
        )

    _forEachChunk(_chunks(n, perItem), work)
    return mMat, bVec


def _separableNormalEquations(
    templates: Stamps,
    sciences: Stamps,
    weights: np.ndarray,
    separable: SeparableBasis,
    fitForBackground: bool,
    rows: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """`batchNormalEquations` through the separable products of the basis.

    The design matrix of every candidate is ``mixing`` times the
    correlations ``P`` with the distinct separable products, so
    ``M = mixing (P P^T) mixing^T`` and ``b = mixing (P d)``.
    """
    n = len(templates) if rows is None else len(rows)
    ny, nx = templates.shape[1:]
    kh, kw = separable.kernelShape
    nb, nPairs = separable.mixing.shape
    gy, gx = ny - kh + 1, nx - kw + 1
    nloc = nb + (1 if fitForBackground else 0)
    mMat = np.empty((n, nloc, nloc))
    bVec = np.empty((n, nloc))
    perItem = 2 * nPairs * gy * gx * 8 + len(separable.rows) * ny * gx * 8
    mix = separable.mixing

    def work(chunk: slice, workers: int) -> None:
        products = separable.correlate(_f64(_take(templates, rows, chunk)))
        science = _take(sciences, rows, chunk)
        data = _f64(science[:, kh // 2 : kh // 2 + gy, kw // 2 : kw // 2 + gx]).reshape(-1, gy * gx)
        mRaw = np.matmul(products, products.transpose(0, 2, 1))
        bRaw = np.matmul(products, data[:, :, np.newaxis])[:, :, 0]
        _storeChunk(
            mMat,
            bVec,
            chunk,
            np.matmul(np.matmul(mix, mRaw), mix.T),
            bRaw @ mix.T,
            products.sum(axis=2) @ mix.T if fitForBackground else None,
            data,
            weights[chunk],
        )

    _forEachChunk(_chunks(n, perItem, _SEPARABLE_CHUNK_BYTES), work)
    return mMat, bVec


def batchNormalizedResiduals(
    templates: Stamps,
    templateVariances: Stamps,
    sciences: Stamps,
    scienceVariances: Stamps,
    kernels: np.ndarray,
    backgrounds: np.ndarray,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``D / sqrt(var_D)`` on each stamp's good region, NaN where undefined.

    Parameters
    ----------
    templates, templateVariances, sciences, scienceVariances : `numpy.ndarray` or `StampPlane`
        Stamps ``(N, ny, nx)``.
    kernels : `numpy.ndarray`
        One kernel image per candidate ``(n, kh, kw)``.
    backgrounds : `numpy.ndarray`
        One background per candidate ``(n,)``.
    rows : `numpy.ndarray`, optional
        The ``n`` rows of the stamp arrays to use (all ``N`` if not given).

    Returns
    -------
    residuals : `numpy.ndarray`
        Array ``(n, ny - kh + 1, nx - kw + 1)``.  The visitors derive
        `ImageStatistics`-equivalent means and variances from it for stamps
        whose masks carry none of the bad planes.
    """
    n, kh, kw = kernels.shape
    ny, nx = templates.shape[1:]
    shape = _fftShape(ny, nx)
    gy, gx = ny - kh + 1, nx - kw + 1
    cy, cx = kh // 2, kw // 2
    out = np.empty((n, gy, gx))

    def work(chunk: slice, workers: int) -> None:
        # D = S - (K * T + bg) and var_D = var_S + K^2 * var_T on the good region.
        k = kernels[chunk]
        kSpec = scipy.fft.rfft2(k[:, ::-1, ::-1], s=shape, axes=(-2, -1), workers=workers)
        k2Spec = scipy.fft.rfft2((k * k)[:, ::-1, ::-1], s=shape, axes=(-2, -1), workers=workers)
        tSpec = scipy.fft.rfft2(_f64(_take(templates, rows, chunk)), s=shape, axes=(-2, -1), workers=workers)
        vSpec = scipy.fft.rfft2(
            _f64(_take(templateVariances, rows, chunk)), s=shape, axes=(-2, -1), workers=workers
        )
        conv = scipy.fft.irfft2(tSpec * kSpec, s=shape, axes=(-2, -1), workers=workers)
        convVar = scipy.fft.irfft2(vSpec * k2Spec, s=shape, axes=(-2, -1), workers=workers)
        good = (slice(None), slice(cy, cy + gy), slice(cx, cx + gx))
        valid = (slice(None), slice(kh - 1, ny), slice(kw - 1, nx))
        science = _take(sciences, rows, chunk)[good]
        diff = _f64(science) - conv[valid] - backgrounds[chunk][:, np.newaxis, np.newaxis]
        dvar = _f64(_take(scienceVariances, rows, chunk)[good]) + convVar[valid]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[chunk] = np.where(dvar > 0, diff / np.sqrt(dvar), np.nan)

    _forEachChunk(_chunks(n, 4 * shape[0] * (shape[1] // 2 + 1) * 16), work)
    return out
