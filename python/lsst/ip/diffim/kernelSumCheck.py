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
"""The fitted kernel sum against the photometric scaling of the stars of the pair.

The sum of a PSF-matching kernel is the flux ratio of the two images.  On
a field with many stars the fit finds it; with one to five (an alert
cutout), one variable star or one poorly fitted stamp can carry it to a
wrong value (0.10-4.07 on the ZTF cutouts, where the stars say 0.9-1.1).
`photometricScaling` measures the ratio directly, by aperture photometry
of the bright stars in both images, and `checkKernelSum` compares: a
disagreement beyond ``tolerance`` is a warning on a well-populated fit
and an error (`KernelSumMismatchError`) when fewer than ``minCandidates``
candidates carried it or it exceeds ``maxTolerance``, so that a wrong
difference is never written silently.  When no star can be measured in
both images, the sum is refused if the kernel candidates are no star of
the convolved image (the fit matched noise: 0.025 and 0.13 on two ZTF
cutouts whose science image, convolved, shows only the transient), or if
the ratio of the candidates' summed fluxes disagrees with it.
"""

from __future__ import annotations

__all__ = [
    "MAX_CANDIDATE_STARS",
    "MIN_CANDIDATE_STARS",
    "KernelSumMismatchError",
    "checkFitKernelSum",
    "checkKernelSum",
    "photometricScaling",
]

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

import lsst.pipe.base as pipeBase

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from lsst.utils.logging import LsstLogAdapter

    from .imageTypes import MaskedImageLike

_LOG = logging.getLogger(__name__)


class KernelSumMismatchError(pipeBase.AlgorithmError):
    """The kernel sum of a fit on few candidates disagrees with the stars' flux ratio.

    Parameters
    ----------
    message : `str`
        What was found and what to do.
    kernelSum, expected : `float`
        The fitted sum and the photometric scaling.
    nCandidates : `int`
        Candidates used by the fit.
    """

    def __init__(self, message: str, kernelSum: float, expected: float, nCandidates: int) -> None:
        super().__init__(message)
        self.kernelSum = float(kernelSum)
        self.expected = float(expected)
        self.nCandidates = int(nCandidates)

    @property
    def metadata(self) -> dict[str, float]:
        """Return the check's figures under their task-metadata names."""
        return {"kernelSum": self.kernelSum, "photometricScaling": self.expected, "nUsed": self.nCandidates}


