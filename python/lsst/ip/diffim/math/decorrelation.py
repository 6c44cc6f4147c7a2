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
"""Frequency-space decorrelation filters of difference and score images (DMTN-021, DMTN-179).

A difference ``D = S - kappa * T`` of images with white noise of variances
``s`` and ``t`` has the noise power ``s + t |kappa(f)|^2``.  The filter

    phi(f) = sqrt((s + t kSum^2) / (s + t |kappa(f)|^2))

whitens it to ``s + t kSum^2`` while keeping fluxes (``phi(0) = 1``).  For a
score image (science pre-convolved with its PSF ``P``, the kernel matching
the template to it) the filter is

    phi(f) = (s + t kSum^2) / (s + t |kappa(f)|^2 / |P(f)|^2).

The filters are smooth, so their real-space kernels are compact: they are
computed here on a small grid (a few kernel widths) and applied to the
whole image by the tiled overlap-save correlation of
`lsst.ip.diffim.math.overlapSave`, instead of a whole-image FFT.
"""

from __future__ import annotations

__all__ = [
    "DecorrelationFilter",
    "applyFilterKernel",
    "computeCommonShape",
    "computeDiffimCorrection",
    "computeScoreCorrection",
    "filterKernel",
    "padCenterOriginArray",
]

from dataclasses import dataclass

import numpy as np

from .overlapSave import correlateFixed


@dataclass
class DecorrelationFilter:
    """A decorrelation filter in frequency space.

    Attributes
    ----------
    corrft : `numpy.ndarray`
        The filter applied to the image (real).
    cnft, crft : `numpy.ndarray`
        Overall transfer functions of the unconvolved and the convolved
        image's noise into the corrected image (complex), for the variance.
    """

    corrft: np.ndarray
    cnft: np.ndarray
    crft: np.ndarray

    def varianceWeights(self) -> tuple[float, float]:
        """Return ``sum |c|^2`` in real space of ``cnft`` and ``crft`` (Parseval)."""
        w1 = float(np.mean(np.abs(self.cnft) ** 2))
        w2 = float(np.mean(np.abs(self.crft) ** 2))
        return w1, w2


def computeCommonShape(*shapes: tuple[int, int]) -> tuple[int, int]:
    """Return the FFT shape for the given array shapes.

    Per axis: the sum of the two largest sizes minus one (the single size if
    only one shape is given), rounded up to even.
    """
    s = np.array(shapes, dtype=int).reshape(len(shapes), 2)
    if len(shapes) > 1:
        s = np.sort(s, axis=0)[-2:]
        common = s.sum(axis=0) - 1
    else:
        common = s[0].copy()
    common[common % 2 != 0] += 1
    return int(common[0]), int(common[1])


