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
"""Detection of positive and negative sources on a difference image.

The difference is smoothed with a unit-sum Gaussian of the PSF's width (a
matched filter for point sources) and divided by the noise the variance plane
predicts for the smoothed image, ``sqrt(sum_i k_i^2 var_i)``, computed
exactly by smoothing the variance with ``k^2``.  Pixels above ``+threshold``
and below ``-threshold`` of that significance image are extracted as
isophotal objects by `sep` (no filter, no deblending), then the positive and
negative footprints, each grown by ``grow`` pixels, are merged where a
positive and a negative one overlap: each DIA source is one object, or a
group of objects linked by such overlaps, holding peaks of one or both signs
(a putative dipole).  Objects of one sign are not merged with each other
(there is no deblending either: an object is a connected region above
threshold).

The significance assumes uncorrelated pixel noise: on a difference whose
noise is correlated (a convolved template, not decorrelated) the smoothed
noise is larger than predicted and more noise peaks cross the threshold.
"""

from __future__ import annotations

__all__ = ["DiaFootprints", "detectDiaFootprints", "smoothedSignificance"]

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy import ndimage

from .detection import _extract

#: Gaussian kernels are truncated at this many sigma.
_TRUNCATE = 4.0


@dataclass
class DiaFootprints:
    """The merged footprints of the positive and negative detections.

    Attributes
    ----------
    labels : `numpy.ndarray`
        Image of footprint ids (1 .. n; 0 outside every footprint), array
        indices of the searched image.
    positive, negative : `numpy.ndarray`
        Boolean images of the pixels above ``+threshold`` / below
        ``-threshold`` in detected objects (before growing).
    significance : `numpy.ndarray`
        The smoothed significance image that was thresholded.
    sources : `astropy.table.Table`
        One row per merged footprint: ``id``, ``peakX``, ``peakY`` (array
        indices of the most significant peak), ``peakSignificance``
        (signed), ``nPositive``, ``nNegative`` (objects of each sign merged
        in), ``posPeakX/Y``, ``negPeakX/Y`` (the most significant peak of
        each sign, NaN if none), ``xmin, xmax, ymin, ymax`` (inclusive box)
        and ``npix``.
    nPositive, nNegative : `int`
        Objects detected of each sign before merging.
    noiseScale : `float`
        Factor the significance was divided by (1 unless
        ``thresholdType="stdev"``).
    """

    labels: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    significance: np.ndarray
    sources: Table
    nPositive: int
    nNegative: int
    noiseScale: float = 1.0


def smoothedSignificance(
    image: np.ndarray, variance: np.ndarray, bad: np.ndarray | None, sigma: float, doSmooth: bool = True
) -> np.ndarray:
    """Return the image smoothed by a Gaussian, in units of its predicted noise.

    Parameters
    ----------
    image, variance : `numpy.ndarray`
        Image and its per-pixel variance.
    bad : `numpy.ndarray` or `None`
        Pixels to ignore (set to 0 before smoothing, significance 0).
    sigma : `float`
        Gaussian sigma (pixels) of the smoothing filter.
    doSmooth : `bool`, optional
        If False, return ``image / sqrt(variance)``.

    Returns
    -------
    significance : `numpy.ndarray`
        ``(k * image) / sqrt(k^2 * variance)`` as float32; zero-padded at the
        edges (the noise estimate includes the padding), 0 on bad pixels.
    """
    data = np.asarray(image, dtype=np.float64)
    var = np.asarray(variance, dtype=np.float64)
    good = np.isfinite(data) & np.isfinite(var) & (var > 0)
    if bad is not None:
        good &= ~bad
    if not good.all():
        data = np.where(good, data, 0.0)
        var = np.where(good, var, 0.0)
    if not doSmooth:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(good, data / np.sqrt(var), 0.0)
        return out.astype(np.float32)
    smoothed = ndimage.gaussian_filter(data, sigma, mode="constant", truncate=_TRUNCATE)
    # k^2 of a unit-sum Gaussian k of width sigma is a Gaussian of width
    # sigma/sqrt(2), of sum s2/s1^2 (s1, s2: 1-d sums of the two unnormalized
    # sampled profiles on the same support).
    radius = int(_TRUNCATE * sigma + 0.5)
    r = np.arange(-radius, radius + 1, dtype=float)
    s1 = np.exp(-0.5 * r**2 / sigma**2).sum()
    s2 = np.exp(-(r**2) / sigma**2).sum()
    norm = (s2 / s1**2) ** 2
    sigma2 = sigma / math.sqrt(2.0)
    smoothedVar = ndimage.gaussian_filter(var, sigma2, mode="constant", truncate=radius / sigma2)
    smoothedVar *= norm
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(good & (smoothedVar > 0), smoothed / np.sqrt(smoothedVar), 0.0)
    return out.astype(np.float32)


