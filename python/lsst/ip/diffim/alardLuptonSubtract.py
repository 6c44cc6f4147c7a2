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
"""The subtraction tasks Rubin runs today: Alard & Lupton with decorrelation, and its score variant.

These are importable from `lsst.ip.diffim.subtractImages`, as upstream.

Notes
-----
Deviations from upstream, forced by the types: images are
`lsst.images.VisitImage` objects (outputs `lsst.images.DifferenceImage`);
the source catalogue is an `astropy.table.Table` with ``x``/``y``
centroids (parent pixels), optionally fluxes and flags
(`lsst.ip.diffim.sourceSelector.ScienceSourceSelectorTask` skips criteria
whose columns are absent); ``doUseSourceCatalog=False`` (not in upstream)
removes the ``sources`` input and detects the kernel sources on the science
image, as the fallback detection does.  `lsst.images` masks have a fixed
schema: the difference image's mask is the difference-image schema plus
``INJECTED``, ``INJECTED_TEMPLATE``, ``INJECTED_CORE`` and
``INJECTED_CORE_TEMPLATE`` (and any other plane of the inputs), and the
``<name>_TEMPLATE`` planes are made on it, not on the template's mask;
the template's own mask is still cleared in place as upstream does.
Limiting magnitudes use the AB zero point of the image unit (``nJy``) and
are NaN for images in other units; ``doApplyExternalCalibrations`` is not
available (no ``visitSummary`` type).
"""

from __future__ import annotations

__all__ = [
    "AlardLuptonPreconvolveSubtractConfig",
    "AlardLuptonPreconvolveSubtractConnections",
    "AlardLuptonPreconvolveSubtractTask",
    "AlardLuptonSubtractBaseConfig",
    "AlardLuptonSubtractConfig",
    "AlardLuptonSubtractConnections",
    "AlardLuptonSubtractTask",
    "InsufficientKernelSourcesError",
    "SimplifiedSubtractConfig",
    "SimplifiedSubtractConnections",
    "SimplifiedSubtractTask",
    "computeDifferenceImageMetrics",
]

import logging
import math
from typing import Any, ClassVar, Unpack

import astropy.units as u
import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT
from lsst.images import Box, DifferenceImage, Image, Mask, MaskedImage, MaskSchema, VisitImage
from lsst.images.convolution_kernels import ImageBasisConvolutionKernel
from lsst.images.psfs import PointSpreadFunction
from lsst.utils.logging import LsstLogAdapter
from lsst.utils.timer import timeMethod

from .adapters.psf import SIGMA2FWHM, evaluateMeanPsfFwhm, getPsfFwhm, psfMoments
from .annotatedRun import runAnnotated
from .detection import _anyInBoxes, makeCenteredBox
from .imageDecorrelation import DecorrelateALKernelConfig, DecorrelateALKernelTask
from .imageTypes import ExposureLike
from .kernelConversion import fromImagesKernel, toImagesKernel
from .makeKernel import MakeKernelConfig, MakeKernelTask
from .math.convolve import ConvolutionControl, convolve
from .math.functions import Function2
from .math.kernels import FixedKernel, Kernel
from .math.masks import anyMaskPlaneSet, makeDifferenceMaskSchema, maskPlaneBitmask, resolveMaskPlane
from .scaleVariance import ScaleVarianceConfig, ScaleVarianceTask
from .sourceSelector import ScienceSourceSelectorConfig, ScienceSourceSelectorTask, signalToNoise
from .taskArguments import PipelineTaskArguments

_dimensions = ("instrument", "visit", "detector")
_defaultTemplates = {"coaddName": "deep", "fakesType": ""}
#: Planes every working mask has (they may be created by the mask handling).
_EXTRA_PLANES = ("INJECTED", "INJECTED_CORE", "INJECTED_TEMPLATE", "INJECTED_CORE_TEMPLATE")


class InsufficientKernelSourcesError(pipeBase.AlgorithmError):
    """Too few sources were selected to compute the PSF-matching kernel."""

    def __init__(self, *, nSources: int, nRequired: int) -> None:
        super().__init__(
            f"Only {nSources} sources were selected for PSF matching, but {nRequired} are required."
        )
        self.nSources = nSources
        self.nRequired = nRequired

    @property
    def metadata(self) -> dict[str, int]:
        """Return the number of kernel sources found and required."""
        return {"nSources": self.nSources, "nRequired": self.nRequired}


# ------------------------------------------------------------------ connections
class SubtractInputConnections(
    pipeBase.PipelineTaskConnections, dimensions=_dimensions, defaultTemplates=_defaultTemplates
):
    template = cT.Input(
        doc="Input warped template to subtract (on the science grid, covering it).",
        dimensions=("instrument", "visit", "detector"),
        storageClass="VisitImage",
        name="{fakesType}template_image",
    )
    science = cT.Input(
        doc="Input science image to subtract from.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="VisitImage",
        name="{fakesType}science_image",
    )
    sources = cT.Input(
        doc="Sources measured on the science image (x, y, fluxes, flags), used to select kernel sources.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="ArrowAstropy",
        name="{fakesType}src",
    )

    def __init__(self, *, config: pipeBase.PipelineTaskConfig | None = None) -> None:
        super().__init__(config=config)
        if isinstance(config, AlardLuptonSubtractBaseConfig) and not config.doUseSourceCatalog:
            del self.sources


class SubtractImageOutputConnections(
    pipeBase.PipelineTaskConnections, dimensions=_dimensions, defaultTemplates=_defaultTemplates
):
    difference = cT.Output(
        doc="Result of subtracting the convolved template from the science image.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="DifferenceImage",
        name="{fakesType}{coaddName}Diff_differenceTempExp",
    )
    matchedTemplate = cT.Output(
        doc="Warped and PSF-matched template used to make the difference.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="VisitImage",
        name="{fakesType}{coaddName}Diff_matchedExp",
    )
    psfMatchingKernel = cT.Output(
        doc="Kernel used to PSF-match the science and template images.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="ConvolutionKernel",
        name="{fakesType}{coaddName}Diff_psfMatchKernel",
    )
    kernelSources = cT.Output(
        doc="Final selection of sources used for PSF matching.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="ArrowAstropy",
        name="{fakesType}{coaddName}Diff_psfMatchSources",
    )


class SubtractScoreOutputConnections(
    pipeBase.PipelineTaskConnections, dimensions=_dimensions, defaultTemplates=_defaultTemplates
):
    scoreExposure = cT.Output(
        doc="The maximum-likelihood (score) image, for the detection of diaSources.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="DifferenceImage",
        name="{fakesType}{coaddName}Diff_scoreTempExp",
    )
    psfMatchingKernel = cT.Output(
        doc="Kernel used to PSF-match the template to the pre-convolved science image.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="ConvolutionKernel",
        name="{fakesType}{coaddName}Diff_psfScoreMatchKernel",
    )
    kernelSources = cT.Output(
        doc="Final selection of sources used for PSF matching.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="ArrowAstropy",
        name="{fakesType}{coaddName}Diff_psfScoreMatchSources",
    )


class AlardLuptonSubtractConnections(SubtractInputConnections, SubtractImageOutputConnections):
    """Connections of `AlardLuptonSubtractTask`: the inputs and the difference image outputs."""

    pass


class AlardLuptonPreconvolveSubtractConnections(SubtractInputConnections, SubtractScoreOutputConnections):
    """Connections of `AlardLuptonPreconvolveSubtractTask`: the inputs and the score image outputs."""

    pass


