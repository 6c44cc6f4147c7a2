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
"""Configuration and base task of PSF matching: the kernel fit itself."""

from __future__ import annotations

__all__ = [
    "DetectionConfig",
    "NoKernelCandidatesError",
    "PsfMatchConfig",
    "PsfMatchConfigAL",
    "PsfMatchConfigDF",
    "PsfMatchTask",
]

import abc
import math
import time
from typing import Any

import numpy as np

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import Box
from lsst.utils.logging import getTraceLogger
from lsst.utils.timer import timeMethod

from .kernel.basisLists import makeRegularizationMatrix, renormalizeKernelList
from .kernel.batch import batchNormalizedResiduals
from .kernel.candidate import CandidateSwitch, KernelCandidate
from .kernel.propertySet import PropertySet, makePropertySet
from .kernel.stampStack import StampStack
from .kernel.visitors import (
    CANDIDATE_ERRORS,
    AssessSpatialKernelVisitor,
    BuildSingleKernelVisitor,
    BuildSpatialKernelVisitor,
    KernelPca,
    KernelPcaVisitor,
    KernelSumVisitor,
    groupByStampStack,
)
from .math.background import SubtractBackgroundConfig
from .math.functions import Function2
from .math.kernels import FixedKernel, Kernel
from .math.masks import anyMaskPlaneSet
from .math.spatialCell import SpatialCellCandidateStatus, SpatialCellSet
from .math.threads import singleThreadedBlas
from .math.warper import WarperConfig


class NoKernelCandidatesError(pipeBase.AlgorithmError):
    """No kernel candidates are usable for the PSF-matching fit.

    Parameters
    ----------
    message : `str`
        What failed, and what to change.
    nGood, nBad : `int`, optional
        Candidate counts at the time of failure (reported in `metadata`).
    """

    def __init__(self, message: str, nGood: int = 0, nBad: int = 0) -> None:
        super().__init__(message)
        self._nGood = int(nGood)
        self._nBad = int(nBad)

    @property
    def metadata(self) -> dict[str, int]:
        return {"nGoodCandidates": self._nGood, "nBadCandidates": self._nBad}


class DetectionConfig(pexConfig.Config):
    """Detection and footprint settings of kernel candidates (pre-2024 ip_diffim)."""

    detThreshold = pexConfig.Field(
        dtype=float,
        doc="Detection threshold for kernel candidates, in units of detThresholdType.",
        default=10.0,
        check=lambda x: x >= 3.0,
    )
    detThresholdType = pexConfig.ChoiceField(
        dtype=str,
        doc="Units of detThreshold.",
        default="pixel_stdev",
        allowed={
            "value": "raw pixel value",
            "stdev": "standard deviation of the whole image",
            "variance": "variance of the whole image",
            "pixel_stdev": "square root of each pixel's variance",
        },
    )
    detOnTemplate = pexConfig.Field(
        dtype=bool,
        doc="Detect candidates on the template (else on the science image).",
        default=True,
    )
    badMaskPlanes = pexConfig.ListField(
        dtype=str,
        doc="Candidates whose footprint touches any of these planes (in either image) are rejected. "
        "Deviation: upstream's default omits BAD; it is added so that user bad-pixel masks (a MASK/DQ "
        "extension, CCDData.mask) keep pixels out of the kernel fit (remove it for upstream's behaviour).",
        default=("NO_DATA", "EDGE", "SAT", "BAD"),
    )
    fpNpixMin = pexConfig.Field(
        dtype=int,
        doc="Minimum number of pixels of a candidate's detection footprint.",
        default=5,
        check=lambda x: x >= 5,
    )
    fpNpixMax = pexConfig.Field(
        dtype=int,
        doc="Maximum number of pixels of a candidate's detection footprint (rejects blends, galaxies).",
        default=500,
        check=lambda x: x <= 500,
    )
    fpGrowKernelScaling = pexConfig.Field(
        dtype=float,
        doc="Footprint half-size as a multiple of the kernel size, when scaleByFwhm is set.",
        default=1.0,
        check=lambda x: x >= 1.0,
    )
    fpGrowPix = pexConfig.Field(
        dtype=int,
        doc="Footprint half-size (pixels) when scaleByFwhm is not set.",
        default=30,
        check=lambda x: x >= 10,
    )
    scaleByFwhm = pexConfig.Field(
        dtype=bool,
        doc="Scale the footprint size with the kernel size (fpGrowKernelScaling) rather than fpGrowPix.",
        default=True,
    )


