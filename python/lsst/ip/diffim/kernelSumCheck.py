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
candidates carried it, so that a wrong difference is never written
silently.
"""

from __future__ import annotations

__all__ = ["KernelSumMismatchError", "checkFitKernelSum", "checkKernelSum", "photometricScaling"]

import logging
import math
from typing import Any

import numpy as np

import lsst.pipe.base as pipeBase

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


def _usable(mi: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The planes as they are (float32 views, no float64 copies: at 4096^2 those set the run's peak).
    image = np.asarray(mi.image.array)
    image = image if image.dtype in (np.float32, np.float64) else image.astype(np.float32)
    variance = np.asarray(mi.variance.array, dtype=image.dtype)
    good = np.isfinite(image) & np.isfinite(variance) & (variance > 0) & (np.abs(image) < 1e30)
    from .math.masks import anyMaskPlaneSet

    flagged = anyMaskPlaneSet(mi.mask, ["SAT", "NO_DATA", "BAD", "STREAK", "EDGE"])
    if flagged is not None:
        good &= ~flagged
    return image, variance, good


def photometricScaling(
    convolved: Any, target: Any, fwhm: float, *, minSnr: float = 20.0
) -> tuple[float, int]:
    """Return the median flux ratio ``target / convolved`` of the bright stars of a pair.

    Stars are detected (10 sigma) on either image; each is measured in
    both images in a circle of radius ``2 * fwhm`` around the same centre,
    on the local background of each image (annulus ``3-5 fwhm``).  Stars
    below ``minSnr`` in either image, or with a flagged pixel (SAT,
    NO_DATA, BAD, STREAK, EDGE) in their aperture, are skipped.

    Parameters
    ----------
    convolved, target : `lsst.images.MaskedImage`
        The image the kernel convolves and the one it matches (one grid).
    fwhm : `float`
        The larger PSF FWHM (pixels).
    minSnr : `float`, optional
        Smallest aperture signal-to-noise in both images.

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
    x, y = x[unique], y[unique]
    radius = 2.0 * fwhm
    ny, nx = cImage.shape
    inside = (x > radius) & (x < nx - 1 - radius) & (y > radius) & (y < ny - 1 - radius)
    x, y = x[inside], y[inside]
    if x.size == 0:
        return math.nan, 0
    fluxes, snrs = [], []
    try:
        for image, variance in ((cImage, cVar), (tImage, tVar)):
            clean = np.ascontiguousarray(np.where(good, image, image.dtype.type(0)))
            var = np.ascontiguousarray(np.where(good, variance, variance.dtype.type(0)))
            flux, fluxErr, flag = sep.sum_circle(
                clean, x, y, radius, var=var, mask=~good, bkgann=(3.0 * fwhm, 5.0 * fwhm)
            )
            del clean, var
            fluxes.append(flux)
            snrs.append(np.where(fluxErr > 0, flux / np.maximum(fluxErr, 1e-30), 0.0))
        _, _, badPixels = sep.sum_circle(np.ascontiguousarray((~good).astype(np.float32)), x, y, radius)
    except Exception as exc:  # sep raises ValueError for annuli without valid pixels, and others
        _LOG.info("No photometric scaling (%s).", exc)
        return math.nan, 0
    keep = (snrs[0] >= minSnr) & (snrs[1] >= minSnr) & (badPixels == 0) & (fluxes[0] > 0)
    if not keep.any():
        return math.nan, 0
    ratios = fluxes[1][keep] / fluxes[0][keep]
    return float(np.median(ratios)), int(keep.sum())


def checkKernelSum(
    kernelSum: float,
    convolved: Any,
    target: Any,
    fwhm: float,
    nUsed: int,
    *,
    tolerance: float = 0.25,
    minCandidates: int = 5,
    log: logging.Logger | None = None,
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
        warning.
    log : `logging.Logger`, optional
        Where the warning goes.

    Returns
    -------
    scaling : `float`
        The photometric scaling (NaN if no star could be measured).

    Raises
    ------
    KernelSumMismatchError
        If fewer than ``minCandidates`` candidates gave a sum off the
        scaling by more than ``tolerance``.
    """
    log = log or _LOG
    scaling, nStars = photometricScaling(convolved, target, fwhm)
    if not (math.isfinite(scaling) and scaling > 0 and math.isfinite(kernelSum)):
        return scaling
    off = kernelSum / scaling - 1.0
    if abs(off) <= tolerance:
        return scaling
    message = (
        f"kernel sum {kernelSum:.4g} from {nUsed} kernel candidate(s) disagrees with the flux ratio "
        f"{scaling:.4g} of {nStars} bright star(s) measured in both images ({100 * off:+.0f}%)"
    )
    if nUsed < minCandidates:
        raise KernelSumMismatchError(
            message + ": too few good stars constrain the kernel (a variable source or a blended "
            "stamp carries it); exclude the variable source (--exclude / exclude=), give a stamp list, "
            "or use a smaller kernel (kernel.active.kernelSizeMin)",
            kernelSum,
            scaling,
            nUsed,
        )
    log.warning("The %s; check the candidates.", message)
    return scaling


def checkFitKernelSum(
    task: Any, result: Any, template: Any, science: Any, convolveTemplate: bool, fwhm: float
) -> float:
    """`checkKernelSum` for the result of `lsst.ip.diffim.ImagePsfMatchTask.run`.

    The scaling is recorded in the task metadata as ``photometricScaling``.

    Raises
    ------
    KernelSumMismatchError
        As `checkKernelSum`.
    """
    from .math.spatialCell import SpatialCellCandidateStatus

    nUsed = sum(
        1 for c in result.kernelCellSet.allCandidates() if c.getStatus() == SpatialCellCandidateStatus.GOOD
    )
    convolved, target = (template, science) if convolveTemplate else (science, template)
    scaling = checkKernelSum(
        float(task.metadata["spatialKernelSum"]), convolved, target, fwhm, nUsed, log=task.log
    )
    task.metadata["photometricScaling"] = float(scaling)
    return scaling