class SimplifiedSubtractConnections(SubtractInputConnections, SubtractImageOutputConnections):
    """Connections of `SimplifiedSubtractTask`: those of the full task plus an existing kernel."""

    inputPsfMatchingKernel = cT.Input(
        doc="Existing kernel used to PSF match the science and template images.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="ConvolutionKernel",
        name="{fakesType}{coaddName}Diff_psfMatchKernel",
    )

    def __init__(self, *, config: pipeBase.PipelineTaskConfig | None = None) -> None:
        super().__init__(config=config)
        if hasattr(self, "sources"):
            del self.sources
        if not isinstance(config, SimplifiedSubtractConfig) or config.useExistingKernel:
            del self.psfMatchingKernel
            del self.kernelSources
        else:
            del self.inputPsfMatchingKernel


# ----------------------------------------------------------------------- configs
class AlardLuptonSubtractBaseConfig(pexConfig.Config):
    """Settings shared by the Alard & Lupton subtraction tasks."""

    makeKernel = pexConfig.ConfigurableField[MakeKernelConfig](
        target=MakeKernelTask, doc="Construction of the matching kernel."
    )
    doDecorrelation = pexConfig.Field[bool](
        dtype=bool,
        default=True,
        doc="Decorrelate the difference to undo the pixel correlation of the kernel convolution.",
    )
    decorrelate = pexConfig.ConfigurableField[DecorrelateALKernelConfig](
        target=DecorrelateALKernelTask, doc="Decorrelation of the difference image."
    )
    requiredTemplateFraction = pexConfig.Field[float](
        dtype=float,
        default=0.1,
        doc="Raise NoWorkFound and do not attempt the subtraction if the template covers less than this "
        "fraction of the pixels. 0 always attempts the subtraction.",
    )
    minTemplateFractionForExpectedSuccess = pexConfig.Field[float](
        dtype=float,
        default=0.2,
        doc="Raise NoWorkFound if PSF matching fails and the template covers less than this fraction of the "
        "pixels (failure is then expected and tolerated).",
    )
    doScaleVariance = pexConfig.Field[bool](
        dtype=bool, default=True, doc="Rescale the template and science variance planes before subtraction."
    )
    scaleVariance = pexConfig.ConfigurableField[ScaleVarianceConfig](
        target=ScaleVarianceTask, doc="Rescaling of the variance planes to the measured noise."
    )
    doSubtractBackground = pexConfig.Field[bool](
        dtype=bool,
        default=False,
        doc="Subtract the differential background fitted with the kernel (it is generally better to "
        "subtract the background in detection).",
    )
    doApplyExternalCalibrations = pexConfig.Field[bool](
        dtype=bool,
        default=False,
        doc="Replace the science PSF from a visit summary (not available with lsst.images inputs; must be "
        "False).",
        check=lambda x: not x,
    )
    sourceSelector = pexConfig.ConfigurableField[ScienceSourceSelectorConfig](
        target=ScienceSourceSelectorTask, doc="Selection of kernel sources from the source catalogue."
    )
    fallbackSourceSelector = pexConfig.ConfigurableField[ScienceSourceSelectorConfig](
        target=ScienceSourceSelectorTask, doc="Selection of kernel sources after the fallback detection."
    )
    doUseSourceCatalog = pexConfig.Field[bool](
        dtype=bool,
        default=True,
        doc="Select kernel sources from the 'sources' input; if False (not in upstream) there is no such "
        "input and the kernel sources are detected on the science image (the fallback detection).",
    )
    detectionThreshold = pexConfig.Field[float](
        dtype=float, default=10, doc="Deprecated and unused.", deprecated="No longer used."
    )
    detectionThresholdMax = pexConfig.Field[float](
        dtype=float, default=500, doc="Deprecated and unused.", deprecated="No longer used."
    )
    restrictKernelEdgeSources = pexConfig.Field[bool](
        dtype=bool, default=True, doc="Exclude sources within a kernel size of the image edge."
    )
    maxKernelSources = pexConfig.Field[int](
        dtype=int,
        default=1000,
        doc="Maximum number of kernel sources (highest S/N kept); -1 disables.",
    )
    minKernelSources = pexConfig.Field[int](
        dtype=int, default=3, doc="Minimum number of kernel sources needed for the kernel."
    )
    excludeMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        default=("NO_DATA", "BAD", "SAT", "EDGE", "FAKE", "HIGH_VARIANCE"),
        doc="Mask planes (science and template) that exclude a kernel source whose stamp they touch.",
    )
    badMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        default=("NO_DATA", "BAD", "SAT", "EDGE"),
        doc="Mask planes filled (with the image median) before the pre-convolution convolutions.",
    )
    preserveTemplateMask = pexConfig.ListField[str](
        dtype=str,
        default=("NO_DATA", "BAD", "HIGH_VARIANCE"),
        doc="Template mask planes propagated to the difference image (all others are cleared).",
    )
    renameTemplateMask = pexConfig.ListField[str](
        dtype=str,
        default=("SAT", "INJECTED", "INJECTED_CORE"),
        doc="Template mask planes propagated to the difference image as '<name>_TEMPLATE'.",
    )
    preserveMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        default=("INJECTED", "INJECTED_CORE", "INJECTED_TEMPLATE", "INJECTED_CORE_TEMPLATE"),
        doc="Mask planes copied without dilation when an image is convolved.",
    )
    allowKernelSourceDetection = pexConfig.Field[bool](
        dtype=bool,
        default=False,
        doc="Detect kernel sources on the science image if too few are selected from the catalogue.",
    )

    def setDefaults(self) -> None:
        """Set an Alard-Lupton kernel with linear spatial variation and a quadratic background."""
        super().setDefaults()
        self.makeKernel.kernel.name = "AL"
        self.makeKernel.kernel.active.fitForBackground = True
        self.makeKernel.kernel.active.spatialKernelOrder = 1
        self.makeKernel.kernel.active.spatialBgOrder = 2
        for selector in (self.sourceSelector, self.fallbackSourceSelector):
            selector.doUnresolved = True
            selector.doSkySources = False
            selector.doSignalToNoise = True
            selector.signalToNoise.minimum = 10
            selector.signalToNoise.maximum = 500
        self.sourceSelector.doIsolated = True
        self.sourceSelector.doRequirePrimary = True
        self.fallbackSourceSelector.doIsolated = False
        self.fallbackSourceSelector.doRequirePrimary = False


_MODES = {
    "auto": "Choose which image to convolve at runtime.",
    "convolveScience": "Only convolve the science image.",
    "convolveTemplate": "Only convolve the template image.",
}


class AlardLuptonSubtractConfig(
    AlardLuptonSubtractBaseConfig,
    pipeBase.PipelineTaskConfig,
    pipelineConnections=AlardLuptonSubtractConnections,
):
    """Configuration of `AlardLuptonSubtractTask`."""

    mode = pexConfig.ChoiceField[str](
        dtype=str,
        default="convolveTemplate",
        allowed=_MODES,
        doc="Which image to convolve, or choose at run time.",
    )


class AlardLuptonPreconvolveSubtractConfig(
    AlardLuptonSubtractBaseConfig,
    pipeBase.PipelineTaskConfig,
    pipelineConnections=AlardLuptonPreconvolveSubtractConnections,
):
    """Configuration of `AlardLuptonPreconvolveSubtractTask`."""


class SimplifiedSubtractConfig(
    AlardLuptonSubtractBaseConfig,
    pipeBase.PipelineTaskConfig,
    pipelineConnections=SimplifiedSubtractConnections,
):
    """Configuration of `SimplifiedSubtractTask`."""

    mode = pexConfig.ChoiceField[str](
        dtype=str,
        default="convolveTemplate",
        allowed=_MODES,
        doc="Which image to convolve, or choose at run time.",
    )
    useExistingKernel = pexConfig.Field[bool](
        dtype=bool,
        default=True,
        doc="Use an existing PSF-matching kernel; if False, kernel sources are detected and a kernel fitted.",
    )


