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
"""Detection of kernel-candidate stars (in place of meas_algorithms' detection).

The background model comes from `sep`, the SExtractor library (a small,
well-kept compiled package with wheels for every platform).  The objects are
the isophotal ones `sep.extract` finds without deblending, computed by
`lsst.ip.diffim.objectExtraction.extractObjects` on the runs of detected
pixels (identical objects, on all threads, without an image-sized label
array); by default (``splitFootprintsAtPeaks``) each footprint is split
at its peaks (`lsst.ip.diffim.objectExtraction.extractPeaks`), one source
per star even where the footprints of a crowded field merge; with
``deblend`` set, `sep.extract` itself deblends them.  Thresholds
follow the stack's conventions (``pixel_stdev``: in units of each pixel's
sqrt(variance)).
"""

from __future__ import annotations

__all__ = [
    "SourceDetectionConfig",
    "SourceDetectionTask",
    "isolatedSources",
    "makeCenteredBox",
    "selectCandidateFootprints",
]

import math

import numpy as np
import sep
from astropy.table import Table
from scipy.spatial import cKDTree

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import Box, MaskedImage
from lsst.utils.timer import timeMethod

from .kernel.stampStack import StampStack
from .math.convolveImage import correlateFixed
from .math.masks import anyMaskPlaneSet
from .math.statistics import allFinite
from .objectExtraction import extractObjects, extractPeaks


class SourceDetectionConfig(pexConfig.Config):
    """Configuration of kernel-candidate detection."""

    thresholdValue = pexConfig.RangeField(
        dtype=float,
        doc="Detection threshold, in units of thresholdType.",
        default=5.0,
        min=0.0,
    )
    thresholdType = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Units of thresholdValue.",
        default="pixel_stdev",
        allowed={
            "value": "raw pixel value (after background subtraction)",
            "stdev": "standard deviation of the background-subtracted image",
            "variance": "variance of the background-subtracted image",
            "pixel_stdev": "square root of each pixel's variance",
        },
    )
    thresholdPolarity = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Detect positive or negative sources.",
        default="positive",
        allowed={"positive": "positive sources", "negative": "negative sources"},
    )
    minPixels = pexConfig.RangeField(
        dtype=int,
        doc="Minimum number of pixels above threshold in a detection.",
        default=5,
        min=1,
    )
    doSubtractBackground = pexConfig.Field[bool](
        dtype=bool,
        doc="Estimate and subtract a smooth background before detecting.",
        default=True,
    )
    backgroundBinSize = pexConfig.RangeField(
        dtype=int,
        doc="Bin size (pixels) of the background estimate.",
        default=64,
        min=8,
    )
    excludeMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        doc="Pixels with these mask planes are ignored by detection.",
        default=["NO_DATA"],
    )
    saturatedMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        doc="Mask planes flagging a detection as saturated.",
        default=["SAT"],
    )
    deblend = pexConfig.Field[bool](
        dtype=bool,
        doc="Deblend blended detections (sep's multi-threshold deblending).",
        default=False,
    )
    splitFootprintsAtPeaks = pexConfig.Field[bool](
        dtype=bool,
        doc="Return one source per peak of each detected footprint (its pixels shared among its peaks "
        "by proximity), centred on the peak, rather than one per footprint at its centroid. A "
        "deviation from upstream (one source per footprint), which loses every star of a crowded "
        "field whose footprints merge; False restores upstream's behaviour. Ignored with deblend.",
        default=True,
    )
    peakMinSeparation = pexConfig.RangeField(
        dtype=float,
        doc="Peaks of one footprint closer than this (pixels) are merged into the brighter one "
        "(splitFootprintsAtPeaks).",
        default=2.0,
        min=0.0,
    )


