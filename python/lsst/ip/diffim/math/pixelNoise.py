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
"""Pixel-to-pixel noise: robust variance of the differences of neighbouring pixels.

The scatter of the pixel values of an image measures its noise only where
the image holds nothing but noise and a smooth background.  In a crowded
field the stars too faint to be detected add a signal that is smooth on the
scale of the PSF: it inflates the scatter of the pixels, but hardly the
difference between two neighbouring pixels.  For uncorrelated noise of
variance ``v``, ``(p[i] - p[i + lag]) / sqrt(2)`` has variance ``v`` at any
lag; for noise correlated over a pixel or two (resampled, drizzled or
coadded images) the lag-1 difference is smaller, and the lag-2 one is close
to ``v`` again.  A smooth signal adds to the lag-``n`` difference about
``n**2`` times what it adds at lag 1.
"""

from __future__ import annotations

__all__ = ["MAX_PAIRS", "neighbourDifferenceVariance"]

import numpy as np

#: At most this many pixel pairs per direction enter the percentiles (a regular subsample beyond).
MAX_PAIRS = 2_000_000


def _pairs(values: np.ndarray, good: np.ndarray, lag: int, axis: int) -> np.ndarray:
    n = values.shape[axis]
    if n <= lag:
        return np.zeros(0, dtype=np.float64)
    head = [slice(None), slice(None)]
    tail = [slice(None), slice(None)]
    head[axis] = slice(0, n - lag)
    tail[axis] = slice(lag, n)
    both = good[tuple(head)] & good[tuple(tail)]
    diff = values[tuple(tail)][both] - values[tuple(head)][both]
    if diff.size > MAX_PAIRS:
        diff = diff[:: int(np.ceil(diff.size / MAX_PAIRS))]
    return diff.astype(np.float64, copy=False)


def neighbourDifferenceVariance(
    values: np.ndarray, good: np.ndarray, lag: int = 1, iqrToSigma: float = 1.0 / 1.349
) -> tuple[float, int]:
    """Return the robust variance of neighbour differences of ``values``.

    Parameters
    ----------
    values : `numpy.ndarray`
        2-d image (typically ``image / sqrt(variance)``, so that the result
        is a variance scale factor).
    good : `numpy.ndarray`
        Boolean array of ``values``' shape: a pair enters only if both of
        its pixels are good.
    lag : `int`, optional
        Distance (pixels) between the two pixels of a pair, along rows and
        along columns.
    iqrToSigma : `float`, optional
        Ratio of the standard deviation to the interquartile range assumed
        (1/1.349 for a Gaussian).

    Returns
    -------
    variance : `float`
        ``(iqrToSigma * IQR(d))**2 / 2`` over the differences ``d`` of all
        pairs of good pixels ``lag`` apart (NaN with fewer than 10 pairs).
    nPairs : `int`
        The number of pairs found.

    Raises
    ------
    ValueError
        If ``lag`` is not positive or the arrays are not 2-d of one shape.
    """
    values = np.asarray(values)
    good = np.asarray(good, dtype=bool)
    if lag < 1:
        raise ValueError(f"lag must be a positive number of pixels, not {lag}")
    if values.ndim != 2 or values.shape != good.shape:
        raise ValueError(f"values {values.shape} and good {good.shape} must be 2-d of one shape")
    good = good & np.isfinite(values)
    diffs = np.concatenate([_pairs(values, good, lag, axis) for axis in (0, 1)])
    if diffs.size < 10:
        return float("nan"), int(diffs.size)
    q1, q3 = np.percentile(diffs, (25.0, 75.0))
    return float((iqrToSigma * (q3 - q1)) ** 2 / 2.0), int(diffs.size)