# ----------------------------------------------------------------------- helpers
def _workingSchema(*masks: Mask) -> MaskSchema:
    extra = list(_EXTRA_PLANES)
    base = makeDifferenceMaskSchema()
    for mask in masks:
        for name in mask.schema.names:
            if resolveMaskPlane(base, name) is None and name not in extra:
                extra.append(name)
    return makeDifferenceMaskSchema(extra)


def _convertMask(mask: Mask, schema: MaskSchema, bbox: Box | None = None) -> Mask:
    """Return ``mask`` (cut to ``bbox``) with its planes copied by name onto ``schema``."""
    src = mask if bbox is None else mask[bbox]
    out = Mask(0, schema=schema, bbox=src.bbox)
    for name in src.schema.names:
        target = resolveMaskPlane(schema, name)
        if target is not None:
            out.set(target, src.get(name))
    return out


def _planeIsSet(mask: Mask, name: str) -> np.ndarray | None:
    resolved = resolveMaskPlane(mask.schema, name)
    return None if resolved is None else mask.get(resolved)


def _setPlane(mask: Mask, name: str, values: np.ndarray) -> None:
    resolved = resolveMaskPlane(mask.schema, name)
    if resolved is not None:
        mask.set(resolved, values)


def _clearPlanes(mask: Mask, names: list[str]) -> None:
    bits = maskPlaneBitmask(mask.schema, names)
    if bits.any():
        mask.array[...] &= ~bits


def _maskedImage(exposure: MaskedImage, mask: Mask | None = None) -> MaskedImage:
    return MaskedImage(
        exposure.image,
        mask=exposure.mask if mask is None else mask,
        variance=exposure.variance,
        sky_projection=exposure.sky_projection,
    )


def _abZeroPoint(unit: u.UnitBase) -> float:
    """AB magnitude of one image unit (NaN if the unit, or `None`, is not a spectral flux density)."""
    try:
        jansky = (1.0 * unit).to_value(u.Jy)
    except (u.UnitConversionError, TypeError, AttributeError):
        return math.nan
    return float(-2.5 * math.log10(jansky / 3631.0))


def _templateCoverage(template: VisitImage, science: VisitImage) -> float:
    noData = anyMaskPlaneSet(template.mask[science.bbox], ["NO_DATA"])
    noScience = anyMaskPlaneSet(science.mask, ["NO_DATA"])
    assert noData is not None and noScience is not None  # both masks are given
    bad = noData | noScience
    return 1.0 - float(np.count_nonzero(bad)) / float(science.bbox.area)


def checkTemplateCoverage(
    template: VisitImage,
    science: VisitImage,
    log: logging.Logger | LsstLogAdapter,
    requiredTemplateFraction: float = 0.0,
    exceptionMessage: str = "",
) -> float:
    """Return the fraction of the science pixels with template data (upstream's rule).

    A pixel counts as missing if NO_DATA is set in the template or the
    science mask.

    Raises
    ------
    lsst.pipe.base.NoWorkFound
        If the fraction is below ``requiredTemplateFraction``.
    """
    fraction = _templateCoverage(template, science)
    log.info("template has %d good pixels (%.1f%%)", round(fraction * science.bbox.area), 100 * fraction)
    if fraction < requiredTemplateFraction:
        raise pipeBase.NoWorkFound(
            f"Insufficient Template Coverage. ({100 * fraction:.1f}% < "
            f"{100 * requiredTemplateFraction:.1f}%) " + exceptionMessage
        )
    return fraction