class SourceDetectionTask(pipeBase.Task):
    """Detect stars and measure their centroids and fluxes."""

    ConfigClass = SourceDetectionConfig
    _DefaultName = "sourceDetection"
    config: SourceDetectionConfig

    @timeMethod
    def run(
        self, maskedImage: MaskedImage, sigma: float | None = None, doSmooth: bool = True
    ) -> pipeBase.Struct:
        """Detect sources on a masked image.

        Parameters
        ----------
        maskedImage : `lsst.images.MaskedImage`
            Image to search.
        sigma : `float`, optional
            Gaussian sigma (pixels) of the smoothing filter; 1.5 if not given.
        doSmooth : `bool`, optional
            Smooth before thresholding (a matched filter for point sources).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``sources`` : `astropy.table.Table` with ``id, x, y, flux,
            fluxErr, peakValue, snr, npix, xmin, xmax, ymin, ymax`` (parent
            coordinates, inclusive box; ``snr`` the matched-filter
            signal-to-noise of the peak), with ``splitFootprintsAtPeaks``
            one row per peak and ``parent`` (footprint id), ``nPeaks`` (its
            number of peaks), and boolean ``flag_saturated``,
            ``flag_badMask``, ``flag_edge``; ``background`` : the
            `sep.Background` model that was subtracted (``.back()`` is its
            image), or `None`.
        """
        image = np.asarray(maskedImage.image.array, dtype=np.float32)
        variance = np.asarray(maskedImage.variance.array, dtype=np.float32)
        excluded = anyMaskPlaneSet(maskedImage.mask, self.config.excludeMaskPlanes)
        anyBad = not (allFinite(image) and allFinite(variance) and image.size and variance.min() > 0) or (
            excluded is not None and bool(excluded.any())
        )
        if anyBad:
            # bad = not (finite image and finite positive variance) or excluded, built in place.
            bad = np.isfinite(image)
            bad &= variance > 0
            bad &= np.isfinite(variance)
            np.logical_not(bad, out=bad)
            if excluded is not None:
                bad |= excluded
            if bad.all():
                return pipeBase.Struct(sources=_emptyTable(), background=None)
        else:
            bad = np.zeros(image.shape, dtype=bool)
        sample = (slice(None, None, 4), slice(None, None, 4))
        goodSample = image[sample][~bad[sample]]
        if goodSample.size == 0:
            goodSample = image[~bad]
        # The searched image is the input (bad pixels filled) smoothed, minus the
        # background estimated on the unsmoothed input: smoothing commutes with
        # the subtraction and leaves a background smooth on backgroundBinSize
        # scales unchanged, and the input needs no image-sized copy this way.
        base = np.where(bad, np.float32(np.median(goodSample)), image) if anyBad else image
        if self.config.thresholdPolarity == "negative":
            base = np.negative(base)
        base = np.ascontiguousarray(base, dtype=np.float32)
        background = None
        if self.config.doSubtractBackground:
            bw = min(self.config.backgroundBinSize, base.shape[1])
            bh = min(self.config.backgroundBinSize, base.shape[0])
            background = sep.Background(base, mask=bad if anyBad else None, bw=bw, bh=bh)
        if anyBad:
            goodVar = variance[sample][~bad[sample]]
            varFill = np.float32(np.median(goodVar)) if goodVar.size else np.float32(1.0)
            var = np.where(bad, varFill, variance)
        else:
            var = variance
        if doSmooth:
            # Matched filter: smooth with a unit-sum Gaussian k; the noise
            # variance of the smoothed image is var convolved with k^2, taken
            # as sum(k^2) var = var / (4 pi sigma^2) (var locally constant).
            s = 1.5 if sigma is None else float(sigma)
            data = _gaussianSmooth(base, s)
            errScale = 1.0 / (2.0 * math.sqrt(math.pi) * s)
        else:
            data = base.copy() if base is image else base
            errScale = 1.0
        if background is not None:
            background.subfrom(data)
        # The noise of the searched image is errScale * sqrt(var); the
        # extraction takes the variance itself (no image-sized error array).
        ttype = self.config.thresholdType
        value = self.config.thresholdValue
        varArg = None
        if ttype == "pixel_stdev":
            thresh, varArg = value * errScale, np.ascontiguousarray(var, dtype=np.float32)
        elif ttype == "value":
            thresh = value
        else:
            good = data[sample][~bad[sample]]
            std = float(1.4826 * np.median(np.abs(good - np.median(good))))
            thresh = value * std if ttype == "stdev" else value * std * std
        if self.config.deblend:
            objects = _extract(
                data,
                thresh,
                var=varArg,
                mask=bad if anyBad else None,
                minarea=self.config.minPixels,
                filter_kernel=None,
                deblend_cont=0.005,
                clean=False,
            )
        elif self.config.splitFootprintsAtPeaks:
            # The isophotal objects split at their peaks, on all threads.
            objects = extractPeaks(
                data,
                thresh,
                var=varArg,
                mask=bad if anyBad else None,
                minarea=self.config.minPixels,
                minSeparation=self.config.peakMinSeparation,
            )
        else:
            # sep.extract's isophotal objects without deblending, on all threads.
            objects = extractObjects(
                data, thresh, var=varArg, mask=bad if anyBad else None, minarea=self.config.minPixels
            )
        x0, y0 = maskedImage.bbox.x.start, maskedImage.bbox.y.start
        n = len(objects)
        sources = Table()
        sources["id"] = np.arange(1, n + 1, dtype=np.int64)
        sources["x"] = objects["x"] + x0
        sources["y"] = objects["y"] + y0
        sign = -1.0 if self.config.thresholdPolarity == "negative" else 1.0
        sources["flux"] = sign * objects["flux"]
        fluxErr = np.sqrt(objects["npix"]) * errScale * float(np.median(np.sqrt(var[sample])))
        sources["fluxErr"] = fluxErr
        sources["peakValue"] = sign * objects["peak"]
        # Matched-filter signal-to-noise of the peak: its value over the noise of the searched image.
        ny, nx = data.shape
        px = np.clip(np.floor(objects["x"] + 0.5).astype(np.int64), 0, nx - 1)
        py = np.clip(np.floor(objects["y"] + 0.5).astype(np.int64), 0, ny - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            sources["snr"] = objects["peak"] / (errScale * np.sqrt(np.asarray(var[py, px], dtype=float)))
        sources["npix"] = objects["npix"].astype(np.int64)
        sources["xmin"] = objects["xmin"].astype(np.int64) + x0
        sources["xmax"] = objects["xmax"].astype(np.int64) + x0
        sources["ymin"] = objects["ymin"].astype(np.int64) + y0
        sources["ymax"] = objects["ymax"].astype(np.int64) + y0
        if "parent" in objects.dtype.names:
            sources["parent"] = objects["parent"] + 1
            sources["nPeaks"] = objects["nPeaks"]
        sat = anyMaskPlaneSet(maskedImage.mask, self.config.saturatedMaskPlanes)
        boxes = (objects["xmin"], objects["xmax"], objects["ymin"], objects["ymax"])
        flagSat = _anyInBoxes(sat, *boxes) if sat is not None else np.zeros(n, dtype=bool)
        flagBad = _anyInBoxes(bad, *boxes)
        sources["flag_saturated"] = flagSat
        sources["flag_badMask"] = flagBad
        sources["flag_edge"] = (
            (objects["xmin"] == 0)
            | (objects["ymin"] == 0)
            | (objects["xmax"] == nx - 1)
            | (objects["ymax"] == ny - 1)
        )
        self.log.info("Detected %d sources above %.1f (%s)", n, value, ttype)
        return pipeBase.Struct(sources=sources, background=background)


#: sep's default active-pixel stack; raised only when a crowded image needs it
#: (a large stack is paid for in page faults whether it is used or not).
_PIXSTACK = 300_000


def _extract(data: np.ndarray, thresh: float, **kwargs: object) -> np.ndarray:
    """Run `sep.extract`, growing its pixel stack only if the image needs it."""
    pixstack = _PIXSTACK
    while True:
        sep.set_extract_pixstack(pixstack)
        try:
            return sep.extract(data, thresh, **kwargs)
        except Exception as exc:
            if "pixstack" not in str(exc) or pixstack >= data.size:
                raise
            pixstack = min(4 * pixstack, data.size)


def _gaussianSmooth(data: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth with a unit-sum circular Gaussian, truncated at 4 sigma (float32).

    The output keeps the input's shape, the input being extended by
    reflection at its edges.  The interior is the tiled overlap-save engine
    of the full-image convolution (`correlateFixed`) run on the input
    itself; only the four edge strips are padded (no padded copy of the
    whole image is made).
    """
    radius = max(1, math.ceil(4.0 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=float)
    profile = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    kernel = np.outer(profile, profile)
    kernel /= kernel.sum()
    data = np.asarray(data, dtype=np.float32)
    ny, nx = data.shape
    r = radius
    if ny < 3 * r or nx < 3 * r:
        padded = np.pad(data, r, mode="reflect")
        return correlateFixed(padded, kernel, dtype=np.float32)
    out = np.empty((ny, nx), dtype=np.float32)
    correlateFixed(data, kernel, dtype=np.float32, out=out[r : ny - r, r : nx - r])
    # Edge strips: each is the reflected padding of a 3r-wide band of the input.
    top = correlateFixed(np.pad(data[: 3 * r], r, mode="reflect"), kernel, dtype=np.float32)
    out[:r] = top[:r]
    bottom = correlateFixed(np.pad(data[ny - 3 * r :], r, mode="reflect"), kernel, dtype=np.float32)
    out[ny - r :] = bottom[2 * r :]
    left = correlateFixed(np.pad(data[:, : 3 * r], r, mode="reflect"), kernel, dtype=np.float32)
    out[:, :r] = left[:, :r]
    right = correlateFixed(np.pad(data[:, nx - 3 * r :], r, mode="reflect"), kernel, dtype=np.float32)
    out[:, nx - r :] = right[:, 2 * r :]
    return out


def _anyInBoxes(
    flags: np.ndarray, xmin: np.ndarray, xmax: np.ndarray, ymin: np.ndarray, ymax: np.ndarray
) -> np.ndarray:
    """Return, for each inclusive box (array indices), whether any flag is set in it."""
    if len(xmin) == 0 or not flags.any():
        return np.zeros(len(xmin), dtype=bool)
    integral = np.zeros((flags.shape[0] + 1, flags.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(flags, axis=0), axis=1, out=integral[1:, 1:])
    x0 = np.asarray(xmin, dtype=np.int64)
    x1 = np.asarray(xmax, dtype=np.int64) + 1
    y0 = np.asarray(ymin, dtype=np.int64)
    y1 = np.asarray(ymax, dtype=np.int64) + 1
    counts = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return counts > 0


def _emptyTable() -> Table:
    names = ["id", "x", "y", "flux", "fluxErr", "peakValue", "snr", "npix", "xmin", "xmax", "ymin", "ymax"]
    dtypes = [np.int64, float, float, float, float, float, float] + [np.int64] * 5
    table = Table(names=names, dtype=dtypes)
    for flag in ("flag_saturated", "flag_badMask", "flag_edge"):
        table[flag] = np.zeros(0, dtype=bool)
    return table


def makeCenteredBox(xCenter: float, yCenter: float, size: int) -> Box:
    """Return a ``size x size`` box centred on a point, with afw's rounding.

    The corner is ``floor(center - size/2 + 0.5 + 0.5)``, so an odd box is
    centred on the pixel nearest to the point.
    """
    x0 = math.floor(xCenter - size / 2 + 0.5 + 0.5)
    y0 = math.floor(yCenter - size / 2 + 0.5 + 0.5)
    return Box.factory[y0 : y0 + size, x0 : x0 + size]


def selectCandidateFootprints(
    sources: Table,
    templateMI: MaskedImage,
    scienceMI: MaskedImage,
    kernelSize: int,
    *,
    badMaskPlanes: list[str],
    growPix: int,
    mode: str = "shifted",
) -> Table:
    """Return the sources whose stamps are usable, with their stamp boxes.

    Parameters
    ----------
    sources : `astropy.table.Table`
        Rows with ``x`` and ``y`` (parent pixel coordinates).
    templateMI, scienceMI : `lsst.images.MaskedImage`
        The two images (same grid).
    kernelSize : `int`
        Kernel width; stamps must be at least ``kernelSize`` wide.
    badMaskPlanes : `list` [`str`]
        Stamps touching any of these planes in either mask are rejected.
    growPix : `int`
        Stamp half-size: stamps are ``2 growPix + 1`` square.
    mode : `str`, optional
        ``"shifted"``: a stamp crossing the image edge is shifted inside (the
        star is then off-centre); ``"centered"``: such sources are rejected.

    Returns
    -------
    kept : `astropy.table.Table`
        The usable rows, with ``stampXmin, stampXmax, stampYmin, stampYmax``
        (parent coordinates, half-open).
    """
    bbox = scienceMI.bbox
    size = 2 * growPix + 1
    if size < kernelSize or size > bbox.x.size or size > bbox.y.size:
        return sources[:0].copy() if len(sources) else Table(sources, copy=True)
    cx = np.floor(np.asarray(sources["x"], dtype=float) + 0.5).astype(np.int64)
    cy = np.floor(np.asarray(sources["y"], dtype=float) + 0.5).astype(np.int64)
    inside = (cx >= bbox.x.start) & (cx < bbox.x.stop) & (cy >= bbox.y.start) & (cy < bbox.y.stop)
    x0, y0 = cx - growPix, cy - growPix
    if mode == "shifted":
        x0 = np.clip(x0, bbox.x.start, bbox.x.stop - size)
        y0 = np.clip(y0, bbox.y.start, bbox.y.stop - size)
    inside &= (x0 >= bbox.x.start) & (y0 >= bbox.y.start)
    inside &= (x0 + size <= bbox.x.stop) & (y0 + size <= bbox.y.stop)
    candidates = np.flatnonzero(inside)
    # Look only at the stamps' pixels: the flags the kernel fit uses for its stamps.
    stamps = StampStack.fromParents(
        templateMI,
        scienceMI,
        y0[candidates] - bbox.y.start,
        x0[candidates] - bbox.x.start,
        (size, size),
    )
    keep = candidates[stamps.finiteImages & ~stamps.hasBadPixels(badMaskPlanes)]
    boxes = np.stack([x0[keep], x0[keep] + size, y0[keep], y0[keep] + size], axis=1)
    kept = Table(sources[keep], copy=True)
    arr = boxes.astype(np.int64).reshape(-1, 4)
    kept["stampXmin"], kept["stampXmax"] = arr[:, 0], arr[:, 1]
    kept["stampYmin"], kept["stampYmax"] = arr[:, 2], arr[:, 3]
    return kept


def isolatedSources(candidates: Table, sources: Table, *, radius: float, peakRatio: float) -> np.ndarray:
    """Return, for each candidate, whether no bright neighbour lies near it.

    A candidate is isolated unless one of ``sources`` (other than itself:
    farther than half a pixel) lies within ``radius`` pixels with a
    brightness (``peakValue``, else ``flux``) at least ``peakRatio`` times
    the candidate's.  Neighbours flagged saturated always count.  Without a
    brightness column every candidate is isolated.

    Parameters
    ----------
    candidates, sources : `astropy.table.Table`
        Rows with ``x``, ``y`` (parent pixels); ``sources`` holds every
        detection, rejected ones included.
    radius : `float`
        Neighbourhood radius (pixels).
    peakRatio : `float`
        Brightness ratio of a spoiling neighbour.

    Returns
    -------
    isolated : `numpy.ndarray`
        Boolean ``(len(candidates),)``.
    """
    n = len(candidates)
    names = set(candidates.colnames) & set(sources.colnames)
    column = next((c for c in ("peakValue", "flux") if c in names), None)
    if n == 0 or column is None or len(sources) == 0 or radius <= 0:
        return np.ones(n, dtype=bool)
    sx = np.asarray(sources["x"], dtype=float)
    sy = np.asarray(sources["y"], dtype=float)
    sb = np.asarray(sources[column], dtype=float)
    if "flag_saturated" in sources.colnames:
        sb = np.where(np.asarray(sources["flag_saturated"], dtype=bool), np.inf, sb)
    cx = np.asarray(candidates["x"], dtype=float)
    cy = np.asarray(candidates["y"], dtype=float)
    cb = np.asarray(candidates[column], dtype=float)
    pairs = cKDTree(np.stack([cx, cy], axis=1)).sparse_distance_matrix(
        cKDTree(np.stack([sx, sy], axis=1)), radius, output_type="ndarray"
    )
    i, j, distance = pairs["i"], pairs["j"], pairs["v"]
    spoiled = (distance > 0.5) & (sb[j] >= peakRatio * cb[i])
    isolated = np.bincount(i[spoiled], minlength=n) == 0
    return isolated
