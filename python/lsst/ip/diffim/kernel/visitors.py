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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lsst.images import Box, MaskedImage
from lsst.utils.logging import getTraceLogger

from ..math.functions import Function2, makeSpatialFunction
from ..math.imagePca import ImagePca
from ..math.kernels import FixedKernel, Kernel, kernelListToArray
from ..math.spatialCell import CandidateVisitor, SpatialCellCandidate, SpatialCellCandidateStatus
from ..math.statistics import clippedMeanStd
from .batch import batchNormalEquations, batchNormalizedResiduals
from .buildProgress import BuildProgress
from .candidate import CandidateSwitch, KernelCandidate
from .imageStatistics import ImageStatistics
from .separableBasis import SeparableBasis
from .settings import KernelFitSettings, asSettings
from .solution import RegularizedKernelSolution, SpatialKernelSolution, _isDeltaList, solveSymmetricSystems
from .stampStack import StampStack

_progressLog = logging.getLogger("lsst.ip.diffim.kernel.progress")


def _traceLog(component: str, level: int) -> Any:
    """Return the trace logger ``TRACE<level>.lsst.ip.diffim.<component>``.

    ``lsst.utils.logging.trace_set_at("lsst.ip.diffim", n)`` shows the lines
    of every level up to ``n`` (upstream's C++ loggers are named alike).
    """
    return getTraceLogger(f"lsst.ip.diffim.{component}", level)


#: The exceptions that mark a candidate BAD instead of stopping the fit
#: (upstream: any ``pex.exceptions.Exception``).
CANDIDATE_ERRORS = (ArithmeticError, ValueError, np.linalg.LinAlgError)

GOOD = SpatialCellCandidateStatus.GOOD
BAD = SpatialCellCandidateStatus.BAD

#: How one candidate's kernel image and background are found for the statistics.
KernelAndBackground = Callable[[KernelCandidate], tuple[np.ndarray, float]]


def _asKernelCandidate(candidate: SpatialCellCandidate) -> KernelCandidate:
    if not isinstance(candidate, KernelCandidate):
        raise TypeError(f"Failed to cast SpatialCellCandidate to KernelCandidate: {candidate!r}")
    return candidate


class _ResidualClippingVisitor(CandidateVisitor):
    """Shared part of the visitors that clip candidates on their residual statistics.

    Subclasses say which difference stamp a candidate is judged by
    (`_differenceImage`, and for the batched path `_kernelAndBackground`),
    where its residuals are kept (`_keepResiduals`) and whether clipping is
    on; this class measures, judges, counts and sets the status.

    Parameters
    ----------
    settings : `KernelFitSettings`
        Kernel configuration.
    clip : `bool`
        Reject candidates whose statistics exceed the limits.
    label : `str`
        Names the residuals in the rejection reasons ("own-fit").
    component : `str`
        Names the trace logger.
    """

    def __init__(self, settings: KernelFitSettings, clip: bool, label: str, component: str) -> None:
        self._settings = settings
        self._clip = clip
        self._label = label
        self._trace = _traceLog(component, 3)
        self._traceEach = _traceLog(component, 4)
        self._imstats = ImageStatistics(settings)
        self._core = settings.candidateCoreRadius if settings.useCoreStats else 0
        self._nGood = 0
        self._nRejected = 0
        self._nProcessed = 0

    def reset(self) -> None:
        self._nGood = 0
        self._nRejected = 0
        self._nProcessed = 0

    def getNRejected(self) -> int:
        return self._nRejected

    def getNProcessed(self) -> int:
        return self._nProcessed

    def _differenceImage(self, kc: KernelCandidate) -> MaskedImage:
        raise NotImplementedError()

    def _kernelAndBackground(self, kc: KernelCandidate) -> tuple[np.ndarray, float]:
        raise NotImplementedError()

    def _keepResiduals(self, kc: KernelCandidate, residuals: np.ndarray) -> None:
        raise NotImplementedError()

    def _measured(self, kc: KernelCandidate, variance: float) -> None:
        """Receive a candidate's residual variance before it is judged (does nothing by default)."""

    def _assess(self, kc: KernelCandidate) -> None:
        """Measure and judge one candidate from its difference stamp."""
        try:
            diffim = self._differenceImage(kc)
            self._imstats.apply(diffim, self._core)
        except CANDIDATE_ERRORS as exc:
            self._trace.debug(
                "Candidate %d: unable to compute %s statistics: %s", kc.getId(), self._label, exc
            )
            kc.setStatus(BAD, f"{self._label} residual statistics failed: {exc}")
            return
        self._judge(kc, self._imstats.getMean(), self._imstats.getVariance())

    def _judge(
        self, kc: KernelCandidate, mean: float, variance: float, residuals: np.ndarray | None = None
    ) -> None:
        """Set the status of a candidate from its residual mean and variance."""
        if residuals is not None:
            self._keepResiduals(kc, residuals)
        self._nProcessed += 1
        self._measured(kc, variance)
        rms = math.sqrt(variance) if variance >= 0 else math.nan
        good, reason = _statusFromStats(mean, rms, self._clip, self._settings)
        self._traceEach.debug(
            "Candidate %d at (%.1f, %.1f): %s residual mean %.3f, rms %.3f",
            kc.getId(),
            kc.getXCenter(),
            kc.getYCenter(),
            self._label,
            mean,
            rms,
        )
        if good:
            kc.setStatus(GOOD)
            self._nGood += 1
        else:
            self._trace.debug("Candidate %d rejected (%s residuals): %s", kc.getId(), self._label, reason)
            kc.setStatus(BAD, f"{self._label} residuals: {reason}")
            self._nRejected += 1

    def _assessMany(
        self, candidates: list[KernelCandidate], kernelAndBackground: KernelAndBackground | None = None
    ) -> None:
        """`_assess` for many candidates, in batches where the stamps allow."""
        _batchStatistics(
            candidates,
            kernelAndBackground or self._kernelAndBackground,
            self._settings.badMaskPlanes,
            self._core,
            self._assess,
            self._judge,
        )


