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
"""Robust statistics with afw.math.Statistics semantics.

Only the pieces ip_diffim relies on: NaN-safe MEAN, STDEV, MEDIAN, MIN,
MAX, NPOINT and the iterative sigma-clipped MEANCLIP, STDEVCLIP and
VARIANCECLIP.
"""

from __future__ import annotations

__all__ = [
    "Property",
    "Statistics",
    "StatisticsControl",
    "allFinite",
    "clippedMeanStd",
    "makeStatistics",
]

import enum
import math
from dataclasses import dataclass

import numpy as np

#: IQR -> Gaussian sigma (1 / (2 * 0.6744897...)).
_IQ_TO_STDEV = 0.741301109252802


def allFinite(plane: np.ndarray) -> bool:
    """Whether every pixel is finite, without an image-sized temporary.

    A sum with a non-finite term is not finite, so a finite sum in the
    plane's own type (the fastest pass, a third of a float64 one for
    float32) answers yes.  A float64 sum of finite float32 (or smaller)
    values cannot overflow, so it is finite exactly when all the values
    are; wider types are tested pixel by pixel if the sum is not finite.
    """
    if plane.size == 0 or plane.dtype.kind not in "fc":
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(plane, axis=None)):
            return True
    if plane.dtype.kind == "f" and plane.dtype.itemsize < 8 and np.isfinite(np.sum(plane, dtype=np.float64)):
        return True
    return bool(np.isfinite(plane).all())


class Property(enum.IntFlag):
    """Statistics that `makeStatistics` can compute."""

    NPOINT = 0x1
    MEAN = 0x2
    STDEV = 0x4
    VARIANCE = 0x8
    MEDIAN = 0x10
    IQRANGE = 0x20
    MEANCLIP = 0x40
    STDEVCLIP = 0x80
    VARIANCECLIP = 0x100
    MIN = 0x200
    MAX = 0x400
    SUM = 0x800


@dataclass
class StatisticsControl:
    """Parameters of the clipped statistics (afw defaults)."""

    numSigmaClip: float = 3.0
    numIter: int = 3


def _quantile(sorted_values: np.ndarray, q: float) -> float:
    n = sorted_values.size
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def clippedMeanStd(
    values: np.ndarray, numSigmaClip: float = 3.0, numIter: int = 3
) -> tuple[float, float, int]:
    """Return afw's MEANCLIP, STDEVCLIP and NPOINT of the finite values.

    Parameters
    ----------
    values : array-like
        Data; non-finite values are ignored.
    numSigmaClip : `float`, optional
        Clipping threshold in standard deviations.
    numIter : `int`, optional
        Number of clipping iterations.

    Returns
    -------
    mean, std : `float`
        Clipped mean and standard deviation (unbiased variance); NaN when
        fewer than one (mean) or two (std) points survive.
    npoint : `int`
        Number of finite input values.

    Notes
    -----
    The first pass clips at ``numSigmaClip * 0.7413 * IQR`` about the median;
    later passes clip at ``numSigmaClip * std`` about the previous clipped
    mean.  Points at exactly the threshold are kept.
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return math.nan, math.nan, 0
    s = np.sort(v)
    median = _quantile(s, 0.5)
    iqr = _quantile(s, 0.75) - _quantile(s, 0.25)
    center = median
    halfWidth = numSigmaClip * _IQ_TO_STDEV * iqr
    mean = math.nan
    var = math.nan
    for it in range(numIter):
        if it > 0 and n > 1 and math.isfinite(var):
            center = mean
            halfWidth = numSigmaClip * math.sqrt(max(var, 0.0))
        kept = v[np.abs(v - center) <= halfWidth]
        nk = kept.size
        if nk == 0:
            mean, var = math.nan, math.nan
            break
        mean = float(kept.mean())
        var = float(((kept - mean) ** 2).sum() / (nk - 1)) if nk > 1 else math.nan
    std = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.nan
    return mean, std, n


class Statistics:
    """Result of `makeStatistics`; read values with `getValue`."""

    def __init__(self, values: dict[Property, float]) -> None:
        self._values = values

    def getValue(self, prop: Property | None = None) -> float:
        """Return a computed statistic.

        Raises
        ------
        KeyError
            If ``prop`` was not requested.
        """
        if prop is None:
            if len(self._values) != 1:
                raise KeyError("getValue() without a property needs exactly one requested statistic.")
            return next(iter(self._values.values()))
        return self._values[prop]


def makeStatistics(
    values: np.ndarray,
    flags: Property,
    control: StatisticsControl | None = None,
    *,
    mask: np.ndarray | None = None,
) -> Statistics:
    """Compute NaN-safe statistics of an array.

    Parameters
    ----------
    values : `numpy.ndarray`
        Data.
    flags : `Property`
        The statistics to compute, OR-ed together.
    control : `StatisticsControl`, optional
        Clipping parameters.
    mask : `numpy.ndarray` of `bool`, optional
        `True` for pixels to ignore.

    Returns
    -------
    stats : `Statistics`
    """
    control = control or StatisticsControl()
    v = np.asarray(values, dtype=float)
    if mask is not None:
        v = v[~np.asarray(mask, dtype=bool)]
    v = v.ravel()
    finite = v[np.isfinite(v)]
    n = finite.size
    out: dict[Property, float] = {}
    if flags & Property.NPOINT:
        out[Property.NPOINT] = float(n)
    if flags & Property.SUM:
        out[Property.SUM] = float(finite.sum())
    if flags & Property.MEAN:
        out[Property.MEAN] = float(finite.mean()) if n else math.nan
    if flags & (Property.STDEV | Property.VARIANCE):
        var = float(finite.var(ddof=1)) if n > 1 else math.nan
        if flags & Property.STDEV:
            out[Property.STDEV] = math.sqrt(var) if n > 1 else math.nan
        if flags & Property.VARIANCE:
            out[Property.VARIANCE] = var
    if flags & (Property.MEDIAN | Property.IQRANGE):
        s = np.sort(finite)
        if flags & Property.MEDIAN:
            out[Property.MEDIAN] = _quantile(s, 0.5) if n else math.nan
        if flags & Property.IQRANGE:
            out[Property.IQRANGE] = (_quantile(s, 0.75) - _quantile(s, 0.25)) if n else math.nan
    if flags & Property.MIN:
        out[Property.MIN] = float(finite.min()) if n else math.nan
    if flags & Property.MAX:
        out[Property.MAX] = float(finite.max()) if n else math.nan
    if flags & (Property.MEANCLIP | Property.STDEVCLIP | Property.VARIANCECLIP):
        mean, std, _ = clippedMeanStd(finite, control.numSigmaClip, control.numIter)
        if flags & Property.MEANCLIP:
            out[Property.MEANCLIP] = mean
        if flags & Property.STDEVCLIP:
            out[Property.STDEVCLIP] = std
        if flags & Property.VARIANCECLIP:
            out[Property.VARIANCECLIP] = std * std
    return Statistics(out)
