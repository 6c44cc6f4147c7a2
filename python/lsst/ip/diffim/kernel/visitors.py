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
"""Candidate visitors: the steps of the kernel fit, applied cell by cell."""

from __future__ import annotations

__all__ = [
    "AssessSpatialKernelVisitor",
    "AssessSpatialKernelVisitorF",
    "BuildSingleKernelVisitor",
    "BuildSingleKernelVisitorF",
    "BuildSpatialKernelVisitor",
    "BuildSpatialKernelVisitorF",
    "KernelPca",
    "KernelPcaD",
    "KernelPcaVisitor",
    "KernelPcaVisitorF",
    "KernelSumVisitor",
    "KernelSumVisitorF",
    "makeAssessSpatialKernelVisitor",
    "makeBuildSingleKernelVisitor",
    "makeBuildSpatialKernelVisitor",
    "makeKernelPcaVisitor",
    "makeKernelSumVisitor",
]

import enum
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lsst.images import Box

from ..math.functions import Function2, makeSpatialFunction
from ..math.imagePca import ImagePca
from ..math.kernels import FixedKernel, Kernel, kernelListToArray
from ..math.spatialCell import CandidateVisitor, SpatialCellCandidate, SpatialCellCandidateStatus
from ..math.statistics import clippedMeanStd
from .batch import batchNormalEquations, batchNormalizedResiduals
from .buildProgress import BuildProgress
from .candidate import CandidateSwitch, KernelCandidate
from .imageStatistics import ImageStatistics
from .propertySet import toPropertySet
from .separableBasis import SeparableBasis
from .solution import RegularizedKernelSolution, SpatialKernelSolution, _isDeltaList, solveSymmetricSystems
from .stampStack import StampStack

_log = logging.getLogger("lsst.ip.diffim.kernel")
_progressLog = logging.getLogger("lsst.ip.diffim.kernel.progress")

#: The exceptions that mark a candidate BAD instead of stopping the fit
#: (upstream: any ``pex.exceptions.Exception``).
CANDIDATE_ERRORS = (ArithmeticError, ValueError, np.linalg.LinAlgError)

GOOD = SpatialCellCandidateStatus.GOOD
BAD = SpatialCellCandidateStatus.BAD


def _asKernelCandidate(candidate: SpatialCellCandidate) -> KernelCandidate:
    if not isinstance(candidate, KernelCandidate):
        raise TypeError(f"Failed to cast SpatialCellCandidate to KernelCandidate: {candidate!r}")
    return candidate


