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
"""The kernel-candidate mosaics of ``displayCandidates``, paged.

Upstream's ``showKernelCandidates`` draws three mosaics; here they are the
columns of one page, one row per candidate: (a) science stamp and template
stamp (one colour scale), the differences with the candidate's own kernel and
with the spatial model (one symmetric scale); (b) the candidate's own kernel
and the spatial kernel at its position (one scale); (c) the two differences
divided by their noise, trimmed by the kernel border (fixed +/-5 sigma).
Every candidate is drawn: sorted BAD, UNKNOWN, GOOD and by decreasing rating
within a status, in pages of ``candidatesPerPage`` (debug variable, default
20), one PNG per page (``maxCandidatePages`` > 0 limits the pages).  A BAD
candidate has its rejection reason written on its science stamp; a candidate
without a kernel fit shows its stamps and says so in its own-fit panels.
"""

from __future__ import annotations

__all__ = ["displayKernelCandidates", "sortedCandidates", "statusColour"]

import textwrap
from typing import TYPE_CHECKING

import numpy as np

from ..kernel.candidate import CandidateSwitch, KernelCandidate
from ..math.exceptions import KernelSolutionError
from ..math.kernels import FixedKernel
from ..math.spatialCell import SpatialCellCandidate, SpatialCellCandidateStatus
from .core import debugNumber, finishPicture, imageLimits, pages
from .stampMosaic import StampMosaic

if TYPE_CHECKING:
    from pathlib import Path

    import lsstDebug

    from lsst.utils.logging import LsstLoggers

    from ..math.functions import Function2
    from ..math.kernels import LinearCombinationKernel
    from ..math.spatialCell import SpatialCellSet

GOOD = SpatialCellCandidateStatus.GOOD
BAD = SpatialCellCandidateStatus.BAD
_STATUS_ORDER = {BAD: 0, SpatialCellCandidateStatus.UNKNOWN: 1, GOOD: 2}
_SIGMA_LIMIT = 5.0
_COLUMNS = [
    "science",
    "template\n(scale shared)",
    "difference,\nown kernel",
    "difference, spatial\nkernel (scale shared)",
    "own kernel",
    "spatial kernel\n(scale shared)",
    "own-kernel\ndifference / sigma",
    "spatial-kernel diff.\n/ sigma (shared)",
]


def statusColour(cand: SpatialCellCandidate) -> str:
    """Outline colour of a candidate's panels: green GOOD, red BAD, gold UNKNOWN."""
    return {GOOD: "green", BAD: "red"}.get(cand.getStatus(), "gold")


def sortedCandidates(cellSet: SpatialCellSet, showBad: bool) -> list[KernelCandidate]:
    """Return the kernel candidates to draw: BAD, UNKNOWN, GOOD, each by decreasing rating."""
    cands = [
        c
        for c in cellSet.allCandidates()
        if isinstance(c, KernelCandidate) and (showBad or c.getStatus() != BAD)
    ]
    return sorted(cands, key=lambda c: (_STATUS_ORDER[c.getStatus()], -c.getCandidateRating(), c.getId()))


def _hasFit(cand: KernelCandidate) -> bool:
    try:
        cand.getKernelSolution(CandidateSwitch.ORIG)
    except KernelSolutionError:
        return False
    return True


def _label(cand: KernelCandidate) -> str:
    chi2 = cand.getChi2()
    chi2Text = f"{chi2:.2f}" if chi2 < 1e30 else "-"
    return (
        f"#{cand.getId()} {cand.getStatus().name}\n({cand.getXCenter():.0f}, {cand.getYCenter():.0f})\n"
        f"rating {cand.getCandidateRating():.3g}\nchi2 {chi2Text}"
    )