def computeDifferenceImageMetrics(
    science: VisitImage,
    difference: MaskedImage,
    stars: Table | None,
) -> pipeBase.Struct:
    """Return the mean/stdev over star footprints of ``|difference| / |science|`` (sky level removed).

    Footprints are the detection boxes (``xmin .. ymax``) when the catalogue
    has them, else 11 x 11 boxes on ``x``, ``y``; rows flagged
    ``sky_source`` give the sky ratios.
    """
    nan = pipeBase.Struct(
        differenceFootprintRatioMean=math.nan,
        differenceFootprintRatioStdev=math.nan,
        differenceFootprintSkyRatioMean=math.nan,
        differenceFootprintSkyRatioStdev=math.nan,
    )
    if stars is None or len(stars) == 0 or "x" not in stars.colnames:
        return nan
    bbox = science.bbox
    sci = science.image.array
    diff = difference.image.array

    def footprintMeans(rows: Table, sky: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        sMeans, ratios = [], []
        for row in rows:
            if "xmin" in rows.colnames:
                box = (int(row["xmin"]), int(row["xmax"]) + 1, int(row["ymin"]), int(row["ymax"]) + 1)
            else:
                cx, cy = int(round(float(row["x"]))), int(round(float(row["y"])))
                box = (cx - 5, cx + 6, cy - 5, cy + 6)
            x0, x1 = max(box[0], bbox.x.start) - bbox.x.start, min(box[1], bbox.x.stop) - bbox.x.start
            y0, y1 = max(box[2], bbox.y.start) - bbox.y.start, min(box[3], bbox.y.stop) - bbox.y.start
            if x1 <= x0 or y1 <= y0:
                continue
            s = float(np.nanmean(np.abs(sci[y0:y1, x0:x1])))
            d = float(np.nanmean(np.abs(diff[y0:y1, x0:x1])))
            sMeans.append(d)
            ratios.append(abs((d - sky) / s) if s > 0 else math.nan)
        return np.asarray(sMeans), np.asarray(ratios)

    isSky = np.asarray(stars["sky_source"], dtype=bool) if "sky_source" in stars.colnames else None
    starRows = stars if isSky is None else stars[~isSky]
    if isSky is not None and isSky.any():
        skyDiff, skyRatio = footprintMeans(stars[isSky])
        skyMean, skyStd, skyLevel = float(np.mean(skyRatio)), float(np.std(skyRatio)), float(np.mean(skyDiff))
    else:
        skyMean = skyStd = math.nan
        skyLevel = float(np.nanmedian(np.abs(diff)))
    _, ratio = footprintMeans(starRows, skyLevel)
    if ratio.size == 0:
        return nan
    return pipeBase.Struct(
        differenceFootprintRatioMean=float(np.nanmean(ratio)),
        differenceFootprintRatioStdev=float(np.nanstd(ratio)),
        differenceFootprintSkyRatioMean=skyMean,
        differenceFootprintSkyRatioStdev=skyStd,
    )


def _shapeTest(
    exp1: ExposureLike, exp2: ExposureLike, fwhmExposureBuffer: float, fwhmExposureGrid: int
) -> bool:
    """Return `True` if the PSF of ``exp1`` is not wider than that of ``exp2`` along x or along y.

    With the grid fallback (PSF not evaluable at its average position) the
    mean FWHMs are compared.
    """
    try:
        shape1 = getPsfFwhm(exp1.psf, average=False)
        shape2 = getPsfFwhm(exp2.psf, average=False)
    except Exception:  # PSF models raise many types off their domain
        f1 = evaluateMeanPsfFwhm(exp1.psf, exp1.bbox, fwhmExposureBuffer, fwhmExposureGrid)
        f2 = evaluateMeanPsfFwhm(exp2.psf, exp2.bbox, fwhmExposureBuffer, fwhmExposureGrid)
        return bool(f1 <= f2)
    return bool(shape1[0] <= shape2[0] or shape1[1] <= shape2[1])


# -------------------------------------------------------------------------- task
class AlardLuptonSubtractTask(pipeBase.PipelineTask):
    """Subtract a template from a science image with the Alard & Lupton (1998) algorithm.

    The kernel (`MakeKernelTask`) is fitted on kernel sources selected from
    the science image's source catalogue, the template (or, per ``mode``,
    the science image) is convolved with it, and the difference is
    decorrelated (`DecorrelateALKernelTask`) unless ``doDecorrelation`` is
    False.  With ``mode="convolveScience"`` the difference is
    ``matchedScience / kernelSum + background - template``, which assumes
    photometrically calibrated inputs (kernel sum near 1), as upstream.
    """

    ConfigClass: ClassVar[type[pipeBase.PipelineTaskConfig]] = AlardLuptonSubtractConfig
    _DefaultName = "alardLuptonSubtract"
    usePreconvolution = False
    config: AlardLuptonSubtractConfig | AlardLuptonPreconvolveSubtractConfig | SimplifiedSubtractConfig
    makeKernel: MakeKernelTask
    decorrelate: DecorrelateALKernelTask
    sourceSelector: ScienceSourceSelectorTask
    fallbackSourceSelector: ScienceSourceSelectorTask
    scaleVariance: ScaleVarianceTask

    def __init__(self, **kwargs: Unpack[PipelineTaskArguments]) -> None:
        super().__init__(**kwargs)
        self.makeSubtask("decorrelate")
        self.makeSubtask("makeKernel")
        self.makeSubtask("sourceSelector")
        self.makeSubtask("fallbackSourceSelector")
        if self.config.doScaleVariance:
            self.makeSubtask("scaleVariance")
        self.convolutionControl = ConvolutionControl(
            doNormalize=False, doCopyEdge=True, preserveMaskPlanes=tuple(self.config.preserveMaskPlanes)
        )
        self.templatePsfSize = math.nan
        self.sciencePsfSize = math.nan
        self.matchedPsfSize = math.nan

    def runQuantum(
        self,
        butlerQC: pipeBase.QuantumContext,
        inputRefs: pipeBase.InputQuantizedConnection,
        outputRefs: pipeBase.OutputQuantizedConnection,
    ) -> None:
        """Read the inputs of one quantum, run, and write the outputs.

        An `lsst.pipe.base.AlgorithmError` is annotated on the partial outputs
        (`lsst.pipe.base.AnnotatedPartialOutputsError`) before it is raised again.

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
            results = runAnnotated(self, inputs)
            outputs = self._toButler(results, inputs["science"])
            butlerQC.put(outputs, outputRefs)

    def _toButler(self, results: pipeBase.Struct, science: VisitImage) -> pipeBase.Struct:
        kernel = results.psfMatchingKernel
        if isinstance(kernel, Kernel):
            results.psfMatchingKernel = toImagesKernel(kernel, science.bbox)
        return results

    # ------------------------------------------------------------------ run
    @timeMethod
    def run(
        self,
        template: VisitImage,
        science: VisitImage,
        sources: Table | None = None,
        visitSummary: object = None,
    ) -> pipeBase.Struct:
        """PSF-match, subtract and decorrelate.

        Parameters
        ----------
        template : `lsst.images.VisitImage`
            Template warped to the science grid (its bbox contains the
            science bbox).  Its mask is cleared in place (except
            ``preserveTemplateMask``) and its variance rescaled if
            ``doScaleVariance``.
        science : `lsst.images.VisitImage`
            Science image (DETECTED planes cleared, variance rescaled, in
            place).
        sources : `astropy.table.Table`, optional
            Sources on the science image with ``x``, ``y`` (parent pixels);
            detected on the science image if `None` or
            ``doUseSourceCatalog`` is False.
        visitSummary : optional
            Unsupported (``doApplyExternalCalibrations`` must be False).

        Returns
        -------
        results : `lsst.pipe.base.Struct`
            ``difference`` (`lsst.images.DifferenceImage`), ``matchedTemplate``
            (`lsst.images.VisitImage`), ``matchedScience``, ``backgroundModel``
            (`lsst.ip.diffim.math.Function2` or `None`), ``psfMatchingKernel``
            (`lsst.ip.diffim.math.Kernel`), ``kernelSources``
            (`astropy.table.Table`).

        Raises
        ------
        lsst.pipe.base.NoWorkFound
            If the template covers too little of the science image.
        InsufficientKernelSourcesError
            If fewer than ``minKernelSources`` kernel sources are selected.
        """
        self._prepareInputs(template, science, visitSummary=visitSummary)
        convolveTemplate = self.chooseConvolutionMethod(template, science)
        self.matchedPsfSize = self.sciencePsfSize if convolveTemplate else self.templatePsfSize
        kernelResult = self.runMakeKernel(
            template,
            science,
            sources=sources,
            convolveTemplate=convolveTemplate,
            runSourceDetection=sources is None or not self.config.doUseSourceCatalog,
        )
        backgroundModel = kernelResult.backgroundModel if self.config.doSubtractBackground else None
        if convolveTemplate:
            results = self.runConvolveTemplate(
                template, science, kernelResult.psfMatchingKernel, backgroundModel=backgroundModel
            )
        else:
            results = self.runConvolveScience(
                template, science, kernelResult.psfMatchingKernel, backgroundModel=backgroundModel
            )
        results.kernelSources = kernelResult.kernelSources
        self._recordMetrics(
            science, results.difference, sources if sources is not None else results.kernelSources
        )
        return results

    def _recordMetrics(self, science: VisitImage, difference: MaskedImage, sources: Table | None) -> None:
        metrics = computeDifferenceImageMetrics(science, difference, sources)
        for key in (
            "differenceFootprintRatioMean",
            "differenceFootprintRatioStdev",
            "differenceFootprintSkyRatioMean",
            "differenceFootprintSkyRatioStdev",
        ):
            self.metadata[key] = getattr(metrics, key)
        self.log.info(
            "Mean, stdev of ratio of difference to science pixels in star footprints: %5.4f, %5.4f",
            self.metadata["differenceFootprintRatioMean"],
            self.metadata["differenceFootprintRatioStdev"],
        )

    def chooseConvolutionMethod(self, template: VisitImage, science: VisitImage) -> bool:
        """Return `True` to convolve the template (``mode``; ``auto`` uses `_shapeTest`).

        Raises
        ------
        RuntimeError
            With pre-convolution, or an unknown mode.
        """
        config = self.config
        if self.usePreconvolution or isinstance(config, AlardLuptonPreconvolveSubtractConfig):
            raise RuntimeError("Choosing a convolution method is incompatible with preconvolution!")
        mode = config.mode
        if mode == "auto":
            mk = self.config.makeKernel
            convolveTemplate = _shapeTest(template, science, mk.fwhmExposureBuffer, mk.fwhmExposureGrid)
            if convolveTemplate:
                if self.sciencePsfSize < self.templatePsfSize:
                    self.log.info(
                        "Average template PSF size is greater, but science PSF greater in one dimension: "
                        "convolving template image."
                    )
                else:
                    self.log.info("Science PSF size is greater: convolving template image.")
            else:
                self.log.info("Template PSF size is greater: convolving science image.")
        elif mode == "convolveTemplate":
            self.log.info("`convolveTemplate` is set: convolving template image.")
            convolveTemplate = True
        elif mode == "convolveScience":
            self.log.info("`convolveScience` is set: convolving science image.")
            convolveTemplate = False
        else:
            raise RuntimeError(f"Cannot handle AlardLuptonSubtract mode: {mode}")
        return convolveTemplate

    def runMakeKernel(
        self,
        template: VisitImage,
        science: VisitImage,
        sources: Table | None = None,
        convolveTemplate: bool = True,
        runSourceDetection: bool = False,
    ) -> pipeBase.Struct:
        """Select kernel sources and fit the kernel (not with pre-convolution).

        Returns
        -------
        results : `lsst.pipe.base.Struct`
            ``backgroundModel``, ``psfMatchingKernel``, ``kernelSources``.
        """
        if self.usePreconvolution:
            raise RuntimeError(
                "Incorrect matching kernel calculation configured. "
                "`runMakeKernel` can't be called if `usePreconvolution` is set."
            )
        templateMI = self._templateMI(template)
        scienceMI = self._scienceMI(science)
        if convolveTemplate:
            reference, target = templateMI, scienceMI
            referenceFwhm, targetFwhm = self.templatePsfSize, self.sciencePsfSize
        else:
            reference, target = scienceMI, templateMI
            referenceFwhm, targetFwhm = self.sciencePsfSize, self.templatePsfSize
        try:
            if runSourceDetection:
                kernelSources = self.runKernelSourceDetection(template, science)
            else:
                kernelSources = self._sourceSelector(template, science, sources)
            kernelResult = self.makeKernel.run(
                reference,
                target,
                kernelSources,
                preconvolved=False,
                templateFwhmPix=referenceFwhm,
                scienceFwhmPix=targetFwhm,
            )
        except (RuntimeError, ValueError, ArithmeticError) as e:
            self.log.warning("Failed to match template. Checking coverage")
            checkTemplateCoverage(
                template,
                science,
                self.log,
                self.config.minTemplateFractionForExpectedSuccess,
                exceptionMessage="Template coverage lower than expected to succeed. "
                f"Failure is tolerable: {e}",
            )
            raise
        return pipeBase.Struct(
            backgroundModel=kernelResult.backgroundModel,
            psfMatchingKernel=kernelResult.psfMatchingKernel,
            kernelSources=kernelSources,
        )

    def runKernelSourceDetection(self, template: MaskedImage, science: MaskedImage) -> Table:
        """Detect kernel sources on the science image and select them with the fallback selector."""
        kernelSize = self.makeKernel.makeKernelBasisList(self.templatePsfSize, self.matchedPsfSize)[
            0
        ].getWidth()
        sources = self.makeKernel.makeCandidateList(
            template,
            science,
            kernelSize,
            candidateList=None,
            sigma=self.sciencePsfSize / SIGMA2FWHM,
            fwhm=max(self.templatePsfSize, self.sciencePsfSize),
        )
        return self._sourceSelector(template, science, sources, fallback=True)

    # ------------------------------------------------------------ convolution
    def runConvolveTemplate(
        self,
        template: VisitImage,
        science: VisitImage,
        psfMatchingKernel: Kernel,
        backgroundModel: Function2 | None = None,
    ) -> pipeBase.Struct:
        """Convolve the template with the kernel and subtract it from the science image."""
        self.metadata["convolvedExposure"] = "Template"
        matched = self._convolveExposure(self._templateMI(template), psfMatchingKernel, bbox=science.bbox)
        scienceMI = self._scienceMI(science)
        difference = self._subtractImages(scienceMI, matched, backgroundModel, sign=-1.0)
        differenceImage = self._makeDifference(science, difference, psf=science.psf)
        corrected = self.finalize(template, science, differenceImage, psfMatchingKernel, templateMatched=True)
        return pipeBase.Struct(
            difference=corrected,
            matchedTemplate=self._makeVisitImage(science, matched, psf=science.psf),
            matchedScience=science,
            backgroundModel=backgroundModel,
            psfMatchingKernel=psfMatchingKernel,
        )

    def runConvolveScience(
        self,
        template: VisitImage,
        science: VisitImage,
        psfMatchingKernel: Kernel,
        backgroundModel: Function2 | None = None,
    ) -> pipeBase.Struct:
        """Convolve the science image with the kernel and subtract the template.

        The convolved science image is divided by the kernel sum at the
        science bbox centre; the background, fitted as ``template - K *
        science``, is added back (upstream negates its parameters).
        """
        self.metadata["convolvedExposure"] = "Science"
        bbox = science.bbox
        xc, yc = 0.5 * (bbox.x.start + bbox.x.stop), 0.5 * (bbox.y.start + bbox.y.stop)
        norm = float(psfMatchingKernel.getSum(xc, yc))
        matchedScience = self._convolveExposure(self._scienceMI(science), psfMatchingKernel)
        matchedScience.image.array[...] /= np.float32(norm)
        matchedScience.variance.array[...] /= np.float32(norm * norm)
        templateMI = self._templateMI(template)[bbox]
        difference = self._subtractImages(matchedScience, templateMI, backgroundModel, sign=+1.0)
        differenceImage = self._makeDifference(science, difference, psf=template.psf)
        corrected = self.finalize(
            template, science, differenceImage, psfMatchingKernel, templateMatched=False
        )
        return pipeBase.Struct(
            difference=corrected,
            matchedTemplate=self._makeVisitImage(science, templateMI, psf=template.psf),
            matchedScience=self._makeVisitImage(science, matchedScience, psf=template.psf),
            backgroundModel=backgroundModel,
            psfMatchingKernel=psfMatchingKernel,
        )

    def finalize(
        self,
        template: VisitImage,
        science: VisitImage,
        difference: DifferenceImage,
        kernel: Kernel,
        templateMatched: bool = True,
        preConvMode: bool = False,
        preConvKernel: Kernel | None = None,
        spatiallyVarying: bool = False,
    ) -> DifferenceImage:
        """Decorrelate the difference (if ``doDecorrelation``) and return it."""
        if not self.config.doDecorrelation:
            self.log.info("NOT decorrelating image difference.")
            return difference
        self.log.info("Decorrelating image difference.")
        templateCut = MaskedImage(
            template.image[science.bbox],
            mask=self._templateMask[science.bbox],
            variance=template.variance[science.bbox],
        )
        return self.decorrelate.run(
            science,
            _WithPsf(templateCut, template.psf),
            difference,
            kernel,
            templateMatched=templateMatched,
            preConvMode=preConvMode,
            preConvKernel=preConvKernel,
            spatiallyVarying=spatiallyVarying,
        ).correctedExposure

    def _convolveExposure(
        self,
        maskedImage: MaskedImage,
        kernel: Kernel,
        bbox: Box | None = None,
        interpolateBadMaskPlanes: bool = False,
    ) -> MaskedImage:
        """Convolve a masked image (copied edges with EDGE set; ``preserveMaskPlanes`` not dilated)."""
        if interpolateBadMaskPlanes and self.config.badMaskPlanes:
            maskedImage, nInterp = _interpolateImage(maskedImage, list(self.config.badMaskPlanes))
            self.metadata["nInterpolated"] = nInterp
        convolved = convolve(maskedImage, kernel, self.convolutionControl)
        return convolved if bbox is None else convolved[bbox]

    @staticmethod
    def _subtractImages(
        minuend: MaskedImage, subtrahend: MaskedImage, backgroundModel: Function2 | None, sign: float
    ) -> MaskedImage:
        """Return ``minuend + sign * background - subtrahend`` (variances add, masks OR)."""
        bbox = minuend.bbox
        image = minuend.image.array - subtrahend.image.array
        if backgroundModel is not None:
            background = backgroundModel.render(bbox, dtype=np.float32)
            image += np.float32(sign) * background
        variance = minuend.variance.array + subtrahend.variance.array
        mask = Mask(minuend.mask.array | subtrahend.mask.array, schema=minuend.mask.schema, bbox=bbox)
        unit = minuend.unit
        return MaskedImage(
            Image(image.astype(np.float32), bbox=bbox, unit=unit),
            mask=mask,
            variance=Image(variance.astype(np.float32), bbox=bbox, unit=None if unit is None else unit**2),
        )

    @staticmethod
    def _makeDifference(
        science: VisitImage, maskedImage: MaskedImage, psf: PointSpreadFunction
    ) -> DifferenceImage:
        return DifferenceImage(
            Image(maskedImage.image.array, bbox=science.bbox, unit=science.unit),
            mask=maskedImage.mask,
            variance=Image(maskedImage.variance.array, bbox=science.bbox, unit=science.unit**2),
            sky_projection=science.sky_projection,
            obs_info=science.obs_info,
            psf=psf,
            detector=science.detector,
            band=science.band,
        )

    @staticmethod
    def _makeVisitImage(
        science: VisitImage, maskedImage: MaskedImage, psf: PointSpreadFunction
    ) -> VisitImage:
        from .adapters.exposures import makeMatchedVisitImage

        return makeMatchedVisitImage(science, maskedImage, psf=psf)

    # ---------------------------------------------------------------- inputs
    def _templateMI(self, template: VisitImage) -> MaskedImage:
        return _maskedImage(template, self._templateMask)

    def _scienceMI(self, science: VisitImage) -> MaskedImage:
        return _maskedImage(science, self._scienceMask)

    @staticmethod
    def _validateExposures(template: VisitImage, science: VisitImage) -> None:
        """Assert that the band and pixel grid match and the template covers the science bbox."""
        assert science.band == template.band, (
            f"Science and template exposures have different bands: {science.band}, {template.band}"
        )
        assert template.bbox.contains(science.bbox), (
            "Template bbox does not contain all of the science image."
        )
        sProj, tProj = getattr(science, "sky_projection", None), getattr(template, "sky_projection", None)
        if sProj is not None and tProj is not None:
            bbox = science.bbox
            xs = np.array([bbox.x.min, bbox.x.max, bbox.x.min, bbox.x.max], dtype=float)
            ys = np.array([bbox.y.min, bbox.y.min, bbox.y.max, bbox.y.max], dtype=float)
            mapped = tProj.sky_to_pixel(sProj.pixel_to_sky(x=xs, y=ys))
            offset = max(np.max(np.abs(np.asarray(mapped.x) - xs)), np.max(np.abs(np.asarray(mapped.y) - ys)))
            assert offset < 1e-3, "Template and science exposure WCS are not identical."

    def _prepareInputs(self, template: VisitImage, science: VisitImage, visitSummary: object = None) -> None:
        """Validate, check coverage, scale variances, update masks and measure the PSF sizes."""
        self._validateExposures(template, science)
        if visitSummary is not None:
            raise ValueError("visitSummary (external calibrations) is not supported with lsst.images inputs.")
        coverage = checkTemplateCoverage(
            template,
            science,
            self.log,
            requiredTemplateFraction=self.config.requiredTemplateFraction,
            exceptionMessage="Not attempting subtraction. To force subtraction, set config "
            "requiredTemplateFraction=0",
        )
        self.metadata["templateCoveragePercent"] = 100 * coverage
        if self.config.doScaleVariance:
            templateVarFactor = self.scaleVariance.run(_maskedImage(template))
            sciVarFactor = self.scaleVariance.run(_maskedImage(science))
            self.log.info("Template variance scaling factor: %.2f", templateVarFactor)
            self.metadata["scaleTemplateVarianceFactor"] = templateVarFactor
            self.log.info("Science variance scaling factor: %.2f", sciVarFactor)
            self.metadata["scaleScienceVarianceFactor"] = sciVarFactor
        self.updateMasks(template, science)
        try:
            self.templatePsfSize = float(getPsfFwhm(template.psf))
            self.sciencePsfSize = float(getPsfFwhm(science.psf))
        except Exception:  # PSF models raise many types off their domain
            self.log.info(
                "Unable to evaluate PSF at the average position. Evaluting PSF on a grid of points."
            )
            mk = self.config.makeKernel
            self.templatePsfSize = evaluateMeanPsfFwhm(
                template.psf, template.bbox, mk.fwhmExposureBuffer, mk.fwhmExposureGrid
            )
            self.sciencePsfSize = evaluateMeanPsfFwhm(
                science.psf, science.bbox, mk.fwhmExposureBuffer, mk.fwhmExposureGrid
            )
        self.log.info("Science PSF FWHM: %f pixels", self.sciencePsfSize)
        self.log.info("Template PSF FWHM: %f pixels", self.templatePsfSize)
        self.metadata["sciencePsfSize"] = self.sciencePsfSize
        self.metadata["templatePsfSize"] = self.templatePsfSize
        maglimScience = self._calculateMagLim(science, fallbackPsfSize=self.sciencePsfSize)
        if np.isnan(maglimScience):
            self.log.warning("Limiting magnitude of the science image is NaN!")
        maglimTemplate = self._calculateMagLim(template, fallbackPsfSize=self.templatePsfSize)
        if np.isnan(maglimTemplate):
            self.log.info("Cannot evaluate template limiting mag; adopting science limiting mag for diffim")
            maglimDiffim = maglimScience
        else:
            fluxScience = (maglimScience * u.ABmag).to_value(u.nJy)
            fluxTemplate = (maglimTemplate * u.ABmag).to_value(u.nJy)
            maglimDiffim = float((math.hypot(fluxScience, fluxTemplate) * u.nJy).to(u.ABmag).value)
        self.metadata["scienceLimitingMagnitude"] = maglimScience
        self.metadata["templateLimitingMagnitude"] = maglimTemplate
        self.metadata["diffimLimitingMagnitude"] = maglimDiffim

    def _calculateMagLim(
        self, exposure: VisitImage, nsigma: float = 5.0, fallbackPsfSize: float | None = None
    ) -> float:
        """Return upstream's limiting magnitude ``zp - 2.5 log10(nsigma sqrt(psfArea))`` (NaN if unknown)."""
        zeropoint = _abZeroPoint(getattr(exposure, "unit", None))
        if not np.isfinite(zeropoint):
            return math.nan
        try:
            bbox = exposure.psf.bounds.bbox
            image = np.asarray(
                exposure.psf.compute_kernel_image(x=bbox.x.center, y=bbox.y.center).array, dtype=float
            )
            ixx, iyy, _ = psfMoments(image)
            psfArea = math.pi * math.sqrt(ixx * iyy)
        except Exception:  # PSF models raise many types off their domain
            if fallbackPsfSize is None:
                self.log.info("Unable to evaluate PSF, setting maglim to nan")
                return math.nan
            self.log.info("Unable to evaluate PSF, using fallback FWHM %f", fallbackPsfSize)
            psfArea = math.pi * (fallbackPsfSize / 2) ** 2
        return float(zeropoint - 2.5 * math.log10(nsigma * math.sqrt(psfArea)))

    def updateMasks(self, template: VisitImage, science: VisitImage) -> None:
        """Make the working masks: science without DETECTED planes; template cleared but for a few planes.

        ``renameTemplateMask`` planes become ``<name>_TEMPLATE``; ``FAKE``
        becomes ``INJECTED`` (science) and ``INJECTED_TEMPLATE`` (template).
        The input masks are cleared in place as upstream does.
        """
        schema = _workingSchema(template.mask, science.mask)
        _clearPlanes(science.mask, ["DETECTED", "DETECTED_NEGATIVE"])
        scienceMask = _convertMask(science.mask, schema)
        templateMask = _convertMask(template.mask, schema)
        present = [n for n in template.mask.schema.names if n not in ("",)]
        preserve = {resolveMaskPlane(template.mask.schema, n) for n in self.config.preserveTemplateMask}
        clear = [n for n in present if n not in preserve]
        rename = [n for n in self.config.renameTemplateMask if _planeIsSet(template.mask, n) is not None]
        fake = _planeIsSet(science.mask, "FAKE")
        if fake is not None:
            self.log.info("Adding injected mask plane to science image")
            _setPlane(scienceMask, "INJECTED", fake | scienceMask.get("INJECTED"))
        fakeTemplate = _planeIsSet(template.mask, "FAKE")
        if fakeTemplate is not None:
            self.log.info("Adding injected mask plane to template image")
            _setPlane(templateMask, "INJECTED_TEMPLATE", fakeTemplate | templateMask.get("INJECTED_TEMPLATE"))
            if "INJECTED" in rename:
                rename.remove("INJECTED")
        for name in rename:
            values = _planeIsSet(template.mask, name)
            target = resolveMaskPlane(schema, name + "_TEMPLATE")
            if target is None or values is None:
                continue
            templateMask.set(target, templateMask.get(target) | values)
        # Clear the template planes on the working mask (the copies made above
        # are new planes, so they survive) and on the input, as upstream.
        _clearPlanes(templateMask, clear)
        _clearPlanes(template.mask, clear)
        self._scienceMask = scienceMask
        self._templateMask = templateMask

    # -------------------------------------------------------------- sources
    def _sourceSelector(
        self, template: MaskedImage, science: MaskedImage, sources: Table, fallback: bool = False
    ) -> Table:
        """Select kernel sources: selector criteria, stamps inside the image and free of masked pixels.

        Raises
        ------
        InsufficientKernelSourcesError
            If fewer than ``minKernelSources`` remain (and no fallback detection).
        """
        if not isinstance(sources, Table):
            sources = Table(sources)
        selector = self.fallbackSourceSelector if fallback else self.sourceSelector
        selected = selector.selectSources(sources).selected
        kSize = self.makeKernel.makeKernelBasisList(self.templatePsfSize, self.matchedPsfSize)[0].getWidth()
        kernelSources = self._setSourceFootprints(Table(sources[selected], copy=True), kSize)
        bbox = science.bbox
        shrink = (kSize if self.usePreconvolution else 0) + (
            kSize if self.config.restrictKernelEdgeSources else 0
        )
        keep = np.ones(len(kernelSources), dtype=bool)
        if len(kernelSources):
            x0 = np.asarray(kernelSources["stampXmin"])
            x1 = np.asarray(kernelSources["stampXmax"])
            y0 = np.asarray(kernelSources["stampYmin"])
            y1 = np.asarray(kernelSources["stampYmax"])
            keep &= (x0 >= bbox.x.start + shrink) & (x1 <= bbox.x.stop - shrink)
            keep &= (y0 >= bbox.y.start + shrink) & (y1 <= bbox.y.stop - shrink)
            for mask in (self._scienceMask, self._templateMask[bbox]):
                flags = anyMaskPlaneSet(mask, self.config.excludeMaskPlanes)
                idx = np.flatnonzero(keep)
                if flags is not None and flags.any() and idx.size:
                    bad = _anyInBoxes(
                        flags,
                        x0[idx] - bbox.x.start,
                        x1[idx] - 1 - bbox.x.start,
                        y0[idx] - bbox.y.start,
                        y1[idx] - 1 - bbox.y.start,
                    )
                    keep[idx[bad]] = False
        kernelSources = kernelSources[keep]
        nMax = self.config.maxKernelSources
        if nMax > 0 and len(kernelSources) > nMax:
            snr = signalToNoise(kernelSources, selector.config.signalToNoise)
            order = np.argsort(snr if snr is not None else np.zeros(len(kernelSources)), kind="stable")
            kernelSources = kernelSources[np.sort(order[-nMax:])]
        nIn = max(len(sources), 1)
        self.log.info(
            "%i/%i=%.1f%% of sources selected for PSF matching from the input catalog",
            len(kernelSources),
            len(sources),
            100 * len(kernelSources) / nIn,
        )
        if len(kernelSources) < self.config.minKernelSources:
            self.log.error(
                "Too few sources to calculate the PSF matching kernel: %i selected but %i needed for the "
                "calculation.",
                len(kernelSources),
                self.config.minKernelSources,
            )
            if self.config.allowKernelSourceDetection and not fallback:
                kernelSources = self.runKernelSourceDetection(template, science)
            else:
                raise InsufficientKernelSourcesError(
                    nSources=len(kernelSources), nRequired=self.config.minKernelSources
                )
        self.metadata["nPsfSources"] = len(kernelSources)
        return kernelSources

    @staticmethod
    def _setSourceFootprints(sources: Table, kernelSize: int) -> Table:
        """Give every source a centred ``(2 kernelSize + 1)^2`` stamp box."""
        size = 2 * kernelSize + 1
        boxes = [makeCenteredBox(float(r["x"]), float(r["y"]), size) for r in sources]
        sources["stampXmin"] = np.array([b.x.start for b in boxes], dtype=np.int64)
        sources["stampXmax"] = np.array([b.x.stop for b in boxes], dtype=np.int64)
        sources["stampYmin"] = np.array([b.y.start for b in boxes], dtype=np.int64)
        sources["stampYmax"] = np.array([b.y.stop for b in boxes], dtype=np.int64)
        return sources


class _WithPsf:
    """A masked image with a ``psf`` attribute (the decorrelation reads the template PSF)."""

    def __init__(self, maskedImage: MaskedImage, psf: PointSpreadFunction) -> None:
        self._mi = maskedImage
        self.psf = psf

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mi, name)


