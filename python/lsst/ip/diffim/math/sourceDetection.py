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
"""Detection of sources on a masked image: a background, a matched filter, sep's objects.

The primitive behind `lsst.ip.diffim.detection.SourceDetectionTask` (and
the FWHM estimate of images without a PSF), in steps: the pixels to ignore
(`_badPixels`), the searched image (`_searchImage`: bad pixels filled, sign,
`sep` background, Gaussian matched filter), the threshold (`_threshold`),
the objects (`_objects`: sep's isophotal objects computed by
`lsst.ip.diffim.math.objectExtraction`, optionally split at their peaks, or
deblended by `sep.extract`), and the source table with its flags
(`_sourceTable`, `_flagSources`).  Thresholds follow the stack's conventions
(``pixel_stdev``: in units of each pixel's sqrt(variance)).
"""

from __future__ import annotations

__all__ = ["DetectionResult", "DetectionSettings", "anyInBoxes", "detectSources", "sepExtract"]

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import sep
from astropy.table import Table

from lsst.images import MaskedImage

from .masks import anyMaskPlaneSet
from .meshBackground import MeshBackground
from .objectExtraction import extractObjects, extractPeaks
from .overlapSave import correlateFixed
from .statistics import allFinite

#: Every 4th pixel in each direction: the sample of the global medians.
_SAMPLE = (slice(None, None, 4), slice(None, None, 4))


class _DetectionConfig(Protocol):
    """The fields of a ``SourceDetectionConfig`` that `DetectionSettings.fromConfig` reads."""

    @property
    def thresholdValue(self) -> float: ...
    @property
    def thresholdType(self) -> str: ...
    @property
    def thresholdPolarity(self) -> str: ...
    @property
    def minPixels(self) -> int: ...
    @property
    def doSubtractBackground(self) -> bool: ...
    @property
    def backgroundBinSize(self) -> int: ...
    @property
    def excludeMaskPlanes(self) -> Iterable[str]: ...
    @property
    def saturatedMaskPlanes(self) -> Iterable[str]: ...
    @property
    def deblend(self) -> bool: ...
    @property
    def splitFootprintsAtPeaks(self) -> bool: ...
    @property
    def peakMinSeparation(self) -> float: ...


@dataclass(frozen=True)
class DetectionSettings:
    """Options of `detectSources` (the fields of ``SourceDetectionConfig``).

    The defaults are those of the config; see
    `lsst.ip.diffim.detection.SourceDetectionConfig` for each field's
    meaning.
    """

    thresholdValue: float = 5.0
    thresholdType: str = "pixel_stdev"
    thresholdPolarity: str = "positive"
    minPixels: int = 5
    doSubtractBackground: bool = True
    backgroundBinSize: int = 64
    excludeMaskPlanes: tuple[str, ...] = ("NO_DATA",)
    saturatedMaskPlanes: tuple[str, ...] = ("SAT",)
    deblend: bool = False
    splitFootprintsAtPeaks: bool = True
    peakMinSeparation: float = 2.0

    @classmethod
    def fromConfig(cls, config: _DetectionConfig) -> DetectionSettings:
        """Return the settings of a ``SourceDetectionConfig`` (or of any object with its fields)."""
        return cls(
            thresholdValue=float(config.thresholdValue),
            thresholdType=str(config.thresholdType),
            thresholdPolarity=str(config.thresholdPolarity),
            minPixels=int(config.minPixels),
            doSubtractBackground=bool(config.doSubtractBackground),
            backgroundBinSize=int(config.backgroundBinSize),
            excludeMaskPlanes=tuple(config.excludeMaskPlanes),
            saturatedMaskPlanes=tuple(config.saturatedMaskPlanes),
            deblend=bool(config.deblend),
            splitFootprintsAtPeaks=bool(config.splitFootprintsAtPeaks),
            peakMinSeparation=float(config.peakMinSeparation),
        )


@dataclass
class DetectionResult:
    """Sources found by `detectSources`."""

    sources: Table
    """``id, x, y, flux, fluxErr, peakValue, snr, npix, xmin, xmax, ymin,
    ymax`` (parent coordinates, inclusive box), ``parent`` and ``nPeaks``
    with ``splitFootprintsAtPeaks``, and boolean ``flag_saturated``,
    ``flag_badMask``, ``flag_edge``."""
    background: Any
    """The `sep.Background` that was subtracted, or `None`."""
    meshBackground: MeshBackground | None = None
    """The same background with the pixels it left out, for reuse on the
    image (`None` without a background, or one of the negated image)."""


