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
"""Kernel candidates: one star's template and science stamps and their fits."""

from __future__ import annotations

__all__ = [
    "CandidateSwitch",
    "KernelCandidate",
    "KernelCandidateF",
    "makeKernelCandidate",
]

import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from lsst.images import Box, MaskedImage

from ..math.exceptions import InvalidParameterError, KernelSolutionError
from ..math.functions import Function2
from ..math.kernels import Kernel
from ..math.spatialCell import SpatialCellCandidateStatus, SpatialCellImageCandidate
from .imageStatistics import ImageStatistics
from .settings import KernelFitSettings, asSettings
from .solution import (
    ConditionNumberType,
    KernelSolution,
    RegularizedKernelSolution,
    StaticKernelSolution,
)
from .stamps import convolveAndSubtract
from .stampStack import StampStack


class CandidateSwitch(enum.IntEnum):
    """Which of a candidate's solutions an accessor uses."""

    ORIG = 0
    PCA = 1
    RECENT = 2


class KernelCandidate(SpatialCellImageCandidate):
    """A star's template and science stamps, and the kernels fitted to them.

    Parameters
    ----------
    xCenter, yCenter : `float`
        Position (parent coordinates) used by the spatial model.
    templateMaskedImage, scienceMaskedImage : `lsst.images.MaskedImage`
        The stamps (kept by reference); the template is the image convolved.
    ps : `KernelFitSettings`, `lsst.pex.config.Config` or mapping
        Kernel configuration (settings are shared, the others converted).
    source : `object`, optional
        The catalog record the candidate came from; if given, its PSF flux
        is the rating.
    rating : `float`, optional
        Explicit rating (otherwise computed as upstream).

    Notes
    -----
    Without a source, the rating is the mean of ``image / sqrt(variance)``
    of the science stamp's core; if that fails the candidate starts BAD
    with rating 0.
    """

    ORIG = CandidateSwitch.ORIG
    PCA = CandidateSwitch.PCA
    RECENT = CandidateSwitch.RECENT
    CandidateSwitch: TypeAlias = CandidateSwitch  # noqa: UP040 (a class attribute, as upstream nests it)

    #: Why the candidate was last marked BAD ("" if it is not BAD or no reason was given).
    _rejectionReason: str = ""

    def __init__(
        self,
        xCenter: float,
        yCenter: float,
        templateMaskedImage: MaskedImage,
        scienceMaskedImage: MaskedImage,
        ps: KernelFitSettings | Mapping[str, Any] | Any,
        source: object = None,
        rating: float | None = None,
    ) -> None:
        super().__init__(xCenter, yCenter)
        if templateMaskedImage.bbox.shape != scienceMaskedImage.bbox.shape:
            raise InvalidParameterError(
                f"Template stamp {templateMaskedImage.bbox} and science stamp {scienceMaskedImage.bbox} "
                "differ in size."
            )
        self._templateMaskedImage: MaskedImage | None = templateMaskedImage
        self._scienceMaskedImage: MaskedImage | None = scienceMaskedImage
        # Where the stamps are cut from lazily, and the stack holding them.
        self._stampSource: tuple[MaskedImage, MaskedImage, Box] | None = None
        self._stack: tuple[StampStack, int] | None = None
        self._initState(ps, source, rating)

    @classmethod
    def fromStack(
        cls,
        xCenter: float,
        yCenter: float,
        stack: StampStack,
        index: int,
        templateParent: MaskedImage,
        scienceParent: MaskedImage,
        box: Box,
        ps: KernelFitSettings | Mapping[str, Any] | Any,
        rating: float,
    ) -> KernelCandidate:
        """Make a candidate whose stamps are row ``index`` of a `StampStack`.

        The stamps as `lsst.images.MaskedImage` (``templateParent[box]`` and
        ``scienceParent[box]``) are only cut if asked for.
        """
        self = cls.__new__(cls)
        SpatialCellImageCandidate.__init__(self, xCenter, yCenter)
        self._templateMaskedImage = None
        self._scienceMaskedImage = None
        self._stampSource = (templateParent, scienceParent, box)
        self._stack = (stack, int(index))
        self._initState(ps, None, rating)
        return self

    def _initState(
        self, ps: KernelFitSettings | Mapping[str, Any] | Any, source: object, rating: float | None
    ) -> None:
        # Settings are frozen: the task's one object is shared by all its candidates.
        self._settings = asSettings(ps)
        self._fitForBackground = self._settings.fitForBackground
        self._source = source
        self._kernelSolutionOrig: StaticKernelSolution | None = None
        self._kernelSolutionPca: StaticKernelSolution | None = None
        self._isInitialized = False
        self._useRegularization = False
        # Difference stamps: (solution id, image) and (serial of the spatial
        # kernel assessed, image).
        self._origDifference: tuple[int, MaskedImage] | None = None
        self._spatialDifference: tuple[int, MaskedImage] | None = None
        # Normalized residuals on the good region (see setLocalResiduals):
        # (solution id, array) and (serial of the spatial kernel, array).
        self._localResiduals: tuple[int, np.ndarray] | None = None
        self._spatialResiduals: tuple[int, np.ndarray] | None = None
        if rating is not None:
            self._rating = float(rating)
        else:
            self._rating = 0.0
            try:
                stats = ImageStatistics(self._settings)
                stats.apply(self.getScienceMaskedImage(), self._settings.candidateCoreRadius)
                self._rating = stats.getMean()
            except ArithmeticError:
                self.setStatus(SpatialCellCandidateStatus.BAD, "no rating: core statistics failed")

    # --- status ---------------------------------------------------------------
    def setStatus(self, status: SpatialCellCandidateStatus | int, reason: str = "") -> None:
        """Set the status; ``reason`` says why a candidate is marked BAD.

        The reason is kept while the candidate stays BAD (`getRejectionReason`)
        and cleared by any other status.  Our addition: upstream records no
        reason.  A BAD candidate also drops its normal equations: it is never
        fitted again, and with many rejections the systems of the
        delta-function basis (1.6 MB each) would dominate the memory of a
        run.  Its solutions and kernels are kept.
        """
        super().setStatus(status)
        self._rejectionReason = str(reason) if self.isBad() else ""
        if self.isBad():
            for attr in ("_kernelSolutionOrig", "_kernelSolutionPca"):
                if (solution := getattr(self, attr, None)) is not None:
                    solution.releaseNormalEquations()

    def getRejectionReason(self) -> str:
        """Return why the candidate is BAD ("" if it is not, or if no reason was recorded)."""
        return self._rejectionReason

    # --- rating, images -------------------------------------------------------
    def getCandidateRating(self) -> float:
        """Return the rating that orders candidates within a cell (brightest first)."""
        return self._rating

    def setCandidateRating(self, rating: float) -> None:
        """Set the rating that orders candidates within a cell."""
        self._rating = float(rating)

    def getSource(self) -> Any:
        """Return the source record the candidate was made from (`None` if none)."""
        return self._source

    def getTemplateMaskedImage(self) -> MaskedImage:
        """Return the template stamp, cut from its parent image on first use."""
        if self._templateMaskedImage is None:
            assert self._stampSource is not None  # a candidate holds its stamps or their parents
            parent, _, box = self._stampSource
            self._templateMaskedImage = parent[box]
        return self._templateMaskedImage

    def getScienceMaskedImage(self) -> MaskedImage:
        """Return the science stamp, cut from its parent image on first use."""
        if self._scienceMaskedImage is None:
            assert self._stampSource is not None
            _, parent, box = self._stampSource
            self._scienceMaskedImage = parent[box]
        return self._scienceMaskedImage

    def getMiToConvolvePtr(self) -> MaskedImage:
        """Return the stamp that the kernel convolves (the template stamp; afw's name)."""
        return self.getTemplateMaskedImage()

    def getMiToNotConvolvePtr(self) -> MaskedImage:
        """Return the stamp that is not convolved (the science stamp; afw's name)."""
        return self.getScienceMaskedImage()

    def getStampStack(self) -> tuple[StampStack, int]:
        """Return the `StampStack` holding this candidate's stamps, and its row.

        A candidate made from its own masked images gets a stack of one.
        """
        if self._stack is None:
            stack = StampStack.fromMaskedImages(
                [self.getTemplateMaskedImage()], [self.getScienceMaskedImage()]
            )
            self._stack = (stack, 0)
        return self._stack

    def setStampStack(self, stack: StampStack, index: int) -> None:
        """Point the candidate at row ``index`` of ``stack`` (same pixels as its stamps)."""
        self._stack = (stack, int(index))

    def getSettings(self) -> KernelFitSettings:
        """Return the (frozen) settings of the candidate's fits."""
        return self._settings

    def hasStampStack(self) -> bool:
        """Return `True` if the candidate's stamps are a row of a `StampStack`."""
        return self._stack is not None

    def isInitialized(self) -> bool:
        """Return `True` once `build` has completed."""
        return self._isInitialized

    # --- building -------------------------------------------------------------
    def build(self, basisList: Sequence[Kernel], hMat: np.ndarray | None = None) -> None:
        """Fit a kernel to the stamps with the given basis.

        The first successful build sets the ``ORIG`` solution, later ones
        (typically with a PCA basis) the ``PCA`` solution.

        Parameters
        ----------
        basisList : sequence of `Kernel`
            Basis kernels.
        hMat : `numpy.ndarray`, optional
            Regularization matrix; if given (and non-empty) a
            `RegularizedKernelSolution` is used.

        Raises
        ------
        KernelSolutionError
            If the system cannot be built or solved.
        """
        # The variance estimate is the sum of the two variance planes, in
        # float32 like afw's variance images.
        varEst = np.add(
            self.getScienceMaskedImage().variance.array,
            self.getTemplateMaskedImage().variance.array,
            dtype=np.float32,
        )
        if self._settings.constantVarianceWeighting:
            finite = varEst[np.isfinite(varEst)]
            median = float(np.median(finite)) if finite.size else math.nan
            if not median > 0.0:
                median = 1.0
            varEst = np.full(varEst.shape, np.float32(median), dtype=float)
        else:
            varEst = varEst.astype(float)
            if self._settings.varianceWeightingFloor > 0.0:
                finite = varEst[np.isfinite(varEst)]
                median = float(np.median(finite)) if finite.size else 0.0
                varEst += self._settings.varianceWeightingFloor * max(median, 0.0)
        self._buildKernelSolution(basisList, hMat, varEst)
        if self._settings.iterateSingleKernel and not self._settings.constantVarianceWeighting:
            diffim = self.getDifferenceImage(CandidateSwitch.RECENT)
            self._buildKernelSolution(basisList, hMat, diffim.variance.array.astype(float))
        self._isInitialized = True

    def buildFromNormalEquations(
        self, basisList: Sequence[Kernel], hMat: np.ndarray | None, mMat: np.ndarray, bVec: np.ndarray
    ) -> None:
        """Finish `build` with normal equations computed for a batch of candidates.

        Equivalent to `build` with constant variance weighting.
        """
        useRegularization = hMat is not None and np.size(hMat) > 0
        if hMat is not None and useRegularization:
            solution: StaticKernelSolution = RegularizedKernelSolution(
                basisList, self._fitForBackground, hMat, self._settings
            )
        else:
            solution = StaticKernelSolution(basisList, self._fitForBackground)
        solution.setNormalEquations(mMat, bVec)
        self._finishSolution(solution, useRegularization)
        self._isInitialized = True

    def setSolvedNormalEquations(
        self,
        basisList: Sequence[Kernel],
        mMat: np.ndarray,
        bVec: np.ndarray,
        aVec: np.ndarray,
        solvedBy: KernelSolution.KernelSolvedBy,
    ) -> None:
        """Finish an unregularized `build` whose system was set up and solved in a batch.

        Equivalent to `buildFromNormalEquations` without regularization or
        condition-number check, with the solution of `solveSymmetricSystems`.

        Raises
        ------
        KernelSolutionError
            If the solution has NaN coefficients.
        """
        solution = StaticKernelSolution(basisList, self._fitForBackground)
        self._attachSolution(solution, False)
        solution.setSolvedSystem(mMat, bVec, aVec, solvedBy)
        self._isInitialized = True

    def _attachSolution(self, solution: StaticKernelSolution, useRegularization: bool) -> None:
        """Keep ``solution`` as ORIG (first build) or PCA (later builds)."""
        if self._isInitialized:
            self._kernelSolutionPca = solution
        else:
            self._kernelSolutionOrig = solution
        self._useRegularization = useRegularization

    def _finishSolution(self, solution: StaticKernelSolution, useRegularization: bool) -> None:
        self._attachSolution(solution, useRegularization)
        settings = self._settings
        if settings.checkConditionNumber:
            cond = solution.getConditionNumber(ConditionNumberType[settings.conditionNumberType])
            if not cond <= settings.maxConditionNumber:
                self.setStatus(
                    SpatialCellCandidateStatus.BAD,
                    f"condition number {cond:.3g} > {settings.maxConditionNumber:.3g}",
                )
                return
        solution.solve()
        self._releaseIfReplaced(solution)

    def _releaseIfReplaced(self, solution: StaticKernelSolution) -> None:
        """Drop the normal equations of a solved ORIG solution the PCA basis will replace.

        With ``usePcaForSpatialKernel`` the spatial fit uses the systems of
        the PCA basis, and the ORIG system is not used again once solved:
        for the delta-function basis (1.6 MB per candidate) keeping them
        all is most of a fit's memory.
        """
        if solution is self._kernelSolutionOrig and self._settings.usePcaForSpatialKernel:
            solution.releaseNormalEquations()

    def _buildKernelSolution(
        self, basisList: Sequence[Kernel], hMat: np.ndarray | None, varEst: np.ndarray
    ) -> None:
        useRegularization = hMat is not None and np.size(hMat) > 0
        if hMat is not None and useRegularization:
            solution: StaticKernelSolution = RegularizedKernelSolution(
                basisList, self._fitForBackground, hMat, self._settings
            )
        else:
            solution = StaticKernelSolution(basisList, self._fitForBackground)
        solution.build(
            self.getTemplateMaskedImage().image.array, self.getScienceMaskedImage().image.array, varEst
        )
        self._finishSolution(solution, useRegularization)

    # --- accessors ------------------------------------------------------------
    def getKernelSolution(
        self, which: CandidateSwitch | int = CandidateSwitch.RECENT
    ) -> StaticKernelSolution:
        """Return the ORIG, PCA or most RECENT solution.

        Raises
        ------
        KernelSolutionError
            If the requested solution does not exist.
        """
        which = CandidateSwitch(which)
        if which == CandidateSwitch.ORIG:
            if self._kernelSolutionOrig is None:
                raise KernelSolutionError("Original kernel does not exist")
            return self._kernelSolutionOrig
        if which == CandidateSwitch.PCA:
            if self._kernelSolutionPca is None:
                raise KernelSolutionError("Pca kernel does not exist")
            return self._kernelSolutionPca
        if self._kernelSolutionPca is not None:
            return self._kernelSolutionPca
        if self._kernelSolutionOrig is not None:
            return self._kernelSolutionOrig
        raise KernelSolutionError("No kernels exist")

    def getKernel(self, which: CandidateSwitch | int = CandidateSwitch.RECENT) -> Kernel:
        """Return the kernel of one of the candidate's solutions.

        Parameters
        ----------
        which : `CandidateSwitch` or `int`, optional
            Which solution: ``ORIG``, ``PCA`` or ``RECENT`` (the latest).

        Raises
        ------
        KernelSolutionError
            If that solution does not exist.
        """
        return self.getKernelSolution(which).getKernel()

    def getBackground(self, which: CandidateSwitch | int = CandidateSwitch.RECENT) -> float:
        """Return the background of one of the candidate's solutions.

        Parameters
        ----------
        which : `CandidateSwitch` or `int`, optional
            Which solution: ``ORIG``, ``PCA`` or ``RECENT`` (the latest).

        Raises
        ------
        KernelSolutionError
            If that solution does not exist.
        """
        return self.getKernelSolution(which).getBackground()

    def getKsum(self, which: CandidateSwitch | int = CandidateSwitch.RECENT) -> float:
        """Return the kernel sum of one of the candidate's solutions.

        Parameters
        ----------
        which : `CandidateSwitch` or `int`, optional
            Which solution: ``ORIG``, ``PCA`` or ``RECENT`` (the latest).

        Raises
        ------
        KernelSolutionError
            If that solution does not exist.
        """
        return self.getKernelSolution(which).getKsum()

    def getKernelImage(self, which: CandidateSwitch | int = CandidateSwitch.RECENT) -> np.ndarray:
        """Return the (unnormalized) kernel image as an array."""
        return self.getKernelSolution(which).makeKernelImage()

    def getImage(self) -> np.ndarray:
        """Return the ORIG kernel image."""
        return self.getKernelImage(CandidateSwitch.ORIG)

    def getDifferenceImage(
        self,
        which: CandidateSwitch | int | Kernel = CandidateSwitch.RECENT,
        background: float | Function2 = 0.0,
    ) -> MaskedImage:
        """Return the difference stamp for a solution, or for a given kernel.

        Parameters
        ----------
        which : `CandidateSwitch` or `Kernel`
            A solution selector, or an explicit kernel.
        background : `float` or `Function2`, optional
            Background used with an explicit kernel.
        """
        if isinstance(which, Kernel):
            return convolveAndSubtract(
                self.getTemplateMaskedImage(), self.getScienceMaskedImage(), which, background
            )
        solution = self.getKernelSolution(which)
        cached = self._origDifference
        if cached is not None and cached[0] == solution.getId():
            return cached[1]
        diffim = convolveAndSubtract(
            self.getTemplateMaskedImage(),
            self.getScienceMaskedImage(),
            solution.getKernel(),
            solution.getBackground(),
        )
        self._origDifference = (solution.getId(), diffim)
        return diffim

    # --- residual caches -----------------------------------------------------
    # What the visitors computed for a candidate, kept for the diagnostics
    # (`lsst.ip.diffim.kernel.residualMetrics`): each entry remembers the
    # solution or spatial kernel it belongs to, and is only returned for it.
    def setSpatialDifference(self, spatialKernel: Kernel, diffim: MaskedImage) -> None:
        """Keep the difference stamp of ``spatialKernel`` at this candidate."""
        self._spatialDifference = (spatialKernel.getSerial(), diffim)

    def getCachedSpatialDifference(self, spatialKernel: Kernel) -> MaskedImage | None:
        """Return the difference stamp last computed for ``spatialKernel``, if any."""
        cached = self._spatialDifference
        if cached is not None and cached[0] == spatialKernel.getSerial():
            return cached[1]
        return None

    def setLocalResiduals(
        self, residuals: np.ndarray, which: CandidateSwitch | int = CandidateSwitch.RECENT
    ) -> None:
        """Keep the normalized residuals of a solution (default: the most recent).

        ``residuals`` is the difference over its noise on the good region of
        the stamp (the stamp shrunk by the kernel's half-size).
        """
        self._localResiduals = (self.getKernelSolution(which).getId(), residuals)

    def getLocalResiduals(self, which: CandidateSwitch | int = CandidateSwitch.ORIG) -> np.ndarray | None:
        """Return the residuals kept by `setLocalResiduals` for that solution, if any."""
        cached = self._localResiduals
        if cached is None:
            return None
        try:
            solutionId = self.getKernelSolution(which).getId()
        except KernelSolutionError:
            return None
        return cached[1] if cached[0] == solutionId else None

    def setSpatialResiduals(self, spatialKernel: Kernel, residuals: np.ndarray) -> None:
        """Keep the normalized residuals of ``spatialKernel`` (see `setLocalResiduals`)."""
        self._spatialResiduals = (spatialKernel.getSerial(), residuals)

    def getSpatialResiduals(self, spatialKernel: Kernel) -> np.ndarray | None:
        """Return the residuals kept by `setSpatialResiduals` for ``spatialKernel``, if any."""
        cached = self._spatialResiduals
        if cached is not None and cached[0] == spatialKernel.getSerial():
            return cached[1]
        return None

    def __repr__(self) -> str:
        return (
            f"KernelCandidate(id={self.getId()}, x={self.getXCenter():.2f}, y={self.getYCenter():.2f}, "
            f"status={self.getStatus().name}, rating={self._rating:.4g})"
        )