def _interpolateImage(
    maskedImage: MaskedImage, badMaskPlanes: list[str], fallbackValue: float | None = None
) -> tuple[MaskedImage, int]:
    """Return a copy with the pixels of ``badMaskPlanes`` set to the image's NaN-median, and their number."""
    bad = anyMaskPlaneSet(maskedImage.mask, badMaskPlanes)
    n = int(np.count_nonzero(bad)) if bad is not None else 0
    if n == 0:
        return maskedImage, 0
    image = maskedImage.image.array.copy()
    image[bad] = np.nan
    value = float(np.nanmedian(image)) if fallbackValue is None else fallbackValue
    image[bad] = value
    return (
        MaskedImage(
            Image(image, bbox=maskedImage.bbox, unit=maskedImage.unit),
            mask=maskedImage.mask,
            variance=maskedImage.variance,
            sky_projection=maskedImage.sky_projection,
        ),
        n,
    )


class AlardLuptonPreconvolveSubtractTask(AlardLuptonSubtractTask):
    """Make a score image: the science image is convolved with its own PSF, then the template matched to it.

    The score image, decorrelated as a likelihood image, has point-source
    peaks at their detection S/N (in units of its variance plane).
    """

    ConfigClass = AlardLuptonPreconvolveSubtractConfig
    _DefaultName = "alardLuptonPreconvolveSubtract"
    usePreconvolution = True
    config: AlardLuptonPreconvolveSubtractConfig

    @timeMethod
    def run(
        self,
        template: VisitImage,
        science: VisitImage,
        sources: Table | None = None,
        visitSummary: object = None,
    ) -> pipeBase.Struct:
        """Pre-convolve the science image, match the template to it and subtract.

        Returns
        -------
        results : `lsst.pipe.base.Struct`
            ``scoreExposure`` (`lsst.images.DifferenceImage`, science PSF),
            ``matchedTemplate``, ``matchedScience``, ``backgroundModel``,
            ``psfMatchingKernel``, ``kernelSources``.
        """
        self._prepareInputs(template, science, visitSummary=visitSummary)
        preKernel = self._makePreconvolutionKernel(science.psf)
        matchedScience = self._convolveExposure(
            self._scienceMI(science), preKernel, interpolateBadMaskPlanes=True
        )
        self.metadata["convolvedExposure"] = "Preconvolution"
        self.matchedPsfSize = self.sciencePsfSize * math.sqrt(2)
        self.log.info("Preconvolved science PSF FWHM: %f pixels", self.matchedPsfSize)
        self.metadata["preconvolvedSciencePsfSize"] = self.matchedPsfSize
        try:
            if sources is None or not self.config.doUseSourceCatalog:
                kernelSize = self.makeKernel.makeKernelBasisList(self.templatePsfSize, self.matchedPsfSize)[
                    0
                ].getWidth()
                detected = self.makeKernel.makeCandidateList(
                    template,
                    science,
                    kernelSize,
                    candidateList=None,
                    sigma=self.sciencePsfSize / SIGMA2FWHM,
                    fwhm=max(self.templatePsfSize, self.sciencePsfSize),
                )
                kernelSources = self._sourceSelector(template, matchedScience, detected, fallback=True)
            else:
                kernelSources = self._sourceSelector(template, matchedScience, sources)
            results = self.runPreconvolve(template, science, matchedScience, kernelSources, preKernel)
        except (RuntimeError, ValueError, ArithmeticError) as e:
            self.log.warning("Failed to match template. Checking coverage")
            checkTemplateCoverage(
                template,
                science,
                self.log,
                self.config.minTemplateFractionForExpectedSuccess,
                exceptionMessage="Template coverage lower than expected to succeed. "
                f"Failure is tolerable: {e}",
            )
            raise
        self._recordMetrics(science, results.scoreExposure, sources if sources is not None else kernelSources)
        return results

    def _toButler(self, results: pipeBase.Struct, science: VisitImage) -> pipeBase.Struct:
        return pipeBase.Struct(
            scoreExposure=results.scoreExposure,
            psfMatchingKernel=toImagesKernel(results.psfMatchingKernel, science.bbox),
            kernelSources=results.kernelSources,
        )

    @staticmethod
    def _makePreconvolutionKernel(psf: PointSpreadFunction) -> FixedKernel:
        """Return the unit-sum PSF image at the PSF's centre, reflected in both axes.

        Raises
        ------
        ValueError
            If the PSF image has an even size.
        """
        bbox = psf.bounds.bbox
        image = np.asarray(psf.compute_kernel_image(x=bbox.x.center, y=bbox.y.center).array, dtype=float)
        h, w = image.shape
        if h % 2 == 0 or w % 2 == 0:
            raise ValueError(f"Preconvolution requires an odd-sized PSF kernel, got {w}x{h}. ")
        image = image / image.sum()
        return FixedKernel(np.ascontiguousarray(image[::-1, ::-1]))

    @staticmethod
    def _flagScoreEdge(mask: Mask, innerBBox: Box) -> None:
        """Set EDGE on every pixel outside ``innerBBox``."""
        bbox = mask.bbox
        outside = np.ones((bbox.y.size, bbox.x.size), dtype=bool)
        outside[
            innerBBox.y.start - bbox.y.start : innerBBox.y.stop - bbox.y.start,
            innerBBox.x.start - bbox.x.start : innerBBox.x.stop - bbox.x.start,
        ] = False
        edge = resolveMaskPlane(mask.schema, "EDGE")
        if edge is not None:
            mask.set(edge, mask.get(edge) | outside)

    def runPreconvolve(
        self,
        template: VisitImage,
        science: VisitImage,
        matchedScience: MaskedImage,
        kernelSources: Table,
        preConvKernel: FixedKernel,
    ) -> pipeBase.Struct:
        """Match the template to the pre-convolved science image and form the (decorrelated) score."""
        bbox = science.bbox
        ry, rx = preConvKernel.getCtrY(), preConvKernel.getCtrX()
        innerBBox = Box.factory[bbox.y.start + ry : bbox.y.stop - ry, bbox.x.start + rx : bbox.x.stop - rx]
        kernelResult = self.makeKernel.run(
            self._templateMI(template)[innerBBox],
            matchedScience[innerBBox],
            kernelSources,
            preconvolved=True,
            templateFwhmPix=self.templatePsfSize,
            scienceFwhmPix=self.matchedPsfSize,
        )
        matchedTemplate = self._convolveExposure(
            self._templateMI(template),
            kernelResult.psfMatchingKernel,
            bbox=bbox,
            interpolateBadMaskPlanes=True,
        )
        background = kernelResult.backgroundModel if self.config.doSubtractBackground else None
        score = self._subtractImages(matchedScience, matchedTemplate, background, sign=-1.0)
        scoreImage = self._makeDifference(science, score, psf=science.psf)
        corrected = self.finalize(
            template,
            science,
            scoreImage,
            kernelResult.psfMatchingKernel,
            templateMatched=True,
            preConvMode=True,
            preConvKernel=preConvKernel,
        )
        self._flagScoreEdge(corrected.mask, innerBBox)
        return pipeBase.Struct(
            scoreExposure=corrected,
            matchedTemplate=self._makeVisitImage(science, matchedTemplate, psf=science.psf),
            matchedScience=self._makeVisitImage(science, matchedScience, psf=science.psf),
            backgroundModel=kernelResult.backgroundModel,
            psfMatchingKernel=kernelResult.psfMatchingKernel,
            kernelSources=kernelSources,
        )


