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
"""Kernel candidates whose flux ratio disagrees with the rest of the field: variable sources.

The sum of a PSF-matching kernel is the flux ratio of the two images, the
same for every constant star.  A variable star, or the transient an alert
cutout is centred on, has another ratio; on a field with a handful of
candidates it carries the kernel sum with it (a ZTF cutout whose central
variable faded to 0.66 of its reference flux gave a kernel sum of 0.69,
and the constant stars were rejected by the fit instead).  Upstream has no
such screen; `ImagePsfMatchTask` applies `flagVariableCandidates` to its
candidates (``doRejectVariableCandidates``, a deviation from upstream).

A candidate is *variable* when its science flux differs from the
reference ratio times its template flux both by more than ``tolerance`` of
the expected flux and by more than ``nSigma`` times the noise of that
difference.  The reference ratio is the median over the candidates measured
at ``minSnr`` in both images when there are at least ``minReference`` of
them (a field with many stars needs no further detection), and otherwise
the field's `~lsst.ip.diffim.kernelSumCheck.photometricScaling`, which also
uses the stars too faint or too close to an edge to be kernel candidates.
"""

from __future__ import annotations

__all__ = [
    "SPARSE_FIELD_CANDIDATES",
    "VARIABLE_META_KEY",
    "VariableCandidates",
    "fitExclusions",
    "flagVariableCandidates",
]

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table

from lsst.images import MaskedImage

from .apertureFluxes import candidateFluxes
from .exclusions import ExclusionRegions

if TYPE_CHECKING:
    from .math.meshBackground import MeshBackground


@dataclass(frozen=True)
class VariableCandidates:
    """What `flagVariableCandidates` found.

    Attributes
    ----------
    variable : `numpy.ndarray`
        One boolean per candidate: `True` for a variable one.
    ratios : `numpy.ndarray`
        Science-to-template aperture flux ratio of each candidate (NaN where
        not measured).
    reference : `float`
        The reference ratio (NaN if none could be measured: nothing is flagged).
    source : `str`
        Where the reference came from: ``"candidates"``, ``"field"``, ``"none"``
        (not measured), or ``"scattered"`` (most candidates disagree; none flagged).
    """

    variable: np.ndarray
    ratios: np.ndarray
    reference: float
    source: str

    def describe(self, candidates: Table) -> str:
        """Return the log line of the variable ``candidates`` (the table the flags were measured on)."""
        flagged = self.variable
        where = ", ".join(
            f"({x:.0f}, {y:.0f}) ratio {r:.3g}"
            for x, y, r in zip(candidates["x"][flagged], candidates["y"][flagged], self.ratios[flagged])
        )
        return (
            f"Dropped {int(flagged.sum())} variable kernel candidate(s) whose flux ratio disagrees with the "
            f"{self.source} ratio {self.reference:.4g}: {where}"
        )