KernelCandidateF = KernelCandidate


def _sourcePosition(source: Any) -> tuple[float, float, float]:
    """Return ``(x, y, psfFlux)`` of a catalog record of any supported kind."""
    if hasattr(source, "getX") and hasattr(source, "getY"):
        flux = source.getPsfInstFlux() if hasattr(source, "getPsfInstFlux") else math.nan
        return float(source.getX()), float(source.getY()), float(flux)
    keys = source.colnames if hasattr(source, "colnames") else source.keys()
    x = float(source["x"])
    y = float(source["y"])
    for key in ("psfFlux", "psf_flux", "base_PsfFlux_instFlux", "flux"):
        if key in keys:
            return x, y, float(source[key])
    return x, y, math.nan


def makeKernelCandidate(*args: Any, **kwargs: Any) -> KernelCandidate:
    """Make a `KernelCandidate`, as upstream's two overloads.

    ``makeKernelCandidate(xCenter, yCenter, templateMI, scienceMI, ps)`` rates
    the candidate by the science stamp's core signal-to-noise;
    ``makeKernelCandidate(source, templateMI, scienceMI, ps)`` takes the
    centre and the rating (PSF flux) from a catalog record (an object with
    ``getX/getY/getPsfInstFlux`` or a row/mapping with ``x``, ``y`` and a
    flux column).
    """
    if len(args) == 5:
        xCenter, yCenter, templateMI, scienceMI, ps = args
        return KernelCandidate(xCenter, yCenter, templateMI, scienceMI, ps, **kwargs)
    if len(args) == 4:
        source, templateMI, scienceMI, ps = args
        x, y, flux = _sourcePosition(source)
        return KernelCandidate(x, y, templateMI, scienceMI, ps, source=source, rating=flux, **kwargs)
    raise TypeError(
        "makeKernelCandidate takes (xCenter, yCenter, templateMI, scienceMI, ps) or "
        "(source, templateMI, scienceMI, ps)."
    )
