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
import dataclasses
import math
import time
from typing import Any, ClassVar, Unpack, cast

import numpy as np

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.images import Box
from lsst.utils.logging import getTraceLogger
from lsst.utils.timer import timeMethod

from .kernel.basisLists import makeRegularizationMatrix, renormalizeKernelList
from .kernel.residualMetrics import residualMetrics
from .kernel.settings import KernelFitSettings
from .kernel.solution import KernelSolvedBy, SpatialKernelSolution
from .kernel.visitors import (
    AssessSpatialKernelVisitor,
    BuildSingleKernelVisitor,
    BuildSpatialKernelVisitor,
    KernelPca,
    KernelPcaVisitor,
    KernelSumVisitor,
)
from .math.background import SubtractBackgroundConfig
from .math.functions import Function2
from .math.kernels import Kernel, LinearCombinationKernel
from .math.spatialCell import SpatialCellCandidateStatus, SpatialCellSet
from .math.threads import singleThreadedBlas
from .math.warper import WarperConfig
from .taskArguments import TaskArguments

#: The trace loggers of the kernel fit (``TRACE<n>.lsst.ip.diffim.psfMatch``):
#: ``lsst.utils.logging.trace_set_at("lsst.ip.diffim", n)`` shows them.
_TRACE_NAME = "lsst.ip.diffim.psfMatch"


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
        """Candidate counts when the error was raised (``nGoodCandidates``, ``nBadCandidates``)."""
        return {"nGoodCandidates": self._nGood, "nBadCandidates": self._nBad}


class DetectionConfig(pexConfig.Config):
    """Detection and footprint settings of kernel candidates (pre-2024 ip_diffim)."""

    detThreshold = pexConfig.Field[float](
        dtype=float,
        doc="Detection threshold for kernel candidates, in units of detThresholdType.",
        default=10.0,
        check=lambda x: x >= 3.0,
    )
    detThresholdType = pexConfig.ChoiceField[str](
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
    detOnTemplate = pexConfig.Field[bool](
        dtype=bool,
        doc="Detect candidates on the template (else on the science image).",
        default=True,
    )
    badMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        doc="Candidates whose footprint touches any of these planes (in either image) are rejected. "
        "Deviation: upstream's default omits BAD; it is added so that user bad-pixel masks (a MASK/DQ "
        "extension, CCDData.mask) keep pixels out of the kernel fit, and STREAK so that trails do "
        "(remove them for upstream's behaviour).",
        default=("NO_DATA", "EDGE", "SAT", "BAD", "STREAK"),
    )
    fpNpixMin = pexConfig.Field[int](
        dtype=int,
        doc="Minimum number of pixels of a candidate's detection footprint.",
        default=5,
        check=lambda x: x >= 5,
    )
    fpNpixMax = pexConfig.Field[int](
        dtype=int,
        doc="Maximum number of pixels of a candidate's detection footprint (rejects blends, galaxies).",
        default=500,
        check=lambda x: x <= 500,
    )
    fpGrowKernelScaling = pexConfig.Field[float](
        dtype=float,
        doc="Footprint half-size as a multiple of the kernel size, when scaleByFwhm is set.",
        default=1.0,
        check=lambda x: x >= 1.0,
    )
    fpGrowPix = pexConfig.Field[int](
        dtype=int,
        doc="Footprint half-size (pixels) when scaleByFwhm is not set.",
        default=30,
        check=lambda x: x >= 10,
    )
    scaleByFwhm = pexConfig.Field[bool](
        dtype=bool,
        doc="Scale the footprint size with the kernel size (fpGrowKernelScaling) rather than fpGrowPix.",
        default=True,
    )