class PsfMatchConfig(pexConfig.Config):
    """Base configuration of the PSF-matching kernel fit."""

    warpingConfig = pexConfig.ConfigField(
        dtype=WarperConfig,
        doc="Resampling of the template onto the science grid when they are not registered.",
    )
    detectionConfig = pexConfig.ConfigField(
        dtype=DetectionConfig,
        doc="Footprint settings of kernel candidates.",
    )
    afwBackgroundConfig = pexConfig.ConfigField(
        dtype=SubtractBackgroundConfig,
        doc="Background fit subtracted before candidate detection.",
    )
    useAfwBackground = pexConfig.Field(
        dtype=bool,
        doc="Subtract a binned background from both images before matching (unused; kept for compatibility).",
        default=False,
    )
    fitForBackground = pexConfig.Field(
        dtype=bool,
        doc="Fit a differential background together with the kernel (a constant per stamp, "
        "spatialBgOrder across the image).",
        default=False,
    )
    kernelBasisSet = pexConfig.ChoiceField(
        dtype=str,
        doc="Type of basis set for the PSF-matching kernel.",
        default="alard-lupton",
        allowed={
            "alard-lupton": "Gaussians of several widths times polynomials (Alard & Lupton 1998).",
            "delta-function": "One delta function per kernel pixel; use with regularization.",
        },
    )
    kernelSize = pexConfig.Field(
        dtype=int,
        doc="Kernel width and height (pixels); must be odd for Alard-Lupton. Replaced by the FWHM-scaled "
        "size when scaleByFwhm is set and both PSF widths are known.",
        default=21,
    )
    scaleByFwhm = pexConfig.Field(
        dtype=bool,
        doc="Derive the Alard-Lupton Gaussian widths and the kernel size from the two PSF FWHMs.",
        default=True,
    )
    kernelSizeFwhmScaling = pexConfig.Field(
        dtype=float,
        doc="Kernel size as a multiple of the largest Alard-Lupton sigma, when scaling by FWHM.",
        default=6.0,
        check=lambda x: x >= 1.0,
    )
    kernelSizeMin = pexConfig.Field(
        dtype=int,
        doc="Smallest kernel size allowed when scaling by FWHM.",
        default=21,
    )
    kernelSizeMax = pexConfig.Field(
        dtype=int,
        doc="Largest kernel size allowed when scaling by FWHM.",
        default=35,
    )
    spatialModelType = pexConfig.ChoiceField(
        dtype=str,
        doc="Type of spatial functions for the kernel coefficients and the background.",
        default="chebyshev1",
        allowed={
            "chebyshev1": "Chebyshev polynomials of the first kind over the region",
            "polynomial": "Standard x, y polynomials",
        },
    )
    spatialKernelOrder = pexConfig.Field(
        dtype=int,
        doc="Total order of the spatial variation of the kernel coefficients.",
        default=2,
        check=lambda x: x >= 0,
    )
    spatialBgOrder = pexConfig.Field(
        dtype=int,
        doc="Total order of the spatial variation of the differential background "
        "(ignored unless fitForBackground).",
        default=1,
        check=lambda x: x >= 0,
    )
    minCandidatesPerSpatialTerm = pexConfig.Field(
        dtype=float,
        doc="Sparse fields: when fewer kernel candidates enter the spatial fit than this many per "
        "spatial term ((order + 1)(order + 2) / 2 terms per coefficient), the spatial kernel and "
        "background orders are lowered until they are not (with a warning; metadata "
        "spatialKernelOrderUsed, spatialBgOrderUsed, spatialOrderLowered), so that the fit does not "
        "extrapolate wildly to the edges. A deviation from upstream; 0 keeps the configured orders "
        "(upstream's behaviour).",
        default=3.0,
        check=lambda x: x >= 0.0,
    )
    sizeCellX = pexConfig.Field(
        dtype=int,
        doc="Width (pixels) of the spatial cells that spread candidates over the image.",
        default=128,
        check=lambda x: x >= 32,
    )
    sizeCellY = pexConfig.Field(
        dtype=int,
        doc="Height (pixels) of the spatial cells.",
        default=128,
        check=lambda x: x >= 32,
    )
    nStarPerCell = pexConfig.Field(
        dtype=int,
        doc="Maximum number of candidates used per cell, best rated first; -1 (or any value <= 0) uses all.",
        default=5,
    )
    maxSpatialIterations = pexConfig.Field(
        dtype=int,
        doc="Maximum number of spatial-fit / rejection iterations.",
        default=3,
        check=lambda x: 1 <= x <= 5,
    )
    usePcaForSpatialKernel = pexConfig.Field(
        dtype=bool,
        doc="Replace the basis by the principal components of the candidates' kernels before the "
        "spatial fit (useful for delta-function bases).",
        default=False,
    )
    subtractMeanForPca = pexConfig.Field(
        dtype=bool,
        doc="Subtract the mean kernel before the PCA and use it as the first basis kernel.",
        default=True,
    )
    numPrincipalComponents = pexConfig.Field(
        dtype=int,
        doc="Number of principal components kept (the mean counts as one when subtracted).",
        default=5,
        check=lambda x: x >= 3,
    )
    singleKernelClipping = pexConfig.Field(
        dtype=bool,
        doc="Reject candidates whose own kernel leaves large residuals.",
        default=True,
    )
    kernelSumClipping = pexConfig.Field(
        dtype=bool,
        doc="Reject candidates whose kernel sum is an outlier (variable stars, blends).",
        default=True,
    )
    spatialKernelClipping = pexConfig.Field(
        dtype=bool,
        doc="Reject candidates whose residuals under the spatial model are large.",
        default=True,
    )
    checkConditionNumber = pexConfig.Field(
        dtype=bool,
        doc="Reject candidates whose normal matrix has a condition number above maxConditionNumber.",
        default=False,
    )
    badMaskPlanes = pexConfig.ListField(
        dtype=str,
        doc="Mask planes whose pixels are ignored in the residual statistics of candidates.",
        default=("NO_DATA", "EDGE", "SAT"),
    )
    candidateResidualMeanMax = pexConfig.Field(
        dtype=float,
        doc="Largest allowed absolute mean of a candidate's difference in units of its noise.",
        default=0.25,
        check=lambda x: x >= 0.0,
    )
    candidateResidualStdMax = pexConfig.Field(
        dtype=float,
        doc="Largest allowed standard deviation of a candidate's difference in units of its noise.",
        default=1.50,
        check=lambda x: x >= 0.0,
    )
    useCoreStats = pexConfig.Field(
        dtype=bool,
        doc="Compute the residual statistics only over the stamp core (candidateCoreRadius).",
        default=False,
    )
    candidateCoreRadius = pexConfig.Field(
        dtype=int,
        doc="Half-size r of the core; the core has (2r+1)^2 pixels.",
        default=3,
        check=lambda x: x >= 1,
    )
    maxKsumSigma = pexConfig.Field(
        dtype=float,
        doc="Kernel sums further than this many clipped standard deviations from the mean are rejected.",
        default=3.0,
        check=lambda x: x >= 0.0,
    )
    maxConditionNumber = pexConfig.Field(
        dtype=float,
        doc="Largest condition number of a candidate's normal matrix (with checkConditionNumber).",
        default=5.0e7,
        check=lambda x: x >= 0.0,
    )
    conditionNumberType = pexConfig.ChoiceField(
        dtype=str,
        doc="How condition numbers are computed.",
        default="EIGENVALUE",
        allowed={"SVD": "ratio of extreme singular values", "EIGENVALUE": "ratio of extreme eigenvalues"},
    )
    maxSpatialConditionNumber = pexConfig.Field(
        dtype=float,
        doc="A spatial system with a larger condition number only produces a warning.",
        default=1.0e10,
        check=lambda x: x >= 0.0,
    )
    iterateSingleKernel = pexConfig.Field(
        dtype=bool,
        doc="Refit each candidate once, weighted by its difference-image variance "
        "(ignored with constantVarianceWeighting).",
        default=False,
    )
    constantVarianceWeighting = pexConfig.Field(
        dtype=bool,
        doc="Weight each stamp's pixels by one (median) variance instead of per-pixel variances.",
        default=True,
    )
    calculateKernelUncertainty = pexConfig.Field(
        dtype=bool,
        doc="Compute kernel uncertainties (not supported; kept for compatibility).",
        default=False,
    )
    useBicForKernelBasis = pexConfig.Field(
        dtype=bool,
        doc="Choose the Alard-Lupton polynomial degrees by the Bayesian information criterion "
        "(needs exactly 3 Gaussians).",
        default=False,
    )

    def validate(self) -> None:
        super().validate()
        if self.kernelSize < 1:
            raise pexConfig.FieldValidationError(PsfMatchConfig.kernelSize, self, "kernelSize must be >= 1.")
        if self.kernelBasisSet == "alard-lupton" and self.kernelSize % 2 == 0:
            raise pexConfig.FieldValidationError(
                PsfMatchConfig.kernelSize, self, "kernelSize must be odd for the Alard-Lupton basis."
            )
        if self.kernelSizeMin > self.kernelSizeMax:
            raise pexConfig.FieldValidationError(
                PsfMatchConfig.kernelSizeMin, self, "kernelSizeMin must not exceed kernelSizeMax."
            )
        if self.calculateKernelUncertainty:
            raise pexConfig.FieldValidationError(
                PsfMatchConfig.calculateKernelUncertainty, self, "Kernel uncertainties are not supported."
            )


