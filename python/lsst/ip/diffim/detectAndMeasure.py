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
"""Detection and measurement of DIA sources on a difference image.

`DetectAndMeasureTask` (upstream's name) detects positive and negative
sources on the difference it is given (decorrelated, where the pipeline
decorrelates), merges their footprints across signs, measures each merged
source (`DipoleFitTask`: centroid, PSF and aperture fluxes, dipole fit and
classification), flags the pixels it touches, and associates it with the
template's and the science image's own sources, counting the associations
in the task metadata under ``NFalsePositivesTotal``,
``NFalsePositivesRefAssociated``, ``NFalsePositivesSrcAssociated`` and
``NFalsePositivesUnassociated``.

Differences from upstream: detection and measurement are this package's own
(`sep` for extraction and aperture sums, `scipy.optimize` for the fits;
no deblending, no forced photometry, no sky sources, no streak masking, no
aperture correction); no source is removed for its flags (the output is
"unfiltered"); the association radius is in pixels.
"""

from __future__ import annotations

__all__ = [
    "DIA_SOURCE_COLUMNS",
    "DetectAndMeasureConfig",
    "DetectAndMeasureConnections",
    "DetectAndMeasureTask",
    "detectOnSubtraction",
]

import math
from typing import ClassVar, Unpack, cast

import astropy.units as u
import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT
from lsst.images import MaskedImage
from lsst.images.psfs import PointSpreadFunction
from lsst.utils.timer import timeMethod

from .detection import SourceDetectionConfig, SourceDetectionTask
from .diaAssociation import FALSE_POSITIVE_KEYS, associateDiaSources
from .diaDetection import DiaFootprints, detectDiaFootprints
from .dipoleFit import MEASUREMENT_COLUMNS, DipoleFitConfig, DipoleFitTask
from .math.gaussian import SIGMA2FWHM
from .math.masks import anyMaskPlaneSet
from .taskArguments import PipelineTaskArguments

#: Columns of the DIA source table besides ``MEASUREMENT_COLUMNS``:
#: name -> (unit key, description); unit keys as in ``MEASUREMENT_COLUMNS``.
DIA_SOURCE_COLUMNS: dict[str, tuple[str | None, str]] = {
    "id": (None, "DIA source id (1..n within the difference image)."),
    "coord_ra": ("deg", "Right ascension of (x, y), if the difference has a sky projection."),
    "coord_dec": ("deg", "Declination of (x, y), if the difference has a sky projection."),
    "peakX": ("pix", "x of the most significant detection peak (parent pixels)."),
    "peakY": ("pix", "y of the most significant detection peak (parent pixels)."),
    "peakSignificance": (None, "Signed significance of that peak on the smoothed difference (sigma)."),
    "nPositive": (None, "Positive detections merged into this source."),
    "nNegative": (None, "Negative detections merged into this source."),
    "isNegative": (None, "Only negative detections were merged into this source."),
    "xmin": ("pix", "Footprint box, first column (parent pixels)."),
    "xmax": ("pix", "Footprint box, last column (parent pixels)."),
    "ymin": ("pix", "Footprint box, first row (parent pixels)."),
    "ymax": ("pix", "Footprint box, last row (parent pixels)."),
    "npix": (None, "Pixels in the (grown, merged) footprint."),
    "flag_edge": (None, "The footprint touches the image border or EDGE pixels."),
    "flag_saturated": (None, "The footprint holds saturated pixels (saturatedMaskPlanes)."),
    "flag_bad": (None, "The footprint holds BAD pixels (badMaskPlanes)."),
    "flag_noData": (None, "The footprint holds NO_DATA pixels."),
    "flag_nearMaskedStar": (None, "A masked star (nearMaskedStarPlanes) is within nearMaskedStarRadius."),
    "refMatchId": (None, "Id of the template source within matchRadius (0: none)."),
    "refMatchDistance": ("pix", "Distance to that template source."),
    "srcMatchId": (None, "Id of the science source within matchRadius (0: none)."),
    "srcMatchDistance": ("pix", "Distance to that science source."),
}


