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
"""Isophotal object extraction: 8-connected pixels above a threshold.

This is the extraction `sep.extract` performs without a filter, without
deblending and without cleaning, computed on the runs of detected pixels
rather than on the image: each row's runs come from a threaded threshold
pass over bands of rows, runs touching in consecutive rows (including
diagonally) are joined with a sparse connected-components search, and the
measurements are sums over the detected pixels only.  No image-sized label
array is made, and the only image-sized work (the threshold) runs on all
threads.
"""

from __future__ import annotations

__all__ = ["OBJECT_DTYPE", "PEAK_DTYPE", "detectedPixels", "extractObjects", "extractPeaks"]

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .threads import forEachRowBand

#: Fields of the extracted objects (sep's names; inclusive bounding boxes).
OBJECT_DTYPE = np.dtype(
    [
        ("x", np.float64),
        ("y", np.float64),
        ("flux", np.float64),
        ("peak", np.float64),
        ("npix", np.int64),
        ("xmin", np.int64),
        ("xmax", np.int64),
        ("ymin", np.int64),
        ("ymax", np.int64),
    ]
)


def _runs(
    data: np.ndarray, thresh: float, var: np.ndarray | None, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the runs of detected pixels ``(row, first, last)`` in raster order."""
    ny, nx = data.shape
    bands: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    threshold = np.float32(thresh)

    def band(rows: slice) -> None:
        block = data[rows]
        if var is None:
            above = block > threshold
        else:
            # Relative threshold: thresh * sqrt(var) at each pixel.
            limit = np.sqrt(var[rows], dtype=np.float32)
            limit *= threshold
            above = block > limit
        if mask is not None:
            above &= ~mask[rows]
        # Run edges: +1 where a run starts, -1 one past where it ends.
        edges = np.diff(above.view(np.int8), axis=1, prepend=0, append=0)
        startRow, startCol = np.nonzero(edges == 1)
        _, stopCol = np.nonzero(edges == -1)
        bands[rows.start] = (startRow + rows.start, startCol, stopCol - 1)

    forEachRowBand(ny, band, rowsPerBand=32)
    parts = [bands[k] for k in sorted(bands)]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    rowIndex, startCols, stopCols = (np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(3))
    return rowIndex, startCols, stopCols


def _joinRuns(row: np.ndarray, first: np.ndarray, last: np.ndarray, width: int) -> np.ndarray:
    """Return the object index of every run (runs touching in consecutive rows are one object)."""
    n = len(row)
    stride = width + 2  # keys of different rows never interleave
    endKey = row * stride + last
    startKey = row * stride + first
    # Runs of row r - 1 touching run q of row r: last >= first_q - 1 and first <= last_q + 1;
    # both bounds are monotonic within a row, so the touching runs are a contiguous range.
    lo = np.searchsorted(endKey, (row - 1) * stride + first - 1, side="left")
    hi = np.searchsorted(startKey, (row - 1) * stride + last + 1, side="right")
    hi = np.maximum(hi, lo)
    counts = hi - lo
    q = np.repeat(np.arange(n), counts)
    p = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    graph = scipy.sparse.coo_matrix((np.ones(len(q), dtype=np.int8), (q, p)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return labels


#: Fields of the peaks of the extracted objects (`extractPeaks`).
PEAK_DTYPE = np.dtype(OBJECT_DTYPE.descr + [("parent", np.int64), ("nPeaks", np.int64)])


def detectedPixels(
    data: np.ndarray, thresh: float, var: np.ndarray | None, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the runs' object labels and every detected pixel in raster order.

    Parameters
    ----------
    data : `numpy.ndarray`
        Finite ``(ny, nx)`` image.
    thresh : `float`
        Threshold: absolute, or relative to ``sqrt(var)`` if ``var`` is given.
    var : `numpy.ndarray` or `None`
        Per-pixel variance of ``data``.
    mask : `numpy.ndarray` or `None`
        Boolean; `True` pixels are never detected.

    Returns
    -------
    labels : `numpy.ndarray`
        Object label of each run of pixels above the threshold.
    rows, cols, pixelLabels : `numpy.ndarray`
        Row, column and object label of every detected pixel (8-neighbour
        connectivity).
    """
    row, first, last = _runs(data, thresh, var, mask)
    if len(row) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    labels = _joinRuns(row, first, last, data.shape[1])
    lengths = last - first + 1
    runOfPixel = np.repeat(np.arange(len(row)), lengths)
    cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + first[runOfPixel]
    return labels, row[runOfPixel], cols, labels[runOfPixel]


def extractPeaks(
    data: np.ndarray,
    thresh: float,
    var: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    minarea: int = 5,
    minSeparation: float = 2.0,
) -> np.ndarray:
    """Extract the isophotal objects of an image split at their peaks.

    The objects are those of `extractObjects`; each local maximum of
    ``data`` inside an object (a detected pixel not below any of its 8
    neighbours, ties going to the first in raster order) becomes one
    record, after dropping the fainter of two peaks closer than
    ``minSeparation`` pixels.  The detected pixels of an object are shared
    among its peaks by proximity (each goes to its nearest peak), which
    gives every peak its pixel count, flux and bounding box.

    Parameters
    ----------
    data, thresh, var, mask, minarea
        As `extractObjects`.
    minSeparation : `float`, optional
        Peaks closer than this (pixels) are merged into the brighter one.

    Returns
    -------
    peaks : `numpy.ndarray`
        Structured array of `PEAK_DTYPE`: position ``x``, ``y`` (the peak
        pixel refined by a parabola through it and its neighbours along
        each axis), ``flux`` (sum of ``data`` over the peak's share of the
        object), ``peak`` (the peak value), ``npix`` and inclusive box of
        the share, index ``parent`` of the object (in `extractObjects`
        order) and its number of peaks ``nPeaks``.  Sorted by parent, then
        by decreasing peak value.
    """
    data = np.asarray(data, dtype=np.float32)
    ny, nx = data.shape
    labels, rows, cols, obj = detectedPixels(data, thresh, var, mask)
    if len(rows) == 0:
        return np.zeros(0, dtype=PEAK_DTYPE)
    # Objects kept by extractObjects (minarea), in its order: label -> parent index.
    nObj = int(labels.max()) + 1
    npix = np.bincount(obj, minlength=nObj)
    lastPixel = np.zeros(nObj, dtype=np.int64)
    np.maximum.at(lastPixel, obj, rows * nx + cols)
    keep = np.flatnonzero(npix >= minarea)
    keep = keep[np.argsort(lastPixel[keep], kind="stable")]
    parentOf = np.full(nObj, -1, dtype=np.int64)
    parentOf[keep] = np.arange(len(keep))
    use = parentOf[obj] >= 0
    if not use.any():
        return np.zeros(0, dtype=PEAK_DTYPE)
    rows, cols, obj = rows[use], cols[use], parentOf[obj[use]]
    values = data[rows, cols]
    # Local maxima among the 8 neighbours; ties go to the first pixel in raster order.  The
    # row neighbours are compared first, the other six only for the pixels that pass.
    pk = np.arange(len(rows))
    for dy, dx in ((0, -1), (0, 1), (-1, -1), (-1, 0), (-1, 1), (1, -1), (1, 0), (1, 1)):
        r, c = rows[pk] + dy, cols[pk] + dx
        inside = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
        neighbour = np.full(len(pk), -np.inf, dtype=np.float32)
        neighbour[inside] = data[r[inside], c[inside]]
        earlier = dy < 0 or (dy == 0 and dx < 0)
        v = values[pk]
        pk = pk[(v > neighbour) if earlier else (v >= neighbour)]
    # Merge close peaks into the brighter one (brightest first).
    pk = pk[np.argsort(-values[pk], kind="stable")]
    if len(pk) > 1 and minSeparation > 0:
        tree = cKDTree(np.stack([cols[pk], rows[pk]], axis=1).astype(float))
        alive = np.ones(len(pk), dtype=bool)
        for i, j in sorted(tree.query_pairs(minSeparation, output_type="ndarray").tolist()):
            # i < j: i is the brighter (sorted); j goes if i is still alive.
            if alive[i] and alive[j] and obj[pk[i]] == obj[pk[j]]:
                alive[j] = False
        pk = pk[alive]
    # Objects with no surviving peak (impossible for finite data) keep their brightest pixel.
    missing = np.setdiff1d(np.arange(len(keep)), obj[pk])
    if len(missing):
        order = np.lexsort((-values, obj))
        firstOf = np.searchsorted(obj[order], missing)
        pk = np.concatenate([pk, order[firstOf]])
    pk = pk[np.lexsort((-values[pk], obj[pk]))]
    peakObj = obj[pk]
    nPeaks = np.bincount(peakObj, minlength=len(keep))
    # Share the pixels of multi-peak objects by proximity to their peaks.
    owner = np.searchsorted(peakObj, obj)  # the first (brightest) peak of each pixel's object
    multi = nPeaks[obj] > 1
    if multi.any():
        mp = np.flatnonzero(nPeaks[peakObj] > 1)
        tree = cKDTree(np.stack([cols[pk[mp]], rows[pk[mp]]], axis=1).astype(float))
        # A few nearest peaks, the nearest of the pixel's own object wins.
        k = min(4, len(mp))
        _, idx = tree.query(np.stack([cols[multi], rows[multi]], axis=1).astype(float), k=k)
        idx = np.asarray(idx).reshape(-1, k)
        cand = mp[idx]
        same = peakObj[cand] == obj[multi][:, None]
        choice = np.where(same.any(axis=1), cand[np.arange(len(cand)), np.argmax(same, axis=1)], -1)
        owner[multi] = np.where(choice >= 0, choice, owner[multi])
    nOut = len(pk)
    out = np.empty(nOut, dtype=PEAK_DTYPE)
    out["npix"] = np.bincount(owner, minlength=nOut)
    out["flux"] = np.bincount(owner, weights=values.astype(np.float64), minlength=nOut)
    for name, source, fn in (
        ("xmin", cols, np.minimum),
        ("xmax", cols, np.maximum),
        ("ymin", rows, np.minimum),
        ("ymax", rows, np.maximum),
    ):
        column = np.full(nOut, nx + ny if fn is np.minimum else -1, dtype=np.int64)
        fn.at(column, owner, source)
        out[name] = column
    pr, pc = rows[pk], cols[pk]
    out["peak"] = values[pk]
    out["x"] = pc + _parabolaOffset(data, pr, pc, 0, 1)
    out["y"] = pr + _parabolaOffset(data, pr, pc, 1, 0)
    out["parent"] = peakObj
    out["nPeaks"] = nPeaks[peakObj]
    return out


def _parabolaOffset(data: np.ndarray, r: np.ndarray, c: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Sub-pixel offset of a maximum along one axis, from a parabola through 3 pixels."""
    ny, nx = data.shape
    inside = (r - dy >= 0) & (r + dy < ny) & (c - dx >= 0) & (c + dx < nx)
    offset = np.zeros(len(r))
    ri, ci = r[inside], c[inside]
    lo = data[ri - dy, ci - dx].astype(np.float64)
    mid = data[ri, ci].astype(np.float64)
    hi = data[ri + dy, ci + dx].astype(np.float64)
    curvature = lo - 2 * mid + hi
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(curvature < 0, 0.5 * (lo - hi) / curvature, 0.0)
    offset[inside] = np.clip(np.nan_to_num(step), -0.5, 0.5)
    return offset


def extractObjects(
    data: np.ndarray,
    thresh: float,
    var: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    minarea: int = 5,
) -> np.ndarray:
    """Extract the isophotal objects of an image.

    Parameters
    ----------
    data : `numpy.ndarray`
        Finite ``(ny, nx)`` image (background subtracted, filtered if wanted).
    thresh : `float`
        Detection threshold: absolute, or relative to ``sqrt(var)`` if
        ``var`` is given.
    var : `numpy.ndarray`, optional
        Per-pixel variance of ``data``.
    mask : `numpy.ndarray`, optional
        Boolean ``(ny, nx)``; `True` pixels are never detected.
    minarea : `int`, optional
        Smallest number of pixels of an object.

    Returns
    -------
    objects : `numpy.ndarray`
        Structured array of `OBJECT_DTYPE`: first moments ``x``, ``y`` and
        sum ``flux`` of the pixel values, brightest value ``peak``, pixel
        count and inclusive bounding box (array indices).  Objects are in
        the order a raster scan completes them (by the position of their
        last pixel), as `sep.extract` returns them.
    """
    data = np.asarray(data, dtype=np.float32)
    nx = data.shape[1]
    row, first, last = _runs(data, thresh, var, mask)
    if len(row) == 0:
        return np.zeros(0, dtype=OBJECT_DTYPE)
    labels = _joinRuns(row, first, last, nx)
    # Every detected pixel, in raster order, with its object.
    lengths = last - first + 1
    runOfPixel = np.repeat(np.arange(len(row)), lengths)
    cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + first[runOfPixel]
    rows = row[runOfPixel]
    obj = labels[runOfPixel]
    values = data[rows, cols].astype(np.float64)
    nObj = int(labels.max()) + 1
    npix = np.bincount(obj, minlength=nObj)
    flux = np.bincount(obj, weights=values, minlength=nObj)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.bincount(obj, weights=values * cols, minlength=nObj) / flux
        y = np.bincount(obj, weights=values * rows, minlength=nObj) / flux
    # Pixels grouped by object, raster order kept within each object.
    order = np.argsort(obj, kind="stable")
    starts = np.cumsum(npix) - npix
    peak = np.maximum.reduceat(values[order], starts)
    raster = (rows * nx + cols)[order]
    firstPixel, lastPixel = raster[starts], raster[starts + npix - 1]
    xmin = np.full(nObj, nx, dtype=np.int64)
    np.minimum.at(xmin, labels, first)
    xmax = np.full(nObj, -1, dtype=np.int64)
    np.maximum.at(xmax, labels, last)
    keep = np.flatnonzero(npix >= minarea)
    keep = keep[np.argsort(lastPixel[keep], kind="stable")]
    out = np.empty(len(keep), dtype=OBJECT_DTYPE)
    columns = {
        "x": x,
        "y": y,
        "flux": flux,
        "peak": peak,
        "npix": npix,
        "xmin": xmin,
        "xmax": xmax,
        # An object's first and last pixels in raster order lie on its first and last rows.
        "ymin": firstPixel // nx,
        "ymax": lastPixel // nx,
    }
    for name, column in columns.items():
        out[name] = column[keep]
    return out