def flagVariableCandidates(
    candidates: Table,
    template: MaskedImage,
    science: MaskedImage,
    fwhm: float,
    *,
    tolerance: float = 0.25,
    nSigma: float = 3.0,
    minSnr: float = 20.0,
    minReference: int = 5,
    maxFraction: float = 0.5,
    templateBackground: MeshBackground | None = None,
    scienceBackground: MeshBackground | None = None,
) -> VariableCandidates:
    """Flag the candidates whose science/template flux ratio disagrees with the field's.

    Parameters
    ----------
    candidates : `astropy.table.Table`
        Kernel candidates with ``x``, ``y`` in parent pixels.
    template, science : `lsst.images.MaskedImage`
        The two images, on one grid.
    fwhm : `float`
        The larger PSF FWHM in pixels; the apertures have radius ``2 * fwhm``.
    tolerance : `float`, optional
        Smallest relative flux disagreement that makes a candidate variable.
    nSigma : `float`, optional
        The disagreement must also exceed this many times its noise.
    minSnr : `float`, optional
        Signal-to-noise in both images of the candidates that set the
        reference ratio.
    minReference : `int`, optional
        Fewest such candidates for their median to be the reference; with
        fewer the field's photometric scaling is used.
    maxFraction : `float`, optional
        If more than this fraction of the measured candidates disagree, the
        ratios are scattered rather than a few variable (images that do
        not match): none is flagged (``source`` ``"scattered"``).
    templateBackground, scienceBackground : `~lsst.ip.diffim.math.meshBackground.MeshBackground`, optional
        Backgrounds already fitted to the images (the candidate detection's),
        reused by `~lsst.ip.diffim.apertureFluxes.candidateFluxes` where they
        are the ones it would fit.

    Returns
    -------
    result : `VariableCandidates`
        The flags, the ratios and the reference.
    """
    n = len(candidates)
    none = VariableCandidates(np.zeros(n, dtype=bool), np.full(n, math.nan), math.nan, "none")
    if n == 0 or not (math.isfinite(fwhm) and fwhm > 0):
        return none
    x0, y0 = template.bbox.x.start, template.bbox.y.start
    x = np.asarray(candidates["x"], dtype=np.float64) - x0
    y = np.asarray(candidates["y"], dtype=np.float64) - y0
    radius = 2.0 * fwhm
    fT, eT = candidateFluxes(template, x, y, radius, background=templateBackground)
    fS, eS = candidateFluxes(science, x, y, radius, background=scienceBackground)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(fT > 0, fS / fT, math.nan)
        bright = (fT / eT >= minSnr) & (fS / eS >= minSnr)
    bright &= np.isfinite(ratios)
    if bright.sum() >= minReference:
        reference, source = float(np.median(ratios[bright])), "candidates"
    else:
        from .kernelSumCheck import photometricScaling

        reference, _ = photometricScaling(template, science, fwhm, minSnr=minSnr)
        source = "field"
    if not (math.isfinite(reference) and reference > 0):
        return VariableCandidates(none.variable, ratios, math.nan, "none")
    residual = fS - reference * fT
    noise = np.hypot(eS, reference * eT)
    with np.errstate(invalid="ignore"):
        variable = (np.abs(residual) > nSigma * noise) & (
            np.abs(residual) > tolerance * reference * np.abs(fT)
        )
    variable &= np.isfinite(residual)
    if variable.sum() > maxFraction * np.isfinite(residual).sum():
        # Most candidates disagree: no field ratio to be variable against (unmatched images); the
        # kernel-sum check judges such a pair.
        return VariableCandidates(none.variable, ratios, reference, "scattered")
    return VariableCandidates(variable, ratios, reference, source)


#: Key of the candidate table's ``meta`` holding the variable candidates' positions.
VARIABLE_META_KEY = "variableCandidatePositions"

#: Below this many kept candidates (a sparse field, where every stamp weighs heavily and may
#: hold a variable neighbour), the variable candidates' light is also kept out of the fit.
SPARSE_FIELD_CANDIDATES = 50


def fitExclusions(exclude: ExclusionRegions | None, candidates: Table | None) -> ExclusionRegions | None:
    """Return ``exclude`` joined with the variable candidates recorded in ``candidates.meta``.

    `ImagePsfMatchTask.makeCandidateList` records the positions of the
    variable candidates it drops on a sparse field (fewer than
    `SPARSE_FIELD_CANDIDATES` kept); the kernel fit then sees them as sky
    (`~lsst.ip.diffim.exclusions.excludedForFit`), as a user's ``--exclude``,
    since the stamps of their neighbours cover them on a small cutout.
    """
    extra = None if candidates is None else getattr(candidates, "meta", {}).get(VARIABLE_META_KEY)
    if extra is None or len(extra) == 0:
        return exclude
    if exclude is None or len(exclude) == 0:
        return extra
    return ExclusionRegions(
        np.concatenate([exclude.x, extra.x]),
        np.concatenate([exclude.y, extra.y]),
        np.concatenate([exclude.radius, extra.radius]),
    )