def _usable(mi: MaskedImageLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The planes as they are (float32 views, no float64 copies: at 4096^2 those set the run's peak).
    image = np.asarray(mi.image.array)
    image = image if image.dtype in (np.float32, np.float64) else image.astype(np.float32)
    variance = np.asarray(mi.variance.array, dtype=image.dtype)
    from .math.masks import anyMaskPlaneSet
    from .math.usablePixels import finiteWithPositiveVariance

    good = finiteWithPositiveVariance(image, variance)
    good &= np.abs(image) < 1e30

    flagged = anyMaskPlaneSet(mi.mask, ["SAT", "NO_DATA", "BAD", "STREAK", "EDGE"])
    if flagged is not None:
        good &= ~flagged
    return image, variance, good


#: Fewest kernel candidates measured at ``minSnr`` in both images for their median ratio to be the
#: photometric scaling (`photometricScaling` with ``candidates``); with fewer the stars are detected.
MIN_CANDIDATE_STARS = 100

#: Most kernel candidates measured (evenly spread over the list): the median of 1000 ratios is within
#: 0.2% of that of all 5000 candidates of the 4096^2 bench pair, at a fifth of the cost.
MAX_CANDIDATE_STARS = 1000


def photometricScaling(
    convolved: MaskedImageLike,
    target: MaskedImageLike,
    fwhm: float,
    *,
    minSnr: float = 20.0,
    candidates: tuple[ArrayLike, ArrayLike] | None = None,
) -> tuple[float, int]:
    """Return the median flux ratio ``target / convolved`` of the bright stars of a pair.

    Stars are detected (10 sigma) on either image; each is measured in
    both images in a circle of radius ``2 * fwhm`` around the same centre,
    on the local background of each image (annulus ``3-5 fwhm``).  Stars
    below ``minSnr`` in either image, or with a flagged pixel (SAT,
    NO_DATA, BAD, STREAK, EDGE) in their aperture, are skipped.

    With ``candidates`` (the kernel fit's stars) these are measured first,
    the same way; when at least `MIN_CANDIDATE_STARS` of them pass, their
    median is the scaling and no detection is run (a 10-sigma detection with
    deblending of both images took 5 s of a 4096^2 run; the medians agree
    within 0.2% there and 0.5-0.7% on a crowded bulge pair).  A sparse
    field (an alert cutout) has fewer and is detected as before, so that
    the stars too faint or too near an edge to be candidates count too.

    Parameters
    ----------
    convolved, target : `lsst.images.MaskedImage`
        The image the kernel convolves and the one it matches (one grid).
    fwhm : `float`
        The larger PSF FWHM (pixels).
    minSnr : `float`, optional
        Smallest aperture signal-to-noise in both images.
    candidates : `tuple` [`numpy.ndarray`, `numpy.ndarray`], optional
        Parent-pixel ``x``, ``y`` of the kernel candidates (at most
        `MAX_CANDIDATE_STARS` of them, evenly spread over the list, are
        measured).

    Returns
    -------
    scaling : `float`
        Median ratio (NaN without a usable star).
    nStars : `int`
        Stars measured.
    """
    import sep

    cImage, cVar, cGood = _usable(convolved)
    tImage, tVar, tGood = _usable(target)
    if cImage.shape != tImage.shape or cGood.sum() < 100 or not math.isfinite(fwhm) or fwhm <= 0:
        return math.nan, 0
    good = cGood & tGood
    if candidates is not None:
        cx, cy = (np.asarray(p, dtype=np.float64).ravel() for p in candidates)
        if cx.size >= MIN_CANDIDATE_STARS:
            if cx.size > MAX_CANDIDATE_STARS:
                pick = np.unique(np.linspace(0, cx.size - 1, MAX_CANDIDATE_STARS).round().astype(int))
                cx, cy = cx[pick], cy[pick]
            x0, y0 = convolved.bbox.x.start, convolved.bbox.y.start
            measured = _medianRatio((cImage, cVar), (tImage, tVar), good, cx - x0, cy - y0, fwhm, minSnr)
            if measured[1] >= MIN_CANDIDATE_STARS:
                return measured
    xs, ys = [], []
    for image, variance, usable in ((cImage, cVar, cGood), (tImage, tVar, tGood)):
        data = np.ascontiguousarray(np.where(usable, image, image.dtype.type(np.median(image[usable]))))
        box = max(8, min(64, min(data.shape) // 2))
        try:
            background = sep.Background(data, mask=~usable, bw=box, bh=box)
            background.subfrom(data)
            err = np.sqrt(np.where(usable, variance, variance.dtype.type(1e30)))
            objects = sep.extract(data, 10.0, err=err, mask=~usable, minarea=5)
            del data, err
        except Exception as exc:  # sep raises plain Exceptions
            _LOG.info("No photometric scaling (%s).", exc)
            return math.nan, 0
        xs.append(np.asarray(objects["x"], dtype=float))
        ys.append(np.asarray(objects["y"], dtype=float))
    # Stars of either image (a source in one image only, a transient, is measured too: the median
    # of the ratios keeps it from carrying the result when the others agree).
    x, y = np.concatenate(xs), np.concatenate(ys)
    if x.size == 0:
        return math.nan, 0
    from .math.closePositions import firstOfCloseGroups

    unique = firstOfCloseGroups(x, y, fwhm)
    return _medianRatio((cImage, cVar), (tImage, tVar), good, x[unique], y[unique], fwhm, minSnr)


def _medianRatio(
    convolved: tuple[np.ndarray, np.ndarray],
    target: tuple[np.ndarray, np.ndarray],
    good: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fwhm: float,
    minSnr: float,
) -> tuple[float, int]:
    """Return the median ratio of the stars at ``(x, y)`` (array pixels) and their number.

    As `photometricScaling` measures them, in both images' ``(image, variance)`` planes.
    """
    import sep

    from .math.apertureMask import maskedOverlap

    radius = 2.0 * fwhm
    ny, nx = good.shape
    inside = (x > radius) & (x < nx - 1 - radius) & (y > radius) & (y < ny - 1 - radius)
    x, y = np.ascontiguousarray(x[inside]), np.ascontiguousarray(y[inside])
    if x.size == 0:
        return math.nan, 0
    bad = ~good
    fluxes, snrs = [], []
    try:
        for image, variance in (convolved, target):
            # The unusable pixels are masked: the sums and the annuli skip them (no cleaned copies).
            flux, fluxErr, flag = sep.sum_circle(
                np.ascontiguousarray(image), x, y, radius, var=np.ascontiguousarray(variance), mask=bad,
                bkgann=(3.0 * fwhm, 5.0 * fwhm),
            )  # fmt: skip
            fluxes.append(flux)
            snrs.append(np.where(fluxErr > 0, flux / np.maximum(fluxErr, 1e-30), 0.0))
        badPixels = maskedOverlap(bad, x, y, radius, flag)
    except Exception as exc:  # sep raises ValueError for annuli without valid pixels, and others
        _LOG.info("No photometric scaling (%s).", exc)
        return math.nan, 0
    keep = (snrs[0] >= minSnr) & (snrs[1] >= minSnr) & (badPixels == 0) & (fluxes[0] > 0)
    if not keep.any():
        return math.nan, 0
    ratios = fluxes[1][keep] / fluxes[0][keep]
    return float(np.median(ratios)), int(keep.sum())


def _candidateFluxSums(
    convolved: MaskedImageLike,
    target: MaskedImageLike,
    fwhm: float,
    positions: tuple[ArrayLike, ArrayLike] | None,
) -> tuple[float, float, float, float, int] | None:
    """Return the summed aperture fluxes (``2 fwhm``) of the candidates measured in both images.

    Returns ``(sumConvolved, errConvolved, sumTarget, errTarget, nMeasured)``,
    or `None` without positions.
    """
    if positions is None:
        return None
    from .apertureFluxes import candidateFluxes

    x, y = (np.asarray(p, dtype=np.float64) for p in positions)
    if x.size == 0:
        return None
    x0, y0 = convolved.bbox.x.start, convolved.bbox.y.start
    fC, eC = candidateFluxes(convolved, x - x0, y - y0, 2.0 * fwhm)
    fT, eT = candidateFluxes(target, x - x0, y - y0, 2.0 * fwhm)
    both = np.isfinite(fC) & np.isfinite(fT)
    return (
        float(np.sum(fC[both])),
        float(np.sqrt(np.sum(eC[both] ** 2))),
        float(np.sum(fT[both])),
        float(np.sqrt(np.sum(eT[both] ** 2))),
        int(np.count_nonzero(both)),
    )


def _unconstrainedSum(
    kernelSum: float,
    convolved: MaskedImageLike,
    target: MaskedImageLike,
    fwhm: float,
    positions: tuple[ArrayLike, ArrayLike] | None,
    minSnr: float,
    which: str,
    tolerance: float,
) -> KernelSumMismatchError | None:
    """Return the error for a kernel sum its own candidates do not support, or `None`.

    Used when no star can be measured in both images at the scaling's
    signal-to-noise.  The used candidates are measured in both images
    (apertures of ``2 fwhm``): when their summed flux in the convolved image
    is below ``minSnr``, the fit matched noise to the other image's stars
    (least squares then shrinks the kernel towards 0); otherwise the ratio
    of their summed fluxes must agree with the sum within ``tolerance`` or
    3 sigma.
    """
    sums = _candidateFluxSums(convolved, target, fwhm, positions)
    if sums is None:
        return None
    sumC, errC, sumT, errT, _ = sums
    nCandidates = int(np.size(positions[0])) if positions is not None else 0
    snr = sumC / errC if errC > 0 else -math.inf
    if snr < minSnr:
        snrText = f"{snr:.1f}" if math.isfinite(snr) else "none measurable"
        return KernelSumMismatchError(
            f"kernel sum {kernelSum:.4g} is unconstrained: no star is measured in both images, and the "
            f"{nCandidates} kernel candidate(s) are no star of the convolved ({which}) image (aperture S/N "
            f"{snrText}, {minSnr:g} needed), so the kernel was fitted to noise; convolve the other "
            "image (--convolve), or give a stamp list (--stamps) of stars seen in both images",
            kernelSum,
            math.nan,
            nCandidates,
        )
    ratio = sumT / sumC
    ratioErr = math.hypot(errT, ratio * errC) / sumC
    if abs(kernelSum - ratio) <= max(tolerance * abs(ratio), 3.0 * ratioErr):
        return None
    return KernelSumMismatchError(
        f"kernel sum {kernelSum:.4g} disagrees with the flux ratio {ratio:.3g} +/- {ratioErr:.2g} of its "
        f"{nCandidates} kernel candidate(s) (no star is bright enough in both images for the photometric "
        "scaling): a variable source or a blended stamp carries it; exclude the variable source "
        "(--exclude / exclude=), or give a stamp list (--stamps) of stars seen in both images",
        kernelSum,
        ratio,
        nCandidates,
    )


def _stampCause(
    kernelSum: float,
    scaling: float,
    convolved: MaskedImageLike,
    target: MaskedImageLike,
    fwhm: float,
    positions: tuple[ArrayLike, ArrayLike] | None,
    tolerance: float,
) -> str | None:
    """Return why the candidates' stamps carry a wrong sum when the candidates themselves are constant.

    The used candidates are measured in both images (apertures of ``2 fwhm``); when the ratio of
    their summed fluxes agrees with ``scaling`` but not with ``kernelSum``, the stars are not
    variable: light of one image only around them in their stamps (an extended feature or
    artifact, a neighbour, the wings of an excluded source) pulled the fit.
    """
    sums = _candidateFluxSums(convolved, target, fwhm, positions)
    if sums is None:
        return None
    sumC, _, sumT, _, nBoth = sums
    if nBoth == 0 or sumC <= 0:
        return None
    ratio = sumT / sumC
    if abs(ratio / scaling - 1.0) > tolerance or abs(kernelSum / ratio - 1.0) <= tolerance:
        return None
    return (
        f"; the kernel candidates themselves are constant (their flux ratio {ratio:.3g} agrees with the "
        "stars'), so light of one image only in their stamps pulled the fit: an extended feature or "
        "artifact (a ghost, scattered light, a diffuse or bogus transient), a neighbour, or the wings of "
        "an excluded source, which the fitted background does not follow; give a stamp list (--stamps) "
        "of stars clear of it or widen the excluded circle over it (--exclude-radius); if no star is "
        "clear of it, no kernel fitted on this pair is right"
    )


def checkKernelSum(
    kernelSum: float,
    convolved: MaskedImageLike,
    target: MaskedImageLike,
    fwhm: float,
    nUsed: int,
    *,
    tolerance: float = 0.25,
    minCandidates: int = 5,
    maxTolerance: float = 0.5,
    positions: tuple[ArrayLike, ArrayLike] | None = None,
    minCandidateSnr: float = 10.0,
    convolvedName: str = "convolved",
    log: logging.Logger | LsstLogAdapter | None = None,
) -> float:
    """Compare a fitted kernel sum with the photometric scaling of the pair's stars.

    Parameters
    ----------
    kernelSum : `float`
        The fitted kernel sum.
    convolved, target : `lsst.images.MaskedImage`
        The image the kernel convolves and the one it matches.
    fwhm : `float`
        The larger PSF FWHM (pixels).
    nUsed : `int`
        Candidates used by the fit.
    tolerance : `float`, optional
        Largest accepted ``|kernelSum / scaling - 1|``.
    minCandidates : `int`, optional
        Below this many candidates a disagreement is an error, above it a
        warning (up to ``maxTolerance``).
    maxTolerance : `float`, optional
        A disagreement beyond this is an error whatever the number of
        candidates.
    positions : `tuple` [`numpy.ndarray`, `numpy.ndarray`], optional
        Parent-pixel ``x``, ``y`` of the candidates used: the stars of the
        photometric scaling when enough of them are measured
        (`photometricScaling`, ``candidates``).  When no star can
        be measured in both images, the sum is refused unless the candidates
        reach ``minCandidateSnr`` (summed) in the convolved image and the
        ratio of their summed fluxes agrees with it (``tolerance`` or 3 sigma).
    minCandidateSnr : `float`, optional
        See ``positions``.
    convolvedName : `str`, optional
        Which image was convolved (``"template"``, ``"science"``), for the message.
    log : `logging.Logger` or `lsst.utils.logging.LsstLogAdapter`, optional
        Where the warning goes.

    Returns
    -------
    scaling : `float`
        The photometric scaling (NaN if no star could be measured).

    Raises
    ------
    KernelSumMismatchError
        If fewer than ``minCandidates`` candidates gave a sum off the
        scaling by more than ``tolerance``, any number of them by more than
        ``maxTolerance``, or no measurable star constrains the sum.
    """
    log = log or _LOG
    scaling, nStars = photometricScaling(convolved, target, fwhm, candidates=positions)
    if not math.isfinite(kernelSum):
        return scaling
    if not (math.isfinite(scaling) and scaling > 0):
        error = _unconstrainedSum(
            kernelSum, convolved, target, fwhm, positions, minCandidateSnr, convolvedName, tolerance
        )
        if error is not None:
            raise error
        return scaling
    off = kernelSum / scaling - 1.0
    if abs(off) <= tolerance:
        return scaling
    message = (
        f"kernel sum {kernelSum:.4g} from {nUsed} kernel candidate(s) disagrees with the flux ratio "
        f"{scaling:.4g} of {nStars} bright star(s) measured in both images ({100 * off:+.0f}%)"
    )
    if nUsed < minCandidates or abs(off) > maxTolerance:
        cause = _stampCause(kernelSum, scaling, convolved, target, fwhm, positions, tolerance)
        raise KernelSumMismatchError(
            message
            + (": too few good stars constrain the kernel" if nUsed < minCandidates else "")
            + (
                cause
                or " (a variable source or a blended stamp carries it); exclude the variable source "
                "(--exclude / exclude=), give a stamp list, or use a smaller kernel "
                "(kernel.active.kernelSizeMin)"
            ),
            kernelSum,
            scaling,
            nUsed,
        )
    log.warning("The %s; check the candidates.", message)
    return scaling


def checkFitKernelSum(
    task: pipeBase.Task,
    result: pipeBase.Struct,
    template: MaskedImageLike,
    science: MaskedImageLike,
    convolveTemplate: bool,
    fwhm: float,
) -> float:
    """`checkKernelSum` for the result of `lsst.ip.diffim.ImagePsfMatchTask.run`.

    The scaling is recorded in the task metadata as ``photometricScaling``.

    Raises
    ------
    KernelSumMismatchError
        As `checkKernelSum`.
    """
    from .math.spatialCell import SpatialCellCandidateStatus

    used = [
        c for c in result.kernelCellSet.allCandidates() if c.getStatus() == SpatialCellCandidateStatus.GOOD
    ]
    nUsed = len(used)
    convolved, target = (template, science) if convolveTemplate else (science, template)
    positions = ([c.getXCenter() for c in used], [c.getYCenter() for c in used])
    scaling = checkKernelSum(
        float(task.metadata["spatialKernelSum"]), convolved, target, fwhm, nUsed, log=task.log,
        positions=positions, convolvedName="template" if convolveTemplate else "science",
    )  # fmt: skip
    task.metadata["photometricScaling"] = float(scaling)
    return scaling