def detectSources(
    maskedImage: MaskedImage,
    settings: DetectionSettings | None = None,
    *,
    sigma: float | None = None,
    doSmooth: bool = True,
) -> DetectionResult:
    """Detect sources on a masked image.

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage`
        Image to search.
    settings : `DetectionSettings`, optional
        Thresholds and options; the config defaults if not given.
    sigma : `float`, optional
        Gaussian sigma (pixels) of the smoothing filter; 1.5 if not given.
    doSmooth : `bool`, optional
        Smooth before thresholding (a matched filter for point sources).

    Returns
    -------
    result : `DetectionResult`
        The sources (see `DetectionResult.sources`; ``snr`` is the
        matched-filter signal-to-noise of the peak) and the background.
    """
    settings = DetectionSettings() if settings is None else settings
    image = np.asarray(maskedImage.image.array, dtype=np.float32)
    variance = np.asarray(maskedImage.variance.array, dtype=np.float32)
    bad, anyBad = _badPixels(image, variance, maskedImage, settings.excludeMaskPlanes)
    if anyBad and bad.all():
        return DetectionResult(sources=_emptyTable(), background=None)
    data, var, errScale, background = _searchImage(image, variance, bad, anyBad, settings, sigma, doSmooth)
    thresh, varArg = _threshold(data, var, bad, errScale, settings)
    objects = _objects(data, thresh, varArg, bad if anyBad else None, settings)
    sign = -1.0 if settings.thresholdPolarity == "negative" else 1.0
    x0, y0 = maskedImage.bbox.x.start, maskedImage.bbox.y.start
    sources = _sourceTable(objects, data.shape, var, errScale, sign, x0, y0)
    _flagSources(sources, objects, maskedImage, bad, settings.saturatedMaskPlanes)
    mesh = None
    box = min(settings.backgroundBinSize, *image.shape)
    if background is not None and sign > 0 and box == settings.backgroundBinSize:
        # The box _searchImage fitted (square unless the image is narrower than a box).
        mesh = MeshBackground(background, box, bad if anyBad else None)
    return DetectionResult(sources=sources, background=background, meshBackground=mesh)


def _badPixels(
    image: np.ndarray, variance: np.ndarray, maskedImage: MaskedImage, excludeMaskPlanes: tuple[str, ...]
) -> tuple[np.ndarray, bool]:
    """Return the pixels detection ignores, and whether there is any.

    A pixel is bad unless its image is finite and its variance finite and
    positive, and none of ``excludeMaskPlanes`` is set.
    """
    excluded = anyMaskPlaneSet(maskedImage.mask, list(excludeMaskPlanes))
    anyBad = not (allFinite(image) and allFinite(variance) and image.size and variance.min() > 0) or (
        excluded is not None and bool(excluded.any())
    )
    if not anyBad:
        return np.zeros(image.shape, dtype=bool), False
    # bad = not (finite image and finite positive variance) or excluded, built in place.
    bad = np.isfinite(image)
    bad &= variance > 0
    bad &= np.isfinite(variance)
    np.logical_not(bad, out=bad)
    if excluded is not None:
        bad |= excluded
    return bad, True


def _searchImage(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    anyBad: bool,
    settings: DetectionSettings,
    sigma: float | None,
    doSmooth: bool,
) -> tuple[np.ndarray, np.ndarray, float, Any]:
    """Return the searched image, its variance, its noise scale and the background.

    The searched image is the input (bad pixels filled with the median)
    smoothed, minus the background estimated on the unsmoothed input:
    smoothing commutes with the subtraction and leaves a background smooth
    on ``backgroundBinSize`` scales unchanged, and the input needs no
    image-sized copy this way.  Its noise is ``errScale * sqrt(var)``.
    """
    goodSample = image[_SAMPLE][~bad[_SAMPLE]]
    if goodSample.size == 0:
        goodSample = image[~bad]
    base = np.where(bad, np.float32(np.median(goodSample)), image) if anyBad else image
    if settings.thresholdPolarity == "negative":
        base = np.negative(base)
    base = np.ascontiguousarray(base, dtype=np.float32)
    background = None
    if settings.doSubtractBackground:
        bw = min(settings.backgroundBinSize, base.shape[1])
        bh = min(settings.backgroundBinSize, base.shape[0])
        background = sep.Background(base, mask=bad if anyBad else None, bw=bw, bh=bh)
    if anyBad:
        goodVar = variance[_SAMPLE][~bad[_SAMPLE]]
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
    return data, var, errScale, background