class PsfMatchConfigAL(PsfMatchConfig):
    """Alard-Lupton (sum of Gaussians times polynomials) kernel configuration."""

    alardNGauss = pexConfig.Field(
        dtype=int,
        doc="Number of Gaussians (with scaleByFwhm the number of generated sigmas is used).",
        default=3,
        check=lambda x: x >= 1,
    )
    alardDegGauss = pexConfig.ListField(
        dtype=int,
        doc="Polynomial degree multiplying each Gaussian; one entry per Gaussian.",
        default=(4, 2, 2),
    )
    alardSigGauss = pexConfig.ListField(
        dtype=float,
        doc="Gaussian sigmas (pixels) when not scaling by FWHM; one entry per Gaussian.",
        default=(0.7, 1.5, 3.0),
    )
    alardGaussBeta = pexConfig.Field(
        dtype=float,
        doc="Ratio of successive Gaussian sigmas when scaling by FWHM.",
        default=2.0,
        check=lambda x: x >= 0.0,
    )
    alardMinSig = pexConfig.Field(
        dtype=float,
        doc="Smallest Gaussian sigma (pixels) when convolving.",
        default=0.7,
        check=lambda x: x >= 0.25,
    )
    alardDegGaussDeconv = pexConfig.Field(
        dtype=int,
        doc="Deprecated and unused (degrees come from alardDegGauss).",
        default=3,
        check=lambda x: x >= 1,
    )
    alardMinSigDeconv = pexConfig.Field(
        dtype=float,
        doc="Smallest Gaussian sigma (pixels) when deconvolving.",
        default=0.4,
        check=lambda x: x >= 0.25,
    )
    alardNGaussDeconv = pexConfig.Field(
        dtype=int,
        doc="Deprecated and unused (the number comes from alardNGauss).",
        default=3,
        check=lambda x: x >= 1,
    )

    def setDefaults(self) -> None:
        super().setDefaults()
        self.kernelBasisSet = "alard-lupton"
        self.maxConditionNumber = 5.0e7

    def validate(self) -> None:
        super().validate()
        if len(self.alardDegGauss) != self.alardNGauss:
            raise pexConfig.FieldValidationError(
                PsfMatchConfigAL.alardDegGauss,
                self,
                f"alardDegGauss has {len(self.alardDegGauss)} entries; alardNGauss is {self.alardNGauss}.",
            )
        if len(self.alardSigGauss) != self.alardNGauss:
            raise pexConfig.FieldValidationError(
                PsfMatchConfigAL.alardSigGauss,
                self,
                f"alardSigGauss has {len(self.alardSigGauss)} entries; alardNGauss is {self.alardNGauss}.",
            )