def displayKernelCandidates(
    info: lsstDebug.Info,
    log: LsstLoggers | None,
    cellSet: SpatialCellSet,
    kernel: LinearCombinationKernel,
    background: Function2,
    showBad: bool,
) -> list[Path | None]:
    """Draw the paged candidate mosaics; return the PNG paths written."""
    cands = sortedCandidates(cellSet, showBad)
    if not cands:
        if log is not None:
            log.info("displayCandidates: no candidates to draw")
        return []
    perPage = int(debugNumber(info, "candidatesPerPage", 20))
    maxPages = int(debugNumber(info, "maxCandidatePages", 0))
    allPages = pages(cands, perPage, maxPages)
    nPages = len(pages(cands, perPage))
    counts = {s: sum(1 for c in cands if c.getStatus() == s) for s in _STATUS_ORDER}
    countText = ", ".join(f"{n} {s.name}" for s, n in counts.items() if n)
    if log is not None:
        log.info(
            "displayCandidates: %d candidates (%s) on %d pages of %d (candidatesPerPage); drawing %d "
            "(maxCandidatePages)",
            len(cands),
            countText,
            nPages,
            perPage,
            len(allPages),
        )
    written = []
    for p, onPage in enumerate(allPages, start=1):
        title = (
            f"Kernel candidates, page {p}/{nPages}: {len(cands)} candidates ({countText}), "
            "BAD first, then by rating\nstamps and differences in counts, residuals in sigma; "
            "outline green GOOD, gold UNKNOWN, red BAD"
        )
        mosaic = _page(list(onPage), kernel, background)
        written.append(finishPicture(mosaic.picture(title), f"candidates_p{p:03d}", info, log, title))
    return written


def _page(
    cands: list[KernelCandidate], kernel: LinearCombinationKernel, background: Function2
) -> StampMosaic:
    mosaic = StampMosaic(len(cands), _COLUMNS, {1, 3, 5, 7})
    kh, kw = kernel.getHeight(), kernel.getWidth()
    for i, cand in enumerate(cands):
        mosaic.setRowLabel(i, _label(cand), statusColour(cand))
        x, y = cand.getXCenter(), cand.getYCenter()
        sci = cand.getScienceMaskedImage().image.array
        tmpl = cand.getTemplateMaskedImage().image.array
        lo, hi = imageLimits(np.concatenate([sci.ravel(), tmpl.ravel()]))
        mosaic.setStamp(i, 0, sci, "gray", lo, hi)
        mosaic.setStamp(i, 1, tmpl, "gray", lo, hi)
        mosaic.setColourbar(i, 1, "gray", lo, hi, "counts")
        if cand.getStatus() == BAD:
            reason = cand.getRejectionReason() or "no reason recorded"
            mosaic.setText(i, 0, "\n".join(textwrap.wrap(reason, 27)), "bottom", "darkred")
        spatialK = FixedKernel(kernel.getArray(x, y))
        diffs = {1: cand.getDifferenceImage(spatialK, float(background(x, y)))}
        kernels = {1: spatialK.getArray()}
        if _hasFit(cand):
            diffs[0] = cand.getDifferenceImage(CandidateSwitch.ORIG)
            kernels[0] = cand.getKernelImage(CandidateSwitch.ORIG)
        else:
            for col in (2, 4, 6):
                mosaic.setText(i, col, "no kernel fit", "centre", "0.3")
        dlo, dhi = imageLimits(np.concatenate([d.image.array.ravel() for d in diffs.values()]), True)
        klim = max(float(np.abs(k).max()) for k in kernels.values()) or 1.0
        ys = slice(kh // 2, sci.shape[0] - (kh - 1 - kh // 2))
        xs = slice(kw // 2, sci.shape[1] - (kw - 1 - kw // 2))
        for which, diff in diffs.items():
            mosaic.setStamp(i, 2 + which, diff.image.array, "RdBu_r", dlo, dhi)
            mosaic.setStamp(i, 4 + which, kernels[which], "RdBu_r", -klim, klim)
            with np.errstate(divide="ignore", invalid="ignore"):
                norm = (diff.image.array / np.sqrt(diff.variance.array))[ys, xs]
            mosaic.setStamp(i, 6 + which, norm, "RdBu_r", -_SIGMA_LIMIT, _SIGMA_LIMIT)
            finite = norm[np.isfinite(norm)]
            if finite.size:
                mosaic.setText(i, 6 + which, f"rms {np.std(finite):.2f}", "bottom")
        mosaic.setColourbar(i, 3, "RdBu_r", dlo, dhi, "counts")
        mosaic.setColourbar(i, 5, "RdBu_r", -klim, klim, "kernel")
        mosaic.setColourbar(i, 7, "RdBu_r", -_SIGMA_LIMIT, _SIGMA_LIMIT, "sigma")
    return mosaic
