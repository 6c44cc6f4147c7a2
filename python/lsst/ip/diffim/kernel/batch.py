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

from collections.abc import Iterator

import numpy as np
import scipy.fft

from ..math.convolveImage import fftWorkers
from .separableBasis import SeparableBasis
from .stamps import _kernelSpectra


def _fftThreads() -> int:
    return fftWorkers(None)


#: Upper bound on the bytes of one chunk of candidate spectra.
_CHUNK_BYTES = 4 * 1024 * 1024

#: Same for the separable products (matrix passes want larger batches).
_SEPARABLE_CHUNK_BYTES = 32 * 1024 * 1024


def _f64(array: np.ndarray) -> np.ndarray:
    """The stamps in float64 (stacks keep the images' own type)."""
    return np.asarray(array, dtype=np.float64)


def _fftShape(ny: int, nx: int) -> tuple[int, int]:
    return scipy.fft.next_fast_len(ny, real=True), scipy.fft.next_fast_len(nx, real=True)


def _chunks(n: int, perItemBytes: int, chunkBytes: int = _CHUNK_BYTES) -> list[slice]:
    size = max(1, chunkBytes // max(perItemBytes, 1))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def batchNormalEquations(
    templates: np.ndarray,
    sciences: np.ndarray,
    weights: np.ndarray,
    basis: np.ndarray,
    fitForBackground: bool,
    separable: SeparableBasis | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the normal equations of many candidates with constant weights.

    Parameters
    ----------
    templates, sciences : `numpy.ndarray`
        Stamps ``(n, ny, nx)`` (finite; computed in float64 whatever their type).
    weights : `numpy.ndarray`
        One inverse variance per candidate ``(n,)``.
    basis : `numpy.ndarray`
        Basis images ``(nb, kh, kw)`` (spectra cached; do not modify).
    fitForBackground : `bool`
        Append a constant column.
    separable : `SeparableBasis`, optional
        Separable form of ``basis``; when given (and cheaper for this stamp
        size) the correlations are two 1-d matrix passes instead of FFTs.

    Returns
    -------
    mMat : `numpy.ndarray`
        ``(n, nloc, nloc)``.
    bVec : `numpy.ndarray`
        ``(n, nloc)``.
    """
    n, ny, nx = templates.shape
    nb, kh, kw = basis.shape
    if separable is not None and separable.isWorthwhile((ny, nx)):
        return _separableNormalEquations(templates, sciences, weights, separable, fitForBackground)
    shape = _fftShape(ny, nx)
    spectra = _kernelSpectra(basis, shape)
    gy, gx = ny - kh + 1, nx - kw + 1
    nloc = nb + (1 if fitForBackground else 0)
    mMat = np.empty((n, nloc, nloc))
    bVec = np.empty((n, nloc))
    perItem = nb * shape[0] * (shape[1] // 2 + 1) * 16 * 2
    for chunk in _chunks(n, perItem):
        tSpec = scipy.fft.rfft2(_f64(templates[chunk]), s=shape, axes=(-2, -1), workers=_fftThreads())
        conv = scipy.fft.irfft2(
            tSpec[:, np.newaxis] * spectra[np.newaxis], s=shape, axes=(-2, -1), workers=_fftThreads()
        )
        design = conv[:, :, kh - 1 : ny, kw - 1 : nx].reshape(conv.shape[0], nb, gy * gx)
        data = _f64(sciences[chunk][:, kh // 2 : kh // 2 + gy, kw // 2 : kw // 2 + gx]).reshape(-1, gy * gx)
        w = weights[chunk][:, np.newaxis, np.newaxis]
        mm = np.matmul(design, design.transpose(0, 2, 1))
        bb = np.einsum("kip,kp->ki", design, data)
        mMat[chunk, :nb, :nb] = mm * w
        bVec[chunk, :nb] = bb * w[:, :, 0]
        if fitForBackground:
            colSum = design.sum(axis=2) * w[:, :, 0]
            mMat[chunk, :nb, nb] = colSum
            mMat[chunk, nb, :nb] = colSum
            mMat[chunk, nb, nb] = gy * gx * weights[chunk]
            bVec[chunk, nb] = data.sum(axis=1) * weights[chunk]
    return mMat, bVec


def _separableNormalEquations(
    templates: np.ndarray,
    sciences: np.ndarray,
    weights: np.ndarray,
    separable: SeparableBasis,
    fitForBackground: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """`batchNormalEquations` through the separable products of the basis.

    The design matrix of every candidate is ``mixing`` times the
    correlations ``P`` with the distinct separable products, so
    ``M = mixing (P P^T) mixing^T`` and ``b = mixing (P d)``.
    """
    n, ny, nx = templates.shape
    kh, kw = separable.kernelShape
    nb, nPairs = separable.mixing.shape
    gy, gx = ny - kh + 1, nx - kw + 1
    nloc = nb + (1 if fitForBackground else 0)
    mMat = np.empty((n, nloc, nloc))
    bVec = np.empty((n, nloc))
    perItem = 2 * nPairs * gy * gx * 8 + len(separable.rows) * ny * gx * 8
    for chunk in _chunks(n, perItem, _SEPARABLE_CHUNK_BYTES):
        products = separable.correlate(_f64(templates[chunk]))
        data = _f64(sciences[chunk][:, kh // 2 : kh // 2 + gy, kw // 2 : kw // 2 + gx])
        data = data.reshape(-1, gy * gx)
        w = weights[chunk]
        mix = separable.mixing
        mRaw = np.matmul(products, products.transpose(0, 2, 1))
        mMat[chunk, :nb, :nb] = np.matmul(np.matmul(mix, mRaw), mix.T) * w[:, np.newaxis, np.newaxis]
        bRaw = np.matmul(products, data[:, :, np.newaxis])[:, :, 0]
        bVec[chunk, :nb] = (bRaw @ mix.T) * w[:, np.newaxis]
        if fitForBackground:
            colSum = (products.sum(axis=2) @ mix.T) * w[:, np.newaxis]
            mMat[chunk, :nb, nb] = colSum
            mMat[chunk, nb, :nb] = colSum
            mMat[chunk, nb, nb] = gy * gx * w
            bVec[chunk, nb] = data.sum(axis=1) * w
    return mMat, bVec


def _differences(
    templates: np.ndarray,
    templateVariances: np.ndarray,
    sciences: np.ndarray,
    scienceVariances: np.ndarray,
    kernels: np.ndarray,
    backgrounds: np.ndarray,
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield ``(chunk, D, var_D)`` over the stamps' good regions, chunk by chunk."""
    n, ny, nx = templates.shape
    _, kh, kw = kernels.shape
    shape = _fftShape(ny, nx)
    gy, gx = ny - kh + 1, nx - kw + 1
    cy, cx = kh // 2, kw // 2
    perItem = 4 * shape[0] * (shape[1] // 2 + 1) * 16
    for chunk in _chunks(n, perItem):
        k = kernels[chunk]
        kSpec = scipy.fft.rfft2(k[:, ::-1, ::-1], s=shape, axes=(-2, -1), workers=_fftThreads())
        k2Spec = scipy.fft.rfft2((k * k)[:, ::-1, ::-1], s=shape, axes=(-2, -1), workers=_fftThreads())
        tSpec = scipy.fft.rfft2(_f64(templates[chunk]), s=shape, axes=(-2, -1), workers=_fftThreads())
        vSpec = scipy.fft.rfft2(_f64(templateVariances[chunk]), s=shape, axes=(-2, -1), workers=_fftThreads())
        conv = scipy.fft.irfft2(tSpec * kSpec, s=shape, axes=(-2, -1), workers=_fftThreads())[
            :, kh - 1 : ny, kw - 1 : nx
        ]
        convVar = scipy.fft.irfft2(vSpec * k2Spec, s=shape, axes=(-2, -1), workers=_fftThreads())[
            :, kh - 1 : ny, kw - 1 : nx
        ]
        good = (slice(None), slice(cy, cy + gy), slice(cx, cx + gx))
        diff = _f64(sciences[chunk][good]) - conv - backgrounds[chunk][:, np.newaxis, np.newaxis]
        yield chunk, diff, _f64(scienceVariances[chunk][good]) + convVar


def batchNormalizedResiduals(
    templates: np.ndarray,
    templateVariances: np.ndarray,
    sciences: np.ndarray,
    scienceVariances: np.ndarray,
    kernels: np.ndarray,
    backgrounds: np.ndarray,
) -> np.ndarray:
    """Return ``D / sqrt(var_D)`` on each stamp's good region, NaN where undefined.

    Parameters
    ----------
    templates, templateVariances, sciences, scienceVariances : `numpy.ndarray`
        Stamps ``(n, ny, nx)``.
    kernels : `numpy.ndarray`
        One kernel image per candidate ``(n, kh, kw)``.
    backgrounds : `numpy.ndarray`
        One background per candidate ``(n,)``.

    Returns
    -------
    residuals : `numpy.ndarray`
        Array ``(n, ny - kh + 1, nx - kw + 1)``.  The visitors derive
        `ImageStatistics`-equivalent means and variances from it for stamps
        whose masks carry none of the bad planes.
    """
    n, ny, nx = templates.shape
    _, kh, kw = kernels.shape
    out = np.empty((n, ny - kh + 1, nx - kw + 1))
    inputs = (templates, templateVariances, sciences, scienceVariances, kernels, backgrounds)
    for chunk, diff, dvar in _differences(*inputs):
        with np.errstate(divide="ignore", invalid="ignore"):
            out[chunk] = np.where(dvar > 0, diff / np.sqrt(dvar), np.nan)
    return out