class PsfMatchConfigDF(PsfMatchConfig):
    """Delta-function (one kernel per pixel) kernel configuration, with regularization."""

    useRegularization = pexConfig.Field(
        dtype=bool,
        doc="Regularize the per-candidate delta-function fits.",
        default=True,
    )
    regularizationType = pexConfig.ChoiceField(
        dtype=str,
        doc="Type of regularization.",
        default="centralDifference",
        allowed={
            "centralDifference": "penalize the discrete Laplacian of the kernel",
            "forwardDifference": "penalize forward differences of the orders in forwardRegularizationOrders",
        },
    )
    centralRegularizationStencil = pexConfig.ChoiceField(
        dtype=int,
        doc="Number of points of the Laplacian stencil.",
        default=9,
        allowed={5: "5-point stencil", 9: "9-point stencil"},
    )
    forwardRegularizationOrders = pexConfig.ListField(
        dtype=int,
        doc="Orders of the penalized forward differences.",
        default=(1, 2),
        itemCheck=lambda x: 0 < x < 4,
    )
    regularizationBorderPenalty = pexConfig.Field(
        dtype=float,
        doc="Penalty on kernel pixels at the kernel border.",
        default=3.0,
        check=lambda x: x >= 0.0,
    )
    lambdaType = pexConfig.ChoiceField(
        dtype=str,
        doc="How the regularization strength lambda is chosen.",
        default="absolute",
        allowed={
            "absolute": "lambda = lambdaValue",
            "relative": "lambda = trace(M) / trace(H) * lambdaScaling",
            "minimizeBiasedRisk": "not supported (upstream's implementation cannot run)",
            "minimizeUnbiasedRisk": "not supported (upstream's implementation cannot run)",
        },
    )
    lambdaValue = pexConfig.Field(dtype=float, doc="Lambda for lambdaType 'absolute'.", default=0.2)
    lambdaScaling = pexConfig.Field(dtype=float, doc="Scale factor for lambdaType 'relative'.", default=1e-4)
    lambdaStepType = pexConfig.ChoiceField(
        dtype=str,
        doc="Grid of the lambda search of the risk-minimizing modes.",
        default="log",
        allowed={"log": "grid in log10(lambda)", "linear": "grid in lambda"},
    )
    lambdaMin = pexConfig.Field(dtype=float, doc="Start of the lambda search grid.", default=-1.0)
    lambdaMax = pexConfig.Field(dtype=float, doc="End of the lambda search grid.", default=2.0)
    lambdaStep = pexConfig.Field(dtype=float, doc="Step of the lambda search grid.", default=0.1)

    def setDefaults(self) -> None:
        super().setDefaults()
        self.kernelBasisSet = "delta-function"
        self.maxConditionNumber = 5.0e6
        self.usePcaForSpatialKernel = True
        self.subtractMeanForPca = True
        self.useBicForKernelBasis = False

    def validate(self) -> None:
        super().validate()
        if self.lambdaType in ("minimizeBiasedRisk", "minimizeUnbiasedRisk"):
            raise pexConfig.FieldValidationError(
                PsfMatchConfigDF.lambdaType,
                self,
                f"lambdaType={self.lambdaType!r} is not supported: upstream's risk minimization reads "
                "parameters no config defines and cannot run. Use 'absolute' or 'relative'.",
            )


