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
"""The variance of a convolved image whose input noise is correlated between neighbouring pixels.

A variance plane propagated through a convolution as ``K^2 * var`` assumes
that the noise of the input pixels is independent.  Resampled, drizzled or
coadded images have noise correlated over a pixel or two (the DECam stamps,
resampled by SWarp with LANCZOS3, have a correlation of 0.18 and 0.24
between horizontal and vertical neighbours).  Convolved with a kernel
``K``, noise of correlation ``rho`` has the variance

    ``sum_i sum_j K_i K_j rho(i - j) var = var * sum_d A_K(d) rho(d)``,

where ``A_K(d) = sum_i K_i K_{i + d}`` is the autocorrelation of the kernel;
``K^2 * var`` keeps only the ``d = 0`` term.  For a kernel that shifts the
image by a fraction of a pixel the neglected terms are large (19% of the
variance of a 0.7 px shift on the DECam stamps): `convolvedVarianceFactor`
returns the ratio of the two sums, and `noiseCorrelation` measures ``rho``
on the sky pixels of an image.
"""

from __future__ import annotations

__all__ = ["convolvedVarianceFactor", "noiseCorrelation"]

import math

import numpy as np
from scipy import ndimage


def noiseCorrelation(
    image: np.ndarray, sky: np.ndarray, maxLag: int = 2, *, maxSide: int = 1024
) -> np.ndarray | None:
    """Return the correlation coefficients of the noise of an image at small lags.

    Parameters
    ----------
    image : `numpy.ndarray`
        The image.
    sky : `numpy.ndarray`
        Boolean, `True` on the pixels that hold only noise and a smooth
        background (no source, no flagged pixel).
    maxLag : `int`, optional
        Largest lag (pixels) in either direction.
    maxSide : `int`, optional
        The coefficients are measured on the central ``maxSide`` square at
        most (a larger image is represented well by it, and the cost stays
        that of a 1024^2 block).

    Returns
    -------
    rho : `numpy.ndarray` or `None`
        ``(2 maxLag + 1, 2 maxLag + 1)`` coefficients, ``rho[maxLag + dy,
        maxLag + dx]`` for the lag ``(dx, dy)`` (1 at the centre; 0 where
        not significant at 3 sigma); `None` when fewer than 1000 sky pixels
        are usable.
    """
    ny, nx = image.shape
    y0, x0 = max(0, (ny - maxSide) // 2), max(0, (nx - maxSide) // 2)
    block = np.asarray(image[y0 : y0 + maxSide, x0 : x0 + maxSide], dtype=np.float64)
    good = np.asarray(sky[y0 : y0 + maxSide, x0 : x0 + maxSide], dtype=bool) & np.isfinite(block)
    if good.sum() < 1000:
        return None
    values = np.where(good, block, np.nan)
    residual = np.where(good, block - float(np.nanmedian(values)), 0.0)
    # The stars' light is no noise: pixels 5 sigma off the sky (what a source mask left, or all of the
    # sources without one) and their neighbours are left out, then the local sky (the mean over 31 px
    # boxes of the remaining pixels) is removed so that a background gradient adds nothing.
    for step in range(2):
        q25, q75 = np.percentile(residual[good], [25, 75])
        sigma = (q75 - q25) / 1.349
        if not (math.isfinite(sigma) and sigma > 0):
            return None
        good &= ~ndimage.binary_dilation(np.abs(residual) > 5.0 * sigma, iterations=3 - 2 * step)
        if good.sum() < 1000:
            return None
        residual = np.where(good, residual, 0.0)
        if step == 0:
            smooth = ndimage.uniform_filter(residual, 31, mode="nearest")
            weight = ndimage.uniform_filter(good.astype(np.float64), 31, mode="nearest")
            with np.errstate(invalid="ignore", divide="ignore"):
                residual = np.where(good & (weight > 0), residual - smooth / np.maximum(weight, 1e-12), 0.0)
    rho = np.zeros((2 * maxLag + 1, 2 * maxLag + 1))
    h, w = residual.shape
    variance = float(np.sum(residual * residual)) / max(int(good.sum()), 1)
    if variance <= 0:
        return None
    for dy in range(0, maxLag + 1):
        for dx in range(-maxLag, maxLag + 1):
            if dy == 0 and dx < 0:
                continue
            ya, yb = slice(0, h - dy), slice(dy, h)
            xa = slice(max(0, -dx), w - max(0, dx))
            xb = slice(max(0, dx), w - max(0, -dx))
            both = good[ya, xa] & good[yb, xb]
            n = int(both.sum())
            if n < 500:
                continue
            value = float(np.sum(residual[ya, xa] * residual[yb, xb])) / n / variance
            if abs(value) < 3.0 / math.sqrt(n):
                # Not significant (the estimate's noise is 1/sqrt(n)): counted as 0, so that the many
                # lags of a wide kernel do not add up the estimation noise or the faint sources' light.
                value = 0.0
            rho[maxLag + dy, maxLag + dx] = value
            rho[maxLag - dy, maxLag - dx] = value
    rho[maxLag, maxLag] = 1.0
    return rho


def convolvedVarianceFactor(kernel: np.ndarray, rho: np.ndarray) -> float:
    """Return the true variance of a convolved noise field over its ``K^2 * var`` estimate.

    Parameters
    ----------
    kernel : `numpy.ndarray`
        The convolution kernel image.
    rho : `numpy.ndarray`
        Noise correlation coefficients of the input image, as `noiseCorrelation`
        returns (odd square, lag 0 at the centre).

    Returns
    -------
    factor : `float`
        ``sum_d A_K(d) rho(d) / A_K(0)``; 1 for uncorrelated noise.
    """
    k = np.asarray(kernel, dtype=np.float64)
    lag = rho.shape[0] // 2
    zero = float(np.sum(k * k))
    if not (math.isfinite(zero) and zero > 0):
        return 1.0
    h, w = k.shape
    total = 0.0
    for dy in range(-lag, lag + 1):
        for dx in range(-lag, lag + 1):
            r = float(rho[lag + dy, lag + dx])
            if r == 0.0:
                continue
            a = k[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            b = k[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
            total += r * float(np.sum(a * b))
    return total / zero
