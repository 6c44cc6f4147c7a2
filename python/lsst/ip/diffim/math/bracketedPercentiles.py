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
"""Percentiles of a large array from the few values around the wanted ranks.

`numpy.percentile` partitions the whole array, about 0.3 s for the three
quartiles of 16 million float32 values.  `bracketedPercentiles` returns
the same numbers (bit for bit: the same order statistics, combined with
numpy's linear-interpolation formula) by partitioning only the values
between two bounds per wanted rank, found on an evenly spaced subsample of
the array: a few comparison passes instead of a selection over everything.
When a bound misses (it cannot on a subsample of 65536 values but for a
degenerate order), the whole array is partitioned as numpy does.
"""

from __future__ import annotations

__all__ = ["bracketedPercentiles"]

import math
from collections.abc import Sequence

import numpy as np

#: Values in the subsample the bounds are taken from.
SAMPLE_SIZE = 1 << 16

#: Values compared at a time (a few hundred kB: in the cache).
_CHUNK = 1 << 16


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Interpolate linearly between order statistics as numpy does (exact near either end)."""
    diff = b - a
    out = np.add(a, diff * t)
    np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5)
    return out


def _ranksOf(n: int, percents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks below and above each percentile's virtual index and the weight of the upper one (numpy's)."""
    virtual = (n - 1) * np.true_divide(percents, 100)
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = n - 1
    following[above] = n - 1
    below = virtual < 0
    previous[below] = 0
    following[below] = 0
    # numpy weighs with the index of the last element as -1 above the range; the values are equal there.
    weightBase = np.where(above, -1.0, previous)
    return previous.astype(np.intp), following.astype(np.intp), np.asarray(virtual - weightBase)


def bracketedPercentiles(
    values: np.ndarray, percents: Sequence[float], sampleSize: int = SAMPLE_SIZE
) -> np.ndarray:
    """Return ``numpy.percentile(values, percents)`` (linear method) of a 1-d array.

    Parameters
    ----------
    values : `numpy.ndarray`
        1-d array; not modified.  Arrays with NaNs, of integers, or of
        fewer than 16 times ``sampleSize`` values are handed to
        `numpy.percentile`.
    percents : sequence of `float`
        Percentiles, between 0 and 100.
    sampleSize : `int`, optional
        Values of the subsample the bounds come from.

    Returns
    -------
    result : `numpy.ndarray`
        Float64 percentiles, one per entry of ``percents``.
    """
    values = np.asarray(values)
    q = np.asarray(percents, dtype=float)
    n = values.size
    if (
        values.ndim != 1
        or values.dtype.kind != "f"
        or n < 16 * sampleSize
        or not ((q >= 0) & (q <= 100)).all()
        or np.isnan(values).any()
    ):
        return np.asarray(np.percentile(values, q), dtype=float)
    previous, following, gamma = _ranksOf(n, q)
    step = n // sampleSize
    sample = values[::step].copy()
    m = sample.size
    # The rank in the sample of a value of rank r is about r * m / n, within a few sqrt(m) / 2.
    margin = 8 * math.isqrt(m) + 2
    ranks = np.unique(np.concatenate([previous, following]))
    clusters: list[list[int]] = []
    for r in ranks.tolist():
        if clusters and (r - clusters[-1][-1]) * m < 4 * margin * n:
            clusters[-1].append(r)
        else:
            clusters.append([r])
    bounds = []
    for cluster in clusters:
        lo = max(0, (cluster[0] * m) // n - margin)
        hi = min(m - 1, -(-(cluster[-1] * m) // n) + margin)
        bounds.append((lo, hi))
    sample.partition(sorted({k for pair in bounds for k in pair}))
    lows = [sample[lo] if lo > 0 else -np.inf for lo, _ in bounds]
    highs = [sample[hi] if hi < m - 1 else np.inf for _, hi in bounds]
    nBelow = [0] * len(clusters)
    pieces: list[list[np.ndarray]] = [[] for _ in clusters]
    # In chunks that stay in the cache: a comparison pass per bound over each chunk.
    flags = np.empty(min(n, _CHUNK), dtype=bool)
    above = np.empty(min(n, _CHUNK), dtype=bool)
    for start in range(0, n, _CHUNK):
        chunk = values[start : start + _CHUNK]
        f, g = flags[: chunk.size], above[: chunk.size]
        for k, (low, high) in enumerate(zip(lows, highs, strict=True)):
            np.less(chunk, low, out=f)
            nBelow[k] += int(np.count_nonzero(f))
            np.logical_not(f, out=f)
            np.less_equal(chunk, high, out=g)
            f &= g
            pieces[k].append(chunk[f])
    found: dict[int, float] = {}
    for k, cluster in enumerate(clusters):
        selected = np.concatenate(pieces[k])
        if not (nBelow[k] <= cluster[0] and cluster[-1] < nBelow[k] + selected.size):
            return np.asarray(np.percentile(values, q), dtype=float)
        selected.partition([r - nBelow[k] for r in cluster])
        for r in cluster:
            found[r] = selected[r - nBelow[k]]
    a = np.array([found[r] for r in previous.tolist()], dtype=values.dtype)
    b = np.array([found[r] for r in following.tolist()], dtype=values.dtype)
    return np.asarray(_lerp(a, b, gamma), dtype=float)