class DetectAndMeasureConnections(
    pipeBase.PipelineTaskConnections,
    dimensions=("instrument", "visit", "detector"),
    defaultTemplates={"fakesType": ""},
):
    """Connections of `DetectAndMeasureTask`: a difference image and its inputs in, DIA sources out."""

    science = cT.Input(
        doc="Science image the template was subtracted from.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="VisitImage",
        name="{fakesType}science_image",
    )
    matchedTemplate = cT.Input(
        doc="Warped and PSF-matched template that was subtracted.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="VisitImage",
        name="{fakesType}matched_template",
    )
    difference = cT.Input(
        doc="Difference image (science - matched template).",
        dimensions=("instrument", "visit", "detector"),
        storageClass="DifferenceImage",
        name="{fakesType}difference_image",
    )
    diaSources = cT.Output(
        doc="DIA sources detected and measured on the difference image (all of them, flags set).",
        dimensions=("instrument", "visit", "detector"),
        storageClass="ArrowAstropy",
        name="{fakesType}dia_source_unfiltered",
    )


class DetectAndMeasureConfig(pipeBase.PipelineTaskConfig, pipelineConnections=DetectAndMeasureConnections):
    """Configuration of `DetectAndMeasureTask`."""

    thresholdValue = pexConfig.RangeField(
        dtype=float,
        doc="Detection threshold, in sigma of the PSF-smoothed difference as the variance plane predicts "
        "it (upstream's pixel_stdev threshold type).",
        default=5.0,
        min=0.0,
    )
    thresholdType = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Units of thresholdValue.",
        default="pixel_stdev",
        allowed={
            "pixel_stdev": "the noise of the smoothed difference predicted by its variance plane (upstream)",
            "stdev": "the measured robust standard deviation of that significance image (absorbs a "
            "misscaled variance plane and the correlated noise of a difference that was not decorrelated)",
        },
    )
    thresholdPolarity = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Signs of the sources to detect.",
        default="both",
        allowed={"both": "positive and negative", "positive": "positive only", "negative": "negative only"},
    )
    minPixels = pexConfig.RangeField(
        dtype=int, doc="Minimum number of pixels above threshold in a detection.", default=1, min=1
    )
    doSmooth = pexConfig.Field[bool](
        dtype=bool, doc="Smooth with a Gaussian of the PSF's width before thresholding.", default=True
    )
    excludeMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        doc="Pixels with any of these planes are not searched and not used by the measurements.",
        default=["EDGE", "SAT", "BAD", "INTRP", "NO_DATA"],
    )
    doMerge = pexConfig.Field[bool](
        dtype=bool,
        doc="Merge positive and negative footprints grown by growFootprint (if False, only footprints "
        "that touch are merged).",
        default=True,
    )
    growFootprint = pexConfig.RangeField(
        dtype=int, doc="Grow footprints by this many pixels before merging.", default=2, min=0
    )
    psfFwhm = pexConfig.Field[float](
        dtype=float,
        doc="If set, use a Gaussian PSF of this FWHM (pixels) instead of the difference's PSF model.",
        default=None,
        optional=True,
    )
    measurement = pexConfig.ConfigurableField[DipoleFitConfig](
        target=DipoleFitTask, doc="Measurement of the DIA sources."
    )
    doDetectInputSources = pexConfig.Field[bool](
        dtype=bool,
        doc="Detect the science and matched-template sources for the association when not given.",
        default=True,
    )
    sourceDetection = pexConfig.ConfigurableField[SourceDetectionConfig](
        target=SourceDetectionTask, doc="Detection of the science and template sources (association)."
    )
    matchRadius = pexConfig.RangeField(
        dtype=float,
        doc="Association radius (pixels) to template and science sources (upstream: 0.5 arcsec).",
        default=2.5,
        min=0.0,
    )
    edgeMaskPlanes = pexConfig.ListField[str](dtype=str, doc="Planes setting flag_edge.", default=["EDGE"])
    saturatedMaskPlanes = pexConfig.ListField[str](
        dtype=str, doc="Planes setting flag_saturated.", default=["SAT", "SAT_TEMPLATE"]
    )
    badMaskPlanes = pexConfig.ListField[str](dtype=str, doc="Planes setting flag_bad.", default=["BAD"])
    noDataMaskPlanes = pexConfig.ListField[str](
        dtype=str, doc="Planes setting flag_noData.", default=["NO_DATA"]
    )
    nearMaskedStarPlanes = pexConfig.ListField[str](
        dtype=str,
        doc="Planes marking masked (saturated) stars, for flag_nearMaskedStar.",
        default=["SAT", "SAT_TEMPLATE"],
    )
    nearMaskedStarRadius = pexConfig.RangeField(
        dtype=float,
        doc="flag_nearMaskedStar is set if a nearMaskedStarPlanes pixel is within this radius (pixels) of "
        "the centroid.",
        default=10.0,
        min=0.0,
    )

    def setDefaults(self) -> None:
        """Detect at 5 sigma outside NO_DATA pixels and deblend crowded detections."""
        super().setDefaults()
        self.sourceDetection.thresholdValue = 5.0
        self.sourceDetection.excludeMaskPlanes = ["NO_DATA"]
        # Crowded fields blend into few isophotal objects: deblend the catalogues.
        self.sourceDetection.deblend = True


