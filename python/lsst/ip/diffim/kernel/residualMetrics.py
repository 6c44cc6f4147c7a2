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
"""Residual metrics of a kernel fit: how well each candidate is subtracted.

For each GOOD candidate, the difference stamp of its own (ORIG) fit
(``LOCAL``) and that of the spatial model at its position (``SPATIAL``) are
measured in units of their noise, ignoring the bad mask planes:
``KCDiffimMean``, ``KCDiffimMedian``, ``KCDiffimIQR``, ``KCDiffimStDev`` and
``KCDiffimChiSq`` (mean of the squared normalized residuals).  The task
metadata then gets the mean, median and scatter of each over the
candidates, as ``<metric>_<LOCAL|SPATIAL>_<MEAN|MEDIAN|STDEV>``.

Residuals the batched visitors kept on the candidates
(`KernelCandidate.getLocalResiduals`, `KernelCandidate.getSpatialResiduals`)
are reused; the others are computed here, in batches over the candidates'
`StampStack` where their stamps are clean, one at a time where not.
"""

from __future__ import annotations

__all__ = ["RESIDUAL_METRIC_NAMES", "residualMetrics"]

import math
from collections.abc import Sequence

import numpy as np

from ..math.functions import Function2
from ..math.kernels import FixedKernel, Kernel
from ..math.masks import anyMaskPlaneSet
from ..math.spatialCell import SpatialCellCandidate, SpatialCellCandidateStatus
from .batch import batchNormalizedResiduals
from .candidate import CandidateSwitch, KernelCandidate
from .stampStack import StampStack
from .visitors import CANDIDATE_ERRORS, groupByStampStack

#: The per-candidate metrics, in the order they are reported.
RESIDUAL_METRIC_NAMES = ("KCDiffimMean", "KCDiffimMedian", "KCDiffimIQR", "KCDiffimStDev", "KCDiffimChiSq")

_KINDS = ("LOCAL", "SPATIAL")


class _Metrics:
    """The per-candidate metric values of one kind (LOCAL or SPATIAL), as they are added."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {name: [] for name in RESIDUAL_METRIC_NAMES}

    def addOne(self, pixels: np.ndarray) -> None:
        """Add one candidate's metrics from its normalized residual pixels."""
        pix = pixels[np.isfinite(pixels)]
        if pix.size < 2:
            return
        q25, q50, q75 = np.percentile(pix, [25, 50, 75])
        self.values["KCDiffimMean"].append(float(pix.mean()))
        self.values["KCDiffimMedian"].append(float(q50))
        self.values["KCDiffimIQR"].append(float(q75 - q25))
        self.values["KCDiffimStDev"].append(float(pix.std(ddof=1)))
        self.values["KCDiffimChiSq"].append(float(np.mean(pix**2)))

    def addRows(self, residuals: np.ndarray) -> None:
        """Add many candidates' metrics from a stack of residual rows (which it reorders)."""
        finite = np.isfinite(residuals).all(axis=1)
        pix = residuals
        if not finite.all():
            for row in residuals[~finite]:
                self.addOne(row)
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
        self.values["KCDiffimMean"].extend(mean.tolist())
        self.values["KCDiffimStDev"].extend(np.sqrt(variance).tolist())
        self.values["KCDiffimChiSq"].extend(meanSquare.tolist())
        q25, q50, q75 = np.percentile(pix, [25, 50, 75], axis=1, overwrite_input=True)
        self.values["KCDiffimMedian"].extend(q50.tolist())
        self.values["KCDiffimIQR"].extend((q75 - q25).tolist())

    def summary(self, kind: str) -> dict[str, float]:
        """Mean, median and scatter of each metric over the candidates (NaN if too few)."""
        out: dict[str, float] = {}
        for name, vals in self.values.items():
            arr = np.asarray(vals)
            out[f"{name}_{kind}_MEAN"] = float(arr.mean()) if arr.size else math.nan
            out[f"{name}_{kind}_MEDIAN"] = float(np.median(arr)) if arr.size else math.nan
            out[f"{name}_{kind}_STDEV"] = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
        return out