class BuildSingleKernelVisitor(_ResidualClippingVisitor):
    """Fit each candidate's own kernel and clip on its residuals.

    Parameters
    ----------
    basisList : sequence of `Kernel`
        Basis kernels.
    ps : `KernelFitSettings`, `lsst.pex.config.Config` or mapping
        Kernel configuration.
    hMat : `numpy.ndarray`, optional
        Regularization matrix; regularized fits when given and non-empty.
    batched : `bool`, optional
        Build and assess the candidates of a visit in batches (the default;
        same results); `False` processes them one at a time.
    """

    def __init__(
        self,
        basisList: Sequence[Kernel],
        ps: KernelFitSettings | Mapping[str, Any] | Any,
        hMat: np.ndarray | None = None,
        *,
        batched: bool = True,
    ) -> None:
        settings = asSettings(ps)
        super().__init__(settings, settings.singleKernelClipping, "own-fit", "BuildSingleKernelVisitor")
        self._basisList = list(basisList)
        self._hMat = None if hMat is None or np.size(hMat) == 0 else np.asarray(hMat, dtype=float)
        self._skipBuilt = True
        self._batched = bool(batched)

    def setSkipBuilt(self, skip: bool) -> None:
        """Set whether candidates that already have a kernel are left as they are."""
        self._skipBuilt = bool(skip)

    def setCandidateKernel(self, useRegularization: bool) -> None:
        """Drop the regularization matrix if ``useRegularization`` is `False`."""
        if not useRegularization:
            self._hMat = None

    def _differenceImage(self, kc: KernelCandidate) -> MaskedImage:
        return kc.getDifferenceImage(CandidateSwitch.RECENT)

    def _kernelAndBackground(self, kc: KernelCandidate) -> tuple[np.ndarray, float]:
        return kc.getKernelImage(CandidateSwitch.RECENT), kc.getBackground(CandidateSwitch.RECENT)

    def _keepResiduals(self, kc: KernelCandidate, residuals: np.ndarray) -> None:
        kc.setLocalResiduals(residuals, CandidateSwitch.RECENT)

    def _measured(self, kc: KernelCandidate, variance: float) -> None:
        kc.setChi2(variance)

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        """Build one candidate's kernel (unless built and skipped) and judge its residuals."""
        kc = _asKernelCandidate(candidate)
        if self._skipBuilt and kc.isInitialized():
            return
        if self._build(kc):
            self._assess(kc)

    def processCandidates(
        self, candidates: Sequence[SpatialCellCandidate], ignoreExceptions: bool = False
    ) -> list[SpatialCellCandidate]:
        """Build and assess many candidates (same results as one at a time).

        Candidates with finite stamps, constant variance weighting and a
        non-delta basis have their normal equations, solutions and residual
        statistics computed in batches, stack by stack; the others are
        built one at a time (with progress lines) and assessed in batches.
        A candidate's errors mark it BAD, so nothing is returned as failed.
        """
        if not self._batched:
            return super().processCandidates(candidates, ignoreExceptions)
        todo = [_asKernelCandidate(c) for c in candidates]
        todo = [kc for kc in todo if not (self._skipBuilt and kc.isInitialized())]
        if not todo:
            return []
        settings = self._settings
        batchable = (
            not _isDeltaList(self._basisList)
            and not settings.iterateSingleKernel
            and settings.constantVarianceWeighting
        )
        ready = self._buildStacks(todo) if batchable else self._buildWithProgress(todo)
        self._assessMany(ready)
        return []

    def _buildStacks(self, todo: list[KernelCandidate]) -> list[KernelCandidate]:
        """Build candidates stack by stack from batched normal equations; return those built."""
        ready: list[KernelCandidate] = []
        basis = kernelListToArray(self._basisList)
        separable = SeparableBasis.forBasis(self._basisList)
        solveHere = self._hMat is None and not self._settings.checkConditionNumber
        for stack, index, kcs in groupByStampStack(todo):
            finite = stack.finiteImages[index]
            for kc in kcs[~finite]:
                if self._build(kc):
                    ready.append(kc)
            for fitBg in (False, True):
                fits = np.array([kc.getSettings().fitForBackground == fitBg for kc in kcs], dtype=bool)
                use = finite & fits
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
        return ready

    def _buildWithProgress(self, todo: list[KernelCandidate]) -> list[KernelCandidate]:
        """Build candidates one at a time, logging progress and the GFLOP/s reached."""
        progress = BuildProgress(len(todo), _progressLog)
        ready = []
        for kc in todo:
            t0 = time.thread_time()  # this thread's CPU: the rate stays meaningful on a loaded machine
            ok = self._build(kc)
            try:
                shape = kc.getKernelSolution(CandidateSwitch.RECENT).designShape
            except Exception:  # not built: no solution to ask
                shape = None
            progress.add(time.thread_time() - t0, *(shape[::-1] if shape else (None, None)))
            if ok:
                ready.append(kc)
        progress.finish()
        return ready

    def _build(self, kc: KernelCandidate) -> bool:
        """Build one candidate; return `True` if it is ready for statistics."""
        try:
            kc.build(self._basisList, self._hMat)
        except CANDIDATE_ERRORS as exc:
            self._buildFailed(kc, exc)
            return False
        return self._checkBuilt(kc)

    def _buildFailed(self, kc: KernelCandidate, exc: Exception) -> None:
        self._trace.debug("Candidate %d: unable to build kernel: %s", kc.getId(), exc)
        kc.setStatus(BAD, f"kernel fit failed: {exc}")
        self._nRejected += 1

    def _checkBuilt(self, kc: KernelCandidate) -> bool:
        if kc.getStatus() == BAD:
            self._trace.debug("Candidate %d: rejected for its condition number", kc.getId())
            self._nRejected += 1
            return False
        return True

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
                self._buildFailed(kc, exc)
                continue
            if self._checkBuilt(kc):
                ready.append(kc)
        return ready