class PsfMatchConfig(pexConfig.Config):
    """Base configuration of the PSF-matching kernel fit."""

    warpingConfig = pexConfig.ConfigField[WarperConfig](
        dtype=WarperConfig,
        doc="Resampling of the template onto the science grid when they are not registered.",
    )
    detectionConfig = pexConfig.ConfigField[DetectionConfig](
        dtype=DetectionConfig,
        doc="Footprint settings of kernel candidates.",
    )
    afwBackgroundConfig = pexConfig.ConfigField[SubtractBackgroundConfig](
        dtype=SubtractBackgroundConfig,
        doc="Settings of a binned background fit, for useAfwBackground. Not read by the kernel fit (nor "
        "upstream); kept so that override files that set it still load.",
    )
    useAfwBackground = pexConfig.Field[bool](
        dtype=bool,
        doc="Upstream: 'use afw background subtraction instead of ip_diffim', a field upstream never reads. "
        "Only False is accepted (validate raises otherwise): fit the differential background with "
        "fitForBackground.",
        default=False,
    )
    fitForBackground = pexConfig.Field[bool](
        dtype=bool,
        doc="Fit a differential background together with the kernel (a constant per stamp, "
        "spatialBgOrder across the image).",
        default=False,
    )
    kernelBasisSet = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Type of basis set for the PSF-matching kernel.",
        default="alard-lupton",
        allowed={
            "alard-lupton": "Gaussians of several widths times polynomials (Alard & Lupton 1998).",
            "delta-function": "One delta function per kernel pixel; use with regularization.",
        },
    )
    kernelSize = pexConfig.Field[int](
        dtype=int,
        doc="Kernel width and height (pixels); must be odd for Alard-Lupton. Replaced by the FWHM-scaled "
        "size when scaleByFwhm is set and both PSF widths are known.",
        default=21,
    )
    scaleByFwhm = pexConfig.Field[bool](
        dtype=bool,
        doc="Derive the Alard-Lupton Gaussian widths and the kernel size from the two PSF FWHMs.",
        default=True,
    )
    kernelSizeFwhmScaling = pexConfig.Field[float](
        dtype=float,
        doc="Kernel size as a multiple of the largest Alard-Lupton sigma, when scaling by FWHM.",
        default=6.0,
        check=lambda x: x >= 1.0,
    )
    kernelSizeMin = pexConfig.Field[int](
        dtype=int,
        doc="Smallest kernel size allowed when scaling by FWHM.",
        default=21,
    )
    kernelSizeMax = pexConfig.Field[int](
        dtype=int,
        doc="Largest kernel size allowed when scaling by FWHM.",
        default=35,
    )
    spatialModelType = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Type of spatial functions for the kernel coefficients and the background.",
        default="chebyshev1",
        allowed={
            "chebyshev1": "Chebyshev polynomials of the first kind over the region",
            "polynomial": "Standard x, y polynomials",
        },
    )
    spatialKernelOrder = pexConfig.Field[int](
        dtype=int,
        doc="Total order of the spatial variation of the kernel coefficients.",
        default=2,
        check=lambda x: x >= 0,
    )
    spatialBgOrder = pexConfig.Field[int](
        dtype=int,
        doc="Total order of the spatial variation of the differential background "
        "(ignored unless fitForBackground).",
        default=1,
        check=lambda x: x >= 0,
    )
    minCandidatesPerSpatialTerm = pexConfig.Field[float](
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
    sizeCellX = pexConfig.Field[int](
        dtype=int,
        doc="Width (pixels) of the spatial cells that spread candidates over the image.",
        default=128,
        check=lambda x: x >= 32,
    )
    sizeCellY = pexConfig.Field[int](
        dtype=int,
        doc="Height (pixels) of the spatial cells.",
        default=128,
        check=lambda x: x >= 32,
    )
    nStarPerCell = pexConfig.Field[int](
        dtype=int,
        doc="Maximum number of candidates used per cell, best rated first; -1 (or any value <= 0) uses all.",
        default=5,
    )
    maxSpatialIterations = pexConfig.Field[int](
        dtype=int,
        doc="Maximum number of spatial-fit / rejection iterations.",
        default=3,
        check=lambda x: 1 <= x <= 5,
    )
    usePcaForSpatialKernel = pexConfig.Field[bool](
        dtype=bool,
        doc="Replace the basis by the principal components of the candidates' kernels before the "
        "spatial fit (useful for delta-function bases).",
        default=False,
    )
    subtractMeanForPca = pexConfig.Field[bool](
        dtype=bool,
        doc="Subtract the mean kernel before the PCA and use it as the first basis kernel.",
        default=True,
    )
    numPrincipalComponents = pexConfig.Field[int](
        dtype=int,
        doc="Number of principal components kept (the mean counts as one when subtracted).",
        default=5,
        check=lambda x: x >= 3,
    )
    singleKernelClipping = pexConfig.Field[bool](
        dtype=bool,
        doc="Reject candidates whose own kernel leaves large residuals.",
        default=True,
    )
    kernelSumClipping = pexConfig.Field[bool](
        dtype=bool,
        doc="Reject candidates whose kernel sum is an outlier (variable stars, blends).",
        default=True,
    )
    spatialKernelClipping = pexConfig.Field[bool](
        dtype=bool,
        doc="Reject candidates whose residuals under the spatial model are large.",
        default=True,
    )
    checkConditionNumber = pexConfig.Field[bool](
        dtype=bool,
        doc="Reject candidates whose normal matrix has a condition number above maxConditionNumber.",
        default=False,
    )
    badMaskPlanes = pexConfig.ListField[str](
        dtype=str,
        doc="Mask planes whose pixels are ignored in the residual statistics of candidates.",
        default=("NO_DATA", "EDGE", "SAT"),
    )
    candidateResidualMeanMax = pexConfig.Field[float](
        dtype=float,
        doc="Largest allowed absolute mean of a candidate's difference in units of its noise.",
        default=0.25,
        check=lambda x: x >= 0.0,
    )
    candidateResidualStdMax = pexConfig.Field[float](
        dtype=float,
        doc="Largest allowed standard deviation of a candidate's difference in units of its noise.",
        default=1.50,
        check=lambda x: x >= 0.0,
    )
    useCoreStats = pexConfig.Field[bool](
        dtype=bool,
        doc="Compute the residual statistics only over the stamp core (candidateCoreRadius).",
        default=False,
    )
    candidateCoreRadius = pexConfig.Field[int](
        dtype=int,
        doc="Half-size r of the core; the core has (2r+1)^2 pixels.",
        default=3,
        check=lambda x: x >= 1,
    )
    maxKsumSigma = pexConfig.Field[float](
        dtype=float,
        doc="Kernel sums further than this many clipped standard deviations from the mean are rejected.",
        default=3.0,
        check=lambda x: x >= 0.0,
    )
    maxConditionNumber = pexConfig.Field[float](
        dtype=float,
        doc="Largest condition number of a candidate's normal matrix (with checkConditionNumber).",
        default=5.0e7,
        check=lambda x: x >= 0.0,
    )
    conditionNumberType = pexConfig.ChoiceField[str](
        dtype=str,
        doc="How condition numbers are computed.",
        default="EIGENVALUE",
        allowed={"SVD": "ratio of extreme singular values", "EIGENVALUE": "ratio of extreme eigenvalues"},
    )
    maxSpatialConditionNumber = pexConfig.Field[float](
        dtype=float,
        doc="A spatial system with a larger condition number only produces a warning.",
        default=1.0e10,
        check=lambda x: x >= 0.0,
    )
    iterateSingleKernel = pexConfig.Field[bool](
        dtype=bool,
        doc="Refit each candidate once, weighted by its difference-image variance "
        "(ignored with constantVarianceWeighting).",
        default=False,
    )
    constantVarianceWeighting = pexConfig.Field[bool](
        dtype=bool,
        doc="Weight each stamp's pixels by one (median) variance instead of per-pixel variances.",
        default=True,
    )
    varianceWeightingFloor = pexConfig.RangeField(
        dtype=float,
        doc="Without constantVarianceWeighting, weight each stamp pixel by 1 / (variance + this times the "
        "stamp's median variance): between per-pixel weights (0, upstream) and constant ones (large), so "
        "that the cores of bright stars do not dominate the fit nor are discounted. A deviation from "
        "upstream (0 restores it).",
        default=0.0,
        min=0.0,
    )
    calculateKernelUncertainty = pexConfig.Field[bool](
        dtype=bool,
        doc="Compute kernel uncertainties (not supported; kept for compatibility).",
        default=False,
    )
    useBicForKernelBasis = pexConfig.Field[bool](
        dtype=bool,
        doc="Choose the Alard-Lupton polynomial degrees by the Bayesian information criterion: every "
        "combination of degrees 1..alardDegGauss[i] is fitted to the candidates and the one most "
        "candidates prefer is used (metadata ALBasisDegGaussBic). Read by ImagePsfMatchTask and "
        "SnapPsfMatchTask, as upstream; needs the Alard-Lupton basis. Costs one per-candidate fit per "
        "combination (16 with the default degrees).",
        default=False,
    )

    def validate(self) -> None:
        """Check the kernel size and the options this package does not support.

        Raises
        ------
        lsst.pex.config.FieldValidationError
            For an invalid or unsupported setting.
        """
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
        if self.useAfwBackground:
            raise pexConfig.FieldValidationError(
                PsfMatchConfig.useAfwBackground,
                self,
                "useAfwBackground=True is not supported (upstream never reads it either); fit the "
                "differential background with fitForBackground.",
            )
        if self.useBicForKernelBasis and self.kernelBasisSet != "alard-lupton":
            raise pexConfig.FieldValidationError(
                PsfMatchConfig.useBicForKernelBasis,
                self,
                "useBicForKernelBasis chooses Alard-Lupton degrees: it needs kernelBasisSet='alard-lupton'.",
            )


class PsfMatchConfigAL(PsfMatchConfig):
    """Alard-Lupton (sum of Gaussians times polynomials) kernel configuration."""

    alardNGauss = pexConfig.Field[int](
        dtype=int,
        doc="Number of Gaussians (with scaleByFwhm the number of generated sigmas is used).",
        default=3,
        check=lambda x: x >= 1,
    )
    alardDegGauss = pexConfig.ListField[int](
        dtype=int,
        doc="Polynomial degree multiplying each Gaussian; one entry per Gaussian.",
        default=(4, 2, 2),
    )
    alardSigGauss = pexConfig.ListField[float](
        dtype=float,
        doc="Gaussian sigmas (pixels) when not scaling by FWHM; one entry per Gaussian.",
        default=(0.7, 1.5, 3.0),
    )
    alardGaussBeta = pexConfig.Field[float](
        dtype=float,
        doc="Ratio of successive Gaussian sigmas when scaling by FWHM.",
        default=2.0,
        check=lambda x: x >= 0.0,
    )
    alardMinSig = pexConfig.Field[float](
        dtype=float,
        doc="Smallest Gaussian sigma (pixels) when convolving.",
        default=0.7,
        check=lambda x: x >= 0.25,
    )
    alardDegGaussDeconv = pexConfig.Field[int](
        dtype=int,
        doc="Upstream: the degree of every Gaussian when deconvolving. Here the deconvolution basis has "
        "the degrees of alardDegGauss, so only the default is accepted (validate raises otherwise).",
        default=3,
        check=lambda x: x >= 1,
    )
    alardMinSigDeconv = pexConfig.Field[float](
        dtype=float,
        doc="Smallest Gaussian sigma (pixels) when deconvolving.",
        default=0.4,
        check=lambda x: x >= 0.25,
    )
    alardNGaussDeconv = pexConfig.Field[int](
        dtype=int,
        doc="Upstream: the number of Gaussians when deconvolving. Here the deconvolution basis has "
        "alardNGauss Gaussians, so only the default is accepted (validate raises otherwise).",
        default=3,
        check=lambda x: x >= 1,
    )

    def setDefaults(self) -> None:
        """Use the Alard-Lupton basis, with a condition-number limit of 5e7."""
        super().setDefaults()
        self.kernelBasisSet = "alard-lupton"
        self.maxConditionNumber = 5.0e7

    def validate(self) -> None:
        """Check that the Gaussian lists match ``alardNGauss`` and that deconvolution fields are unset.

        Raises
        ------
        lsst.pex.config.FieldValidationError
            For an inconsistent or unsupported setting.
        """
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
        deconvFields = (
            (PsfMatchConfigAL.alardNGaussDeconv, "alardNGauss"),
            (PsfMatchConfigAL.alardDegGaussDeconv, "alardDegGauss"),
        )
        for field, use in deconvFields:
            if getattr(self, field.name) != field.default:
                raise pexConfig.FieldValidationError(
                    field,
                    self,
                    f"{field.name}={getattr(self, field.name)} is not supported: the deconvolution basis "
                    f"takes {use}; set that instead (or leave {field.name} at {field.default}).",
                )


class PsfMatchConfigDF(PsfMatchConfig):
    """Delta-function (one kernel per pixel) kernel configuration, with regularization."""

    useRegularization = pexConfig.Field[bool](
        dtype=bool,
        doc="Regularize the per-candidate delta-function fits.",
        default=True,
    )
    regularizationType = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Type of regularization.",
        default="centralDifference",
        allowed={
            "centralDifference": "penalize the discrete Laplacian of the kernel",
            "forwardDifference": "penalize forward differences of the orders in forwardRegularizationOrders",
        },
    )
    centralRegularizationStencil = pexConfig.ChoiceField[int](
        dtype=int,
        doc="Number of points of the Laplacian stencil.",
        default=9,
        allowed={5: "5-point stencil", 9: "9-point stencil"},
    )
    forwardRegularizationOrders = pexConfig.ListField[int](
        dtype=int,
        doc="Orders of the penalized forward differences.",
        default=(1, 2),
        itemCheck=lambda x: 0 < x < 4,
    )
    regularizationBorderPenalty = pexConfig.Field[float](
        dtype=float,
        doc="Penalty on kernel pixels at the kernel border.",
        default=3.0,
        check=lambda x: x >= 0.0,
    )
    lambdaType = pexConfig.ChoiceField[str](
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
    lambdaValue = pexConfig.Field[float](dtype=float, doc="Lambda for lambdaType 'absolute'.", default=0.2)
    lambdaScaling = pexConfig.Field[float](
        dtype=float, doc="Scale factor for lambdaType 'relative'.", default=1e-4
    )
    lambdaStepType = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Grid of the lambda search of the risk-minimizing lambdaType values. Those are refused "
        "(validate), so this and lambdaMin, lambdaMax, lambdaStep are read by nothing; kept so that "
        "override files that set them still load.",
        default="log",
        allowed={"log": "grid in log10(lambda)", "linear": "grid in lambda"},
    )
    lambdaMin = pexConfig.Field[float](
        dtype=float, doc="Start of the lambda search grid (see lambdaStepType: read by nothing).", default=-1
    )
    lambdaMax = pexConfig.Field[float](
        dtype=float, doc="End of the lambda search grid (see lambdaStepType: read by nothing).", default=2.0
    )
    lambdaStep = pexConfig.Field[float](
        dtype=float, doc="Step of the lambda search grid (see lambdaStepType: read by nothing).", default=0.1
    )

    def setDefaults(self) -> None:
        """Use the delta-function basis with a PCA spatial kernel and a condition-number limit of 5e6."""
        super().setDefaults()
        self.kernelBasisSet = "delta-function"
        self.maxConditionNumber = 5.0e6
        self.usePcaForSpatialKernel = True
        self.subtractMeanForPca = True
        self.useBicForKernelBasis = False

    def validate(self) -> None:
        """Refuse the risk-minimizing ``lambdaType`` values, which cannot run.

        Raises
        ------
        lsst.pex.config.FieldValidationError
            For ``minimizeBiasedRisk`` or ``minimizeUnbiasedRisk``.
        """
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

    ConfigClass: ClassVar[type[pexConfig.Config]] = PsfMatchConfig
    _DefaultName = "psfMatch"

    def __init__(self, config: pexConfig.Config | None = None, **kwargs: Unpack[TaskArguments]) -> None:
        super().__init__(config, **kwargs)
        #: The active kernel configuration (a `PsfMatchConfigAL` or `PsfMatchConfigDF`).
        self.kConfig = cast(
            PsfMatchConfig, self.config.kernel.active if hasattr(self.config, "kernel") else self.config
        )
        self.hMat: np.ndarray | None = None
        if getattr(self.kConfig, "useRegularization", False):
            self.hMat = makeRegularizationMatrix(self._kernelSettings())

    @abc.abstractmethod
    def _buildCellSet(self, *args: Any, **kwargs: Any) -> object:
        """Fill a `SpatialCellSet` with kernel candidates (each task has its own arguments)."""
        raise NotImplementedError()

    def _kernelSettings(self) -> KernelFitSettings:
        """Return the kernel core's settings, read from ``self.kConfig`` now."""
        return KernelFitSettings.fromConfig(self.kConfig)

    def _createPcaBasis(
        self, kernelCellSet: SpatialCellSet, nStarPerCell: int, ps: KernelFitSettings, batched: bool = True
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
        trace = getTraceLogger(_TRACE_NAME, 3)
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
        singlekv = BuildSingleKernelVisitor(spatialBasisList, ps, batched=batched)
        singlekv.setSkipBuilt(False)
        kernelCellSet.visitCandidates(singlekv, nStarPerCell)
        return singlekv.getNRejected(), spatialBasisList

    @timeMethod
    def _solve(
        self,
        kernelCellSet: SpatialCellSet,
        basisList: list[Kernel],
        batched: bool = True,
        *,
        settings: KernelFitSettings | None = None,
        nStarPerCell: int | None = None,
    ) -> tuple[SpatialKernelSolution, Kernel, Function2]:
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
        batched : `bool`, optional
            Let the visitors process the candidates in batches (the
            default); `False` walks them one at a time (same results, for
            tests and debugging).
        settings : `~lsst.ip.diffim.kernel.KernelFitSettings`, optional
            The kernel core's settings for this fit (e.g. a crowded field's,
            see `ImagePsfMatchTask`); default ``self._kernelSettings()``.
        nStarPerCell : `int`, optional
            Candidates used per cell in this fit; default ``nStarPerCell``
            of the kernel config.

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
            return self._solveCandidates(kernelCellSet, basisList, batched, settings, nStarPerCell)

    def _checkMemory(self, kernelCellSet: SpatialCellSet, basisList: list[Kernel], regularized: bool) -> None:
        """Refuse a fit the machine cannot hold, before any work is done.

        Raises
        ------
        lsst.ip.diffim.kernel.memoryEstimate.MemoryEstimateError
            If the estimated memory of the fit exceeds what is available.
        """
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
        self,
        kernelCellSet: SpatialCellSet,
        basisList: list[Kernel],
        batched: bool = True,
        settings: KernelFitSettings | None = None,
        nStarPerCell: int | None = None,
    ) -> tuple[SpatialKernelSolution, Kernel, Function2]:
        """Run the body of `_solve` (BLAS held to one thread by the caller)."""
        import lsstDebug

        display = lsstDebug.Info(__name__).display
        trace0 = getTraceLogger(_TRACE_NAME, 0)
        trace2 = getTraceLogger(_TRACE_NAME, 2)
        trace3 = getTraceLogger(_TRACE_NAME, 3)

        ps = self._kernelSettings() if settings is None else settings
        maxSpatialIterations = self.kConfig.maxSpatialIterations
        nStarPerCell = self.kConfig.nStarPerCell if nStarPerCell is None else nStarPerCell
        usePcaForSpatialKernel = self.kConfig.usePcaForSpatialKernel
        hMat = self.hMat if getattr(self.kConfig, "useRegularization", False) else None
        self._checkMemory(kernelCellSet, basisList, hMat is not None)
        singlekv = BuildSingleKernelVisitor(basisList, ps, hMat, batched=batched)
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
                nRejectedPca, spatialBasisList = self._createPcaBasis(
                    kernelCellSet, nStarPerCell, ps, batched
                )
                trace2.debug(
                    "Iteration %d, rejected %d candidates due to Pca kernel fit", iteration, nRejectedPca
                )
                if nRejectedPca > 0:
                    continue
            else:
                spatialBasisList = basisList

            t0 = time.perf_counter()
            spatialkv = self._buildSpatialVisitor(kernelCellSet, spatialBasisList, ps, nStarPerCell, batched)
            spatialkv.solveLinearEquation()
            timing["spatialFit"] += time.perf_counter() - t0
            trace2.debug("Spatial kernel built with %d candidates", spatialkv.getNCandidates())
            spatialKernel, spatialBackground = spatialkv.getSolutionPair()

            t0 = time.perf_counter()
            assesskv = AssessSpatialKernelVisitor(spatialKernel, spatialBackground, ps, batched=batched)
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
                _, spatialBasisList = self._createPcaBasis(kernelCellSet, nStarPerCell, ps, batched)
            spatialkv = self._buildSpatialVisitor(kernelCellSet, spatialBasisList, ps, nStarPerCell, batched)
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
            KernelSolvedBy(spatialSolution.getSolvedBy()).name,
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
        self,
        kernelCellSet: SpatialCellSet,
        basisList: list[Kernel],
        ps: KernelFitSettings,
        nStarPerCell: int,
        batched: bool = True,
    ) -> BuildSpatialKernelVisitor:
        """Accumulate the spatial system, lowering the spatial orders in sparse fields.

        With fewer candidates than ``minCandidatesPerSpatialTerm`` per
        spatial term, the kernel order (then the background order) is
        lowered until there are enough; a warning says what was done and
        the metadata records the orders used.
        """
        regionBBox = kernelCellSet.getBBox()
        spatialkv = BuildSpatialKernelVisitor(basisList, regionBBox, ps, batched=batched)
        kernelCellSet.visitCandidates(spatialkv, nStarPerCell)
        kOrder = ps.spatialKernelOrder
        bgOrder = ps.spatialBgOrder if ps.fitForBackground else 0
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
            ps = dataclasses.replace(ps, spatialKernelOrder=newK, spatialBgOrder=newBg)
            spatialkv = BuildSpatialKernelVisitor(basisList, regionBBox, ps, batched=batched)
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

        # The spatial solution always returns a linear combination of its basis.
        assert isinstance(spatialKernel, LinearCombinationKernel)
        displayKernelFit(__name__, self.log, kernelCellSet, spatialKernel, spatialBackground, self.kConfig)

    def _diagnostic(
        self,
        kernelCellSet: SpatialCellSet,
        spatialSolution: SpatialKernelSolution,
        spatialKernel: Kernel,
        spatialBg: Function2,
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
        metrics = residualMetrics(candidates, spatialKernel, spatialBg, self.kConfig.badMaskPlanes)
        for key, value in metrics.items():
            self.metadata[key] = value


def _nSpatialTerms(order: int) -> int:
    """Return the number of terms of a 2-d polynomial (or Chebyshev series) of total ``order``."""
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