class BuildSingleKernelVisitor(CandidateVisitor):
    """Fit each candidate's own kernel and clip on its residuals.

    Parameters
    ----------
    basisList : sequence of `Kernel`
        Basis kernels.
    ps : `lsst.pex.config.Config` or mapping
        Kernel configuration.
    hMat : `numpy.ndarray`, optional
        Regularization matrix; regularized fits when given and non-empty.
    """

    def __init__(
        self, basisList: Sequence[Kernel], ps: Mapping[str, Any] | Any, hMat: np.ndarray | None = None
    ) -> None:
        self._basisList = list(basisList)
        self._ps = toPropertySet(ps)
        self._hMat = None if hMat is None or np.size(hMat) == 0 else np.asarray(hMat, dtype=float)
        self._imstats = ImageStatistics(self._ps)
        self._skipBuilt = True
        self._nRejected = 0
        self._nProcessed = 0
        self._useCoreStats = bool(self._ps.get("useCoreStats", False))
        self._coreRadius = int(self._ps.get("candidateCoreRadius", 3))

    # afw-style accessors and properties
    def setSkipBuilt(self, skip: bool) -> None:
        self._skipBuilt = bool(skip)

    def getNRejected(self) -> int:
        return self._nRejected

    def getNProcessed(self) -> int:
        return self._nProcessed

    def setCandidateKernel(self, useRegularization: bool) -> None:
        if not useRegularization:
            self._hMat = None

    @property
    def nRejected(self) -> int:
        return self._nRejected

    @property
    def nProcessed(self) -> int:
        return self._nProcessed

    @property
    def useRegularization(self) -> bool:
        return self._hMat is not None

    @property
    def skipBuilt(self) -> bool:
        return self._skipBuilt

    @property
    def useCoreStats(self) -> bool:
        return self._useCoreStats

    @property
    def coreRadius(self) -> int:
        return self._coreRadius

    @property
    def propertySet(self) -> Mapping[str, Any]:
        return self._ps

    def reset(self) -> None:
        self._nRejected = 0
        self._nProcessed = 0

    supportsBatch = True

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        kc = _asKernelCandidate(candidate)
        if self._skipBuilt and kc.isInitialized():
            return
        if self._build(kc):
            self._assess(kc)

    def _buildWithProgress(self, todo: list[KernelCandidate]) -> list[KernelCandidate]:
        """Build candidates one at a time, logging progress and the GFLOP/s reached."""
        progress = BuildProgress(len(todo), _progressLog)
        ready = []
        for kc in todo:
            t0 = time.perf_counter()
            ok = self._build(kc)
            try:
                shape = kc.getKernelSolution(CandidateSwitch.RECENT).designShape
            except Exception:  # not built: no solution to ask
                shape = None
            progress.add(time.perf_counter() - t0, *(shape[::-1] if shape else (None, None)))
            if ok:
                ready.append(kc)
        progress.finish()
        return ready

    def _build(self, kc: KernelCandidate) -> bool:
        """Build one candidate; return `True` if it is ready for statistics."""
        try:
            kc.build(self._basisList, self._hMat)
        except CANDIDATE_ERRORS as exc:
            _log.debug("Candidate %d: unable to build kernel: %s", kc.getId(), exc)
            kc.setStatus(BAD, f"kernel fit failed: {exc}")
            self._nRejected += 1
            return False
        return self._checkBuilt(kc)

    def _checkBuilt(self, kc: KernelCandidate) -> bool:
        if kc.getStatus() == BAD:
            _log.debug("Candidate %d: rejected for its condition number", kc.getId())
            self._nRejected += 1
            return False
        return True

    def _assess(self, kc: KernelCandidate) -> None:
        try:
            diffim = kc.getDifferenceImage(CandidateSwitch.RECENT)
            self._imstats.apply(diffim, self._coreRadius if self._useCoreStats else 0)
        except CANDIDATE_ERRORS as exc:
            _log.debug("Candidate %d: unable to compute residual statistics: %s", kc.getId(), exc)
            kc.setStatus(BAD, f"own-fit residual statistics failed: {exc}")
            return
        self._applyStatistics(kc, self._imstats.getMean(), self._imstats.getVariance())

    def _applyStatistics(
        self, kc: KernelCandidate, mean: float, variance: float, residuals: np.ndarray | None = None
    ) -> None:
        if residuals is not None:
            solution = kc.getKernelSolution(CandidateSwitch.RECENT)
            kc._localResiduals = (solution.getId(), residuals)
        self._nProcessed += 1
        kc.setChi2(variance)
        rms = math.sqrt(variance) if variance >= 0 else math.nan
        good, reason = _statusFromStats(mean, rms, bool(self._ps.get("singleKernelClipping", True)), self._ps)
        if good:
            kc.setStatus(GOOD)
        else:
            _log.debug("Candidate %d rejected: %s", kc.getId(), reason)
            kc.setStatus(BAD, f"own-fit residuals: {reason}")
            self._nRejected += 1

    def processCandidates(self, candidates: Sequence[SpatialCellCandidate]) -> None:
        """Process many candidates at once (same results as one at a time).

        Candidates with finite stamps, constant variance weighting and a
        non-delta basis have their normal equations, solutions and residual
        statistics computed in batches, stack by stack; the others take the
        one-at-a-time path.
        """
        todo = [_asKernelCandidate(c) for c in candidates]
        todo = [kc for kc in todo if not (self._skipBuilt and kc.isInitialized())]
        if not todo:
            return
        batchable = (
            not _isDeltaList(self._basisList)
            and not bool(self._ps.get("iterateSingleKernel", False))
            and bool(self._ps.get("constantVarianceWeighting", True))
        )
        ready: list[KernelCandidate] = []
        if not batchable:
            ready = self._buildWithProgress(todo)
        else:
            basis = kernelListToArray(self._basisList)
            separable = SeparableBasis.forBasis(self._basisList)
            solveHere = self._hMat is None and not bool(self._ps.get("checkConditionNumber", False))
            for stack, index, kcs in groupByStampStack(todo):
                finite = stack.finiteImages[index]
                for kc in kcs[~finite]:
                    if self._build(kc):
                        ready.append(kc)
                for fitBg in (False, True):
                    use = finite & np.array([kc._fitForBackground == fitBg for kc in kcs], dtype=bool)
                    if not use.any():
                        continue
                    sel = index[use]
                    mMats, bVecs = batchNormalEquations(
                        stack.template,
                        stack.science,
                        stack.constantWeights(sel),
                        basis,
                        fitBg,
                        separable,
                        rows=sel,
                    )
                    ready.extend(self._finishBatch(kcs[use], mMats, bVecs, solveHere))
        _batchStatistics(
            ready,
            lambda kc: (kc.getKernelImage(CandidateSwitch.RECENT), kc.getBackground(CandidateSwitch.RECENT)),
            self._ps,
            self._coreRadius if self._useCoreStats else 0,
            self._assess,
            self._applyStatistics,
        )

    def _finishBatch(
        self, kcs: np.ndarray, mMats: np.ndarray, bVecs: np.ndarray, solveHere: bool
    ) -> list[KernelCandidate]:
        """Solve the batch's systems and attach the solutions; return the candidates built."""
        ready = []
        if solveHere:
            aVecs, solvedBy = solveSymmetricSystems(mMats, bVecs)
        for i, kc in enumerate(kcs):
            try:
                if solveHere:
                    kc.setSolvedNormalEquations(self._basisList, mMats[i], bVecs[i], aVecs[i], solvedBy[i])
                else:
                    kc.buildFromNormalEquations(self._basisList, self._hMat, mMats[i], bVecs[i])
            except CANDIDATE_ERRORS as exc:
                _log.debug("Candidate %d: unable to build kernel: %s", kc.getId(), exc)
                kc.setStatus(BAD, f"kernel fit failed: {exc}")
                self._nRejected += 1
                continue
            if self._checkBuilt(kc):
                ready.append(kc)
        return ready


