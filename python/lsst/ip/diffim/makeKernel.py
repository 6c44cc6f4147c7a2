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
"""The image-to-image kernel solver of today's subtraction tasks (``MakeKernelTask``).

Notes
-----
Deviations from upstream: kernel sources are an `astropy.table.Table` with
``x``/``y`` centroids (parent pixels) rather than an afw ``SourceCatalog``;
their footprint is the stamp box written into the ``stampXmin ...
stampYmax`` columns.  Detection is `lsst.ip.diffim.detection.SourceDetectionTask`
(sep background and isophotal objects), which also measures the fluxes, so
there is no ``selectMeasurement`` subtask.
"""

from __future__ import annotations

__all__ = ["MakeKernelConfig", "MakeKernelTask", "measurePsfFlux"]

import math
from typing import ClassVar, Unpack, cast

import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import MaskedImage
from lsst.images.psfs import PointSpreadFunction
from lsst.utils.timer import timeMethod

from .adapters.psf import evaluateMeanPsfFwhm, getPsfFwhm
from .detection import SourceDetectionConfig, SourceDetectionTask, selectCandidateFootprints
from .imageTypes import ExposureLike
from .kernel.cellSetFactory import makeKernelCellSet
from .makeKernelBasisList import BasisMetadata, makeKernelBasisList
from .math.kernels import Kernel
from .math.spatialCell import SpatialCellSet
from .psfMatch import (
    NoKernelCandidatesError,
    PsfMatchConfig,
    PsfMatchConfigAL,
    PsfMatchConfigDF,
    PsfMatchTask,
)
from .taskArguments import TaskArguments


class MakeKernelConfig(PsfMatchConfig):
    """Configuration of `MakeKernelTask`.

    The top-level `PsfMatchConfig` fields are inherited as upstream does;
    only ``badMaskPlanes`` is read from the top level (by
    `MakeKernelTask.makeCandidateList`).  The kernel fit uses
    ``kernel.active``.
    """

    kernel = pexConfig.ConfigChoiceField(
        doc="Kernel basis and fitting configuration.",
        typemap=dict(AL=PsfMatchConfigAL, DF=PsfMatchConfigDF),
        default="AL",
    )
    selectDetection = pexConfig.ConfigurableField[SourceDetectionConfig](
        target=SourceDetectionTask,
        doc="Detection of kernel candidate stars when no source list is given.",
    )
    fwhmExposureGrid = pexConfig.Field[int](
        dtype=int,
        doc="Grid size (per axis) on which the mean PSF FWHM is evaluated when the PSF cannot be "
        "evaluated at its average position.",
        default=10,
    )
    fwhmExposureBuffer = pexConfig.Field[float](
        dtype=float,
        doc="Fraction of the image left out on every side of the grid of fwhmExposureGrid.",
        default=0.05,
    )
    doRejectVariableCandidates = pexConfig.Field[bool](
        dtype=bool,
        doc="Drop kernel candidates whose science/template aperture flux ratio disagrees with the "
        "field's (a variable star, a transient) by more than variableCandidateTolerance and 3 sigma, "
        "in makeCandidateList when it is given the PSF FWHM (lsst.ip.diffim.variableCandidates; "
        "metadata nVariableCandidates), as ImagePsfMatchTask does. A deviation from upstream; False "
        "restores it.",
        default=True,
    )
    variableCandidateTolerance = pexConfig.RangeField(
        dtype=float,
        doc="Smallest relative flux disagreement that makes a candidate variable "
        "(doRejectVariableCandidates).",
        default=0.25,
        min=0.0,
    )

    def setDefaults(self) -> None:
        """Detect kernel sources at 10 sigma off EDGE pixels; keep upstream's spatial orders."""
        super().setDefaults()
        self.selectDetection.thresholdValue = 10.0
        self.selectDetection.excludeMaskPlanes = ["EDGE"]
        # The subtraction chain keeps upstream's spatial orders whatever the number of kernel
        # sources (ImagePsfMatchTask lowers them on sparse fields; see minCandidatesPerSpatialTerm).
        for name in ("AL", "DF"):
            self.kernel[name].minCandidatesPerSpatialTerm = 0.0


def _maskedImage(exposure: MaskedImage) -> MaskedImage:
    if type(exposure) is MaskedImage:
        return exposure
    return MaskedImage(
        exposure.image, mask=exposure.mask, variance=exposure.variance, sky_projection=exposure.sky_projection
    )


def _psf(image: MaskedImage) -> PointSpreadFunction:
    """Return the PSF of an image that has one (`AttributeError` if it has none)."""
    return cast(ExposureLike, image).psf


