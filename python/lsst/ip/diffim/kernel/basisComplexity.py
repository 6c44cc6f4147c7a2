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
"""Choose the Alard-Lupton polynomial degrees by the Bayesian information criterion.

``useBicForKernelBasis``: every combination of degrees ``1..d_i`` of the
three Gaussians (``d_i`` the configured ``alardDegGauss``) is fitted to the
candidates; for each GOOD candidate ``BIC = chi^2 + k ln(n)`` (``chi^2`` of
its difference stamp over the good region of ``n`` pixels, ``k`` basis
kernels), and the combination each candidate prefers is counted.  The most
preferred one wins, as upstream's ``NbasisEvaluator`` does.  One deviation:
non-finite pixels of a difference stamp are left out of ``chi^2`` and ``n``
(upstream's sum would be NaN and that candidate's choice arbitrary).
"""

from __future__ import annotations

__all__ = ["bicPreferredDegrees"]

import collections
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from ..math.kernels import Kernel
from ..math.spatialCell import SpatialCellCandidateStatus, SpatialCellSet
from .candidate import CandidateSwitch, KernelCandidate
from .settings import KernelFitSettings
from .visitors import CANDIDATE_ERRORS, BuildSingleKernelVisitor


def bicPreferredDegrees(
    kernelCellSet: SpatialCellSet,
    settings: KernelFitSettings,
    nStarPerCell: int,
    maxDegrees: Sequence[int],
    makeBasis: Callable[[list[int]], list[Kernel]],
) -> list[tuple[tuple[int, ...], int]]:
    """Return the degree combinations most preferred by the candidates' BIC.

    Parameters
    ----------
    kernelCellSet : `SpatialCellSet`
        A cell set of candidates used for the choice only (its candidates
        are refitted and clipped once per combination).
    settings : `KernelFitSettings`
        Kernel configuration of the fits.
    nStarPerCell : `int`
        Candidates fitted per cell.
    maxDegrees : sequence of `int`
        The configured degree of each Gaussian: combinations run from 1 to it.
    makeBasis : callable
        Returns the basis for a list of degrees.

    Returns
    -------
    preferred : `list` of `tuple`
        ``(degrees, count)`` pairs, the most preferred first (at most 3);
        empty if no candidate was GOOD under any combination.
    """
    bic: dict[int, dict[tuple[int, ...], float]] = collections.defaultdict(dict)
    for degrees in itertools.product(*(range(1, d + 1) for d in maxDegrees)):
        basis = makeBasis(list(degrees))
        visitor = BuildSingleKernelVisitor(basis, settings)
        visitor.setSkipBuilt(False)
        kernelCellSet.visitCandidates(visitor, nStarPerCell)
        for candidate in kernelCellSet.allCandidates(ignoreBad=False):
            if not isinstance(candidate, KernelCandidate):
                continue
            if candidate.getStatus() != SpatialCellCandidateStatus.GOOD:
                continue
            chi2, npix = _chi2(candidate)
            if npix > 0:
                bic[candidate.getId()][degrees] = chi2 + len(basis) * np.log(npix)
    preferred = [min(values, key=values.__getitem__) for values in bic.values() if values]
    return collections.Counter(preferred).most_common(3)


def _chi2(kc: KernelCandidate) -> tuple[float, int]:
    """``sum(diff^2 / var)`` over the good region of the latest fit's difference stamp, and its size."""
    try:
        diffim = kc.getDifferenceImage(CandidateSwitch.RECENT)
        half = kc.getKernel(CandidateSwitch.RECENT).getWidth() // 2
    except CANDIDATE_ERRORS:
        return 0.0, 0
    good = (slice(half, -half or None), slice(half, -half or None))
    image = diffim.image.array[good].astype(float)
    variance = diffim.variance.array[good].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = image * image / variance
    finite = np.isfinite(chi2)
    return float(chi2[finite].sum()), int(finite.sum())
