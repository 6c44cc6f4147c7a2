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
"""A binned, interpolated sky-background image (afw.math ``makeBackground``-like)."""

from __future__ import annotations

__all__ = ["binnedBackgroundImage"]

import numpy as np

from .clippedBinLevels import clippedBinLevels, clippedMean

#: Fewest bin centres each interpolation style needs along an axis.
_MIN_POINTS = {"CONSTANT": 1, "LINEAR": 2, "NATURAL_SPLINE": 3, "AKIMA_SPLINE": 5}
_ORDER = ("CONSTANT", "LINEAR", "NATURAL_SPLINE", "AKIMA_SPLINE")


def _binLevel(values: np.ndarray, statistic: str) -> float:
    if values.size == 0:
        return np.nan
    if statistic == "MEAN":
        return float(values.mean())
    if statistic == "MEDIAN":
        return float(np.median(values))
    # MEANCLIP: 3-sigma clipped mean, 3 iterations, sigma from the interquartile range.
    return clippedMean(values)


def _interpolate1d(centres: np.ndarray, levels: np.ndarray, points: np.ndarray, style: str) -> np.ndarray:
    """Interpolate (and extrapolate) ``levels`` at ``centres`` to ``points``."""
    from scipy import interpolate

    if style == "CONSTANT" or centres.size == 1:
        return np.full(points.shape, float(np.mean(levels)))
    if style == "LINEAR":
        return interpolate.interp1d(centres, levels, kind="linear", fill_value="extrapolate")(points)
    if style == "NATURAL_SPLINE":
        return interpolate.CubicSpline(centres, levels, bc_type="natural", extrapolate=True)(points)
    return interpolate.Akima1DInterpolator(centres, levels, extrapolate=True)(points)


def _reduceStyle(style: str, nPoints: int, undersampleStyle: str) -> str:
    if nPoints >= _MIN_POINTS[style]:
        return style
    if undersampleStyle == "THROW_EXCEPTION":
        raise ValueError(f"{nPoints} background bins along an axis are too few for {style} interpolation")
    for candidate in reversed(_ORDER[: _ORDER.index(style)]):
        if nPoints >= _MIN_POINTS[candidate]:
            return candidate
    return "CONSTANT"


def binnedBackgroundImage(
    image: np.ndarray,
    good: np.ndarray,
    binSize: int,
    *,
    statistic: str = "MEANCLIP",
    algorithm: str = "AKIMA_SPLINE",
    undersampleStyle: str = "REDUCE_INTERP_ORDER",
) -> np.ndarray:
    """Return a smooth background image of ``image`` from its ``good`` pixels.

    The image is cut into ``binSize`` x ``binSize`` bins (the last bin of a
    row or column takes the remainder); each bin's level is a statistic of
    its good pixels; bins without good pixels take the level of the nearest
    bin that has some; the grid of levels is interpolated to every pixel,
    first along x in each bin row, then along y in each column (the
    outermost half-bins are extrapolated).

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d image.
    good : `numpy.ndarray`
        Boolean array of the image's shape: pixels that may be used.
    binSize : `int`
        Side of the bins (pixels).
    statistic : `str`, optional
        ``"MEANCLIP"`` (3-sigma clipped mean), ``"MEAN"`` or ``"MEDIAN"``.
    algorithm : `str`, optional
        ``"CONSTANT"``, ``"LINEAR"``, ``"NATURAL_SPLINE"`` or ``"AKIMA_SPLINE"``.
    undersampleStyle : `str`, optional
        With too few bins for ``algorithm``: ``"REDUCE_INTERP_ORDER"`` uses
        the highest order that fits; ``"THROW_EXCEPTION"`` raises
        `ValueError`.

    Returns
    -------
    background : `numpy.ndarray`
        Float64 array of the image's shape; all zeros if no pixel is good.
    """
    ny, nx = image.shape
    if binSize < 1:
        raise ValueError(f"binSize must be positive, not {binSize}")
    good = good & np.isfinite(image)
    if not good.any():
        return np.zeros(image.shape)
    nbx = max(1, nx // binSize)
    nby = max(1, ny // binSize)
    xEdges = np.linspace(0, nx, nbx + 1).round().astype(int)
    yEdges = np.linspace(0, ny, nby + 1).round().astype(int)
    if statistic == "MEANCLIP":  # all bins of a bin row at once, the same numbers as _binLevel's
        levels = clippedBinLevels(image, good, xEdges, yEdges)
    else:
        levels = np.full((nby, nbx), np.nan)
        for j in range(nby):
            for i in range(nbx):
                sub = (slice(yEdges[j], yEdges[j + 1]), slice(xEdges[i], xEdges[i + 1]))
                levels[j, i] = _binLevel(image[sub][good[sub]], statistic)
    empty = ~np.isfinite(levels)
    if empty.any():
        from scipy import ndimage

        _, (iy, ix) = ndimage.distance_transform_edt(empty, return_indices=True)
        levels = levels[iy, ix]
    xCentres = 0.5 * (xEdges[:-1] + xEdges[1:]) - 0.5
    yCentres = 0.5 * (yEdges[:-1] + yEdges[1:]) - 0.5
    xStyle = _reduceStyle(algorithm, nbx, undersampleStyle)
    yStyle = _reduceStyle(algorithm, nby, undersampleStyle)
    xs = np.arange(nx, dtype=float)
    ys = np.arange(ny, dtype=float)
    rows = np.vstack([_interpolate1d(xCentres, levels[j], xs, xStyle) for j in range(nby)])
    if nby == 1 or yStyle == "CONSTANT":
        return np.broadcast_to(rows.mean(axis=0), (ny, nx)).copy()
    from scipy import interpolate

    if yStyle == "LINEAR":
        return interpolate.interp1d(yCentres, rows, axis=0, kind="linear", fill_value="extrapolate")(ys)
    if yStyle == "NATURAL_SPLINE":
        return interpolate.CubicSpline(yCentres, rows, axis=0, bc_type="natural", extrapolate=True)(ys)
    return interpolate.Akima1DInterpolator(yCentres, rows, axis=0, extrapolate=True)(ys)
