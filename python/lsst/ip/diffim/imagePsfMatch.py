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
"""Match the PSFs of two images and subtract them (Alard-Lupton style)."""

from __future__ import annotations

__all__ = [
    "ImagePsfMatchConfig",
    "ImagePsfMatchTask",
    "ImagesDoNotOverlapError",
    "MismatchedImagesError",
    "subtractAlgorithmRegistry",
]

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Unpack, cast

import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import MaskedImage, VisitImage
from lsst.utils.timer import timeMethod

from .crowdedField import crowdedBasisDegrees, medianFootprintPeaks
from .detection import SourceDetectionConfig, SourceDetectionTask, isolatedSources, selectCandidateFootprints
from .exclusions import EXTENT_FWHM, ExclusionRegions, PositionSpec, excludedForFit
from .fwhmValidation import validateFwhmArguments
from .inputChecks import MismatchedImagesError
from .kernel.basisComplexity import bicPreferredDegrees
from .kernel.cellSetFactory import makeKernelCellSet
from .kernel.settings import KernelFitSettings
from .makeKernelBasisList import BasisMetadata, makeKernelBasisList
from .math.convolve import ConvolutionControl, convolve
from .math.functions import Function2
from .math.kernels import Kernel
from .math.maskMerge import mergeMaskPlanes
from .math.masks import anyMaskPlaneSet
from .math.meshBackground import MeshBackground
from .math.nonFinite import flagNonFinitePixels
from .math.outputPlanes import OutputPlanes, preparedPlanes
from .math.spatialCell import SpatialCellSet
from .math.statistics import allFinite
from .math.subtraction import maskedImageFromPlanes, subtractMatched
from .offSourceBackground import detectedSourceMask, refineBackgroundOffSources
from .psfMatch import NoKernelCandidatesError, PsfMatchConfigAL, PsfMatchConfigDF, PsfMatchTask
from .taskArguments import TaskArguments
from .variableCandidates import fitExclusions


def _largerFwhm(*fwhms: float | None) -> float | None:
    """Return the largest of the known FWHMs, or `None`."""
    known = [float(f) for f in fwhms if f is not None]
    return max(known) if known else None


class ImagesDoNotOverlapError(pipeBase.NoWorkFound):
    """The template and science images do not overlap on the sky."""


class ImagePsfMatchConfig(pexConfig.Config):
    """Configuration of image-to-image PSF matching."""

    kernel = pexConfig.ConfigChoiceField(
        doc="Kernel basis and fitting configuration.",
        typemap=dict(AL=PsfMatchConfigAL, DF=PsfMatchConfigDF),
        default="AL",
    )
    selectDetection = pexConfig.ConfigurableField[SourceDetectionConfig](
        target=SourceDetectionTask,
        doc="Detection of kernel candidate stars.",
    )
    doSubtractBackground = pexConfig.Field[bool](
        dtype=bool,
        doc="Subtract the fitted differential background in subtractExposures/subtractMaskedImages "
        "(only meaningful with kernel.active.fitForBackground).",
        default=True,
    )
    maxCandidates = pexConfig.Field[int](
        dtype=int,
        doc="Keep at most this many detected candidates (brightest first); <= 0 keeps all.",
        default=-1,
    )
    rankIsolatedFirst = pexConfig.Field[bool](
        dtype=bool,
        doc="Within each spatial cell, use the isolated candidates first (brightest first), then the "
        "others: HOTPANTS' rule. A candidate is not isolated when a detected source within the kernel "
        "half-width has a peak at least isolationPeakRatio times its own. A deviation from upstream "
        "(brightest first regardless of neighbours); False restores upstream's order.",
        default=True,
    )
    isolationPeakRatio = pexConfig.RangeField(
        dtype=float,
        doc="Neighbour-to-candidate peak ratio above which a neighbour spoils a candidate's isolation "
        "(rankIsolatedFirst).",
        default=0.5,
        min=0.0,
    )
    doRejectVariableCandidates = pexConfig.Field[bool](
        dtype=bool,
        doc="Drop kernel candidates whose science/template aperture flux ratio disagrees with the "
        "field's (a variable star, the transient of an alert cutout) by more than "
        "variableCandidateTolerance and 3 sigma (lsst.ip.diffim.variableCandidates; metadata "
        "nVariableCandidates). A deviation from upstream; False restores it.",
        default=True,
    )
    doCorrelatedNoiseVariance = pexConfig.Field[bool](
        dtype=bool,
        doc="Correct the variance of the convolved image for the noise correlation of its input "
        "(resampled, coadded images): K^2 * var assumes independent pixels; the neighbour correlations "
        "measured on the input's sky and the kernel at the image centre give the factor "
        "(lsst.ip.diffim.math.correlatedNoise; metadata correlatedNoiseVarianceFactor); not in crowded "
        "fields (metadata crowdedField), whose unresolved stars correlate the sky. A deviation from "
        "upstream; False restores it.",
        default=True,
    )
    variableCandidateTolerance = pexConfig.RangeField(
        dtype=float,
        doc="Smallest relative flux disagreement that makes a candidate variable "
        "(doRejectVariableCandidates).",
        default=0.25,
        min=0.0,
    )
    crowdedFieldMinPeaks = pexConfig.RangeField(
        dtype=float,
        doc="A field is crowded when the median number of peaks of the kernel candidates' detection "
        "footprints (column nPeaks, from selectDetection.splitFootprintsAtPeaks) is at least this; the "
        "Alard-Lupton basis then takes crowdedAlardDegGauss (lsst.ip.diffim.crowdedField; metadata "
        "crowdedField, medianFootprintPeaks). A deviation from upstream; 0 never.",
        default=10.0,
        min=0.0,
    )
    crowdedMinFwhmRatio = pexConfig.RangeField(
        dtype=float,
        doc="crowdedAlardDegGauss applies only when the FWHM of the convolved image is between this "
        "fraction of the other image's and the other image's (similar seeing, a broadening kernel).",
        default=0.8,
        min=0.0,
        max=1.0,
    )
    crowdedMaxFwhmRatio = pexConfig.RangeField(
        dtype=float,
        doc="The crowded-field basis (crowdedAlardDegGauss, crowdedResidualClipping) also applies when "
        "the convolved image's FWHM is above the other's by at most this factor (similar seeing, a "
        "mildly sharpening kernel: the science image convolved although its PSF is a little wider). "
        "1 restores the broadening-only rule.",
        default=1.25,
        min=1.0,
    )
    crowdedMinSigDeconv = pexConfig.RangeField(
        dtype=float,
        doc="Smallest Gaussian sigma (pixels) of a crowded field's basis when it sharpens (the convolved "
        "image's PSF a little wider, crowdedMaxFwhmRatio), in place of kernel.active.alardMinSigDeconv: "
        "a narrower Gaussian times the crowded degrees is ill-conditioned and biases the kernel sum "
        "(+1.5% on the bulge pair 0100/0028).",
        default=0.7,
        min=0.25,
    )
    crowdedResidualClipping = pexConfig.Field[bool](
        dtype=bool,
        doc="In a crowded field of similar seeing (crowdedField) whose kernel sharpens (the convolved "
        "image's PSF the wider one, crowdedMaxFwhmRatio), still reject candidates for large residuals "
        "(kernel.active.singleKernelClipping, spatialKernelClipping). There the brightest stars leave "
        "the largest residuals relative to their noise, so the absolute rule (candidateResidualStdMax) "
        "rejected 43 of the 50 brightest stars of the bulge pair 0100/0028 and the kernel was fitted on "
        "faint ones. False (the default, a deviation from upstream) keeps them; the kernel-sum clipping "
        "(kernelSumClipping) still rejects variable stars and blends. Broadening fits keep the clipping.",
        default=False,
    )
    crowdedAlardDegGauss = pexConfig.ListField[int](
        dtype=int,
        doc="Alard-Lupton polynomial degrees used in place of kernel.active.alardDegGauss in a crowded "
        "field (crowdedFieldMinPeaks); ignored unless as long as alardDegGauss and no lower. Empty: never.",
        default=[8, 6, 4],
    )
    crowdedSharpeningAlardDegGauss = pexConfig.ListField[int](
        dtype=int,
        doc="Alard-Lupton degrees of a crowded field's sharpening fit (crowdedMaxFwhmRatio), in place of "
        "crowdedAlardDegGauss; ignored unless as long as alardDegGauss and no lower. Lower degrees on the "
        "wider Gaussians keep the kernel's outer ring out of the bright stars' wings (see "
        "lsst.ip.diffim.crowdedField). Empty: crowdedAlardDegGauss.",
        default=[8, 4, 2],
    )
    crowdedSharpeningStarsPerCell = pexConfig.RangeField(
        dtype=int,
        doc="Candidates used per spatial cell (brightest isolated first) in a crowded field's sharpening "
        "fit, in place of kernel.active.nStarPerCell: the fainter, more blended candidates of a crowded "
        "cell worsen both the bright-star residuals and the fraction of pixels beyond 5 sigma there. 0: "
        "nStarPerCell.",
        default=2,
        min=0,
    )
    crowdedSharpeningWeightingFloor = pexConfig.RangeField(
        dtype=float,
        doc="A crowded field's sharpening fit weights its stamp pixels by 1 / (variance + this times the "
        "stamp's median variance) (kernel.active.varianceWeightingFloor, constantVarianceWeighting off): "
        "the bright stars' cores then weigh less against their wings, where a sharpening kernel's errors "
        "show as pixels beyond 5 sigma. 0: the configured weighting.",
        default=40.0,
        min=0.0,
    )
    doRefineBackgroundOffSources = pexConfig.Field[bool](
        dtype=bool,
        doc="Re-measure the differential background on the difference image's pixels away from the "
        "sources of either input, the kernel fixed, and correct the difference and the background "
        "model (lsst.ip.diffim.offSourceBackground; metadata offSourceBackgroundCorrection). The "
        "stamps' background terms absorb what the kernel cannot fit of bright stars, leaving the sky "
        "low in crowded fields. A deviation from upstream; False restores its background. Only with "
        "kernel.active.fitForBackground and doSubtractBackground.",
        default=True,
    )
    candidateMaskPlanesConvolved = pexConfig.ListField[str](
        dtype=str,
        doc="Extra mask planes kept undilated when convolving (e.g. injected-source planes).",
        default=(),
    )

    def setDefaults(self) -> None:
        """Set the candidate detection threshold to 10 times the per-pixel noise (``pixel_stdev``)."""
        super().setDefaults()
        self.selectDetection.thresholdValue = 10.0
        self.selectDetection.thresholdType = "pixel_stdev"