def _objects(significance: np.ndarray, threshold: float, minPixels: int) -> tuple[np.ndarray, np.ndarray]:
    objects, segmap = _extract(
        np.ascontiguousarray(significance, dtype=np.float32),
        threshold,
        minarea=minPixels,
        filter_kernel=None,
        deblend_cont=1.0,
        clean=False,
        segmentation_map=True,
    )
    return objects, segmap


def detectDiaFootprints(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray | None,
    sigma: float,
    threshold: float = 5.0,
    minPixels: int = 1,
    grow: int = 2,
    polarity: str = "both",
    doSmooth: bool = True,
    thresholdType: str = "pixel_stdev",
) -> DiaFootprints:
    """Detect positive and negative sources and merge their footprints.

    Parameters
    ----------
    image, variance : `numpy.ndarray`
        The difference image and its variance.
    bad : `numpy.ndarray` or `None`
        Pixels excluded from detection.
    sigma : `float`
        Gaussian sigma (pixels) of the smoothing filter (the PSF's).
    threshold : `float`, optional
        Detection threshold in units of the smoothed image's noise.
    minPixels : `int`, optional
        Minimum number of pixels above threshold in an object.
    grow : `int`, optional
        Footprints are grown by this many pixels (square) before merging.
    polarity : `str`, optional
        ``"both"``, ``"positive"`` or ``"negative"``.
    doSmooth : `bool`, optional
        Smooth before thresholding.
    thresholdType : `str`, optional
        ``"pixel_stdev"``: the threshold is in units of the noise the
        variance plane predicts; ``"stdev"``: in units of the measured robust
        standard deviation of that significance image (1.4826 MAD of every
        fourth usable pixel), which absorbs a wrong variance scale and the
        extra noise of correlated pixels.

    Returns
    -------
    footprints : `DiaFootprints`
    """
    significance = smoothedSignificance(image, variance, bad, sigma, doSmooth=doSmooth)
    noiseScale = 1.0
    if thresholdType == "stdev":
        sample = significance[::4, ::4]
        if bad is not None:
            sample = sample[~bad[::4, ::4]]
        sample = sample[sample != 0]
        if sample.size:
            noiseScale = float(1.4826 * np.median(np.abs(sample - np.median(sample))))
        if noiseScale > 0:
            significance = significance / np.float32(noiseScale)
        else:
            noiseScale = 1.0
    elif thresholdType != "pixel_stdev":
        raise ValueError(f"Unknown thresholdType {thresholdType!r}.")
    shape = significance.shape
    posObjects = negObjects = None
    posSeg = np.zeros(shape, dtype=np.int32)
    negSeg = np.zeros(shape, dtype=np.int32)
    if polarity in ("both", "positive"):
        posObjects, posSeg = _objects(significance, threshold, minPixels)
    if polarity in ("both", "negative"):
        negObjects, negSeg = _objects(-significance, threshold, minPixels)
    nPos = 0 if posObjects is None else len(posObjects)
    nNeg = 0 if negObjects is None else len(negObjects)
    groups = _mergeAcrossSigns(posSeg, negSeg, nPos, nNeg, grow)
    labels = _paintFootprints(posSeg, negSeg, groups, nPos, grow)
    n = int(groups.max()) if groups.size else 0
    sources = _footprintTable(labels, n, significance, posObjects, negObjects, groups, nPos)
    return DiaFootprints(
        labels=labels,
        positive=posSeg > 0,
        negative=negSeg > 0,
        significance=significance,
        sources=sources,
        nPositive=nPos,
        nNegative=nNeg,
        noiseScale=noiseScale,
    )


