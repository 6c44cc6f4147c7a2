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

The detection itself is the primitive
`lsst.ip.diffim.math.sourceDetection.detectSources`; the task gives it the
config's settings.  The background model comes from `sep`, the SExtractor
library (a small, well-kept compiled package with wheels for every
platform).  The objects are
the isophotal ones `sep.extract` finds without deblending, computed by
`lsst.ip.diffim.math.objectExtraction.extractObjects` on the runs of detected
pixels (identical objects, on all threads, without an image-sized label
array); by default (``splitFootprintsAtPeaks``) each footprint is split
at its peaks (`lsst.ip.diffim.math.objectExtraction.extractPeaks`), one source
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
from astropy.table import Table
from scipy.spatial import cKDTree

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import Box, MaskedImage
from lsst.utils.timer import timeMethod

from .kernel.stampStack import StampStack
from .math.sourceDetection import DetectionSettings, detectSources

# Private names other modules import from here (the primitives' home is math.sourceDetection).
from .math.sourceDetection import anyInBoxes as _anyInBoxes  # noqa: F401
from .math.sourceDetection import sepExtract as _extract  # noqa: F401


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
            image), or `None`; ``meshBackground`` : the same with the pixels
            it left out (`lsst.ip.diffim.math.meshBackground.MeshBackground`),
            for reuse on the image, or `None`.
        """
        settings = DetectionSettings.fromConfig(self.config)
        result = detectSources(maskedImage, settings, sigma=sigma, doSmooth=doSmooth)
        self.log.info(
            "Detected %d sources above %.1f (%s)",
            len(result.sources),
            self.config.thresholdValue,
            self.config.thresholdType,
        )
        return pipeBase.Struct(
            sources=result.sources, background=result.background, meshBackground=result.meshBackground
        )


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