def _spatialConstraint(kc: KernelCandidate) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's ``(M, b)`` for the spatial fit (its regularization left out)."""
    solution = kc.getKernelSolution(CandidateSwitch.RECENT)
    if isinstance(solution, RegularizedKernelSolution):
        return solution.getM(includeHmat=False), solution.getB()
    return solution.getM(), solution.getB()


def _initializedOrBad(candidates: Sequence[SpatialCellCandidate]) -> list[KernelCandidate]:
    """Return the built candidates; mark the others BAD (as their one-at-a-time visits do)."""
    ready = []
    for candidate in candidates:
        kc = _asKernelCandidate(candidate)
        if kc.isInitialized():
            ready.append(kc)
        else:
            kc.setStatus(BAD, "no kernel fit")
    return ready


def groupByStampStack(
    candidates: Sequence[KernelCandidate],
) -> list[tuple[StampStack, np.ndarray, np.ndarray]]:
    """Group candidates by the `StampStack` holding their stamps.

    Candidates without a stack are stacked together by stamp shape (and
    remember their new stack).

    Returns
    -------
    groups : `list` of `tuple`
        ``(stack, rows, candidates)`` with ``rows`` the candidates' indices
        in ``stack`` and ``candidates`` an object array, in input order.
    """
    loose: dict[tuple[Any, ...], list[KernelCandidate]] = {}
    for kc in candidates:
        if kc._stack is None:
            tmi, smi = kc.getTemplateMaskedImage(), kc.getScienceMaskedImage()
            key = (tmi.image.array.shape, id(tmi.mask.schema), id(smi.mask.schema), tmi.image.array.dtype)
            loose.setdefault(key, []).append(kc)
    for kcs in loose.values():
        stack = StampStack.fromMaskedImages(
            [kc.getTemplateMaskedImage() for kc in kcs], [kc.getScienceMaskedImage() for kc in kcs]
        )
        for i, kc in enumerate(kcs):
            kc.setStampStack(stack, i)
    groups: dict[int, tuple[StampStack, list[int], list[KernelCandidate]]] = {}
    for kc in candidates:
        stack, row = kc.getStampStack()
        entry = groups.setdefault(id(stack), (stack, [], []))
        entry[1].append(row)
        entry[2].append(kc)
    out = []
    for stack, rows, kcs in groups.values():
        array = np.empty(len(kcs), dtype=object)
        array[:] = kcs
        out.append((stack, np.asarray(rows, dtype=int), array))
    return out