def _threshold(
    data: np.ndarray, var: np.ndarray, bad: np.ndarray, errScale: float, settings: DetectionSettings
) -> tuple[float, np.ndarray | None]:
    """Return the extraction threshold and the variance it is relative to (or `None`).

    With ``pixel_stdev`` the extraction takes the variance itself (no
    image-sized error array).
    """
    ttype = settings.thresholdType
    value = settings.thresholdValue
    if ttype == "pixel_stdev":
        return value * errScale, np.ascontiguousarray(var, dtype=np.float32)
    if ttype == "value":
        return value, None
    good = data[_SAMPLE][~bad[_SAMPLE]]
    std = float(1.4826 * np.median(np.abs(good - np.median(good))))
    return (value * std if ttype == "stdev" else value * std * std), None


def _objects(
    data: np.ndarray,
    thresh: float,
    varArg: np.ndarray | None,
    mask: np.ndarray | None,
    settings: DetectionSettings,
) -> np.ndarray:
    """Return the objects above threshold: deblended, split at peaks, or isophotal."""
    if settings.deblend:
        return sepExtract(
            data,
            thresh,
            var=varArg,
            mask=mask,
            minarea=settings.minPixels,
            filter_kernel=None,
            deblend_cont=0.005,
            clean=False,
        )
    if settings.splitFootprintsAtPeaks:
        # The isophotal objects split at their peaks, on all threads.
        return extractPeaks(
            data,
            thresh,
            var=varArg,
            mask=mask,
            minarea=settings.minPixels,
            minSeparation=settings.peakMinSeparation,
        )
    # sep.extract's isophotal objects without deblending, on all threads.
    return extractObjects(data, thresh, var=varArg, mask=mask, minarea=settings.minPixels)


def _sourceTable(
    objects: np.ndarray,
    shape: tuple[int, ...],
    var: np.ndarray,
    errScale: float,
    sign: float,
    x0: int,
    y0: int,
) -> Table:
    """Return the source table of the objects, in parent coordinates."""
    n = len(objects)
    sources = Table()
    sources["id"] = np.arange(1, n + 1, dtype=np.int64)
    sources["x"] = objects["x"] + x0
    sources["y"] = objects["y"] + y0
    sources["flux"] = sign * objects["flux"]
    fluxErr = np.sqrt(objects["npix"]) * errScale * float(np.median(np.sqrt(var[_SAMPLE])))
    sources["fluxErr"] = fluxErr
    sources["peakValue"] = sign * objects["peak"]
    # Matched-filter signal-to-noise of the peak: its value over the noise of the searched image.
    ny, nx = shape
    px = np.clip(np.floor(objects["x"] + 0.5).astype(np.int64), 0, nx - 1)
    py = np.clip(np.floor(objects["y"] + 0.5).astype(np.int64), 0, ny - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sources["snr"] = objects["peak"] / (errScale * np.sqrt(np.asarray(var[py, px], dtype=float)))
    sources["npix"] = objects["npix"].astype(np.int64)
    sources["xmin"] = objects["xmin"].astype(np.int64) + x0
    sources["xmax"] = objects["xmax"].astype(np.int64) + x0
    sources["ymin"] = objects["ymin"].astype(np.int64) + y0
    sources["ymax"] = objects["ymax"].astype(np.int64) + y0
    if "parent" in (objects.dtype.names or ()):
        sources["parent"] = objects["parent"] + 1
        sources["nPeaks"] = objects["nPeaks"]
    return sources


def _flagSources(
    sources: Table,
    objects: np.ndarray,
    maskedImage: MaskedImage,
    bad: np.ndarray,
    saturatedMaskPlanes: tuple[str, ...],
) -> None:
    """Add the ``flag_saturated``, ``flag_badMask`` and ``flag_edge`` columns."""
    ny, nx = bad.shape
    n = len(objects)
    sat = anyMaskPlaneSet(maskedImage.mask, list(saturatedMaskPlanes))
    boxes = (objects["xmin"], objects["xmax"], objects["ymin"], objects["ymax"])
    sources["flag_saturated"] = anyInBoxes(sat, *boxes) if sat is not None else np.zeros(n, dtype=bool)
    sources["flag_badMask"] = anyInBoxes(bad, *boxes)
    sources["flag_edge"] = (
        (objects["xmin"] == 0)
        | (objects["ymin"] == 0)
        | (objects["xmax"] == nx - 1)
        | (objects["ymax"] == ny - 1)
    )


#: sep's default active-pixel stack; raised only when a crowded image needs it
#: (a large stack is paid for in page faults whether it is used or not).
_PIXSTACK = 300_000


def sepExtract(data: np.ndarray, thresh: float, **kwargs: object) -> np.ndarray:
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


def anyInBoxes(
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