class MakeKernelTask(PsfMatchTask):
    """Fit the PSF-matching kernel of two images on given kernel sources.

    ``template`` is the image that will be convolved and ``science`` the one
    it is matched to (the subtraction tasks swap them to convolve the science
    image).  Select the sources with `selectKernelSources`, then call `run`.
    """

    ConfigClass: ClassVar[type[MakeKernelConfig]] = MakeKernelConfig
    _DefaultName = "makeALKernel"
    config: MakeKernelConfig
    selectDetection: SourceDetectionTask

    def __init__(self, config: pexConfig.Config | None = None, **kwargs: Unpack[TaskArguments]) -> None:
        super().__init__(config, **kwargs)
        self.makeSubtask("selectDetection")

    @timeMethod
    def run(
        self,
        template: MaskedImage,
        science: MaskedImage,
        kernelSources: Table,
        preconvolved: bool = False,
        templateFwhmPix: float | None = None,
        scienceFwhmPix: float | None = None,
    ) -> pipeBase.Struct:
        """Solve for the kernel and background matching ``template`` to ``science``.

        Parameters
        ----------
        template : `lsst.images.VisitImage` or `lsst.images.MaskedImage`
            Image that will be convolved.
        science : `lsst.images.VisitImage` or `lsst.images.MaskedImage`
            Image it is matched to.
        kernelSources : `astropy.table.Table`
            Kernel candidates with stamp boxes, as returned by
            `selectKernelSources`.
        preconvolved : `bool`, optional
            Was ``science`` convolved with its own PSF?
        templateFwhmPix, scienceFwhmPix : `float`, optional
            PSF FWHMs (pixels); both are recomputed if either is missing.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``psfMatchingKernel`` : `lsst.ip.diffim.math.LinearCombinationKernel`
            ``backgroundModel`` : `lsst.ip.diffim.math.Function2`

        Raises
        ------
        NoKernelCandidatesError
            If no kernel source is usable.
        """
        kernelCellSet = self._buildCellSet(_maskedImage(template), _maskedImage(science), kernelSources)
        templateFwhmPix, scienceFwhmPix = self._checkPsfWidths(
            template, science, templateFwhmPix, scienceFwhmPix, preconvolved=preconvolved
        )
        basisList = self.makeKernelBasisList(templateFwhmPix, scienceFwhmPix, metadata=self.metadata)
        _, psfMatchingKernel, backgroundModel = self._solve(kernelCellSet, basisList)
        return pipeBase.Struct(psfMatchingKernel=psfMatchingKernel, backgroundModel=backgroundModel)

    def selectKernelSources(
        self,
        template: MaskedImage,
        science: MaskedImage,
        candidateList: Table | None = None,
        preconvolved: bool = False,
        templateFwhmPix: float | None = None,
        scienceFwhmPix: float | None = None,
    ) -> Table:
        """Return the usable candidates with stamp boxes of the kernel's size.

        Parameters
        ----------
        template, science : `lsst.images.VisitImage` or `lsst.images.MaskedImage`
            Image to convolve and image matched to.
        candidateList : `astropy.table.Table`, optional
            Sources with ``x``, ``y``; detected on ``science`` if absent.
        preconvolved : `bool`, optional
            Was ``science`` convolved with its own PSF?
        templateFwhmPix, scienceFwhmPix : `float`, optional
            PSF FWHMs (pixels).

        Returns
        -------
        kernelSources : `astropy.table.Table`
            The kept rows with ``stampXmin, stampXmax, stampYmin, stampYmax``.
        """
        templateFwhmPix, scienceFwhmPix = self._checkPsfWidths(
            template, science, templateFwhmPix, scienceFwhmPix, preconvolved=preconvolved
        )
        kernelSize = self.makeKernelBasisList(templateFwhmPix, scienceFwhmPix)[0].getWidth()
        return self.makeCandidateList(
            template,
            science,
            kernelSize,
            candidateList=candidateList,
            preconvolved=preconvolved,
            fwhm=max(templateFwhmPix, scienceFwhmPix),
        )

    def getSelectSources(
        self,
        exposure: MaskedImage,
        sigma: float | None = None,
        doSmooth: bool = True,
        idFactory: object = None,
    ) -> Table:
        """Detect candidate stars on an image (background subtracted by the detection).

        Returns
        -------
        sources : `astropy.table.Table`
            One row per detection (``x``, ``y``, ``flux``, ``fluxErr``, box,
            flags) and, if the image has a PSF, the PSF fluxes
            ``base_PsfFlux_instFlux`` / ``base_PsfFlux_instFluxErr`` (in place
            of upstream's ``selectMeasurement``).
        """
        sources = self.selectDetection.run(_maskedImage(exposure), sigma=sigma, doSmooth=doSmooth).sources
        psf = getattr(exposure, "psf", None)
        if psf is not None and len(sources):
            measurePsfFlux(sources, exposure, psf)
        self.log.info("Selected %d sources via detection measurement.", len(sources))
        return sources

    def makeCandidateList(
        self,
        convolved: MaskedImage,
        reference: MaskedImage,
        kernelSize: int,
        candidateList: Table | None,
        preconvolved: bool = False,
        sigma: float | None = None,
        fwhm: float | None = None,
    ) -> Table:
        """Return candidates with centred ``(2 kernelSize + 1)^2`` stamps inside both images.

        Stamps touching ``config.badMaskPlanes`` in either mask, or off
        either image, are rejected.  With ``fwhm`` (the larger PSF FWHM in
        pixels) and ``doRejectVariableCandidates``, so are the candidates
        whose flux ratio between the two images disagrees with the field's
        (`~lsst.ip.diffim.variableCandidates.flagVariableCandidates`, apertures
        of radius ``2 fwhm``; a deviation from upstream, which has no such
        screen).

        Raises
        ------
        NoKernelCandidatesError
            If detection finds nothing, or no candidate survives.
        """
        if candidateList is None:
            candidateList = self.getSelectSources(reference, doSmooth=not preconvolved, sigma=sigma)
            if len(candidateList) < 1:
                raise NoKernelCandidatesError("No kernel candidates after detection and measurement.")
        if not isinstance(candidateList, Table):
            candidateList = Table(rows=list(candidateList))
        convolvedMI = _maskedImage(convolved)
        referenceMI = _maskedImage(reference)
        # Candidates must fit in both images: cut both to their overlap.
        overlap = referenceMI.bbox.intersection(convolvedMI.bbox)
        if overlap is None:
            raise NoKernelCandidatesError("The convolved and reference images do not overlap.")
        kept = selectCandidateFootprints(
            candidateList,
            convolvedMI[overlap],
            referenceMI[overlap],
            kernelSize,
            badMaskPlanes=list(self.config.badMaskPlanes),
            growPix=kernelSize,
            mode="centered",
        )
        if self.config.doRejectVariableCandidates and fwhm is not None and len(kept):
            kept = self._rejectVariable(kept, convolvedMI[overlap], referenceMI[overlap], fwhm)
        self.log.info("Selected %d / %d sources as kernel candidates.", len(kept), len(candidateList))
        if len(kept) < 1:
            raise NoKernelCandidatesError("No good kernel candidates available.")
        return kept

    def _rejectVariable(
        self, kept: Table, convolved: MaskedImage, reference: MaskedImage, fwhm: float
    ) -> Table:
        """Drop the variable candidates (`~lsst.ip.diffim.variableCandidates.flagVariableCandidates`)."""
        from .variableCandidates import flagVariableCandidates

        found = flagVariableCandidates(
            kept, convolved, reference, fwhm, tolerance=self.config.variableCandidateTolerance
        )
        nVariable = int(found.variable.sum())
        self.metadata["nVariableCandidates"] = nVariable
        if nVariable:
            self.log.info("%s", found.describe(kept))
        return kept[~found.variable]

    def makeKernelBasisList(
        self,
        targetFwhmPix: float | None = None,
        referenceFwhmPix: float | None = None,
        basisDegGauss: list[int] | None = None,
        basisSigmaGauss: list[float] | None = None,
        metadata: BasisMetadata | None = None,
    ) -> list[Kernel]:
        """Return the basis of the active kernel configuration (and log the matching mode)."""
        basisList = makeKernelBasisList(
            self.kConfig,
            targetFwhmPix=targetFwhmPix,
            referenceFwhmPix=referenceFwhmPix,
            basisDegGauss=basisDegGauss,
            basisSigmaGauss=basisSigmaGauss,
            metadata=metadata,
        )
        if targetFwhmPix is None or referenceFwhmPix is None or targetFwhmPix == referenceFwhmPix:
            self.log.info("Target and reference psf fwhms are equal, falling back to config values")
        elif referenceFwhmPix > targetFwhmPix:
            self.log.info("Reference psf fwhm is the greater, normal convolution mode")
        else:
            self.log.info("Target psf fwhm is the greater, deconvolution mode")
        return basisList

    def _buildCellSet(
        self, convolved: MaskedImage, reference: MaskedImage, candidateList: Table
    ) -> SpatialCellSet:
        """Return the cell set of kernel candidates over the overlap of the two images.

        Raises
        ------
        NoKernelCandidatesError
            If ``candidateList`` is empty or lacks stamp boxes.
        """
        if candidateList is None or len(candidateList) == 0:
            raise NoKernelCandidatesError("No kernel sources: nothing to fit the kernel on.")
        if "stampXmin" not in candidateList.colnames:
            raise NoKernelCandidatesError(
                "kernelSources have no stamp boxes; select them with MakeKernelTask.selectKernelSources."
            )
        overlap = convolved.bbox.intersection(reference.bbox)
        if overlap is None:
            raise NoKernelCandidatesError("The convolved and reference images do not overlap.")
        return makeKernelCellSet(
            convolved[overlap],
            reference[overlap],
            candidateList,
            self._kernelSettings(),
            self.kConfig.sizeCellX,
            self.kConfig.sizeCellY,
        )

    def _checkPsfWidths(
        self,
        template: MaskedImage,
        science: MaskedImage,
        templateFwhmPix: float | None,
        scienceFwhmPix: float | None,
        preconvolved: bool = False,
    ) -> tuple[float, float]:
        """Return the two PSF FWHMs, recomputing both if either is missing.

        The PSFs are evaluated at the centre of their bounds, or, if that
        fails, averaged over a ``fwhmExposureGrid`` grid; only a recomputed
        science FWHM is scaled by sqrt(2) when ``preconvolved``.
        """
        if templateFwhmPix is not None and scienceFwhmPix is not None:
            return templateFwhmPix, scienceFwhmPix
        try:
            templateFwhmPix = float(getPsfFwhm(_psf(template)))
            scienceFwhmPix = float(getPsfFwhm(_psf(science)))
        except Exception:  # PSF models raise many types off their domain
            self.log.debug(
                "Unable to evaluate PSF at the average position. Evaluting PSF on a grid of points."
            )
            templateFwhmPix = evaluateMeanPsfFwhm(
                _psf(template),
                template.bbox,
                fwhmExposureBuffer=self.config.fwhmExposureBuffer,
                fwhmExposureGrid=self.config.fwhmExposureGrid,
            )
            scienceFwhmPix = evaluateMeanPsfFwhm(
                _psf(science),
                science.bbox,
                fwhmExposureBuffer=self.config.fwhmExposureBuffer,
                fwhmExposureGrid=self.config.fwhmExposureGrid,
            )
        if preconvolved:
            scienceFwhmPix *= math.sqrt(2.0)
        return templateFwhmPix, scienceFwhmPix


