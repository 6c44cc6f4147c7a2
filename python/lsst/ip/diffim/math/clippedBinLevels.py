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
"""The clipped-mean level of every bin of an image, all bins of a bin row at once.

`clippedMean` is the statistic of one bin: a 3-sigma clipped mean, three
iterations, the centre the median and sigma 0.7413 x the interquartile
range (numpy's linear percentiles).  `clippedBinLevels` gives the same
numbers for every bin of a grid without a Python call per bin and
iteration: the good values of the bins of a bin row are sorted once, row
by row; a clipped set is then a contiguous run of each sorted row (the
condition ``|x - centre| <= 3 sigma`` only depends on the value and is
monotone on either side of the centre), so the medians and quartiles of
every iteration are order statistics of the sorted rows, combined with
numpy's own interpolation formulas.  The final mean is taken over the kept
values in image order with `numpy.mean`, so the levels are bit for bit
those of `clippedMean` (tests/test_clippedBinLevels.py).
"""

from __future__ import annotations

__all__ = ["clippedBinLevels", "clippedMean"]

import numpy as np

#: Clipping iterations, clip width (sigma) and sigma per interquartile range.
_ITERATIONS = 3
_NSIGMA = 3.0
_IQR_TO_SIGMA = 0.7413


def clippedMean(values: np.ndarray) -> float:
    """Return the 3-sigma clipped mean of ``values`` (`numpy.nan` if empty).

    Three iterations; the centre is the median and sigma 0.7413 x the
    interquartile range; the iterations stop early when sigma is zero or
    nothing (or everything) would be clipped.
    """
    if values.size == 0:
        return np.nan
    kept = values
    for _ in range(_ITERATIONS):
        centre = float(np.median(kept))
        q1, q3 = np.percentile(kept, (25.0, 75.0))
        sigma = _IQR_TO_SIGMA * float(q3 - q1)
        if not sigma > 0:
            break
        new = kept[np.abs(kept - centre) <= _NSIGMA * sigma]
        if new.size == kept.size or new.size == 0:
            break
        kept = new
    return float(kept.mean())


def _orderStatistic(s: np.ndarray, rows: np.ndarray, lo: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolation quantile ``q`` of ``s[row, lo:lo + n]`` (numpy's formulas), per row."""
    virtual = (n - 1).astype(float) * q
    previous = np.floor(virtual)
    gamma = virtual - previous
    above = virtual >= n - 1
    iPrev = np.where(above, n - 1, previous.astype(np.intp))
    iNext = np.where(above, n - 1, previous.astype(np.intp) + 1)
    a = s[rows, lo + iPrev]
    b = s[rows, lo + iNext]
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def _median(s: np.ndarray, rows: np.ndarray, lo: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Median of ``s[row, lo:lo + n]`` as `numpy.median` computes it, per row."""
    half = n // 2
    upper = s[rows, lo + half]
    lower = s[rows, lo + np.maximum(half - 1, 0)]
    return np.where(n % 2 == 1, upper, (lower + upper) / 2.0)


def _rowLevels(values: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Clipped means of the rows of ``values`` (bins flattened in image order) over their ``good`` entries."""
    nBins = values.shape[0]
    levels = np.full(nBins, np.nan)
    counts = good.sum(axis=1)
    masked = np.where(good, values, np.nan)
    s = np.sort(masked, axis=1)  # NaNs (not good) sort to the end
    lo = np.zeros(nBins, dtype=np.intp)
    n = counts.astype(np.intp)
    active = n > 0
    columns = np.arange(values.shape[1])
    for _ in range(_ITERATIONS):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        rlo, rn = lo[rows], n[rows]
        centre = _median(s, rows, rlo, rn)
        q1 = _orderStatistic(s, rows, rlo, rn, 0.25)
        q3 = _orderStatistic(s, rows, rlo, rn, 0.75)
        sigma = _IQR_TO_SIGMA * (q3 - q1)
        inside = (columns >= rlo[:, None]) & (columns < (rlo + rn)[:, None])
        with np.errstate(invalid="ignore"):
            keep = (np.abs(s[rows] - centre[:, None]) <= (_NSIGMA * sigma)[:, None]) & inside
        newN = keep.sum(axis=1)
        newLo = np.argmax(keep, axis=1)
        stop = ~(sigma > 0) | (newN == rn) | (newN == 0)
        active[rows[stop]] = False
        go = rows[~stop]
        lo[go] = newLo[~stop]
        n[go] = newN[~stop]
    # The kept values are those between the run's ends (ties go together): average them in image order.
    for k in np.flatnonzero(counts > 0):
        low, high = s[k, lo[k]], s[k, lo[k] + n[k] - 1]
        row = values[k][good[k]]
        levels[k] = float(row[(row >= low) & (row <= high)].mean())
    return levels


def clippedBinLevels(
    image: np.ndarray, good: np.ndarray, xEdges: np.ndarray, yEdges: np.ndarray
) -> np.ndarray:
    """Return the `clippedMean` of the ``good`` pixels of every bin of a grid.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d float image.
    good : `numpy.ndarray`
        Boolean array of the image's shape: the pixels that count.
    xEdges, yEdges : `numpy.ndarray`
        Increasing integer bin edges along x and y (first 0, last the size).

    Returns
    -------
    levels : `numpy.ndarray`
        ``(len(yEdges) - 1, len(xEdges) - 1)`` float64 levels, NaN where a
        bin has no good pixel.
    """
    xEdges = np.asarray(xEdges, dtype=np.intp)
    yEdges = np.asarray(yEdges, dtype=np.intp)
    nbx, nby = xEdges.size - 1, yEdges.size - 1
    levels = np.full((nby, nbx), np.nan)
    widths = np.diff(xEdges)
    for j in range(nby):
        strip = image[yEdges[j] : yEdges[j + 1]]
        goodStrip = good[yEdges[j] : yEdges[j + 1]]
        h = strip.shape[0]
        for width in np.unique(widths):
            bins = np.flatnonzero(widths == width)
            if width == 0 or h == 0:
                continue
            cols = xEdges[bins][:, None] + np.arange(width)
            # (h, nBins, width) -> (nBins, h * width): each bin flattened in image (row-major) order.
            values = strip[:, cols].transpose(1, 0, 2).reshape(bins.size, h * width)
            goodValues = goodStrip[:, cols].transpose(1, 0, 2).reshape(bins.size, h * width)
            levels[j, bins] = _rowLevels(values, goodValues)
    return levels