def residualMetrics(
    candidates: Sequence[SpatialCellCandidate],
    spatialKernel: Kernel,
    spatialBackground: Function2,
    badMaskPlanes: Sequence[str],
) -> dict[str, float]:
    """Return the residual metrics of the GOOD candidates (module docstring).

    Parameters
    ----------
    candidates : sequence of `SpatialCellCandidate`
        The cell set's candidates; only the GOOD `KernelCandidate` objects count.
    spatialKernel : `Kernel`
        The fitted spatial kernel.
    spatialBackground : `Function2`
        The fitted spatial background.
    badMaskPlanes : sequence of `str`
        Mask planes whose pixels are left out.

    Returns
    -------
    metrics : `dict` [`str`, `float`]
        ``<metric>_<LOCAL|SPATIAL>_<MEAN|MEDIAN|STDEV>``; NaN when no
        candidate is usable.
    """
    metrics = {kind: _Metrics() for kind in _KINDS}
    planes = list(badMaskPlanes)
    good = [
        c
        for c in candidates
        if isinstance(c, KernelCandidate) and c.getStatus() == SpatialCellCandidateStatus.GOOD
    ]
    batchable: list[tuple[StampStack, list[KernelCandidate], list[int]]] = []
    for stack, index, kcs in groupByStampStack(good):
        clean = stack.isClean(planes)[index]
        for kc in kcs[~clean]:
            _addSingle(metrics, kc, spatialKernel, spatialBackground, planes)
        if clean.any():
            batchable.append((stack, list(kcs[clean]), list(index[clean])))
    for stack, stackKcs, rows in batchable:
        todo, todoRows = _addCached(metrics, stackKcs, rows, spatialKernel)
        if todo:
            _addStack(metrics, stack, todo, todoRows, spatialKernel, spatialBackground)
    out: dict[str, float] = {}
    for kind in _KINDS:
        out.update(metrics[kind].summary(kind))
    return out


def _addSingle(
    metrics: dict[str, _Metrics],
    kc: KernelCandidate,
    spatialKernel: Kernel,
    spatialBackground: Function2,
    planes: list[str],
) -> None:
    """Add the metrics of a candidate whose stamps are masked or not finite."""
    try:
        local = kc.getDifferenceImage(CandidateSwitch.ORIG)
        spatial = kc.getCachedSpatialDifference(spatialKernel)
        if spatial is None:
            x, y = kc.getXCenter(), kc.getYCenter()
            spatial = kc.getDifferenceImage(
                FixedKernel(spatialKernel.getArray(x, y)), float(spatialBackground(x, y))
            )
    except CANDIDATE_ERRORS:
        return
    for kind, diffim in (("LOCAL", local), ("SPATIAL", spatial)):
        bad = anyMaskPlaneSet(diffim.mask, planes)
        with np.errstate(divide="ignore", invalid="ignore"):
            norm = diffim.image.array / np.sqrt(diffim.variance.array)
        metrics[kind].addOne(norm[~bad])


def _addCached(
    metrics: dict[str, _Metrics], kcs: list[KernelCandidate], rows: list[int], spatialKernel: Kernel
) -> tuple[list[KernelCandidate], list[int]]:
    """Add the metrics of candidates whose residuals the visitors kept; return the others."""
    todo, todoRows = [], []
    cachedLocal: list[np.ndarray] = []
    cachedSpatial: list[np.ndarray] = []
    for kc, row in zip(kcs, rows, strict=True):
        try:
            kc.getKernelSolution(CandidateSwitch.ORIG)
        except CANDIDATE_ERRORS:
            continue
        local = kc.getLocalResiduals(CandidateSwitch.ORIG)
        spatial = kc.getSpatialResiduals(spatialKernel)
        if local is not None and spatial is not None:
            cachedLocal.append(local.ravel())
            cachedSpatial.append(spatial.ravel())
        else:
            todo.append(kc)
            todoRows.append(row)
    for kind, arrays in (("LOCAL", cachedLocal), ("SPATIAL", cachedSpatial)):
        if arrays:
            metrics[kind].addRows(np.stack(arrays))
    return todo, todoRows


def _addStack(
    metrics: dict[str, _Metrics],
    stack: StampStack,
    kcs: list[KernelCandidate],
    rows: list[int],
    spatialKernel: Kernel,
    spatialBackground: Function2,
) -> None:
    """Add the metrics of clean candidates of one stack, their residuals computed in one batch."""
    try:
        localKernels = [kc.getKernelImage(CandidateSwitch.ORIG) for kc in kcs]
        localBgs = [kc.getBackground(CandidateSwitch.ORIG) for kc in kcs]
    except CANDIDATE_ERRORS:
        return
    xs = np.array([kc.getXCenter() for kc in kcs])
    ys = np.array([kc.getYCenter() for kc in kcs])
    spatialKernels = spatialKernel.getArrays(xs, ys)
    spatialBgs = np.asarray(spatialBackground(xs, ys), dtype=float) * np.ones(len(kcs))
    sel = np.asarray(rows, dtype=int)
    stamps = (stack.template, stack.templateVariance, stack.science, stack.scienceVariance)
    for kind, kernels, bgs in (
        ("LOCAL", np.stack(localKernels), np.array(localBgs, dtype=float)),
        ("SPATIAL", spatialKernels, spatialBgs),
    ):
        residuals = batchNormalizedResiduals(*stamps, kernels, bgs, rows=sel).reshape(len(kcs), -1)
        metrics[kind].addRows(residuals)