def measurePsfFlux(sources: Table, exposure: MaskedImage, psf: PointSpreadFunction) -> None:
    """Add PSF-fit fluxes (``base_PsfFlux_instFlux``, ``..._instFluxErr``, ``base_PsfFlux_flag``) in place.

    The PSF image at each source is fitted, by linear least squares with a
    constant weight, to the pixels around the nearest pixel centre, after
    removing the median of the stamp's border (the local sky).
    """
    bbox = exposure.bbox
    image = exposure.image.array
    variance = exposure.variance.array
    n = len(sources)
    flux = np.full(n, np.nan)
    err = np.full(n, np.nan)
    for i, (x, y) in enumerate(zip(np.asarray(sources["x"], float), np.asarray(sources["y"], float))):
        try:
            p = np.asarray(psf.compute_kernel_image(x=x, y=y).array, dtype=float)
        except Exception:  # PSF models raise many types off their domain
            continue
        ry, rx = p.shape[0] // 2, p.shape[1] // 2
        cx, cy = math.floor(x + 0.5) - bbox.x.start, math.floor(y + 0.5) - bbox.y.start
        if cy - ry < 0 or cx - rx < 0 or cy + ry + 1 > image.shape[0] or cx + rx + 1 > image.shape[1]:
            continue
        stamp = image[cy - ry : cy + ry + 1, cx - rx : cx + rx + 1].astype(float)
        var = variance[cy - ry : cy + ry + 1, cx - rx : cx + rx + 1].astype(float)
        if not (np.all(np.isfinite(stamp)) and np.all(np.isfinite(var))):
            continue
        border = np.concatenate([stamp[0], stamp[-1], stamp[1:-1, 0], stamp[1:-1, -1]])
        p2 = float((p * p).sum())
        flux[i] = float((p * (stamp - np.median(border))).sum()) / p2
        err[i] = math.sqrt(float((p * p * var).sum())) / p2
    sources["base_PsfFlux_instFlux"] = flux
    sources["base_PsfFlux_instFluxErr"] = err
    sources["base_PsfFlux_flag"] = ~np.isfinite(flux)