class DetectAndMeasureTask(pipeBase.PipelineTask):
    """Detect and measure sources on a difference image.

    See the module documentation.  ``run`` returns the DIA source table;
    the task metadata holds ``nUnmergedDiaSources``, ``nMergedDiaSources``,
    ``nPositiveDiaSources``, ``nNegativeDiaSources``, ``nDipoleDiaSources``
    and the four ``NFalsePositives*`` counts.

    Debugging: ``lsstDebug.Info("lsst.ip.diffim.detectAndMeasure")`` with
    ``display`` and ``displayDiaSources`` set draws the difference with the
    positive, negative and dipole sources marked.
    """

    ConfigClass: ClassVar[type[DetectAndMeasureConfig]] = DetectAndMeasureConfig
    _DefaultName = "detectAndMeasure"
    config: DetectAndMeasureConfig
    measurement: DipoleFitTask
    sourceDetection: SourceDetectionTask

    def __init__(self, **kwargs: Unpack[PipelineTaskArguments]) -> None:
        super().__init__(**kwargs)
        self.makeSubtask("measurement")
        self.makeSubtask("sourceDetection")

    def runQuantum(
        self,
        butlerQC: pipeBase.QuantumContext,
        inputRefs: pipeBase.InputQuantizedConnection,
        outputRefs: pipeBase.OutputQuantizedConnection,
    ) -> None:
        """Read the inputs of one quantum, run, and write the outputs.

        Parameters
        ----------
        butlerQC : `lsst.pipe.base.QuantumContext`
            The Butler of this quantum.
        inputRefs : `lsst.pipe.base.InputQuantizedConnection`
            The dataset references of the inputs.
        outputRefs : `lsst.pipe.base.OutputQuantizedConnection`
            The dataset references of the outputs.
        """
        from .math.frozenHeap import frozenHeap

        with frozenHeap():  # the executor's objects are not walked by the collector during the quantum
            inputs = butlerQC.get(inputRefs)
            outputs = self.run(**inputs)
            butlerQC.put(outputs, outputRefs)

    @timeMethod
    def run(
        self,
        science: MaskedImage | None,
        matchedTemplate: MaskedImage | None,
        difference: MaskedImage,
        scienceSources: Table | None = None,
        templateSources: Table | None = None,
        psfFwhm: float | None = None,
    ) -> pipeBase.Struct:
        """Detect, measure and associate the sources of a difference image.

        Parameters
        ----------
        science, matchedTemplate : `lsst.images.VisitImage` or `lsst.images.MaskedImage`, or `None`
            The science image and the PSF-matched template on the
            difference's grid (they constrain the dipole fit and give the
            association catalogues); either may be `None`.
        difference : `lsst.images.DifferenceImage` or `lsst.images.MaskedImage`
            The difference image; its DETECTED and DETECTED_NEGATIVE planes
            are replaced by the detections.
        scienceSources, templateSources : `astropy.table.Table`, optional
            Sources (``x``, ``y``, ``id``; parent pixels) of the science
            image and of the template; detected here if not given (and
            ``doDetectInputSources``).
        psfFwhm : `float`, optional
            FWHM (pixels) of a Gaussian PSF to use instead of the
            difference's PSF model (``config.psfFwhm`` if not given).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``diaSources`` : `astropy.table.Table` (columns documented in
            its ``description``s and units); ``subtractedMeasuredExposure``:
            the difference; ``scienceSources``, ``templateSources``: the
            association catalogues; ``footprints``: the
            `lsst.ip.diffim.diaDetection.DiaFootprints`.
        """
        cfg = self.config
        psf, fwhm = self._psf(difference, psfFwhm if psfFwhm is not None else cfg.psfFwhm)
        sigma = fwhm / SIGMA2FWHM
        image = difference.image.array
        variance = difference.variance.array
        bad = ~(np.isfinite(image) & np.isfinite(variance) & (variance > 0))
        excluded = anyMaskPlaneSet(difference.mask, cfg.excludeMaskPlanes)
        if excluded is not None:
            bad |= excluded
        if bad.all():
            raise pipeBase.NoWorkFound("No usable pixel in the difference image.")
        footprints = detectDiaFootprints(
            image,
            variance,
            bad,
            sigma,
            threshold=cfg.thresholdValue,
            minPixels=cfg.minPixels,
            grow=cfg.growFootprint if cfg.doMerge else 0,
            polarity=cfg.thresholdPolarity,
            doSmooth=cfg.doSmooth,
            thresholdType=cfg.thresholdType,
        )
        self.metadata["detectionNoiseScale"] = footprints.noiseScale
        self._setDetectionMasks(difference, footprints)
        measured = self.measurement.run(
            footprints.sources,
            difference,
            psf,
            fwhm,
            science=science,
            template=matchedTemplate,
            bad=bad,
        )
        diaSources = self._assemble(difference, footprints, measured)
        if scienceSources is None and science is not None and cfg.doDetectInputSources:
            scienceSources = self._detectSources(science)
        if templateSources is None and matchedTemplate is not None and cfg.doDetectInputSources:
            templateSources = self._detectSources(matchedTemplate)
        counts = associateDiaSources(diaSources, templateSources, scienceSources, cfg.matchRadius)
        for name in ("refMatchDistance", "srcMatchDistance"):
            diaSources[name].unit = u.pix
            diaSources[name].description = DIA_SOURCE_COLUMNS[name][1]
        for name in ("refMatchId", "srcMatchId"):
            diaSources[name].description = DIA_SOURCE_COLUMNS[name][1]
        nPos = int(np.count_nonzero(diaSources["psfFlux"] > 0))
        self.metadata["nUnmergedDiaSources"] = footprints.nPositive + footprints.nNegative
        self.metadata["nMergedDiaSources"] = len(diaSources)
        self.metadata["nPositiveDiaSources"] = nPos
        self.metadata["nNegativeDiaSources"] = len(diaSources) - nPos
        self.metadata["nDipoleDiaSources"] = int(np.count_nonzero(diaSources["isDipole"]))
        for key in FALSE_POSITIVE_KEYS:
            self.metadata[key] = counts[key]
        diaSources.meta.update(counts)
        diaSources.meta["thresholdValue"] = cfg.thresholdValue
        diaSources.meta["psfFwhm"] = fwhm
        diaSources.meta["matchRadius"] = cfg.matchRadius
        self.log.info(
            "Detected %d DIA sources (%d positive and %d negative detections merged; %d dipoles); "
            "%d associated with template sources, %d with science sources, %d with neither",
            len(diaSources),
            footprints.nPositive,
            footprints.nNegative,
            self.metadata["nDipoleDiaSources"],
            counts["NFalsePositivesRefAssociated"],
            counts["NFalsePositivesSrcAssociated"],
            counts["NFalsePositivesUnassociated"],
        )
        self._displayDiaSources(difference, diaSources)
        return pipeBase.Struct(
            diaSources=diaSources,
            subtractedMeasuredExposure=difference,
            scienceSources=scienceSources,
            templateSources=templateSources,
            footprints=footprints,
        )

    # ----------------------------------------------------------------- pieces
    def _psf(self, difference: MaskedImage, fwhm: float | None) -> tuple[PointSpreadFunction, float]:
        """Return the PSF model to measure with and its FWHM."""
        from lsst.images.psfs import GaussianPointSpreadFunction

        from .adapters.psf import getPsfFwhm

        bbox = difference.bbox
        if fwhm is None:
            psf = getattr(difference, "psf", None)
            if psf is not None:
                x, y = bbox.x.center, bbox.y.center
                return psf, float(getPsfFwhm(psf, position=(x, y)))
            raise pipeBase.InvalidQuantumError(
                "The difference image has no PSF model: give psfFwhm (or config.psfFwhm)."
            )
        if not fwhm > 0:
            raise ValueError(f"psfFwhm must be positive, got {fwhm}.")
        sigma = fwhm / SIGMA2FWHM
        stamp = int(2 * math.ceil(3.0 * fwhm) + 1)
        return GaussianPointSpreadFunction(sigma, bounds=bbox, stamp_size=stamp), float(fwhm)

    def _setDetectionMasks(self, difference: MaskedImage, footprints: DiaFootprints) -> None:
        mask = getattr(difference, "mask", None)
        if mask is None:
            return
        names = mask.schema.names
        for plane, pixels in (("DETECTED", footprints.positive), ("DETECTED_NEGATIVE", footprints.negative)):
            if plane in names:
                mask.clear(plane)
                mask.set(plane, pixels)

    def _detectSources(self, image: MaskedImage) -> Table:
        maskedImage = image
        if type(image) is not MaskedImage:
            maskedImage = MaskedImage(image.image, mask=image.mask, variance=image.variance)
        # The detection's own smoothing (not the PSF's, which blends crowded fields).
        return self.sourceDetection.run(maskedImage).sources

    def _assemble(self, difference: MaskedImage, footprints: DiaFootprints, measured: Table) -> Table:
        """Return the DIA source table: footprint columns, measurements, flags, coordinates."""
        cfg = self.config
        bbox = difference.bbox
        x0, y0 = bbox.x.start, bbox.y.start
        fp = footprints.sources
        unit = getattr(difference, "unit", None)
        units = {"pix": u.pix, "deg": u.deg, "flux": unit, None: None}
        table = Table()
        table["id"] = np.asarray(fp["id"], dtype=np.int64)
        for name in measured.colnames:
            table[name] = measured[name]
        table["coord_ra"], table["coord_dec"] = self._skyCoordinates(difference, table["x"], table["y"])
        table["peakX"] = np.asarray(fp["peakX"], dtype=float) + x0
        table["peakY"] = np.asarray(fp["peakY"], dtype=float) + y0
        table["peakSignificance"] = np.asarray(fp["peakSignificance"], dtype=float)
        table["nPositive"] = np.asarray(fp["nPositive"], dtype=np.int64)
        table["nNegative"] = np.asarray(fp["nNegative"], dtype=np.int64)
        table["isNegative"] = (table["nPositive"] == 0) & (table["nNegative"] > 0)
        table["xmin"] = np.asarray(fp["xmin"], dtype=np.int64) + x0
        table["xmax"] = np.asarray(fp["xmax"], dtype=np.int64) + x0
        table["ymin"] = np.asarray(fp["ymin"], dtype=np.int64) + y0
        table["ymax"] = np.asarray(fp["ymax"], dtype=np.int64) + y0
        table["npix"] = np.asarray(fp["npix"], dtype=np.int64)
        mask = getattr(difference, "mask", None)
        ny, nx = footprints.labels.shape
        onBorder = (fp["xmin"] == 0) | (fp["ymin"] == 0) | (fp["xmax"] == nx - 1) | (fp["ymax"] == ny - 1)
        for column, planes in (
            ("flag_edge", cfg.edgeMaskPlanes),
            ("flag_saturated", cfg.saturatedMaskPlanes),
            ("flag_bad", cfg.badMaskPlanes),
            ("flag_noData", cfg.noDataMaskPlanes),
        ):
            pixels = anyMaskPlaneSet(mask, planes) if mask is not None else None
            table[column] = _inFootprints(footprints.labels, fp, pixels)
        table["flag_edge"] |= np.asarray(onBorder, dtype=bool)
        stars = anyMaskPlaneSet(mask, cfg.nearMaskedStarPlanes) if mask is not None else None
        table["flag_nearMaskedStar"] = _nearPixels(
            stars, np.asarray(table["x"]) - x0, np.asarray(table["y"]) - y0, cfg.nearMaskedStarRadius
        )
        for name in table.colnames:
            if name in MEASUREMENT_COLUMNS:
                _, unitKey, doc = MEASUREMENT_COLUMNS[name]
            elif name in DIA_SOURCE_COLUMNS:
                unitKey, doc = DIA_SOURCE_COLUMNS[name]
            else:
                continue
            table[name].description = doc
            if units.get(unitKey) is not None:
                table[name].unit = units[unitKey]
        table.meta.update(measured.meta)
        return table

    def _skyCoordinates(
        self, difference: MaskedImage, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        ra, dec = np.full(n, np.nan), np.full(n, np.nan)
        projection = getattr(difference, "sky_projection", None)
        if projection is None or n == 0:
            return ra, dec
        xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if ok.any():
            try:
                coords = projection.pixel_to_sky(x=xs[ok], y=ys[ok])
                ra[ok], dec[ok] = coords.ra.deg, coords.dec.deg
            except Exception as exc:  # projections raise many types off their domain
                self.log.warning("Sky coordinates of the DIA sources not computed: %s", exc)
        return ra, dec

    # ------------------------------------------------------------------ debug
    def _displayDiaSources(self, difference: MaskedImage, diaSources: Table) -> None:
        import lsstDebug

        info = lsstDebug.Info(__name__)
        if not (info.display and info.displayDiaSources):
            return
        from .display.diaSourceDisplays import displayDiaSources

        displayDiaSources(__name__, self.log, info, difference, diaSources)


def _inFootprints(labels: np.ndarray, footprints: Table, pixels: np.ndarray | None) -> np.ndarray:
    """Return, per footprint, whether any flagged pixel lies in it."""
    n = len(footprints)
    if pixels is None or n == 0 or not pixels.any():
        return np.zeros(n, dtype=bool)
    hit = np.zeros(int(labels.max()) + 1, dtype=bool)
    hit[np.unique(labels[pixels])] = True
    hit[0] = False
    return hit[np.asarray(footprints["id"], dtype=np.int64)]


def _nearPixels(pixels: np.ndarray | None, xs: np.ndarray, ys: np.ndarray, radius: float) -> np.ndarray:
    """Return, per position (array indices), whether a flagged pixel is within ``radius``."""
    out = np.zeros(len(xs), dtype=bool)
    if pixels is None or not pixels.any() or len(xs) == 0:
        return out
    ny, nx = pixels.shape
    r = int(math.ceil(radius))
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        ix, iy = int(round(x)), int(round(y))
        xa, xb = max(ix - r, 0), min(ix + r + 1, nx)
        ya, yb = max(iy - r, 0), min(iy + r + 1, ny)
        if xa >= xb or ya >= yb:
            continue
        window = pixels[ya:yb, xa:xb]
        if not window.any():
            continue
        yy, xx = np.nonzero(window)
        out[i] = bool(np.any((xx + xa - x) ** 2 + (yy + ya - y) ** 2 <= radius * radius))
    return out


def detectOnSubtraction(
    result: pipeBase.Struct,
    science: MaskedImage,
    *,
    psfFwhm: float | None = None,
    convolveTemplate: bool = True,
    config: DetectAndMeasureConfig | None = None,
) -> pipeBase.Struct:
    """Run `DetectAndMeasureTask` on the result of `ImagePsfMatchTask.run`.

    Parameters
    ----------
    result : `lsst.pipe.base.Struct`
        The subtraction result (``subtractedExposure`` or
        ``subtractedMaskedImage``, ``matchedImage``, ``warpedExposure``).
    science : `lsst.images.VisitImage`
        The science image.
    psfFwhm : `float`, optional
        FWHM (pixels) of the difference's PSF (the science PSF if the
        template was convolved, else the template's); the difference's PSF
        model if not given.
    convolveTemplate : `bool`, optional
        Whether the template was convolved.  If not, the difference is
        ``(matched science - template) / kernel sum`` and the dipole fit
        uses the difference alone (``measurement.relWeight = 0``).
    config : `DetectAndMeasureConfig`, optional
        Task configuration.

    Returns
    -------
    detection : `lsst.pipe.base.Struct`
        As `DetectAndMeasureTask.run`, plus ``task``: the task (its
        ``metadata`` holds the counts).
    """
    config = DetectAndMeasureConfig() if config is None else cast(DetectAndMeasureConfig, config.copy())
    difference = getattr(result, "subtractedExposure", None)
    if difference is None:
        difference = result.subtractedMaskedImage
    if convolveTemplate:
        matched = result.matchedImage
    else:
        config.measurement.relWeight = 0.0
        matched = result.warpedExposure
    task = DetectAndMeasureTask(config=config)
    detection = task.run(science, matched, difference, psfFwhm=psfFwhm)
    detection.task = task
    return detection