def padCenterOriginArray(
    array: np.ndarray, newShape: tuple[int, int], useInverse: bool = False
) -> np.ndarray:
    """Zero-pad an array so that its centre pixel goes to index ``(0, 0)``, or undo it.

    Parameters
    ----------
    array : `numpy.ndarray`
        Array to pad (forward) or padded array to crop (inverse).
    newShape : `tuple` [`int`, `int`]
        Padded shape (forward) or the original shape (inverse).
    useInverse : `bool`, optional
        Crop back instead of padding.

    Notes
    -----
    The centre of an axis of length ``n`` is index ``n // 2``, so an odd
    delta function lands exactly on the origin.
    """
    if not useInverse:
        h, w = array.shape
        out = np.zeros(newShape, dtype=array.dtype)
        out[:h, :w] = array
        return np.roll(out, (-(h // 2), -(w // 2)), axis=(0, 1))
    h, w = newShape
    return np.roll(array, (h // 2, w // 2), axis=(0, 1))[:h, :w].copy()


def computeDiffimCorrection(
    kappa: np.ndarray, svar: float, tvar: float, shape: tuple[int, int]
) -> DecorrelationFilter:
    """Return the decorrelation filter of a difference image.

    Parameters
    ----------
    kappa : `numpy.ndarray`
        Matching kernel image (unnormalized).
    svar, tvar : `float`
        Mean variances of the unconvolved and of the convolved image.
    shape : `tuple` [`int`, `int`]
        Frequency-space shape.
    """
    kSum = float(np.sum(kappa))
    kft = np.fft.fft2(padCenterOriginArray(np.asarray(kappa, dtype=float), shape))
    kftAbsSq = np.abs(kft) ** 2
    corrft = np.sqrt((svar + tvar * kSum * kSum) / (svar + tvar * kftAbsSq))
    return DecorrelationFilter(corrft=corrft, cnft=corrft.astype(complex), crft=kft * corrft)


def computeScoreCorrection(
    kappa: np.ndarray, svar: float, tvar: float, preConv: np.ndarray, shape: tuple[int, int]
) -> DecorrelationFilter:
    """Return the decorrelation filter of a score (pre-convolved) difference image.

    Parameters
    ----------
    kappa : `numpy.ndarray`
        Kernel matching the template to the pre-convolved science image.
    svar, tvar : `float`
        Mean variances of the science image (before pre-convolution) and of
        the template.
    preConv : `numpy.ndarray`
        Pre-convolution kernel (unit sum).
    shape : `tuple` [`int`, `int`]
        Frequency-space shape.
    """
    kSum = float(np.sum(kappa))
    kft = np.fft.fft2(padCenterOriginArray(np.asarray(kappa, dtype=float), shape))
    preFt = np.fft.fft2(padCenterOriginArray(np.asarray(preConv, dtype=float), shape))
    preFtAbsSq = np.abs(preFt) ** 2
    tiny = np.finfo(float).tiny * 1000.0
    preFtAbsSq[preFtAbsSq < tiny] = tiny
    corrft = (svar + tvar * kSum * kSum) / (svar + tvar * np.abs(kft) ** 2 / preFtAbsSq)
    return DecorrelationFilter(corrft=corrft, cnft=np.conj(preFt) * corrft, crft=kft * corrft)


def filterKernel(ft: np.ndarray, halfSize: tuple[int, int] | None = None) -> np.ndarray:
    """Return the real-space kernel of a filter, centred, with odd sides.

    Parameters
    ----------
    ft : `numpy.ndarray`
        Filter on an FFT grid (origin at index 0).
    halfSize : `tuple` [`int`, `int`], optional
        Half-sizes ``(ry, rx)`` of the returned kernel; default the largest
        that fits the grid.

    Returns
    -------
    kernel : `numpy.ndarray`
        ``(2 ry + 1, 2 rx + 1)`` real kernel; element ``[ry + j, rx + i]`` is
        the filter's impulse response at offset ``(i, j)``.
    """
    ny, nx = ft.shape
    ry, rx = halfSize if halfSize is not None else ((ny - 1) // 2, (nx - 1) // 2)
    ry, rx = min(ry, (ny - 1) // 2), min(rx, (nx - 1) // 2)
    impulse = np.real(np.fft.ifft2(ft))
    return padCenterOriginArray(impulse, (2 * ry + 1, 2 * rx + 1), useInverse=True)


def applyFilterKernel(
    plane: np.ndarray,
    kernel: np.ndarray,
    fill: float | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Convolve a plane with a centred odd kernel, keeping its shape.

    The plane is taken as zero outside its bounds (as a zero-padded FFT
    would); non-finite pixels are replaced by ``fill`` (default: the mean of
    the finite ones) for the convolution and restored afterwards (NaN stays
    NaN, infinities stay infinite).

    Parameters
    ----------
    plane : `numpy.ndarray`
        2-d input.
    kernel : `numpy.ndarray`
        ``(2 ry + 1, 2 rx + 1)`` kernel, as returned by `filterKernel`.
    fill : `float`, optional
        Value of non-finite pixels during the convolution.
    out : `numpy.ndarray`, optional
        float32 output array (may be ``plane`` itself).

    Returns
    -------
    result : `numpy.ndarray`
        float32 array of ``plane``'s shape.
    """
    kh, kw = kernel.shape
    ry, rx = kh // 2, kw // 2
    data = np.asarray(plane, dtype=np.float32)
    finite = np.isfinite(data)
    allFinite = bool(finite.all())
    isNan = isInf = None
    if not allFinite:
        isNan = np.isnan(data)
        isInf = np.isinf(data)
        value = float(np.mean(data[finite])) if fill is None and finite.any() else (fill or 0.0)
        data = np.where(finite, data, np.float32(value))
    padded = np.pad(data, ((ry, ry), (rx, rx)))
    # correlateFixed correlates; flip the kernel to convolve.
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    result = correlateFixed(padded, flipped, dtype=np.float32, out=None)
    if out is None:
        out = result
    else:
        out[...] = result
    if not allFinite:
        out[isNan] = np.nan
        out[isInf] = np.inf
    return out