def _spatialConstraint(kc: KernelCandidate) -> tuple[np.ndarray, np.ndarray]:
    """Return the candidate's ``(M, b)`` for the spatial fit (its regularization left out)."""
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
        if not kc.hasStampStack():
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


def _statusFromStats(mean: float, rms: float, clip: bool, settings: KernelFitSettings) -> tuple[bool, str]:
    if math.isnan(mean) or math.isnan(rms):
        return False, "NaN residual statistics"
    if clip:
        if abs(mean) > settings.candidateResidualMeanMax:
            return False, f"|mean| {abs(mean):.3f} > {settings.candidateResidualMeanMax:.3f}"
        if rms > settings.candidateResidualStdMax:
            return False, f"rms {rms:.3f} > {settings.candidateResidualStdMax:.3f}"
    return True, ""


def _batchStatistics(
    candidates: list[KernelCandidate],
    kernelAndBackground: KernelAndBackground,
    badMaskPlanes: Sequence[str],
    core: int,
    single: Callable[[KernelCandidate], None],
    apply: Callable[[KernelCandidate, float, float, np.ndarray], None],
) -> None:
    """Residual statistics for many candidates; masked or non-finite stamps go one at a time."""
    planes = list(badMaskPlanes)
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
        residuals = batchNormalizedResiduals(
            stack.template,
            stack.templateVariance,
            stack.science,
            stack.scienceVariance,
            kernels,
            np.array([b for _, _, b in items]),
            rows=np.asarray(rows, dtype=int),
        )
        mean, var = _rowMoments(_coreRegion(residuals, stack.stampShape, kernels.shape[1:], core))
        for (kc, _, _), m, v, r in zip(items, mean, var, residuals, strict=True):
            apply(kc, float(m), float(v), r)