class SimplifiedSubtractTask(AlardLuptonSubtractTask):
    """Subtract with an existing PSF-matching kernel, or one fitted on detected kernel sources."""

    ConfigClass = SimplifiedSubtractConfig
    _DefaultName = "simplifiedSubtract"
    config: SimplifiedSubtractConfig

    @timeMethod
    def run(  # type: ignore[override]
        self,
        template: VisitImage,
        science: VisitImage,
        visitSummary: object = None,
        inputPsfMatchingKernel: Kernel | ImageBasisConvolutionKernel | None = None,
    ) -> pipeBase.Struct:
        """PSF-match (with ``inputPsfMatchingKernel`` if ``useExistingKernel``), subtract, decorrelate.

        Parameters
        ----------
        inputPsfMatchingKernel : `lsst.ip.diffim.math.Kernel` or `lsst.images.convolution_kernels.ImageBasisConvolutionKernel`, optional
            The kernel to use; required if ``useExistingKernel``.

        Raises
        ------
        ValueError
            If ``useExistingKernel`` is set and no kernel is given.
        """  # noqa: E501
        self._prepareInputs(template, science, visitSummary=visitSummary)
        convolveTemplate = self.chooseConvolutionMethod(template, science)
        self.matchedPsfSize = self.sciencePsfSize if convolveTemplate else self.templatePsfSize
        kernelSources = None
        if self.config.useExistingKernel:
            if inputPsfMatchingKernel is None:
                raise ValueError("useExistingKernel is set but no inputPsfMatchingKernel was given.")
            kernel = inputPsfMatchingKernel
            if not isinstance(kernel, Kernel):
                kernel = fromImagesKernel(kernel)
            backgroundModel = None
        else:
            kernelResult = self.runMakeKernel(
                template, science, convolveTemplate=convolveTemplate, runSourceDetection=True
            )
            kernel = kernelResult.psfMatchingKernel
            kernelSources = kernelResult.kernelSources
            backgroundModel = kernelResult.backgroundModel if self.config.doSubtractBackground else None
        if convolveTemplate:
            results = self.runConvolveTemplate(template, science, kernel, backgroundModel=backgroundModel)
        else:
            results = self.runConvolveScience(template, science, kernel, backgroundModel=backgroundModel)
        if kernelSources is not None:
            results.kernelSources = kernelSources
        return results

    def _toButler(self, results: pipeBase.Struct, science: VisitImage) -> pipeBase.Struct:
        if self.config.useExistingKernel:
            return pipeBase.Struct(difference=results.difference, matchedTemplate=results.matchedTemplate)
        return super()._toButler(results, science)