class PsfMatchTask(pipeBase.Task, abc.ABC):
    """Base class of the PSF-matching tasks: fit a spatially varying kernel.

    Subclasses build a `~lsst.ip.diffim.math.SpatialCellSet` of
    `~lsst.ip.diffim.kernel.KernelCandidate` objects (`_buildCellSet`) and
    call `_solve` with a basis list.

    Notes
    -----
    The active kernel configuration is ``config.kernel.active`` when the
    config has a ``kernel`` choice field, else the config itself; it is
    available as ``self.kConfig``.
    """

    ConfigClass = PsfMatchConfig
    _DefaultName = "psfMatch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kConfig = self.config.kernel.active if hasattr(self.config, "kernel") else self.config
        self.hMat: np.ndarray | None = None
        if getattr(self.kConfig, "useRegularization", False):
            self.hMat = makeRegularizationMatrix(makePropertySet(self.kConfig))

    @abc.abstractmethod
    def _buildCellSet(self, *args: Any, **kwargs: Any) -> Any:
        """Fill a `SpatialCellSet` with kernel candidates."""
        raise NotImplementedError()

    def _propertySet(self) -> PropertySet:
        return makePropertySet(self.kConfig)

    def _createPcaBasis(
        self, kernelCellSet: SpatialCellSet, nStarPerCell: int, ps: PropertySet
    ) -> tuple[int, list[Kernel]]:
        """Replace the basis by principal components of the candidates' kernels.

        Returns
        -------
        nRejected : `int`
            Candidates rejected when refitting with the new basis.
        spatialBasisList : `list` of `Kernel`
            The new basis (mean kernel first if subtracted).

        Raises
        ------
        RuntimeError
            If the eigenvalues sum to zero.
        """
        trace = getTraceLogger(self.log.getChild("_solve"), 3)
        imagePca = KernelPca()
        visitor = KernelPcaVisitor(imagePca)
        kernelCellSet.visitCandidates(visitor, nStarPerCell)
        if self.kConfig.subtractMeanForPca:
            visitor.subtractMean()
        imagePca.analyze()
        eigenValues = imagePca.getEigenValues()
        pcaBasisList = visitor.getEigenKernels()
        eSum = float(np.sum(eigenValues))
        if eSum == 0.0:
            raise RuntimeError("Eigenvalues sum to zero")
        for j, value in enumerate(eigenValues):
            trace.debug("Eigenvalue %d : %f (%f)", j, value, value / eSum)
        nToUse = min(self.kConfig.numPrincipalComponents, len(eigenValues))
        trimmed = [k for k in pcaBasisList[:nToUse] if np.all(np.isfinite(k.getArray()))]
        spatialBasisList = renormalizeKernelList(trimmed)
        singlekv = BuildSingleKernelVisitor(spatialBasisList, ps)
        singlekv.setSkipBuilt(False)
        kernelCellSet.visitCandidates(singlekv, nStarPerCell)
        return singlekv.getNRejected(), spatialBasisList

    @timeMethod
    def _solve(self, kernelCellSet: SpatialCellSet, basisList: list[Kernel]) -> tuple[Any, Kernel, Function2]:
        """Fit the spatially varying kernel and background.

        Runs, until the spatial model rejects nothing or
        ``maxSpatialIterations`` is reached: per-candidate fits (with
        residual clipping), kernel-sum clipping, the optional PCA basis, the
        spatial fit, and the assessment of the spatial model.

        Parameters
        ----------
        kernelCellSet : `~lsst.ip.diffim.math.SpatialCellSet`
            Cells of `~lsst.ip.diffim.kernel.KernelCandidate` objects.
        basisList : `list` of `~lsst.ip.diffim.math.Kernel`
            The basis of the per-candidate fits.

        Returns
        -------
        spatialSolution : `~lsst.ip.diffim.kernel.SpatialKernelSolution`
            The spatial system and its solution.
        spatialKernel : `~lsst.ip.diffim.math.LinearCombinationKernel`
            The PSF-matching kernel.
        spatialBackground : `~lsst.ip.diffim.math.Function2`
            The differential background.

        Raises
        ------
        NoKernelCandidatesError
            If no usable candidates remain.
        """
        with singleThreadedBlas():
            return self._solveCandidates(kernelCellSet, basisList)

    def _checkMemory(self, kernelCellSet: SpatialCellSet, basisList: list[Kernel], regularized: bool) -> None:
        """Refuse (`~lsst.ip.diffim.kernel.memoryEstimate.MemoryEstimateError`) a fit the machine
        cannot hold, before any work is done."""
        from .kernel.memoryEstimate import checkMemoryEstimate, estimateKernelFitBytes

        kc = self.kConfig
        kh, kw = (basisList[0].getHeight(), basisList[0].getWidth()) if basisList else (1, 1)
        usePca = bool(kc.usePcaForSpatialKernel)
        nSpatialTerms = (kc.spatialKernelOrder + 1) * (kc.spatialKernelOrder + 2) // 2
        nBgTerms = (kc.spatialBgOrder + 1) * (kc.spatialBgOrder + 2) // 2
        estimate = estimateKernelFitBytes(
            nBasis=len(basisList),
            nCandidates=len(kernelCellSet.allCandidates()),
            nCells=len(kernelCellSet.getCellList()),
            nStarPerCell=kc.nStarPerCell,
            nSpatialKernelTerms=nSpatialTerms,
            nSpatialBgTerms=nBgTerms,
            fitForBackground=bool(kc.fitForBackground),
            useRegularization=regularized,
            stampPixels=4 * kh * kw,
            keepsSystems=not usePca,
            nSpatialBasis=min(kc.numPrincipalComponents, len(basisList)) if usePca else None,
        )
        self.metadata["kernelFitMemoryEstimateBytes"] = estimate
        checkMemoryEstimate(estimate, f"The kernel fit ({len(basisList)} basis kernels)")

    def _solveCandidates(
        self, kernelCellSet: SpatialCellSet, basisList: list[Kernel]
    ) -> tuple[Any, Kernel, Function2]:
        """The body of `_solve` (BLAS held to one thread by the caller)."""
        import lsstDebug

        display = lsstDebug.Info(__name__).display
        trace0 = getTraceLogger(self.log.getChild("_solve"), 0)
        trace2 = getTraceLogger(self.log.getChild("_solve"), 2)
        trace3 = getTraceLogger(self.log.getChild("_solve"), 3)

        ps = self._propertySet()
        maxSpatialIterations = self.kConfig.maxSpatialIterations
        nStarPerCell = self.kConfig.nStarPerCell
        usePcaForSpatialKernel = self.kConfig.usePcaForSpatialKernel
        hMat = self.hMat if getattr(self.kConfig, "useRegularization", False) else None
        self._checkMemory(kernelCellSet, basisList, hMat is not None)
        singlekv = BuildSingleKernelVisitor(basisList, ps, hMat)
        ksv = KernelSumVisitor(ps)

        timing = {"singleKernelFit": 0.0, "spatialFit": 0.0, "assessment": 0.0}
        spatialkv: BuildSpatialKernelVisitor | None = None
        spatialBasisList = basisList
        nRejectedSpatial = 0
        iteration = 0
        while iteration < maxSpatialIterations:
            nRejectedSkf = -1
            while nRejectedSkf != 0:
                trace2.debug("Building single kernels...")
                t0 = time.perf_counter()
                kernelCellSet.visitCandidates(singlekv, nStarPerCell, ignoreExceptions=True)
                timing["singleKernelFit"] += time.perf_counter() - t0
                nRejectedSkf = singlekv.getNRejected()
                trace2.debug(
                    "Iteration %d, rejected %d candidates due to initial kernel fit", iteration, nRejectedSkf
                )

            ksv.resetKernelSum()
            ksv.setMode(KernelSumVisitor.AGGREGATE)
            kernelCellSet.visitCandidates(ksv, nStarPerCell, ignoreExceptions=True)
            if all(cell.empty() for cell in kernelCellSet.getCellList()):
                raise NoKernelCandidatesError(
                    "All spatial cells are empty of usable kernel candidates; check the candidate "
                    "selection (source list, detection threshold, badMaskPlanes) and the clipping limits.",
                    nBad=len(kernelCellSet.allCandidates()),
                )
            try:
                ksv.processKsumDistribution()
            except RuntimeError as exc:
                raise NoKernelCandidatesError(
                    f"Unable to determine the kernel-sum distribution: {exc}",
                    nBad=len(kernelCellSet.allCandidates()),
                ) from exc
            ksv.setMode(KernelSumVisitor.REJECT)
            kernelCellSet.visitCandidates(ksv, nStarPerCell, ignoreExceptions=True)
            nRejectedKsum = ksv.getNRejected()
            trace2.debug("Iteration %d, rejected %d candidates due to kernel sum", iteration, nRejectedKsum)
            if nRejectedKsum > 0:
                continue

            if usePcaForSpatialKernel:
                trace0.debug("Building Pca basis")
                nRejectedPca, spatialBasisList = self._createPcaBasis(kernelCellSet, nStarPerCell, ps)
                trace2.debug(
                    "Iteration %d, rejected %d candidates due to Pca kernel fit", iteration, nRejectedPca
                )
                if nRejectedPca > 0:
                    continue
            else:
                spatialBasisList = basisList

            t0 = time.perf_counter()
            spatialkv = self._buildSpatialVisitor(kernelCellSet, spatialBasisList, ps, nStarPerCell)
            spatialkv.solveLinearEquation()
            timing["spatialFit"] += time.perf_counter() - t0
            trace2.debug("Spatial kernel built with %d candidates", spatialkv.getNCandidates())
            spatialKernel, spatialBackground = spatialkv.getSolutionPair()

            t0 = time.perf_counter()
            assesskv = AssessSpatialKernelVisitor(spatialKernel, spatialBackground, ps)
            kernelCellSet.visitCandidates(assesskv, nStarPerCell)
            timing["assessment"] += time.perf_counter() - t0
            nRejectedSpatial = assesskv.getNRejected()
            nGoodSpatial = assesskv.getNGood()
            trace2.debug(
                "Iteration %d, rejected %d candidates due to spatial kernel fit", iteration, nRejectedSpatial
            )
            trace2.debug("%d candidates used in fit", nGoodSpatial)
            if nGoodSpatial == 0 and nRejectedSpatial == 0:
                raise NoKernelCandidatesError(
                    "No kernel candidates remain for the spatial fit.",
                    nBad=len(kernelCellSet.allCandidates()),
                )
            if nRejectedSpatial == 0:
                break
            iteration += 1

        if nRejectedSpatial > 0 and iteration == maxSpatialIterations:
            trace2.debug("Final spatial fit")
            if usePcaForSpatialKernel:
                _, spatialBasisList = self._createPcaBasis(kernelCellSet, nStarPerCell, ps)
            spatialkv = self._buildSpatialVisitor(kernelCellSet, spatialBasisList, ps, nStarPerCell)
            spatialkv.solveLinearEquation()
            spatialKernel, spatialBackground = spatialkv.getSolutionPair()

        if spatialkv is None or spatialkv.getNCandidates() < 1:
            raise NoKernelCandidatesError(
                "No kernel candidates remain after the maximum number of spatial iterations.",
                nBad=len(kernelCellSet.allCandidates()),
            )
        spatialSolution = spatialkv.getKernelSolution()
        trace3.debug(
            "Spatial solution: %d unknowns, solved by %s",
            spatialSolution.getNTerms(),
            spatialSolution.getSolvedBy().name,
        )

        if display:
            self._displayDebug(kernelCellSet, spatialKernel, spatialBackground)

        t0 = time.perf_counter()
        self._diagnostic(kernelCellSet, spatialSolution, spatialKernel, spatialBackground)
        timing["diagnostic"] = time.perf_counter() - t0
        for name, seconds in timing.items():
            self.metadata[f"timing_{name}"] = float(seconds)
        return spatialSolution, spatialKernel, spatialBackground

    def _buildSpatialVisitor(
        self, kernelCellSet: SpatialCellSet, basisList: list[Kernel], ps: PropertySet, nStarPerCell: int
    ) -> BuildSpatialKernelVisitor:
        """Accumulate the spatial system, lowering the spatial orders in sparse fields.

        With fewer candidates than ``minCandidatesPerSpatialTerm`` per
        spatial term, the kernel order (then the background order) is
        lowered until there are enough; a warning says what was done and
        the metadata records the orders used.
        """
        regionBBox = kernelCellSet.getBBox()
        spatialkv = BuildSpatialKernelVisitor(basisList, regionBBox, ps)
        kernelCellSet.visitCandidates(spatialkv, nStarPerCell)
        kOrder = int(ps["spatialKernelOrder"])
        bgOrder = int(ps["spatialBgOrder"]) if bool(ps["fitForBackground"]) else 0
        perTerm = float(self.kConfig.minCandidatesPerSpatialTerm)
        nCand = spatialkv.getNCandidates()
        newK, newBg = _lowerSpatialOrders(nCand, kOrder, bgOrder, perTerm)
        lowered = (newK, newBg) != (kOrder, bgOrder)
        if lowered:
            self.log.warning(
                "Only %d kernel candidates for a spatial kernel of order %d and background of order %d "
                "(at least %.3g per spatial term asked, minCandidatesPerSpatialTerm): lowered to kernel "
                "order %d and background order %d so the spatial model does not extrapolate to the edges",
                nCand,
                kOrder,
                bgOrder,
                perTerm,
                newK,
                newBg,
            )
            ps = ps.copy()
            ps["spatialKernelOrder"] = newK
            ps["spatialBgOrder"] = newBg
            spatialkv = BuildSpatialKernelVisitor(basisList, regionBBox, ps)
            kernelCellSet.visitCandidates(spatialkv, nStarPerCell)
        self.metadata["spatialKernelOrderUsed"] = newK
        self.metadata["spatialBgOrderUsed"] = newBg
        self.metadata["spatialOrderLowered"] = lowered
        return spatialkv

    def _displayDebug(
        self, kernelCellSet: SpatialCellSet, spatialKernel: Kernel, spatialBackground: Function2
    ) -> None:
        """Draw the lsstDebug displays of the kernel fit (see `lsst.ip.diffim.display`)."""
        from .display.psfMatchDisplays import displayKernelFit

        displayKernelFit(__name__, self.log, kernelCellSet, spatialKernel, spatialBackground, self.kConfig)

    def _diagnostic(
        self, kernelCellSet: SpatialCellSet, spatialSolution: Any, spatialKernel: Kernel, spatialBg: Function2
    ) -> None:
        """Log the quality of the fit and write it to the task metadata.

        Sets ``spatialConditionNum``, ``spatialKernelSum``, candidate counts
        and the residual metrics ``<metric>_<LOCAL|SPATIAL>_<MEAN|MEDIAN|STDEV>``.
        """
        bbox: Box = kernelCellSet.getBBox()
        xCen = 0.5 * (bbox.x.min + bbox.x.max)
        yCen = 0.5 * (bbox.y.min + bbox.y.max)
        kSum = spatialKernel.getSum(xCen, yCen)
        self.log.info("Final spatial kernel sum %.3f", kSum)

        cond = spatialSolution.getConditionNumber(self.kConfig.conditionNumberType)
        self.log.info("Spatial model condition number %.3e", cond)
        if cond < 0 or not math.isfinite(cond):
            self.log.warning("Condition number is negative or not finite (%.3e)", cond)
        if cond > self.kConfig.maxSpatialConditionNumber:
            self.log.warning(
                "Spatial solution exceeds max condition number (%.3e > %.3e)",
                cond,
                self.kConfig.maxSpatialConditionNumber,
            )
        self.metadata["spatialConditionNum"] = float(cond)
        self.metadata["spatialKernelSum"] = float(kSum)
        self.metadata["spatialKernelOrder"] = int(self.kConfig.spatialKernelOrder)
        bgOrder = self.kConfig.spatialBgOrder if self.kConfig.fitForBackground else 0
        self.metadata["spatialBgOrder"] = int(bgOrder)

        nKernelTerms = spatialKernel.getNSpatialParameters() or 1
        nBgTerms = spatialBg.getNParameters()
        if nBgTerms == 1 and spatialBg.getParameters()[0] == 0.0:
            nBgTerms = 0
        candidates = kernelCellSet.allCandidates(ignoreBad=False)
        nGood = sum(1 for c in candidates if c.getStatus() == SpatialCellCandidateStatus.GOOD)
        nBad = sum(1 for c in candidates if c.getStatus() == SpatialCellCandidateStatus.BAD)
        nTot = len(candidates)
        self.log.info("Doing stats of kernel candidates used in the spatial fit.")
        if nBad > 2 * nGood:
            self.log.warning(
                "Many more candidates rejected than accepted; %d total, %d rejected, %d used",
                nTot,
                nBad,
                nGood,
            )
        else:
            self.log.info("%d candidates total, %d rejected, %d used", nTot, nBad, nGood)
        if nGood < nKernelTerms:
            self.log.warning(
                "Spatial kernel model underconstrained; %d candidates, %d terms", nGood, nKernelTerms
            )
            self.log.warning("Consider lowering the spatial order")
        elif nGood <= 2 * nKernelTerms:
            self.log.warning(
                "Spatial kernel model poorly constrained; %d candidates, %d terms", nGood, nKernelTerms
            )
            self.log.warning("Consider lowering the spatial order")
        else:
            self.log.info(
                "Spatial kernel model well constrained; %d candidates, %d terms", nGood, nKernelTerms
            )
        if nGood < nBgTerms:
            self.log.warning(
                "Spatial background model underconstrained; %d candidates, %d terms", nGood, nBgTerms
            )
            self.log.warning("Consider lowering the spatial order")
        elif nGood <= 2 * nBgTerms:
            self.log.warning(
                "Spatial background model poorly constrained; %d candidates, %d terms", nGood, nBgTerms
            )
            self.log.warning("Consider lowering the spatial order")
        else:
            self.log.info(
                "Spatial background model appears well constrained; %d candidates, %d terms", nGood, nBgTerms
            )
        self.metadata["nKernelCandidates"] = nTot
        self.metadata["nGoodKernelCandidates"] = nGood
        self.metadata["nBadKernelCandidates"] = nBad
        for key, value in self._residualMetrics(candidates, spatialKernel, spatialBg).items():
            self.metadata[key] = value

    def _residualMetrics(
        self, candidates: list[Any], spatialKernel: Kernel, spatialBg: Function2
    ) -> dict[str, float]:
        """Return the mean, median and scatter over GOOD candidates of their residual metrics.

        For each GOOD candidate, the difference stamp of its own (ORIG) fit
        (LOCAL) and of the spatial model at its position (SPATIAL) is
        measured in units of its noise, ignoring ``badMaskPlanes``:
        ``KCDiffimMean``, ``KCDiffimMedian``, ``KCDiffimIQR``,
        ``KCDiffimStDev`` and ``KCDiffimChiSq`` (mean of the squared
        normalized residuals).  NaN values are stored when no candidate is
        usable.
        """
        metricNames = ("KCDiffimMean", "KCDiffimMedian", "KCDiffimIQR", "KCDiffimStDev", "KCDiffimChiSq")
        values: dict[str, dict[str, list[float]]] = {
            kind: {name: [] for name in metricNames} for kind in ("LOCAL", "SPATIAL")
        }
        badPlanes = list(self.kConfig.badMaskPlanes)

        def record(kind: str, pixels: np.ndarray) -> None:
            """Add one candidate's metrics from its normalized residual pixels."""
            pix = pixels[np.isfinite(pixels)]
            if pix.size < 2:
                return
            q25, q50, q75 = np.percentile(pix, [25, 50, 75])
            values[kind]["KCDiffimMean"].append(float(pix.mean()))
            values[kind]["KCDiffimMedian"].append(float(q50))
            values[kind]["KCDiffimIQR"].append(float(q75 - q25))
            values[kind]["KCDiffimStDev"].append(float(pix.std(ddof=1)))
            values[kind]["KCDiffimChiSq"].append(float(np.mean(pix**2)))

        def recordMany(kind: str, residuals: np.ndarray) -> None:
            """Add many candidates' metrics from a stack of residual rows (which it reorders)."""
            finite = np.isfinite(residuals).all(axis=1)
            pix = residuals
            if not finite.all():
                for r in residuals[~finite]:
                    record(kind, r)
                pix = residuals[finite]
            if pix.shape[0] == 0 or pix.shape[1] < 2:
                return
            # Moments first (from the row sums of x and x^2; the normalized
            # residuals are of order one), then the percentiles partition the
            # rows in place.
            n = pix.shape[1]
            mean = pix.mean(axis=1)
            meanSquare = np.einsum("ij,ij->i", pix, pix) / n
            variance = np.maximum(meanSquare - mean * mean, 0.0) * (n / (n - 1.0))
            values[kind]["KCDiffimMean"].extend(mean.tolist())
            values[kind]["KCDiffimStDev"].extend(np.sqrt(variance).tolist())
            values[kind]["KCDiffimChiSq"].extend(meanSquare.tolist())
            q25, q50, q75 = np.percentile(pix, [25, 50, 75], axis=1, overwrite_input=True)
            values[kind]["KCDiffimMedian"].extend(q50.tolist())
            values[kind]["KCDiffimIQR"].extend((q75 - q25).tolist())

        good = [
            c
            for c in candidates
            if isinstance(c, KernelCandidate) and c.getStatus() == SpatialCellCandidateStatus.GOOD
        ]

        def recordSingle(cand: KernelCandidate) -> None:
            """Add the metrics of a candidate whose stamps are masked or not finite."""
            try:
                local = cand.getDifferenceImage(CandidateSwitch.ORIG)
                x, y = cand.getXCenter(), cand.getYCenter()
                spatial = cand.getCachedSpatialDifference(spatialKernel)
                if spatial is None:
                    spatial = cand.getDifferenceImage(
                        FixedKernel(spatialKernel.getArray(x, y)), float(spatialBg(x, y))
                    )
            except CANDIDATE_ERRORS:
                return
            for kind, diffim in (("LOCAL", local), ("SPATIAL", spatial)):
                bad = anyMaskPlaneSet(diffim.mask, badPlanes)
                with np.errstate(divide="ignore", invalid="ignore"):
                    norm = diffim.image.array / np.sqrt(diffim.variance.array)
                record(kind, norm[~bad])

        batchable: list[tuple[StampStack, list[KernelCandidate], list[int]]] = []
        for stack, index, kcs in groupByStampStack(good):
            clean = stack.isClean(badPlanes)[index]
            for cand in kcs[~clean]:
                recordSingle(cand)
            if clean.any():
                batchable.append((stack, list(kcs[clean]), list(index[clean])))
        for stack, cands, rows in batchable:
            # Residuals already computed by the batched visitors are reused.
            todo, todoRows = [], []
            cachedLocal: list[np.ndarray] = []
            cachedSpatial: list[np.ndarray] = []
            for c, row in zip(cands, rows, strict=True):
                local, spatial = c._localResiduals, c._spatialResiduals
                try:
                    origId = c.getKernelSolution(CandidateSwitch.ORIG).getId()
                except CANDIDATE_ERRORS:
                    continue
                if (
                    local is not None
                    and local[0] == origId
                    and spatial is not None
                    and spatial[0] == spatialKernel.getSerial()
                ):
                    cachedLocal.append(local[1].ravel())
                    cachedSpatial.append(spatial[1].ravel())
                else:
                    todo.append(c)
                    todoRows.append(row)
            for kind, arrays in (("LOCAL", cachedLocal), ("SPATIAL", cachedSpatial)):
                if arrays:
                    recordMany(kind, np.stack(arrays))
            cands = todo
            if not cands:
                continue
            try:
                localKernels = [c.getKernelImage(CandidateSwitch.ORIG) for c in cands]
                localBgs = [c.getBackground(CandidateSwitch.ORIG) for c in cands]
            except CANDIDATE_ERRORS:
                continue
            xs = np.array([c.getXCenter() for c in cands])
            ys = np.array([c.getYCenter() for c in cands])
            spatialKernels = spatialKernel.getArrays(xs, ys)
            spatialBgs = np.asarray(spatialBg(xs, ys), dtype=float) * np.ones(len(cands))
            sel = np.asarray(todoRows, dtype=int)
            stamps = [stack.template, stack.templateVariance, stack.science, stack.scienceVariance]
            for kind, kernels, bgs in (
                ("LOCAL", np.stack(localKernels), np.array(localBgs, dtype=float)),
                ("SPATIAL", spatialKernels, spatialBgs),
            ):
                residuals = batchNormalizedResiduals(*stamps, kernels, bgs, rows=sel).reshape(len(cands), -1)
                recordMany(kind, residuals)
        out: dict[str, float] = {}
        for kind, metrics in values.items():
            for name, vals in metrics.items():
                arr = np.asarray(vals)
                out[f"{name}_{kind}_MEAN"] = float(arr.mean()) if arr.size else math.nan
                out[f"{name}_{kind}_MEDIAN"] = float(np.median(arr)) if arr.size else math.nan
                out[f"{name}_{kind}_STDEV"] = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
        return out


def _nSpatialTerms(order: int) -> int:
    """Number of terms of a 2-d polynomial (or Chebyshev series) of total ``order``."""
    return (order + 1) * (order + 2) // 2


def _lowerSpatialOrders(nCandidates: int, kernelOrder: int, bgOrder: int, perTerm: float) -> tuple[int, int]:
    """Return the spatial orders that ``nCandidates`` candidates support.

    Each order is lowered until ``nCandidates >= perTerm * nTerms(order)``
    (or it is 0); ``perTerm <= 0`` keeps both.
    """
    if perTerm <= 0:
        return kernelOrder, bgOrder
    while kernelOrder > 0 and nCandidates < perTerm * _nSpatialTerms(kernelOrder):
        kernelOrder -= 1
    while bgOrder > 0 and nCandidates < perTerm * _nSpatialTerms(bgOrder):
        bgOrder -= 1
    return kernelOrder, bgOrder
