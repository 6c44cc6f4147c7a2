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
linear, the image plane is exactly ``sum_j f_j (K_j ⋆ I)``: one FFT of the
image and one inverse FFT per spatial term, exact at every pixel.  ``⋆`` is
afw's convolution, a cross-correlation:
``out(x, y) = sum_ij in(x + i - ctrX, y + j - ctrY) K[j, i]``.

Variance: ``var_out(x, y) = sum_k K(x, y; k)^2 var(x + k)``.
``varianceMode="exact"`` expands ``K^2`` into the products of terms (one
inverse FFT per product); ``"tiled"`` (the default for spatially varying
kernels on large images) evaluates ``K^2`` on a grid of nodes ``tileSize``
pixels apart, convolves around each node and blends the results with
bilinear weights.  For a kernel whose width changes by 25 % across a
1024-pixel image the tiled variance is within 0.3 % of the exact one
(measured in ``tests/test_convolveImage.py``).

Mask: each output pixel ORs the bits of every input pixel under a non-zero
kernel pixel (the union of the supports of the ``K_j``); this is a dilation
of each set bit plane.  Non-finite input pixels make every output pixel
whose footprint contains them NaN, as a direct sum would.
"""

from __future__ import annotations

__all__ = ["ConvolutionResult", "convolveSpatiallyVarying", "fftWorkers", "goodRegion"]

import os
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage


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


class _Correlator:
    """FFT correlation of one input plane with several kernels (valid region)."""

    def __init__(
        self, plane: np.ndarray, kernelShape: tuple[int, int], dtype: np.dtype, workers: int
    ) -> None:
        self.ny, self.nx = plane.shape
        self.kh, self.kw = kernelShape
        self.shape = (
            scipy.fft.next_fast_len(self.ny, real=True),
            scipy.fft.next_fast_len(self.nx, real=True),
        )
        self.workers = workers
        self.dtype = dtype
        self.spectrum = scipy.fft.rfft2(plane.astype(dtype, copy=False), s=self.shape, workers=workers)

    def correlate(self, kernel: np.ndarray) -> np.ndarray:
        kspec = scipy.fft.rfft2(kernel[::-1, ::-1].astype(self.dtype), s=self.shape, workers=self.workers)
        kspec *= self.spectrum
        full = scipy.fft.irfft2(kspec, s=self.shape, workers=self.workers)
        return full[self.kh - 1 : self.ny, self.kw - 1 : self.nx]


def _dilate(plane: np.ndarray, footprint: np.ndarray, isBox: bool) -> np.ndarray:
    """OR of ``plane`` over the kernel footprint, in correlation orientation."""
    if isBox:
        kh, kw = footprint.shape
        out = ndimage.maximum_filter1d(plane, size=kw, axis=1, mode="constant", cval=0)
        return ndimage.maximum_filter1d(out, size=kh, axis=0, mode="constant", cval=0)
    return ndimage.maximum_filter(plane, footprint=footprint, mode="constant", cval=0)


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
        Tile side for the tiled variance.
    dtype : dtype, optional
        Floating type of the FFTs and outputs.
    workers : `int`, optional
        FFT threads; default ``$IPDIFFIM_NUM_THREADS`` or the CPU count.

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

    # Image plane: non-finite pixels are zeroed for the FFT and re-flagged after.
    finite = np.isfinite(image)
    allFinite = bool(finite.all())
    work = image if allFinite else np.where(finite, image, 0.0)
    corr = _Correlator(work, (kh, kw), dtype, workers)
    good = np.zeros((gy, gx), dtype=dtype)
    for j in range(nTerms):
        conv = corr.correlate(termKernels[j])
        conv *= tX[j].astype(dtype)[np.newaxis, :]
        conv *= tY[j].astype(dtype)[:, np.newaxis]
        good += conv
    del corr
    support = np.any(termKernels != 0.0, axis=0)
    isBox = bool(support.all())
    if not allFinite:
        touched = _dilate((~finite).astype(np.uint8), support.astype(np.uint8), isBox)[rows, cols]
        good[touched.astype(bool)] = np.nan

    kSum = None
    if doNormalize:
        sums = termKernels.sum(axis=(1, 2))
        kSum = np.einsum("j,jy,jx->yx", sums, tY, tX, optimize=True).astype(dtype)
        good /= kSum

    outImage = np.empty((ny, nx), dtype=dtype)
    border = np.ones((ny, nx), dtype=bool)
    border[rows, cols] = False
    if edgeMode == "copy":
        outImage[...] = image
    elif edgeMode == "nodata":
        outImage[...] = np.nan
    else:
        raise ValueError(f"Unknown edgeMode {edgeMode!r}; use 'nodata' or 'copy'.")
    outImage[rows, cols] = good

    outVar = None
    if variance is not None:
        mode = varianceMode
        if mode == "auto":
            mode = "exact" if nTerms == 1 or (gy * gx) <= 512 * 512 else "tiled"
        vFinite = np.isfinite(variance)
        vAllFinite = bool(vFinite.all())
        vwork = variance if vAllFinite else np.where(vFinite, variance, 0.0)
        if mode == "exact":
            goodVar = _varianceExact(vwork, termKernels, tX, tY, dtype, workers)
        elif mode == "tiled":
            goodVar = _varianceTiled(vwork, termKernels, tX, tY, rows, cols, tileSize, dtype, workers)
        else:
            raise ValueError(f"Unknown varianceMode {varianceMode!r}; use 'exact', 'tiled' or 'auto'.")
        if not vAllFinite:
            touched = _dilate((~vFinite).astype(np.uint8), support.astype(np.uint8), isBox)[rows, cols]
            goodVar[touched.astype(bool)] = np.inf
        if kSum is not None:
            goodVar /= kSum * kSum
        outVar = np.empty((ny, nx), dtype=dtype)
        outVar[...] = variance if edgeMode == "copy" else np.inf
        outVar[rows, cols] = goodVar

    outMask = None
    if mask is not None:
        outMask = np.zeros_like(mask)
        fp = support.astype(np.uint8)
        preserve = None if preserveBitmask is None else np.asarray(preserveBitmask).astype(mask.dtype)
        for e in range(mask.shape[2]):
            plane = mask[:, :, e]
            present = int(np.bitwise_or.reduce(plane, axis=None)) if plane.size else 0
            if present == 0:
                continue
            keep = int(preserve[e]) if preserve is not None else 0
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
        if edgeMode == "copy":
            outMask[border] = mask[border]
            if edgeBitmask is not None:
                outMask[border] |= np.asarray(edgeBitmask, dtype=mask.dtype)
        else:
            outMask[border] = 0 if noDataBitmask is None else np.asarray(noDataBitmask, dtype=mask.dtype)
    return ConvolutionResult(image=outImage, variance=outVar, mask=outMask)


def _varianceExact(
    variance: np.ndarray,
    termKernels: np.ndarray,
    tX: np.ndarray,
    tY: np.ndarray,
    dtype: np.dtype,
    workers: int,
) -> np.ndarray:
    nTerms, kh, kw = termKernels.shape
    corr = _Correlator(variance, (kh, kw), dtype, workers)
    out = None
    for j in range(nTerms):
        for k in range(j, nTerms):
            factor = 1.0 if j == k else 2.0
            conv = corr.correlate(termKernels[j] * termKernels[k])
            conv *= (factor * tX[j] * tX[k]).astype(dtype)[np.newaxis, :]
            conv *= (tY[j] * tY[k]).astype(dtype)[:, np.newaxis]
            if out is None:
                out = conv.astype(dtype, copy=True)
            else:
                out += conv
    return out


def _hatWeights(n: int, centres: np.ndarray) -> np.ndarray:
    """Return ``(len(centres), n)`` piecewise-linear interpolation weights.

    Weights are the hat functions of the centres (constant beyond the first
    and last centre); they sum to 1 at every position.
    """
    pos = np.arange(n, dtype=float)
    weights = np.zeros((len(centres), n))
    if len(centres) == 1:
        weights[0] = 1.0
        return weights
    for i, c in enumerate(centres):
        w = np.zeros(n)
        if i > 0:
            left = (pos >= centres[i - 1]) & (pos <= c)
            w[left] = (pos[left] - centres[i - 1]) / (c - centres[i - 1])
        else:
            w[pos <= c] = 1.0
        if i < len(centres) - 1:
            right = (pos > c) & (pos < centres[i + 1])
            w[right] = (centres[i + 1] - pos[right]) / (centres[i + 1] - c)
        else:
            w[pos > c] = 1.0
        weights[i] = w
    return weights


def _varianceTiled(
    variance: np.ndarray,
    termKernels: np.ndarray,
    tX: np.ndarray,
    tY: np.ndarray,
    rows: slice,
    cols: slice,
    tileSize: int,
    dtype: np.dtype,
    workers: int,
) -> np.ndarray:
    """Variance with squared kernels evaluated on a grid and interpolated.

    The squared kernel is evaluated at grid nodes ``tileSize`` apart; each
    node's convolution covers the cells around it and the results are
    blended with bilinear (hat) weights, so the result is exact wherever
    ``K^2`` varies linearly between nodes.
    """
    nTerms, kh, kw = termKernels.shape
    gy, gx = tY.shape[1], tX.shape[1]
    ny_nodes = max(2, int(np.ceil(gy / tileSize)) + 1)
    nx_nodes = max(2, int(np.ceil(gx / tileSize)) + 1)
    cy = np.linspace(0, gy - 1, ny_nodes)
    cx = np.linspace(0, gx - 1, nx_nodes)
    wy = _hatWeights(gy, cy)
    wx = _hatWeights(gx, cx)
    out = np.zeros((gy, gx), dtype=dtype)
    for i, yc in enumerate(cy):
        ys = np.flatnonzero(wy[i] > 0)
        y0, y1 = int(ys[0]), int(ys[-1]) + 1
        for j, xc in enumerate(cx):
            xs = np.flatnonzero(wx[j] > 0)
            x0, x1 = int(xs[0]), int(xs[-1]) + 1
            # Interpolate the spatial terms at the node (nodes may fall between pixels).
            coeff = np.array(
                [
                    np.interp(yc, np.arange(gy), tY[t]) * np.interp(xc, np.arange(gx), tX[t])
                    for t in range(nTerms)
                ]
            )
            kernel = np.tensordot(coeff, termKernels, axes=1)
            patch = variance[y0 : y1 + kh - 1, x0 : x1 + kw - 1]
            shape = (
                scipy.fft.next_fast_len(patch.shape[0], real=True),
                scipy.fft.next_fast_len(patch.shape[1], real=True),
            )
            spec = scipy.fft.rfft2(patch.astype(dtype, copy=False), s=shape, workers=workers)
            spec *= scipy.fft.rfft2((kernel * kernel)[::-1, ::-1].astype(dtype), s=shape, workers=workers)
            full = scipy.fft.irfft2(spec, s=shape, workers=workers)
            conv = full[kh - 1 : patch.shape[0], kw - 1 : patch.shape[1]]
            weight = (wy[i, y0:y1, np.newaxis] * wx[j, np.newaxis, x0:x1]).astype(dtype)
            out[y0:y1, x0:x1] += weight * conv
    return out