def _coreRegion(
    residuals: np.ndarray, stampShape: tuple[int, int], kernelShape: tuple[int, ...], core: int
) -> np.ndarray:
    """Return the ``(2 core + 1)^2`` central good-region residuals (all of them if ``core <= 0``)."""
    if core <= 0:
        return residuals
    ny, nx = stampShape
    cy, cx = kernelShape[0] // 2, kernelShape[1] // 2
    ys = slice(max(ny // 2 - core, cy) - cy, min(ny // 2 + core + 1, cy + residuals.shape[1]) - cy)
    xs = slice(max(nx // 2 - core, cx) - cx, min(nx // 2 + core + 1, cx + residuals.shape[2]) - cx)
    return residuals[:, ys, xs]


def _rowMoments(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-stamp mean and unbiased variance of the finite pixels (NaN when too few)."""
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
    return mean, var


class KernelSumVisitor(CandidateVisitor):
    """Aggregate the candidates' kernel sums, then reject outliers.

    Parameters
    ----------
    ps : `KernelFitSettings`, `lsst.pex.config.Config` or mapping
        Provides ``maxKsumSigma`` and ``kernelSumClipping``.
    """

    class Mode(enum.IntEnum):
        """Whether `KernelSumVisitor.processCandidate` collects kernel sums or rejects outliers."""

        AGGREGATE = 0
        REJECT = 1

    AGGREGATE = Mode.AGGREGATE
    REJECT = Mode.REJECT

    def __init__(self, ps: KernelFitSettings | Mapping[str, Any] | Any) -> None:
        self._settings = asSettings(ps)
        self._trace = _traceLog("KernelSumVisitor", 3)
        self._mode = KernelSumVisitor.Mode.AGGREGATE
        self._kSums: list[float] = []
        self._kSumMean = 0.0
        self._kSumStd = 0.0
        self._dkSumMax = 0.0
        self._kSumNpts = 0
        self._nRejected = 0

    def setMode(self, mode: KernelSumVisitor.Mode | int) -> None:
        """Set whether candidates are aggregated or rejected."""
        self._mode = KernelSumVisitor.Mode(mode)

    def getNRejected(self) -> int:
        """Return the number of candidates rejected on their kernel sum."""
        return self._nRejected

    def getkSumMean(self) -> float:
        """Return the clipped mean of the kernel sums."""
        return self._kSumMean

    def getkSumStd(self) -> float:
        """Return the clipped standard deviation of the kernel sums."""
        return self._kSumStd

    def getdkSumMax(self) -> float:
        """Return the largest allowed departure from the mean kernel sum."""
        return self._dkSumMax

    def getkSumNpts(self) -> int:
        """Return the number of sums the clipped statistics kept."""
        return self._kSumNpts

    def resetKernelSum(self) -> None:
        """Forget the collected sums, their statistics and the rejection count."""
        self._kSums = []
        self._kSumMean = 0.0
        self._kSumStd = 0.0
        self._dkSumMax = 0.0
        self._kSumNpts = 0
        self._nRejected = 0

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        """Collect the candidate's kernel sum, or mark it BAD if the sum is an outlier."""
        kc = _asKernelCandidate(candidate)
        if self._mode == KernelSumVisitor.Mode.AGGREGATE:
            self._kSums.append(kc.getKernelSolution(CandidateSwitch.ORIG).getKsum())
        else:
            kSum = kc.getKernelSolution(CandidateSwitch.ORIG).getKsum()
            if self._settings.kernelSumClipping and abs(kSum - self._kSumMean) > self._dkSumMax:
                self._trace.debug(
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
        self._dkSumMax = self._settings.maxKsumSigma * self._kSumStd
        _traceLog("KernelSumVisitor", 2).debug(
            "Kernel sum: mean %.3f, clipped std %.3f, limit %.3f (%d points)",
            self._kSumMean,
            self._kSumStd,
            self._dkSumMax,
            self._kSumNpts,
        )


class KernelPca(ImagePca):
    """PCA of kernel images whose eigen images are scaled to an extreme of +1."""

    def analyze(self) -> None:
        """Run the PCA, then scale each eigen image so its extreme of larger magnitude is +1."""
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
        """Add the candidate's unit-sum ORIG kernel image to the PCA (skipped on errors)."""
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
        """Return the mean kernel removed by `subtractMean`.

        Raises
        ------
        RuntimeError
            If `subtractMean` has not been called.
        """
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
    ps : `KernelFitSettings`, `lsst.pex.config.Config` or mapping
        Kernel configuration.
    batched : `bool`, optional
        Add the systems of a visit's candidates in one sum (the default;
        same sums); `False` adds them one at a time.

    Raises
    ------
    ValueError
        For an unknown ``spatialModelType``.
    """

    def __init__(
        self,
        basisList: Sequence[Kernel],
        regionBBox: Box,
        ps: KernelFitSettings | Mapping[str, Any] | Any,
        *,
        batched: bool = True,
    ) -> None:
        settings = asSettings(ps)
        modelType = settings.spatialModelType
        self._kFunction = makeSpatialFunction(modelType, settings.spatialKernelOrder, regionBBox)
        bgOrder = settings.spatialBgOrder if settings.fitForBackground else 0
        self._bgFunction = makeSpatialFunction(modelType, bgOrder, regionBBox)
        self._solution = SpatialKernelSolution(basisList, self._kFunction, self._bgFunction, settings)
        self._nCandidates = 0
        self._candidates: list[KernelCandidate] = []
        self._batched = bool(batched)
        self._trace = _traceLog("BuildSpatialKernelVisitor", 2)

    def getNCandidates(self) -> int:
        """Return the number of candidates added to the spatial fit."""
        return self._nCandidates

    def getCandidates(self) -> list[KernelCandidate]:
        """Return the candidates that entered the spatial fit."""
        return list(self._candidates)

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        """Add the candidate's system to the spatial fit, or mark it BAD if it has no kernel."""
        kc = _asKernelCandidate(candidate)
        if not kc.isInitialized():
            kc.setStatus(BAD, "no kernel fit")
            return
        qMat, wVec = _spatialConstraint(kc)
        self._solution.addConstraint(kc.getXCenter(), kc.getYCenter(), qMat, wVec)
        self._nCandidates += 1
        self._candidates.append(kc)

    def processCandidates(
        self, candidates: Sequence[SpatialCellCandidate], ignoreExceptions: bool = False
    ) -> list[SpatialCellCandidate]:
        """Add many candidates' systems at once (same sums as one at a time)."""
        if not self._batched:
            return super().processCandidates(candidates, ignoreExceptions)
        ready = _initializedOrBad(candidates)
        if not ready:
            return []
        qMats, wVecs = zip(*(_spatialConstraint(kc) for kc in ready), strict=True)
        if len({q.shape for q in qMats}) != 1:
            for kc in ready:
                self.processCandidate(kc)
            return []
        self._solution.addConstraints(
            np.array([kc.getXCenter() for kc in ready]),
            np.array([kc.getYCenter() for kc in ready]),
            np.stack(qMats),
            np.stack(wVecs),
        )
        self._nCandidates += len(ready)
        self._candidates.extend(ready)
        return []

    def solveLinearEquation(self) -> None:
        """Solve the accumulated spatial system."""
        self._solution.solve()
        self._trace.debug(
            "Spatial kernel solved from %d candidates: %d unknowns, solved by %s",
            self._nCandidates,
            self._solution.getNTerms(),
            self._solution.getSolvedBy().name,
        )

    def getSolutionPair(self) -> tuple[Kernel, Function2]:
        """Return the spatial kernel and background of the solved fit."""
        return self._solution.getSolutionPair()

    def getKernelSolution(self) -> SpatialKernelSolution:
        """Return the spatial kernel solution."""
        return self._solution


class AssessSpatialKernelVisitor(_ResidualClippingVisitor):
    """Clip candidates on their residuals under the spatial model.

    Parameters
    ----------
    spatialKernel : `Kernel`
        The spatial kernel.
    spatialBackground : `Function2`
        The spatial background.
    ps : `KernelFitSettings`, `lsst.pex.config.Config` or mapping
        Kernel configuration.
    batched : `bool`, optional
        Assess a visit's candidates in batches (the default; same results);
        `False` assesses them one at a time.
    """

    def __init__(
        self,
        spatialKernel: Kernel,
        spatialBackground: Function2,
        ps: KernelFitSettings | Mapping[str, Any] | Any,
        *,
        batched: bool = True,
    ) -> None:
        settings = asSettings(ps)
        super().__init__(
            settings, settings.spatialKernelClipping, "spatial-model", "AssessSpatialKernelVisitor"
        )
        self._kernel = spatialKernel
        self._background = spatialBackground
        self._batched = bool(batched)

    def getNGood(self) -> int:
        """Return the number of candidates whose residuals passed."""
        return self._nGood

    def _kernelAndBackground(self, kc: KernelCandidate) -> tuple[np.ndarray, float]:
        x, y = kc.getXCenter(), kc.getYCenter()
        return self._kernel.getArray(x, y), float(self._background(x, y))

    def _differenceImage(self, kc: KernelCandidate) -> MaskedImage:
        kernelImage, background = self._kernelAndBackground(kc)
        diffim = kc.getDifferenceImage(FixedKernel(kernelImage), background)
        kc.setSpatialDifference(self._kernel, diffim)
        return diffim

    def _keepResiduals(self, kc: KernelCandidate, residuals: np.ndarray) -> None:
        kc.setSpatialResiduals(self._kernel, residuals)

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        """Judge the candidate's residuals under the spatial model, or mark it BAD if it has no kernel."""
        kc = _asKernelCandidate(candidate)
        if not kc.isInitialized():
            kc.setStatus(BAD, "no kernel fit")
            return
        self._assess(kc)

    def processCandidates(
        self, candidates: Sequence[SpatialCellCandidate], ignoreExceptions: bool = False
    ) -> list[SpatialCellCandidate]:
        """Assess many candidates at once (same results as one at a time)."""
        if not self._batched:
            return super().processCandidates(candidates, ignoreExceptions)
        ready = _initializedOrBad(candidates)
        if not ready:
            return []
        xs = np.array([kc.getXCenter() for kc in ready])
        ys = np.array([kc.getYCenter() for kc in ready])
        kernels = self._kernel.getArrays(xs, ys)
        backgrounds = np.asarray(self._background(xs, ys), dtype=float) * np.ones(len(ready))
        lookup = {id(kc): (kernels[i], backgrounds[i]) for i, kc in enumerate(ready)}
        self._assessMany(ready, lambda kc: lookup[id(kc)])
        return []


BuildSingleKernelVisitorF = BuildSingleKernelVisitor
KernelSumVisitorF = KernelSumVisitor
KernelPcaVisitorF = KernelPcaVisitor
BuildSpatialKernelVisitorF = BuildSpatialKernelVisitor
AssessSpatialKernelVisitorF = AssessSpatialKernelVisitor


def makeBuildSingleKernelVisitor(
    basisList: Sequence[Kernel],
    ps: KernelFitSettings | Mapping[str, Any] | Any,
    hMat: np.ndarray | None = None,
) -> BuildSingleKernelVisitor:
    """Return a `BuildSingleKernelVisitor`."""
    return BuildSingleKernelVisitor(basisList, ps, hMat)


def makeKernelSumVisitor(ps: KernelFitSettings | Mapping[str, Any] | Any) -> KernelSumVisitor:
    """Return a `KernelSumVisitor`."""
    return KernelSumVisitor(ps)


def makeKernelPcaVisitor(imagePca: KernelPca) -> KernelPcaVisitor:
    """Return a `KernelPcaVisitor` filling ``imagePca``."""
    return KernelPcaVisitor(imagePca)


def makeBuildSpatialKernelVisitor(
    basisList: Sequence[Kernel], regionBBox: Box, ps: KernelFitSettings | Mapping[str, Any] | Any
) -> BuildSpatialKernelVisitor:
    """Return a `BuildSpatialKernelVisitor`."""
    return BuildSpatialKernelVisitor(basisList, regionBBox, ps)


def makeAssessSpatialKernelVisitor(
    spatialKernel: Kernel, spatialBackground: Function2, ps: KernelFitSettings | Mapping[str, Any] | Any
) -> AssessSpatialKernelVisitor:
    """Return an `AssessSpatialKernelVisitor`."""
    return AssessSpatialKernelVisitor(spatialKernel, spatialBackground, ps)


__all__ += ["CANDIDATE_ERRORS"]