def _statusFromStats(mean: float, rms: float, clip: bool, ps: Mapping[str, Any]) -> tuple[bool, str]:
    if math.isnan(mean) or math.isnan(rms):
        return False, "NaN residual statistics"
    if clip:
        if abs(mean) > float(ps["candidateResidualMeanMax"]):
            return False, f"|mean| {abs(mean):.3f} > {float(ps['candidateResidualMeanMax']):.3f}"
        if rms > float(ps["candidateResidualStdMax"]):
            return False, f"rms {rms:.3f} > {float(ps['candidateResidualStdMax']):.3f}"
    return True, ""


def _batchStatistics(
    candidates: list[KernelCandidate],
    kernelAndBackground: Any,
    ps: Mapping[str, Any],
    core: int,
    single: Any,
    apply: Any,
) -> None:
    """Residual statistics for many candidates; masked or non-finite stamps go one at a time."""
    planes = ps.get("badMaskPlanes", ())
    planes = [planes] if isinstance(planes, str) else list(planes)
    for stack, index, kcs in groupByStampStack(candidates):
        clean = stack.isClean(planes)[index]
        for kc in kcs[~clean]:
            single(kc)
        rows, items = [], []
        for row, kc in zip(index[clean], kcs[clean], strict=True):
            try:
                kernel, background = kernelAndBackground(kc)
            except CANDIDATE_ERRORS:
                single(kc)
                continue
            rows.append(row)
            items.append((kc, kernel, float(background)))
        if not items:
            continue
        kernels = np.stack([k for _, k, _ in items])
        rows = np.asarray(rows, dtype=int)
        residuals = batchNormalizedResiduals(
            stack.template,
            stack.templateVariance,
            stack.science,
            stack.scienceVariance,
            kernels,
            np.array([b for _, _, b in items]),
            rows=rows,
        )
        ny, nx = stack.stampShape
        kh, kw = kernels.shape[1:]
        cy, cx = kh // 2, kw // 2
        region = residuals
        if core > 0:
            ys = slice(max(ny // 2 - core, cy) - cy, min(ny // 2 + core + 1, cy + residuals.shape[1]) - cy)
            xs = slice(max(nx // 2 - core, cx) - cx, min(nx // 2 + core + 1, cx + residuals.shape[2]) - cx)
            region = residuals[:, ys, xs]
        flat = region.reshape(region.shape[0], -1)
        finite = np.isfinite(flat)
        count = finite.sum(axis=1)
        if not finite.all():
            flat = np.where(finite, flat, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            xsum = flat.sum(axis=1)
            x2sum = np.einsum("ij,ij->i", flat, flat)
            mean = np.where(count > 0, xsum / count, np.nan)
            var = np.where(count > 1, (x2sum / count - mean * mean) * count / (count - 1.0), np.nan)
        for (kc, _, _), m, v, r in zip(items, mean, var, residuals, strict=True):
            apply(kc, float(m), float(v), r)


class KernelSumVisitor(CandidateVisitor):
    """Aggregate the candidates' kernel sums, then reject outliers.

    Parameters
    ----------
    ps : `lsst.pex.config.Config` or mapping
        Provides ``maxKsumSigma`` and ``kernelSumClipping``.
    """

    class Mode(enum.IntEnum):
        AGGREGATE = 0
        REJECT = 1

    AGGREGATE = Mode.AGGREGATE
    REJECT = Mode.REJECT

    def __init__(self, ps: Mapping[str, Any] | Any) -> None:
        self._ps = toPropertySet(ps)
        self._mode = KernelSumVisitor.Mode.AGGREGATE
        self._kSums: list[float] = []
        self._kSumMean = 0.0
        self._kSumStd = 0.0
        self._dkSumMax = 0.0
        self._kSumNpts = 0
        self._nRejected = 0

    def setMode(self, mode: KernelSumVisitor.Mode | int) -> None:
        self._mode = KernelSumVisitor.Mode(mode)

    def getMode(self) -> KernelSumVisitor.Mode:
        return self._mode

    def getNRejected(self) -> int:
        return self._nRejected

    def getkSumMean(self) -> float:
        return self._kSumMean

    def getkSumStd(self) -> float:
        return self._kSumStd

    def getdkSumMax(self) -> float:
        return self._dkSumMax

    def getkSumNpts(self) -> int:
        return self._kSumNpts

    def getKernelSums(self) -> list[float]:
        return list(self._kSums)

    def resetKernelSum(self) -> None:
        self._kSums = []
        self._kSumMean = 0.0
        self._kSumStd = 0.0
        self._dkSumMax = 0.0
        self._kSumNpts = 0
        self._nRejected = 0

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        kc = _asKernelCandidate(candidate)
        if self._mode == KernelSumVisitor.Mode.AGGREGATE:
            self._kSums.append(kc.getKernelSolution(CandidateSwitch.ORIG).getKsum())
        else:
            kSum = kc.getKernelSolution(CandidateSwitch.ORIG).getKsum()
            if bool(self._ps.get("kernelSumClipping", True)) and abs(kSum - self._kSumMean) > self._dkSumMax:
                _log.debug(
                    "Candidate %d rejected: kernel sum %.3f, mean %.3f, limit %.3f",
                    kc.getId(),
                    kSum,
                    self._kSumMean,
                    self._dkSumMax,
                )
                kc.setStatus(
                    BAD, f"kernel sum {kSum:.3f} outside {self._kSumMean:.3f} +/- {self._dkSumMax:.3f}"
                )
                self._nRejected += 1

    def processKsumDistribution(self) -> None:
        """Compute the clipped mean and scatter of the aggregated sums.

        Raises
        ------
        RuntimeError
            If there are no sums, or the statistics are NaN.
        """
        n = len(self._kSums)
        if n == 0:
            raise RuntimeError("Unable to determine kernel sum; 0 candidates")
        if n == 1:
            self._kSumMean, self._kSumStd, self._kSumNpts = self._kSums[0], 0.0, 1
        else:
            mean, std, npts = clippedMeanStd(np.asarray(self._kSums))
            if math.isnan(mean) or math.isnan(std):
                raise RuntimeError(f"Unable to determine kernel sum; {n} candidates")
            self._kSumMean, self._kSumStd, self._kSumNpts = mean, std, npts
        self._dkSumMax = float(self._ps["maxKsumSigma"]) * self._kSumStd
        _log.debug(
            "Kernel sum: mean %.3f, clipped std %.3f, limit %.3f (%d points)",
            self._kSumMean,
            self._kSumStd,
            self._dkSumMax,
            self._kSumNpts,
        )


class KernelPca(ImagePca):
    """PCA of kernel images whose eigen images are scaled to an extreme of +1."""

    def analyze(self) -> None:
        super().analyze()
        scaled = []
        for image in self.getEigenImages():
            vmin, vmax = float(np.nanmin(image)), float(np.nanmax(image))
            extreme = vmin if abs(vmin) > vmax else vmax
            scaled.append(image / extreme if extreme != 0.0 else image)
        self._eigenImages = scaled


KernelPcaD = KernelPca


class KernelPcaVisitor(CandidateVisitor):
    """Collect the candidates' unit-sum ORIG kernels into a `KernelPca`.

    Parameters
    ----------
    imagePca : `KernelPca`
        The PCA to fill.
    """

    def __init__(self, imagePca: KernelPca) -> None:
        self._pca = imagePca
        self._mean: np.ndarray | None = None

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        kc = _asKernelCandidate(candidate)
        try:
            solution = kc.getKernelSolution(CandidateSwitch.ORIG)
            image = solution.makeKernelImage() / solution.getKsum()
            self._pca.addImage(image, 1.0)
        except CANDIDATE_ERRORS:
            return

    def subtractMean(self) -> None:
        """Subtract the mean kernel, in place, from every collected image."""
        mean = self._pca.getMean()
        for image in self._pca.getImageList():
            image -= mean
        self._mean = mean

    def returnMean(self) -> np.ndarray:
        if self._mean is None:
            raise RuntimeError("subtractMean() has not been called.")
        return self._mean

    def getEigenKernels(self) -> list[Kernel]:
        """Return the mean kernel (if subtracted) followed by the eigen kernels."""
        kernels: list[Kernel] = []
        if self._mean is not None:
            kernels.append(FixedKernel(self._mean))
        kernels.extend(FixedKernel(e) for e in self._pca.getEigenImages())
        return kernels


class BuildSpatialKernelVisitor(CandidateVisitor):
    """Accumulate the candidates' systems into the spatial solution.

    Parameters
    ----------
    basisList : sequence of `Kernel`
        Basis of the spatial kernel.
    regionBBox : `lsst.images.Box`
        Region of the spatial model (the Chebyshev range).
    ps : `lsst.pex.config.Config` or mapping
        Kernel configuration.

    Raises
    ------
    ValueError
        For an unknown ``spatialModelType``.
    """

    def __init__(self, basisList: Sequence[Kernel], regionBBox: Box, ps: Mapping[str, Any] | Any) -> None:
        props = toPropertySet(ps)
        modelType = props["spatialModelType"]
        self._kFunction = makeSpatialFunction(modelType, int(props["spatialKernelOrder"]), regionBBox)
        fitBg = bool(props["fitForBackground"])
        bgOrder = int(props["spatialBgOrder"]) if fitBg else 0
        self._bgFunction = makeSpatialFunction(modelType, bgOrder, regionBBox)
        self._solution = SpatialKernelSolution(basisList, self._kFunction, self._bgFunction, props)
        self._nCandidates = 0
        self._candidates: list[KernelCandidate] = []

    def getNCandidates(self) -> int:
        return self._nCandidates

    @property
    def nCandidates(self) -> int:
        return self._nCandidates

    def getCandidates(self) -> list[KernelCandidate]:
        """Return the candidates that entered the spatial fit."""
        return list(self._candidates)

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        kc = _asKernelCandidate(candidate)
        if not kc.isInitialized():
            kc.setStatus(BAD, "no kernel fit")
            return
        qMat, wVec = _spatialConstraint(kc)
        self._solution.addConstraint(kc.getXCenter(), kc.getYCenter(), qMat, wVec)
        self._nCandidates += 1
        self._candidates.append(kc)

    supportsBatch = True

    def processCandidates(self, candidates: Sequence[SpatialCellCandidate]) -> None:
        """Add many candidates' systems at once (same sums as one at a time)."""
        ready = _initializedOrBad(candidates)
        if not ready:
            return
        qMats, wVecs = zip(*(_spatialConstraint(kc) for kc in ready), strict=True)
        if len({q.shape for q in qMats}) != 1:
            for kc in ready:
                self.processCandidate(kc)
            return
        self._solution.addConstraints(
            np.array([kc.getXCenter() for kc in ready]),
            np.array([kc.getYCenter() for kc in ready]),
            np.stack(qMats),
            np.stack(wVecs),
        )
        self._nCandidates += len(ready)
        self._candidates.extend(ready)

    def solveLinearEquation(self) -> None:
        """Solve the accumulated spatial system."""
        self._solution.solve()

    def getSolutionPair(self) -> tuple[Kernel, Function2]:
        return self._solution.getSolutionPair()

    def getKernelSolution(self) -> SpatialKernelSolution:
        return self._solution


class AssessSpatialKernelVisitor(CandidateVisitor):
    """Clip candidates on their residuals under the spatial model.

    Parameters
    ----------
    spatialKernel : `Kernel`
        The spatial kernel.
    spatialBackground : `Function2`
        The spatial background.
    ps : `lsst.pex.config.Config` or mapping
        Kernel configuration.
    """

    def __init__(
        self, spatialKernel: Kernel, spatialBackground: Function2, ps: Mapping[str, Any] | Any
    ) -> None:
        self._kernel = spatialKernel
        self._background = spatialBackground
        self._ps = toPropertySet(ps)
        self._imstats = ImageStatistics(self._ps)
        self._useCoreStats = bool(self._ps.get("useCoreStats", False))
        self._coreRadius = int(self._ps.get("candidateCoreRadius", 3))
        self.reset()

    def reset(self) -> None:
        self._nGood = 0
        self._nRejected = 0
        self._nProcessed = 0

    def getNGood(self) -> int:
        return self._nGood

    def getNRejected(self) -> int:
        return self._nRejected

    def getNProcessed(self) -> int:
        return self._nProcessed

    supportsBatch = True

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        kc = _asKernelCandidate(candidate)
        if not kc.isInitialized():
            kc.setStatus(BAD, "no kernel fit")
            return
        self._assess(kc)

    def _kernelAndBackground(self, kc: KernelCandidate) -> tuple[np.ndarray, float]:
        x, y = kc.getXCenter(), kc.getYCenter()
        return self._kernel.getArray(x, y), float(self._background(x, y))

    def _assess(self, kc: KernelCandidate) -> None:
        kernelImage, background = self._kernelAndBackground(kc)
        try:
            diffim = kc.getDifferenceImage(FixedKernel(kernelImage), background)
            kc._spatialDifference = (self._kernel.getSerial(), diffim)
            self._imstats.apply(diffim, self._coreRadius if self._useCoreStats else 0)
        except CANDIDATE_ERRORS as exc:
            _log.debug("Candidate %d: unable to assess the spatial model: %s", kc.getId(), exc)
            kc.setStatus(BAD, f"spatial-model residual statistics failed: {exc}")
            return
        self._applyStatistics(kc, self._imstats.getMean(), self._imstats.getVariance())

    def _applyStatistics(
        self, kc: KernelCandidate, mean: float, variance: float, residuals: np.ndarray | None = None
    ) -> None:
        if residuals is not None:
            kc._spatialResiduals = (self._kernel.getSerial(), residuals)
        self._nProcessed += 1
        rms = math.sqrt(variance) if variance >= 0 else math.nan
        good, reason = _statusFromStats(
            mean, rms, bool(self._ps.get("spatialKernelClipping", True)), self._ps
        )
        if good:
            kc.setStatus(GOOD)
            self._nGood += 1
        else:
            _log.debug("Candidate %d rejected by the spatial model: %s", kc.getId(), reason)
            kc.setStatus(BAD, f"spatial-model residuals: {reason}")
            self._nRejected += 1

    def processCandidates(self, candidates: Sequence[SpatialCellCandidate]) -> None:
        """Assess many candidates at once (same results as one at a time)."""
        ready = _initializedOrBad(candidates)
        if not ready:
            return
        xs = np.array([kc.getXCenter() for kc in ready])
        ys = np.array([kc.getYCenter() for kc in ready])
        kernels = self._kernel.getArrays(xs, ys)
        backgrounds = np.asarray(self._background(xs, ys), dtype=float) * np.ones(len(ready))
        lookup = {id(kc): (kernels[i], backgrounds[i]) for i, kc in enumerate(ready)}
        _batchStatistics(
            ready,
            lambda kc: lookup[id(kc)],
            self._ps,
            self._coreRadius if self._useCoreStats else 0,
            self._assess,
            self._applyStatistics,
        )


BuildSingleKernelVisitorF = BuildSingleKernelVisitor
KernelSumVisitorF = KernelSumVisitor
KernelPcaVisitorF = KernelPcaVisitor
BuildSpatialKernelVisitorF = BuildSpatialKernelVisitor
AssessSpatialKernelVisitorF = AssessSpatialKernelVisitor


def makeBuildSingleKernelVisitor(
    basisList: Sequence[Kernel], ps: Mapping[str, Any] | Any, hMat: np.ndarray | None = None
) -> BuildSingleKernelVisitor:
    """Return a `BuildSingleKernelVisitor`."""
    return BuildSingleKernelVisitor(basisList, ps, hMat)


def makeKernelSumVisitor(ps: Mapping[str, Any] | Any) -> KernelSumVisitor:
    """Return a `KernelSumVisitor`."""
    return KernelSumVisitor(ps)


def makeKernelPcaVisitor(imagePca: KernelPca) -> KernelPcaVisitor:
    """Return a `KernelPcaVisitor` filling ``imagePca``."""
    return KernelPcaVisitor(imagePca)


def makeBuildSpatialKernelVisitor(
    basisList: Sequence[Kernel], regionBBox: Box, ps: Mapping[str, Any] | Any
) -> BuildSpatialKernelVisitor:
    """Return a `BuildSpatialKernelVisitor`."""
    return BuildSpatialKernelVisitor(basisList, regionBBox, ps)


def makeAssessSpatialKernelVisitor(
    spatialKernel: Kernel, spatialBackground: Function2, ps: Mapping[str, Any] | Any
) -> AssessSpatialKernelVisitor:
    """Return an `AssessSpatialKernelVisitor`."""
    return AssessSpatialKernelVisitor(spatialKernel, spatialBackground, ps)


__all__ += ["CANDIDATE_ERRORS"]