def _mergeAcrossSigns(posSeg: np.ndarray, negSeg: np.ndarray, nPos: int, nNeg: int, grow: int) -> np.ndarray:
    """Return the merged-source id (1..n) of every object (positives first, then negatives).

    A positive and a negative object are merged when their footprints, each
    grown by ``grow`` pixels, overlap (afw's merge of footprint sets);
    objects of one sign are only joined through an object of the other.
    """
    parent = np.arange(nPos + nNeg)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if nPos and nNeg:
        reach = 2 * grow + 1  # grown footprints overlap <=> one grown by 2*grow touches the other
        structure = np.ones((2 * reach - 1, 2 * reach - 1), dtype=bool) if grow > 0 else np.ones((3, 3), bool)
        pad = structure.shape[0] // 2
        ny, nx = negSeg.shape
        for j, box in enumerate(ndimage.find_objects(negSeg, max_label=nNeg)):
            if box is None:
                continue
            ya, yb = max(box[0].start - pad, 0), min(box[0].stop + pad, ny)
            xa, xb = max(box[1].start - pad, 0), min(box[1].stop + pad, nx)
            local = negSeg[ya:yb, xa:xb] == j + 1
            pos = posSeg[ya:yb, xa:xb]
            if not pos.any():
                continue
            near = np.unique(pos[ndimage.binary_dilation(local, structure=structure)])
            for i in near[near > 0]:
                a, b = find(int(i) - 1), find(nPos + j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = np.array([find(i) for i in range(nPos + nNeg)], dtype=np.int64)
    _, groups = np.unique(roots, return_inverse=True)
    return (groups + 1).astype(np.int32)


def _paintFootprints(
    posSeg: np.ndarray, negSeg: np.ndarray, groups: np.ndarray, nPos: int, grow: int
) -> np.ndarray:
    """Return the image of merged-source ids: each object's pixels grown by ``grow``."""
    labels = np.zeros(posSeg.shape, dtype=np.int32)
    lookup = np.concatenate([[0], groups[:nPos]]).astype(np.int32)
    labels[posSeg > 0] = lookup[posSeg[posSeg > 0]]
    lookupNeg = np.concatenate([[0], groups[nPos:]]).astype(np.int32)
    neg = negSeg > 0
    labels[neg] = lookupNeg[negSeg[neg]]
    if grow > 0 and labels.any():
        grown = ndimage.grey_dilation(labels, size=(2 * grow + 1, 2 * grow + 1))
        labels = np.where(labels > 0, labels, grown)
    return labels


def _footprintTable(
    labels: np.ndarray,
    n: int,
    significance: np.ndarray,
    posObjects: np.ndarray | None,
    negObjects: np.ndarray | None,
    groups: np.ndarray,
    nPos: int,
) -> Table:
    table = Table()
    table["id"] = np.arange(1, n + 1, dtype=np.int64)
    counts = {}
    peaks = {}
    for name, objects, sign, ids in (
        ("Positive", posObjects, 1.0, groups[:nPos] - 1),
        ("Negative", negObjects, -1.0, groups[nPos:] - 1),
    ):
        count = np.zeros(n, dtype=np.int64)
        peakX = np.full(n, np.nan)
        peakY = np.full(n, np.nan)
        peakValue = np.zeros(n)
        if objects is not None and len(objects):
            xp = np.asarray(objects["xpeak"], dtype=np.int64)
            yp = np.asarray(objects["ypeak"], dtype=np.int64)
            values = sign * significance[yp, xp]
            np.add.at(count, ids, 1)
            # The most significant peak of this sign in each merged source.
            order = np.argsort(values)
            best = np.full(n, -1, dtype=np.int64)
            best[ids[order]] = order
            has = best >= 0
            peakX[has] = xp[best[has]]
            peakY[has] = yp[best[has]]
            peakValue[has] = values[best[has]]
        counts[name] = count
        peaks[name] = (peakX, peakY, peakValue)
    posX, posY, posV = peaks["Positive"]
    negX, negY, negV = peaks["Negative"]
    usePos = posV >= negV
    table["peakX"] = np.where(usePos, posX, negX)
    table["peakY"] = np.where(usePos, posY, negY)
    table["peakSignificance"] = np.where(usePos, posV, -negV)
    table["nPositive"] = counts["Positive"]
    table["nNegative"] = counts["Negative"]
    table["posPeakX"], table["posPeakY"] = posX, posY
    table["negPeakX"], table["negPeakY"] = negX, negY
    boxes = ndimage.find_objects(labels, max_label=n)
    table["xmin"] = np.array([b[1].start for b in boxes], dtype=np.int64)
    table["xmax"] = np.array([b[1].stop - 1 for b in boxes], dtype=np.int64)
    table["ymin"] = np.array([b[0].start for b in boxes], dtype=np.int64)
    table["ymax"] = np.array([b[0].stop - 1 for b in boxes], dtype=np.int64)
    table["npix"] = np.bincount(labels.ravel(), minlength=n + 1)[1 : n + 1].astype(np.int64)
    return table