subtractAlgorithmRegistry = pexConfig.makeRegistry(doc="A registry of subtraction algorithms.")


class ImagePsfMatchTask(PsfMatchTask):
    """Match the PSF of a template image to that of a science image and subtract.

    The template is convolved with a spatially varying kernel, a linear
    combination of basis kernels (Alard-Lupton Gaussians times polynomials or
    delta functions), fitted on stars selected across the image, plus a
    differential background.

    Invoke with `run` (or `subtractExposures`) on `lsst.images.VisitImage`
    objects, with `subtractMaskedImages` on plain `lsst.images.MaskedImage`
    objects, or with `matchExposures` / `matchMaskedImages` to get only the
    PSF-matched image.
    """

    ConfigClass: ClassVar[type[ImagePsfMatchConfig]] = ImagePsfMatchConfig
    config: ImagePsfMatchConfig
    selectDetection: SourceDetectionTask

    def __init__(self, config: pexConfig.Config | None = None, **kwargs: Unpack[TaskArguments]) -> None:
        super().__init__(config, **kwargs)
        self.makeSubtask("selectDetection")

    def _kernelSettings(self, crowdedSharpening: bool = False) -> KernelFitSettings:
        """Return the kernel core's settings; a crowded field's sharpening fit drops the residual clipping.

        ``crowdedSharpening``: the fit is a crowded field's sharpening one
        (`_crowdedDegrees`).  See ``crowdedResidualClipping`` and
        ``crowdedSharpeningWeightingFloor`` (its stamp weights).
        """
        settings = super()._kernelSettings()
        if crowdedSharpening and not self.config.crowdedResidualClipping:
            settings = dataclasses.replace(settings, singleKernelClipping=False, spatialKernelClipping=False)
        if crowdedSharpening and self.config.crowdedSharpeningWeightingFloor > 0:
            settings = dataclasses.replace(
                settings,
                constantVarianceWeighting=False,
                varianceWeightingFloor=self.config.crowdedSharpeningWeightingFloor,
            )
        return settings

    # ----------------------------------------------------------------- helpers
    def makeKernelBasisList(
        self,
        targetFwhmPix: float | None = None,
        referenceFwhmPix: float | None = None,
        basisDegGauss: list[int] | None = None,
        basisSigmaGauss: list[float] | None = None,
        metadata: BasisMetadata | None = None,
        minSigmaDeconv: float | None = None,
    ) -> list[Kernel]:
        """Return the basis for the active kernel configuration."""
        return makeKernelBasisList(
            self.kConfig,
            targetFwhmPix=targetFwhmPix,
            referenceFwhmPix=referenceFwhmPix,
            basisDegGauss=basisDegGauss,
            basisSigmaGauss=basisSigmaGauss,
            metadata=metadata,
            minSigmaDeconv=minSigmaDeconv,
        )

    def _fitBasis(
        self,
        templateMaskedImage: MaskedImage,
        scienceMaskedImage: MaskedImage,
        candidateList: Table,
        templateFwhmPix: float | None,
        scienceFwhmPix: float | None,
    ) -> tuple[list[Kernel], KernelFitSettings, int]:
        """Return the basis of the fit (the configured one, a crowded field's, or the BIC's degrees).

        With ``useBicForKernelBasis`` the Alard-Lupton degrees are those the
        candidates' Bayesian information criterion prefers
        (`~lsst.ip.diffim.kernel.basisComplexity.bicPreferredDegrees`, on a
        cell set of their own), as upstream; metadata ``ALBasisDegGaussBic``.
        Also returns the kernel core's settings and the candidates per cell
        for the fit with this basis (`_kernelSettings`,
        ``crowdedSharpeningStarsPerCell``: a crowded field's sharpening fit
        has its own).
        """
        degrees, crowdedSharpening = self._crowdedDegrees(candidateList, templateFwhmPix, scienceFwhmPix)
        settings = self._kernelSettings(crowdedSharpening)
        nStarPerCell = self.kConfig.nStarPerCell
        if crowdedSharpening and self.config.crowdedSharpeningStarsPerCell > 0:
            nStarPerCell = self.config.crowdedSharpeningStarsPerCell
        if self.kConfig.useBicForKernelBasis:
            trial = self._buildCellSet(templateMaskedImage, scienceMaskedImage, candidateList, settings)
            preferred = bicPreferredDegrees(
                trial,
                settings,
                nStarPerCell,
                list(cast(PsfMatchConfigAL, self.kConfig).alardDegGauss),
                lambda d: self.makeKernelBasisList(templateFwhmPix, scienceFwhmPix, basisDegGauss=d),
            )
            if preferred:
                degrees = list(preferred[0][0])
                self.log.info(
                    "B.I.C. prefers basis degrees %s",
                    "; ".join(f"{list(d)} {n} times" for d, n in preferred),
                )
                self.metadata["ALBasisDegGaussBic"] = degrees
            else:
                self.log.warning("No candidate survived the B.I.C. fits: the configured degrees are used")
        minSigma = self.config.crowdedMinSigDeconv if crowdedSharpening else None
        basisList = self.makeKernelBasisList(
            templateFwhmPix,
            scienceFwhmPix,
            basisDegGauss=degrees,
            metadata=self.metadata,
            minSigmaDeconv=minSigma,
        )
        return basisList, settings, nStarPerCell

    def _getFwhm(self, exposure: MaskedImage) -> float | None:
        psf = getattr(exposure, "psf", None)
        if psf is None:
            return None
        from .adapters.psf import getPsfFwhm

        try:
            return float(getPsfFwhm(psf))
        except Exception as exc:  # PSF models raise many types off their domain
            self.log.warning("Unable to compute the PSF FWHM (%s); using the configured basis.", exc)
            return None

    @staticmethod
    def _validateSize(templateMaskedImage: MaskedImage, scienceMaskedImage: MaskedImage) -> None:
        if templateMaskedImage.bbox != scienceMaskedImage.bbox:
            raise MismatchedImagesError(
                f"Input images differ in size or origin: template {templateMaskedImage.bbox}, science "
                f"{scienceMaskedImage.bbox}. Give both images the same pixel grid, or pass exposures with "
                "sky projections so the template can be warped."
            )

    @staticmethod
    def _checkPixels(maskedImage: MaskedImage, name: str) -> None:
        from .inputChecks import flagBadVariance

        flagBadVariance(maskedImage, name)  # deviation: upstream fits with whatever variance it gets
        image = maskedImage.image.array
        variance = maskedImage.variance.array
        noData = anyMaskPlaneSet(maskedImage.mask, ["NO_DATA"])
        if image.size and allFinite(image) and (noData is None or not noData.any()):
            goodVar = variance  # every pixel is usable (no image-sized temporaries)
        else:
            finite = np.isfinite(image)
            if not finite.any():
                raise MismatchedImagesError(f"The {name} image has no finite pixels.")
            usable = finite if noData is None else finite & ~noData
            if not usable.any():
                raise MismatchedImagesError(f"Every pixel of the {name} image is masked NO_DATA.")
            goodVar = variance[usable]
        if goodVar.size and allFinite(goodVar):
            hasVariance = bool(goodVar.max() > 0)
        else:
            hasVariance = bool(np.any(np.isfinite(goodVar) & (goodVar > 0)))
        if not hasVariance:
            raise MismatchedImagesError(
                f"The {name} variance plane has no positive finite values; supply a variance plane "
                "(or gain and read noise)."
            )

    def _validateWcs(self, templateExposure: MaskedImage, scienceExposure: MaskedImage) -> bool:
        """Return `True` if the two exposures share a pixel grid.

        Raises
        ------
        ImagesDoNotOverlapError
            If their sky footprints do not overlap at all.
        """
        tProj = getattr(templateExposure, "sky_projection", None)
        sProj = getattr(scienceExposure, "sky_projection", None)
        sameBox = templateExposure.bbox == scienceExposure.bbox
        if tProj is None or sProj is None:
            return sameBox
        from .math.warping import sameGrid, skyOverlap

        if not skyOverlap(templateExposure, scienceExposure):
            raise ImagesDoNotOverlapError("Input images do not overlap at all")
        return sameBox and sameGrid(templateExposure, scienceExposure)

    # --------------------------------------------------------- candidate lists
    def getSelectSources(
        self,
        exposure: MaskedImage,
        sigma: float | None = None,
        doSmooth: bool = True,
        idFactory: object = None,
    ) -> Table:
        """Detect and measure candidate stars on an image.

        Returns
        -------
        sources : `astropy.table.Table`
            One row per detection (``x``, ``y``, ``flux``, footprint box, flags).
        """
        return self._detectSources(exposure, sigma=sigma, doSmooth=doSmooth).sources

    def _detectSources(
        self, exposure: MaskedImage, sigma: float | None = None, doSmooth: bool = True
    ) -> pipeBase.Struct:
        """Run ``selectDetection`` (`getSelectSources`); return its whole result, background included."""
        maskedImage = exposure if isinstance(exposure, MaskedImage) else _asMaskedImage(exposure)
        return self.selectDetection.run(maskedImage, sigma=sigma, doSmooth=doSmooth)

    def makeCandidateList(
        self,
        templateExposure: MaskedImage,
        scienceExposure: MaskedImage,
        kernelSize: int,
        candidateList: Table | None = None,
        *,
        exclude: ExclusionRegions | PositionSpec | None = None,
        fwhm: float | None = None,
    ) -> Table:
        """Return the kernel candidates with their stamp boxes.

        Parameters
        ----------
        templateExposure, scienceExposure : `lsst.images.VisitImage` or `lsst.images.MaskedImage`
            The images, on the same grid.
        kernelSize : `int`
            Kernel width; stamps have half-size ``fpGrowKernelScaling * kernelSize``.
        candidateList : `astropy.table.Table`, optional
            Sources with ``x``, ``y`` (parent pixels) and optionally ``flux``;
            detected on the template (``detOnTemplate``) or science image if
            not given.  A user stamp list (positions to use as the
            candidates, like HOTPANTS' ``-ssf``) is given here.
        exclude : `lsst.ip.diffim.ExclusionRegions` or `~lsst.ip.diffim.exclusions.PositionSpec`, optional
            Positions (circles) kept out of the kernel fit: candidates within
            a kernel half-width of an excluded circle are dropped (metadata
            ``nExcludedCandidates``).
        fwhm : `float`, optional
            The larger PSF FWHM (pixels): the aperture radius (``2 * fwhm``)
            of the variable-candidate screen (``doRejectVariableCandidates``),
            which is skipped without it.

        Notes
        -----
        Candidates are ranked within their cells by the core
        signal-to-noise of their stamps; with ``rankIsolatedFirst`` the
        isolated ones (column ``isolated``) come first, HOTPANTS' rule.
        With the default detection (``splitFootprintsAtPeaks``) there is one
        candidate per peak, its stamp centred on the peak.  Both deviate
        from upstream, which takes one candidate per detection footprint.

        Raises
        ------
        NoKernelCandidatesError
            If no candidate survives.
        """
        detConfig = self.kConfig.detectionConfig
        detected = candidateList
        # The detection's background, which the variable screen reuses where it would fit the same.
        backgrounds: dict[str, MeshBackground | None] = {}
        if candidateList is None:
            image = templateExposure if detConfig.detOnTemplate else scienceExposure
            found = self._detectSources(image)
            detected = found.sources
            backgrounds["template" if detConfig.detOnTemplate else "science"] = found.meshBackground
            candidateList = self._filterDetections(detected)
        if candidateList is None or len(candidateList) == 0:
            raise NoKernelCandidatesError(
                "No candidates in candidateList: no stars were detected. Lower "
                "selectDetection.thresholdValue or supply a source list."
            )
        if not isinstance(candidateList, Table):
            candidateList = Table(rows=list(candidateList))
        for col in ("x", "y"):
            if col not in candidateList.colnames:
                raise MismatchedImagesError(f"candidateList needs '{col}' column (parent pixel coordinates).")
        if detConfig.scaleByFwhm:
            growPix = int(detConfig.fpGrowKernelScaling * kernelSize + 0.5)
        else:
            growPix = detConfig.fpGrowPix
        templateMI = _asMaskedImage(templateExposure)
        scienceMI = _asMaskedImage(scienceExposure)
        kept = selectCandidateFootprints(
            candidateList,
            templateMI,
            scienceMI,
            kernelSize,
            badMaskPlanes=list(detConfig.badMaskPlanes),
            growPix=growPix,
            mode="shifted",
        )
        if exclude is not None and not isinstance(exclude, ExclusionRegions):
            exclude = ExclusionRegions.fromSpec(exclude)
        if exclude is not None and len(kept):
            excluded = exclude.nearCandidates(kept, margin=kernelSize // 2)
            if excluded.any():
                self.log.info("Excluded %d candidates near the excluded positions", int(excluded.sum()))
            self.metadata["nExcludedCandidates"] = int(excluded.sum())
            kept = kept[~excluded]
        if len(kept) == 0:
            raise NoKernelCandidatesError(
                f"Cannot find any objects suitable for KernelCandidacy among {len(candidateList)} sources: "
                "all stamps touch the image edge, masked pixels or excluded positions. Check badMaskPlanes, "
                "or use a smaller kernel or stamp (fpGrowKernelScaling)."
            )
        if self.config.doRejectVariableCandidates and fwhm is not None and len(kept):
            kept = self._rejectVariable(kept, templateMI, scienceMI, fwhm, backgrounds)
        if self.config.rankIsolatedFirst and isinstance(detected, Table):
            kept["isolated"] = isolatedSources(
                kept, detected, radius=kernelSize / 4, peakRatio=self.config.isolationPeakRatio
            )
        self.log.info("Selected %d kernel candidates of %d sources", len(kept), len(candidateList))
        return kept

    def _rejectVariable(
        self,
        kept: Table,
        templateMI: MaskedImage,
        scienceMI: MaskedImage,
        fwhm: float,
        backgrounds: Mapping[str, MeshBackground | None] | None = None,
    ) -> Table:
        """Drop the variable candidates (`~lsst.ip.diffim.variableCandidates.flagVariableCandidates`).

        ``backgrounds``: backgrounds already fitted to the ``"template"`` or
        ``"science"`` image (the detection's), for the screen to reuse.
        """
        from .variableCandidates import SPARSE_FIELD_CANDIDATES, VARIABLE_META_KEY, flagVariableCandidates

        backgrounds = backgrounds or {}
        found = flagVariableCandidates(
            kept, templateMI, scienceMI, fwhm, tolerance=self.config.variableCandidateTolerance,
            templateBackground=backgrounds.get("template"), scienceBackground=backgrounds.get("science"),
        )  # fmt: skip
        nVariable = int(found.variable.sum())
        self.metadata["nVariableCandidates"] = nVariable
        if nVariable == 0:
            return kept
        self.log.info("%s", found.describe(kept))
        out = kept[~found.variable]
        if len(out) < SPARSE_FIELD_CANDIDATES:
            out.meta[VARIABLE_META_KEY] = ExclusionRegions(
                np.asarray(kept["x"][found.variable], dtype=float),
                np.asarray(kept["y"][found.variable], dtype=float),
                np.zeros(nVariable),
            )
        return out

    def _filterDetections(self, sources: Table) -> Table:
        detConfig = self.kConfig.detectionConfig
        keep = np.ones(len(sources), dtype=bool)
        if "npix" in sources.colnames:
            keep &= (sources["npix"] >= detConfig.fpNpixMin) & (sources["npix"] <= detConfig.fpNpixMax)
        for flag in ("flag_saturated", "flag_edge", "flag_badMask"):
            if flag in sources.colnames:
                keep &= ~np.asarray(sources[flag], dtype=bool)
        out = sources[keep]
        if self.config.maxCandidates > 0 and len(out) > self.config.maxCandidates and "flux" in out.colnames:
            order = np.argsort(-np.asarray(out["flux"], dtype=float))
            out = out[np.sort(order[: self.config.maxCandidates])]
        return out

    def _buildCellSet(
        self,
        templateMaskedImage: MaskedImage,
        scienceMaskedImage: MaskedImage,
        candidateList: Table,
        settings: KernelFitSettings | None = None,
    ) -> SpatialCellSet:
        """Build the cell set of kernel candidates over the template's box.

        ``settings``: the candidates' kernel settings (default
        `_kernelSettings`; `_fitBasis` gives a crowded field's).

        Raises
        ------
        NoKernelCandidatesError
            If ``candidateList`` is empty.
        """
        if candidateList is None or len(candidateList) == 0:
            raise NoKernelCandidatesError("candidateList is empty; nothing to fit the kernel on.")
        return makeKernelCellSet(
            templateMaskedImage,
            scienceMaskedImage,
            candidateList,
            self._kernelSettings() if settings is None else settings,
            self.kConfig.sizeCellX,
            self.kConfig.sizeCellY,
        )

    # ---------------------------------------------------------------- matching
    @timeMethod
    def matchMaskedImages(
        self,
        templateMaskedImage: MaskedImage,
        scienceMaskedImage: MaskedImage,
        candidateList: Table,
        templateFwhmPix: float | None = None,
        scienceFwhmPix: float | None = None,
        *,
        out: OutputPlanes | None = None,
        exclude: ExclusionRegions | None = None,
    ) -> pipeBase.Struct:
        """PSF-match a template masked image to a science masked image.

        Parameters
        ----------
        templateMaskedImage : `lsst.images.MaskedImage`
            Image to convolve.
        scienceMaskedImage : `lsst.images.MaskedImage`
            Image to match to (same bbox).
        candidateList : `astropy.table.Table`
            Output of `makeCandidateList`.
        templateFwhmPix, scienceFwhmPix : `float`, optional
            PSF FWHMs (pixels), used to scale the Alard-Lupton basis.
        out : `lsst.ip.diffim.math.outputPlanes.OutputPlanes`, optional
            Prepared planes (`~lsst.ip.diffim.math.outputPlanes.preparedPlanes`)
            to take the matched image's from; without them the planes are
            prepared (on a spare thread) for this call only.
        exclude : `lsst.ip.diffim.ExclusionRegions`, optional
            Positions kept out of the fit: their circles, widened by
            `~lsst.ip.diffim.exclusions.EXTENT_FWHM` FWHMs (or the kernel
            half-width), are sky in the images the fit sees
            (`~lsst.ip.diffim.exclusions.excludedForFit`).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``matchedImage`` : `lsst.images.MaskedImage`
                The convolved template (NaN / NO_DATA border).
            ``psfMatchingKernel`` : `lsst.ip.diffim.math.LinearCombinationKernel`
                The spatially varying PSF-matching kernel.
            ``backgroundModel`` : `lsst.ip.diffim.math.Function2`
                The differential background.
            ``kernelCellSet`` : `lsst.ip.diffim.math.SpatialCellSet`
                The candidates, with their fit status.
        """
        validateFwhmArguments(templateFwhmPix=templateFwhmPix, scienceFwhmPix=scienceFwhmPix)
        if candidateList is None or len(candidateList) == 0:
            raise NoKernelCandidatesError(
                "candidateList is empty; it must be populated by makeCandidateList."
            )
        self._validateSize(templateMaskedImage, scienceMaskedImage)
        templateMaskedImage = flagNonFinitePixels(templateMaskedImage)
        scienceMaskedImage = flagNonFinitePixels(scienceMaskedImage)
        self._displayImages(templateMaskedImage, scienceMaskedImage)
        with preparedPlanes(out, templateMaskedImage) as planes:
            fitTemplate, fitScience = self._imagesForFit(
                templateMaskedImage, scienceMaskedImage, fitExclusions(_asRegions(exclude), candidateList),
                templateFwhmPix, scienceFwhmPix,
            )  # fmt: skip
            basisList, settings, nStarPerCell = self._fitBasis(
                fitTemplate, fitScience, candidateList, templateFwhmPix, scienceFwhmPix
            )
            kernelCellSet = self._buildCellSet(fitTemplate, fitScience, candidateList, settings)
            if planes is not None:
                # The fit leaves a core mostly idle: the planes are prepared meanwhile.
                planes.begin()
            _, psfMatchingKernel, backgroundModel = self._solve(
                kernelCellSet, basisList, settings=settings, nStarPerCell=nStarPerCell
            )
            self._displaySpatialCells(scienceMaskedImage, kernelCellSet)
            matched = self._convolve(templateMaskedImage, psfMatchingKernel, out=planes)
        return pipeBase.Struct(
            matchedImage=matched,
            psfMatchingKernel=psfMatchingKernel,
            backgroundModel=backgroundModel,
            kernelCellSet=kernelCellSet,
        )

    def _imagesForFit(
        self,
        templateMaskedImage: MaskedImage,
        scienceMaskedImage: MaskedImage,
        exclude: ExclusionRegions | PositionSpec | None,
        templateFwhmPix: float | None,
        scienceFwhmPix: float | None,
    ) -> tuple[MaskedImage, MaskedImage]:
        """Return the images the kernel fit sees: the inputs, or copies with the excluded circles as sky.

        Each circle is widened by `~lsst.ip.diffim.exclusions.EXTENT_FWHM`
        times the larger PSF FWHM, or by the kernel half-width when no FWHM
        is known (the basis is only built for that case).
        """
        regions = _asRegions(exclude)
        if regions is None or len(regions) == 0:
            return templateMaskedImage, scienceMaskedImage
        widths = [f for f in (templateFwhmPix, scienceFwhmPix) if f is not None]
        if widths:
            extent = EXTENT_FWHM * max(widths)
        else:
            extent = float(self.makeKernelBasisList(templateFwhmPix, scienceFwhmPix)[0].getWidth() // 2)
        return excludedForFit(templateMaskedImage, scienceMaskedImage, regions, extent)

    def _convolve(
        self,
        maskedImage: MaskedImage,
        kernel: Kernel,
        doNormalize: bool = False,
        *,
        out: OutputPlanes | None = None,
    ) -> MaskedImage:
        with self.timer("convolve"):
            return convolve(
                maskedImage,
                kernel,
                ConvolutionControl(
                    doNormalize=doNormalize,
                    doCopyEdge=False,
                    preserveMaskPlanes=tuple(self.config.candidateMaskPlanesConvolved),
                ),
                out=None if out is None else out.takeMatched(maskedImage),
            )

    @timeMethod
    def subtractMaskedImages(
        self,
        templateMaskedImage: MaskedImage,
        scienceMaskedImage: MaskedImage,
        candidateList: Table | None = None,
        templateFwhmPix: float | None = None,
        scienceFwhmPix: float | None = None,
        *,
        exclude: ExclusionRegions | None = None,
        out: OutputPlanes | None = None,
        sourceMask: np.ndarray | None = None,
    ) -> pipeBase.Struct:
        """PSF-match and subtract two masked images on the same grid.

        ``candidateList`` defaults to candidates detected by
        `makeCandidateList` with the kernel size of the basis; ``exclude``
        (positions kept out of the fit) is passed to it.  ``out``: prepared
        planes of the matched image and the difference (see
        `matchMaskedImages`).  ``sourceMask``: the pixels of the two
        images' 3-sigma sources if already detected (see `run`).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            As `matchMaskedImages`, plus ``subtractedMaskedImage`` :
            `lsst.images.MaskedImage` (science - matched - background).
        """
        validateFwhmArguments(templateFwhmPix=templateFwhmPix, scienceFwhmPix=scienceFwhmPix)
        self._validateSize(templateMaskedImage, scienceMaskedImage)
        templateMaskedImage = flagNonFinitePixels(templateMaskedImage)
        scienceMaskedImage = flagNonFinitePixels(scienceMaskedImage)
        self._checkPixels(templateMaskedImage, "template")
        self._checkPixels(scienceMaskedImage, "science")
        with preparedPlanes(out, templateMaskedImage, scienceMaskedImage) as planes:
            if candidateList is None or "stampXmin" not in getattr(candidateList, "colnames", ()):
                kernelSize = self.makeKernelBasisList(templateFwhmPix, scienceFwhmPix)[0].getWidth()
                self._checkKernelFits(templateMaskedImage, kernelSize)
                candidateList = self.makeCandidateList(
                    templateMaskedImage, scienceMaskedImage, kernelSize, candidateList, exclude=exclude,
                    fwhm=_largerFwhm(templateFwhmPix, scienceFwhmPix),
                )  # fmt: skip
            result = self.matchMaskedImages(
                templateMaskedImage,
                scienceMaskedImage,
                candidateList,
                templateFwhmPix=templateFwhmPix,
                scienceFwhmPix=scienceFwhmPix,
                out=planes,
                exclude=exclude,
            )
            result.subtractedMaskedImage = self._subtract(
                scienceMaskedImage, result.matchedImage, result.backgroundModel, out=planes
            )
            self._refineBackground(
                result.subtractedMaskedImage,
                [scienceMaskedImage, templateMaskedImage],
                result,
                1.0,
                sourceMask=sourceMask,
            )
            self._correlatedNoiseVariance(
                result.subtractedMaskedImage, templateMaskedImage, result, 1.0, sourceMask=sourceMask
            )
        self._displayDiffIm(result.subtractedMaskedImage, "Subtracted masked image")
        return result

    def _checkKernelFits(self, maskedImage: MaskedImage, kernelSize: int) -> None:
        bbox = maskedImage.bbox
        if bbox.x.size < 2 * kernelSize + 1 or bbox.y.size < 2 * kernelSize + 1:
            raise MismatchedImagesError(
                f"Image {bbox.x.size}x{bbox.y.size} is too small for a {kernelSize}x{kernelSize} kernel "
                f"(stamps need {2 * kernelSize + 1} px); lower kernelSize/kernelSizeMax."
            )

    def _subtract(
        self,
        scienceMaskedImage: MaskedImage,
        matched: MaskedImage,
        background: Function2,
        *,
        out: OutputPlanes | None = None,
    ) -> MaskedImage:
        """Return ``science - matched - background`` (variances add, masks OR)."""
        with self.timer("subtract"):
            return subtractMatched(
                scienceMaskedImage,
                matched,
                background if self.config.doSubtractBackground else None,
                out=None if out is None else out.takeDifference(scienceMaskedImage),
            )

    @timeMethod
    def matchExposures(
        self,
        templateExposure: MaskedImage,
        scienceExposure: MaskedImage,
        templateFwhmPix: float | None = None,
        scienceFwhmPix: float | None = None,
        candidateList: Table | None = None,
        doWarping: bool = True,
        convolveTemplate: bool = True,
        *,
        exclude: ExclusionRegions | None = None,
        out: OutputPlanes | None = None,
    ) -> pipeBase.Struct:
        """PSF-match two exposures (`lsst.images.VisitImage`).

        The template is warped onto the science grid if the two are not
        registered (and ``doWarping``).  With ``convolveTemplate=False`` the
        science image is convolved to match the template instead.  ``out``:
        prepared planes (see `matchMaskedImages`).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``matchedExposure`` : the convolved image, on the science grid;
            ``warpedExposure`` : the (possibly warped) template;
            ``psfMatchingKernel``, ``backgroundModel``, ``kernelCellSet``.

        Raises
        ------
        ImagesDoNotOverlapError
            If the images do not overlap on the sky.
        MismatchedImagesError
            If they are not registered and ``doWarping`` is False.
        """
        validateFwhmArguments(templateFwhmPix=templateFwhmPix, scienceFwhmPix=scienceFwhmPix)
        registered = self._validateWcs(templateExposure, scienceExposure)
        if not registered:
            if not doWarping:
                raise MismatchedImagesError(
                    "Input images not registered: template and science grids differ and doWarping is False."
                )
            from .math.warping import warpExposure

            self.log.info("Warping the template onto the science grid")
            with self.timer("warp"):
                templateExposure = warpExposure(templateExposure, scienceExposure, self.kConfig.warpingConfig)
        if templateFwhmPix is None or scienceFwhmPix is None:
            if (
                getattr(templateExposure, "psf", None) is None
                or getattr(scienceExposure, "psf", None) is None
            ):
                self.log.warning("Image PSF(s) missing: using the configured kernel basis")
            templateFwhmPix = self._getFwhm(templateExposure) if templateFwhmPix is None else templateFwhmPix
            scienceFwhmPix = self._getFwhm(scienceExposure) if scienceFwhmPix is None else scienceFwhmPix
        templateMI = flagNonFinitePixels(_asMaskedImage(templateExposure))
        scienceMI = flagNonFinitePixels(_asMaskedImage(scienceExposure))
        self._checkPixels(templateMI, "template")
        self._checkPixels(scienceMI, "science")
        if convolveTemplate:
            kernelSize = self.makeKernelBasisList(templateFwhmPix, scienceFwhmPix)[0].getWidth()
            self._checkKernelFits(templateMI, kernelSize)
            candidates = self.makeCandidateList(
                templateMI, scienceMI, kernelSize, candidateList, exclude=exclude,
                fwhm=_largerFwhm(templateFwhmPix, scienceFwhmPix),
            )  # fmt: skip
            result = self.matchMaskedImages(
                templateMI,
                scienceMI,
                candidates,
                templateFwhmPix=templateFwhmPix,
                scienceFwhmPix=scienceFwhmPix,
                out=out,
                exclude=exclude,
            )
        else:
            kernelSize = self.makeKernelBasisList(scienceFwhmPix, templateFwhmPix)[0].getWidth()
            self._checkKernelFits(templateMI, kernelSize)
            candidates = self.makeCandidateList(
                templateMI, scienceMI, kernelSize, candidateList, exclude=exclude,
                fwhm=_largerFwhm(templateFwhmPix, scienceFwhmPix),
            )  # fmt: skip
            result = self.matchMaskedImages(
                scienceMI,
                templateMI,
                candidates,
                templateFwhmPix=scienceFwhmPix,
                scienceFwhmPix=templateFwhmPix,
                out=out,
                exclude=exclude,
            )
        result.warpedExposure = templateExposure
        result.matchedExposure = result.matchedImage
        result.convolveTemplate = convolveTemplate
        return result

    @timeMethod
    def subtractExposures(
        self,
        templateExposure: MaskedImage,
        scienceExposure: MaskedImage,
        templateFwhmPix: float | None = None,
        scienceFwhmPix: float | None = None,
        candidateList: Table | None = None,
        doWarping: bool = True,
        convolveTemplate: bool = True,
        *,
        exclude: ExclusionRegions | None = None,
        sourceMask: np.ndarray | None = None,
    ) -> pipeBase.Struct:
        """PSF-match and subtract two exposures.

        ``sourceMask``: the pixels of the two images' 3-sigma sources if
        already detected (see `run`); ignored when the template is warped.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            As `matchExposures`, plus ``subtractedExposure``: an
            `lsst.images.DifferenceImage` (science grid, science PSF when the
            template is convolved, the matching kernel attached) or an
            `lsst.images.MaskedImage` when the inputs carry no projection.
        """
        validateFwhmArguments(templateFwhmPix=templateFwhmPix, scienceFwhmPix=scienceFwhmPix)
        scienceMI = flagNonFinitePixels(_asMaskedImage(scienceExposure))
        # Every output is on the science grid (the template is warped onto it).
        with preparedPlanes(None, scienceMI, scienceMI if convolveTemplate else None) as planes:
            result = self.matchExposures(
                templateExposure,
                scienceExposure,
                templateFwhmPix=templateFwhmPix,
                scienceFwhmPix=scienceFwhmPix,
                candidateList=candidateList,
                doWarping=doWarping,
                convolveTemplate=convolveTemplate,
                exclude=exclude,
                out=planes,
            )
            if convolveTemplate:
                subtracted = self._subtract(
                    scienceMI, result.matchedImage, result.backgroundModel, out=planes
                )
            else:
                templateMI = flagNonFinitePixels(_asMaskedImage(result.warpedExposure))
                subtracted = self._subtractConvolvedScience(
                    templateMI, result.matchedImage, result.backgroundModel, result.psfMatchingKernel
                )
            scale = 1.0 if convolveTemplate else -self._centreKernelSum(subtracted, result.psfMatchingKernel)
            inputs = [scienceMI, _asMaskedImage(result.warpedExposure)]
            warped = result.warpedExposure is not templateExposure
            self._refineBackground(
                subtracted, inputs, result, scale, sourceMask=None if warped else sourceMask
            )
            convolvedInput = inputs[1] if convolveTemplate else scienceMI
            self._correlatedNoiseVariance(
                subtracted, convolvedInput, result, 1.0 if convolveTemplate else -scale,
                sourceMask=None if warped else sourceMask,
            )  # fmt: skip
        result.subtractedMaskedImage = subtracted
        result.subtractedExposure = self._makeDifferenceExposure(
            scienceExposure, result.warpedExposure, subtracted, result.psfMatchingKernel, convolveTemplate
        )
        self._displayDiffIm(subtracted, "Difference image")
        return result

    def _crowdedDegrees(
        self, candidateList: Table, convolvedFwhm: float | None, targetFwhm: float | None
    ) -> tuple[list[int] | None, bool]:
        """Return the Alard-Lupton degrees of a crowded field (`crowdedBasisDegrees`), or `None`.

        Only for similar seeing (``crowdedMinFwhmRatio``, ``crowdedMaxFwhmRatio``): not for a much
        wider kernel (on the demo pair, FWHM 4.5 to 7.9 px, the spatial condition number reaches
        5e11).  A mildly sharpening kernel (the convolved image's PSF a little wider) is included
        when its bright stars stay in the fit (``crowdedResidualClipping``) and its Gaussians are no
        narrower than ``crowdedMinSigDeconv``: on the bulge pair 0100/0028 with the science image
        convolved, the bright-star chi^2 fell from 10.1 to 3.2 and the ``|D/sigma| > 5`` fraction
        from 1.26% to 0.86% (HOTPANTS ``-c i`` at best 5.6 and 1.02%); with the higher degrees alone,
        the bright stars rejected, it only fell to 7.0 and 1.24%.

        Also returns whether the fit is then a crowded field's sharpening one
        (for `_kernelSettings` and the basis' ``crowdedMinSigDeconv``).
        """
        if self.kConfig.kernelBasisSet != "alard-lupton":
            return None, False
        similar = (
            convolvedFwhm is None
            or targetFwhm is None
            or (
                self.config.crowdedMinFwhmRatio * targetFwhm
                <= convolvedFwhm
                <= self.config.crowdedMaxFwhmRatio * targetFwhm
            )
        )
        degrees = crowdedBasisDegrees(
            candidateList,
            list(cast(PsfMatchConfigAL, self.kConfig).alardDegGauss),
            list(self.config.crowdedAlardDegGauss),
            self.config.crowdedFieldMinPeaks if similar else 0.0,
        )
        self.metadata["medianFootprintPeaks"] = medianFootprintPeaks(candidateList)
        self.metadata["crowdedField"] = degrees is not None
        sharpening = convolvedFwhm is not None and targetFwhm is not None and convolvedFwhm > targetFwhm
        if degrees is not None and sharpening:
            # (the field is already known to be crowded: minPeaks 1 only checks the degrees)
            degrees = (
                crowdedBasisDegrees(
                    candidateList,
                    list(cast(PsfMatchConfigAL, self.kConfig).alardDegGauss),
                    list(self.config.crowdedSharpeningAlardDegGauss),
                    1.0,
                )
                or degrees
            )
        if degrees is not None:
            self.log.info(
                "Crowded field: Alard-Lupton degrees %s in place of %s",
                degrees,
                list(cast(PsfMatchConfigAL, self.kConfig).alardDegGauss),
            )
        return degrees, degrees is not None and sharpening

    def _centreKernelSum(self, image: MaskedImage, kernel: Kernel) -> float:
        bbox = image.bbox
        return float(kernel.getSum(0.5 * (bbox.x.min + bbox.x.max), 0.5 * (bbox.y.min + bbox.y.max)))

    def _refineBackground(
        self,
        subtracted: MaskedImage,
        inputs: list[MaskedImage],
        result: pipeBase.Struct,
        scale: float,
        sourceMask: np.ndarray | None = None,
    ) -> None:
        """Correct the difference's sky off sources (``doRefineBackgroundOffSources``), in place."""
        if not (
            self.config.doRefineBackgroundOffSources
            and self.config.doSubtractBackground
            and self.kConfig.fitForBackground
            and result.backgroundModel is not None
        ):
            return
        # Sources are grown by a quarter of the kernel width (about one FWHM of the wider PSF), so that
        # the stars' wings stay out; a crowded image short of such sky falls back to 2 pixels.
        grows = [max(2, result.psfMatchingKernel.getWidth() // 4), 2]
        refined = None
        with self.timer("refineBackground"):
            if sourceMask is None or sourceMask.shape != subtracted.image.array.shape:
                try:
                    sourceMask = detectedSourceMask(inputs, grow=0)
                except Exception as exc:  # sep's background raises plain Exceptions (e.g. overflows)
                    self.log.warning("Background not re-measured off sources: %s", exc)
                    return
            for grow in grows[: 1 if grows[0] == 2 else 2]:
                refined = refineBackgroundOffSources(
                    subtracted,
                    inputs,
                    result.backgroundModel,
                    backgroundScale=scale,
                    grow=grow,
                    sourceMask=sourceMask,
                )
                if refined is not None:
                    break
        if refined is not None:
            self.metadata["offSourceBackgroundCorrection"] = refined.median
            self.log.debug(
                "Off-source background correction %.4g (order %d, %d blocks)",
                refined.median,
                refined.order,
                refined.nBlocks,
            )

    def _correlatedNoiseVariance(
        self,
        subtracted: MaskedImage,
        convolvedInput: MaskedImage,
        result: pipeBase.Struct,
        kernelSum: float,
        sourceMask: np.ndarray | None = None,
    ) -> None:
        """Add the covariance terms of the convolved image's noise to the difference variance, in place.

        ``kernelSum``: the difference is the matched image divided by it (1 when the template is
        convolved).  See ``doCorrelatedNoiseVariance``.
        """
        if not self.config.doCorrelatedNoiseVariance:
            return
        if "crowdedField" in self.metadata and self.metadata["crowdedField"]:
            # In a crowded field the sky holds unresolved stars, whose light (not noise) sets the
            # neighbour correlations: on the SAAO bulge pairs the factor made D/sigma's std 0.93-0.95.
            return
        from .math.correlatedNoise import convolvedVarianceFactor, noiseCorrelation

        kernel = result.psfMatchingKernel
        bbox = subtracted.bbox
        with self.timer("correlatedNoiseVariance"):
            # The correlations are measured on the central 512^2 block at most (no full-image pass: 0.1 s
            # of CPU; 262,144 pixels measure them to 0.002).
            from lsst.images import Box

            ny, nx = convolvedInput.image.array.shape
            side = 512
            y0, x0 = max(0, (ny - side) // 2), max(0, (nx - side) // 2)
            y1, x1 = min(ny, y0 + side), min(nx, x0 + side)
            ib = convolvedInput.bbox
            yb, xb = ib.y.start, ib.x.start
            block = convolvedInput[Box.factory[yb + y0 : yb + y1, xb + x0 : xb + x1]]
            image = np.asarray(block.image.array)
            sky = np.isfinite(image) & np.isfinite(np.asarray(block.variance.array))
            flagged = anyMaskPlaneSet(block.mask, ["NO_DATA", "EDGE", "SAT", "BAD", "STREAK"])
            if flagged is not None:
                sky &= ~flagged
            if sourceMask is not None and sourceMask.shape == (ny, nx):
                sky &= ~sourceMask[y0:y1, x0:x1]
            rho = noiseCorrelation(image, sky, maxSide=side)
            if rho is None:
                return
            kImage = np.zeros((kernel.getHeight(), kernel.getWidth()))
            xc, yc = 0.5 * (bbox.x.min + bbox.x.max), 0.5 * (bbox.y.min + bbox.y.max)
            kernel.computeImage(kImage, False, xc, yc)
            factor = convolvedVarianceFactor(kImage, rho)
            lag = rho.shape[0] // 2
            self.metadata["correlatedNoiseVarianceFactor"] = factor
            if not (0.5 <= factor <= 3.0) or abs(factor - 1.0) < 0.005:
                return
            matched = np.asarray(result.matchedImage.variance.array)
            if matched.shape != subtracted.variance.array.shape:
                return
            with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf of unusable pixels stay so
                subtracted.variance.array[...] += np.float32((factor - 1.0) / kernelSum**2) * matched
                matched *= np.float32(factor)
        self.log.info(
            "Variance of the convolved image (and its part of the difference's) scaled by %.4f for the "
            "noise correlation of its input "
            "(neighbour correlations %.3f in x, %.3f in y)",
            factor, rho[lag, lag + 1], rho[lag + 1, lag],
        )  # fmt: skip

    def _subtractConvolvedScience(
        self, templateMI: MaskedImage, matchedScience: MaskedImage, background: Function2, kernel: Kernel
    ) -> MaskedImage:
        """Return ``(matchedScience + background - template) / kernelSum`` in science units."""
        bbox = templateMI.bbox
        xc = 0.5 * (bbox.x.min + bbox.x.max)
        yc = 0.5 * (bbox.y.min + bbox.y.max)
        kSum = kernel.getSum(xc, yc)
        image = matchedScience.image.array - templateMI.image.array.astype(np.float32)
        if self.config.doSubtractBackground:
            # The fit is template = kernel * science + background, so the
            # background joins the matched science image (it is not removed
            # from it): science - template in science units.
            image += background.render(bbox, dtype=np.float32)
        image /= np.float32(kSum)
        variance = (matchedScience.variance.array + templateMI.variance.array) / np.float32(kSum**2)
        mask = matchedScience.mask.copy()
        mergeMaskPlanes(mask, templateMI.mask)
        return maskedImageFromPlanes(image, variance, mask, templateMI)

    def _makeDifferenceExposure(
        self,
        scienceExposure: MaskedImage,
        templateExposure: MaskedImage,
        subtracted: MaskedImage,
        kernel: Kernel,
        convolveTemplate: bool,
    ) -> MaskedImage:
        if isinstance(scienceExposure, MaskedImage) and not hasattr(scienceExposure, "psf"):
            return subtracted
        from .adapters.exposures import makeDifferenceImage
        from .kernelConversion import toImagesKernel

        imagesKernel = toImagesKernel(kernel, scienceExposure.bbox)
        psfSource = scienceExposure if convolveTemplate else templateExposure
        return makeDifferenceImage(
            cast(VisitImage, scienceExposure),  # an image with a PSF
            subtracted.image.array,
            subtracted.variance.array,
            subtracted.mask,
            kernel=imagesKernel,
            psf=getattr(psfSource, "psf", None),
        )

    @timeMethod
    def run(
        self,
        template: MaskedImage,
        science: MaskedImage,
        *,
        templateFwhmPix: float | None = None,
        scienceFwhmPix: float | None = None,
        candidateList: Table | None = None,
        doWarping: bool = True,
        convolveTemplate: bool = True,
        exclude: ExclusionRegions | None = None,
        sourceMask: np.ndarray | None = None,
    ) -> pipeBase.Struct:
        """Match and subtract: the natural entry point.

        Parameters
        ----------
        template, science : `lsst.images.VisitImage` or `lsst.images.MaskedImage`
            The template and the science image.
        candidateList : `astropy.table.Table`, optional
            Kernel candidates (``x``, ``y``): a user stamp list; detected if
            not given.
        exclude : `lsst.ip.diffim.ExclusionRegions`, optional
            Positions kept out of the kernel fit (see `makeCandidateList`).
        sourceMask : `numpy.ndarray`, optional
            The pixels of the sources of both images (3 sigma, not grown,
            on the science grid) when the caller has detected them already
            (`lsst.ip.diffim.adapters.sourceFootprints`): the off-source
            background (``doRefineBackgroundOffSources``) uses them instead
            of detecting again.  Ignored when the template is warped.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``difference`` (the subtracted image; also ``subtractedExposure``),
            ``matchedTemplate`` (``matchedExposure``), ``psfMatchingKernel``,
            ``backgroundModel``, ``kernelCellSet``.
        """
        validateFwhmArguments(templateFwhmPix=templateFwhmPix, scienceFwhmPix=scienceFwhmPix)
        if (
            isinstance(template, MaskedImage)
            and isinstance(science, MaskedImage)
            and not (hasattr(template, "psf") or hasattr(science, "psf"))
        ):
            if convolveTemplate:
                result = self.subtractMaskedImages(
                    template,
                    science,
                    candidateList,
                    templateFwhmPix=templateFwhmPix,
                    scienceFwhmPix=scienceFwhmPix,
                    exclude=exclude,
                    sourceMask=sourceMask,
                )
                result.subtractedExposure = result.subtractedMaskedImage
            else:
                result = self.subtractExposures(
                    template,
                    science,
                    templateFwhmPix=templateFwhmPix,
                    scienceFwhmPix=scienceFwhmPix,
                    candidateList=candidateList,
                    doWarping=False,
                    convolveTemplate=False,
                    exclude=exclude,
                    sourceMask=sourceMask,
                )
            result.difference = result.subtractedMaskedImage
            result.matchedTemplate = result.matchedImage
            return result
        result = self.subtractExposures(
            template,
            science,
            templateFwhmPix=templateFwhmPix,
            scienceFwhmPix=scienceFwhmPix,
            candidateList=candidateList,
            doWarping=doWarping,
            convolveTemplate=convolveTemplate,
            exclude=exclude,
            sourceMask=sourceMask,
        )
        result.difference = result.subtractedExposure
        result.matchedTemplate = result.matchedExposure
        return result

    # ------------------------------------------------------------------ debug
    def _debugInfo(self) -> Any:
        import lsstDebug

        return lsstDebug.Info(__name__)

    def _displayImages(self, templateMaskedImage: MaskedImage, scienceMaskedImage: MaskedImage) -> None:
        info = self._debugInfo()
        if not info.display:
            return
        from .display.imageDisplays import displayInputImages

        displayInputImages(__name__, self.log, info, templateMaskedImage, scienceMaskedImage)

    def _displaySpatialCells(self, maskedImage: MaskedImage, cellSet: SpatialCellSet) -> None:
        from .display.switches import isEnabled

        info = self._debugInfo()
        if not isEnabled(info, __name__, "displaySpatialCells", self.log):
            return
        from .display.imageDisplays import displaySpatialCells

        displaySpatialCells(__name__, self.log, info, maskedImage, cellSet)

    def _displayDiffIm(self, maskedImage: MaskedImage, title: str) -> None:
        from .display.switches import isEnabled

        info = self._debugInfo()
        if not isEnabled(info, __name__, "displayDiffIm", self.log):
            return
        from .display.imageDisplays import displayDifference

        displayDifference(__name__, self.log, info, maskedImage, title)


subtractAlgorithmRegistry.register("al", ImagePsfMatchTask)


def _asRegions(exclude: ExclusionRegions | PositionSpec | None) -> ExclusionRegions | None:
    if exclude is None or isinstance(exclude, ExclusionRegions):
        return exclude
    return ExclusionRegions.fromSpec(exclude)


def _asMaskedImage(exposure: MaskedImage) -> MaskedImage:
    """Return the `lsst.images.MaskedImage` view of an exposure-like object."""
    if isinstance(exposure, MaskedImage) and type(exposure) is MaskedImage:
        return exposure
    return MaskedImage(
        exposure.image, mask=exposure.mask, variance=exposure.variance, sky_projection=exposure.sky_projection
    )
