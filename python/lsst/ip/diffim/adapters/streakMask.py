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
"""Satellite trails and other linear features of an input image (the ``STREAK`` mask plane).

A trail left by a satellite, an aircraft or a cosmic ray that grazes the
detector is in one image only: it leaves a residual in every difference.
The stack masks such features as ``STREAK`` (``MaskStreaksTask``, on the
detection mask of the difference); inputs of the command line and of
`lsst.ip.diffim.subtract` arrive without one.  `streakPixels` finds them
as detections (3 sigma, unsmoothed, undeblended) whose second moments are
long and thin: a major-axis rms of at least ``minLength`` pixels and at
least ``minElongation`` times the minor one.  In a crowded field a chain
of faint stars can look as long and thin, but it is in both images: given
the other image of the pair (`maskStreaks`), a feature is a trail only if
the other image holds less than ``maxReferenceRatio`` of its
signal-to-noise on the same pixels.
"""

from __future__ import annotations

__all__ = ["maskStreaks", "streakPixels"]

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from lsst.images import MaskedImage

    from .sourceFootprints import SourceFootprints

_LOG = logging.getLogger(__name__)


def streakPixels(
    image: np.ndarray,
    variance: np.ndarray | None = None,
    good: np.ndarray | None = None,
    *,
    threshold: float = 3.0,
    minLength: float = 5.0,
    minElongation: float = 5.0,
    grow: int = 2,
    reference: np.ndarray | None = None,
    referenceVariance: np.ndarray | None = None,
    maxReferenceRatio: float = 0.25,
    footprints: SourceFootprints | None = None,
) -> np.ndarray:
    """Return the pixels of the linear features (trails) of ``image``.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d image.
    variance : `numpy.ndarray`, optional
        Its variance (the detection threshold is per pixel); the sky noise
        measured from the image if not given.
    good : `numpy.ndarray`, optional
        Usable pixels (NaN/inf are never used).
    threshold : `float`, optional
        Detection threshold in units of the noise.
    minLength : `float`, optional
        Smallest major-axis rms (pixels) of a trail (a uniform line of
        length ``L`` has ``L / sqrt(12)``).
    minElongation : `float`, optional
        Smallest ratio of the major to the minor axis rms.
    grow : `int`, optional
        Pixels by which the trail footprints are grown (their faint edges).
    reference, referenceVariance : `numpy.ndarray`, optional
        The other image of the pair (same grid) and its variance: a
        feature whose pixels hold, in the reference, at least
        ``maxReferenceRatio`` times its signal-to-noise in ``image`` is a
        real source (a chain of stars), not a trail.
    maxReferenceRatio : `float`, optional
        See ``reference``.
    footprints : `lsst.ip.diffim.adapters.sourceFootprints.SourceFootprints`, optional
        The image's sources at ``threshold``, already detected (the same
        detection, `~lsst.ip.diffim.adapters.sourceFootprints.detectFootprints`):
        used instead of detecting again.

    Returns
    -------
    streak : `numpy.ndarray`
        Boolean array of ``image``'s shape.
    """
    import sep

    if footprints is not None and not (
        footprints.nSigma == threshold and footprints.segmentation.shape == np.shape(image)
    ):
        footprints = None  # another detection: detect here
    shared = footprints is not None
    if footprints is not None and not _trailCandidates(footprints.objects, minLength, minElongation).size:
        return np.zeros(np.shape(image), dtype=bool)  # no trail: nothing else to measure
    data = np.asarray(image, dtype=np.float64)
    usable = np.isfinite(data)
    if good is not None:
        usable &= np.asarray(good, dtype=bool)
    if variance is not None:
        usable &= np.isfinite(variance) & (np.asarray(variance) > 0)
    out = np.zeros(data.shape, dtype=bool)
    if usable.sum() < 100:
        return out
    fill = float(np.median(data[usable]))
    data = np.ascontiguousarray(np.where(usable, data, fill))
    bad = ~usable
    box = max(8, min(64, min(data.shape) // 2))
    try:
        background = sep.Background(data, mask=bad, bw=box, bh=box)
        residual = data - background.back()
        err: np.ndarray | float
        if variance is not None:
            err = np.ascontiguousarray(np.sqrt(np.where(usable, variance, np.median(variance[usable]))))
        else:
            err = float(background.globalrms)
        if shared:
            assert footprints is not None
            objects, segmentation = footprints.objects, footprints.segmentation
        else:
            objects, segmentation = sep.extract(
                residual,
                threshold,
                err=err,
                mask=bad,
                minarea=5,
                filter_kernel=None,
                deblend_nthresh=1,  # as the shared detection (sourceFootprints.detectFootprints)
                clean=False,
                segmentation_map=True,
            )
    except Exception as exc:  # sep raises plain Exceptions (e.g. too many objects in crowded fields)
        _LOG.info("Streak search skipped (%s).", exc)
        return out
    if len(objects) == 0:
        return out
    trails = _trailCandidates(objects, minLength, minElongation)
    if trails.size and reference is not None:
        trails = _absentFrom(
            trails, segmentation, residual, err, reference, referenceVariance, maxReferenceRatio
        )
    if trails.size == 0:
        return out
    out = np.isin(segmentation, trails + 1)
    if grow > 0:
        out = ndimage.binary_dilation(out, structure=np.ones((3, 3), bool), iterations=grow)
    _LOG.info(
        "Masked %d linear feature(s) (satellite or cosmic-ray trails) as STREAK: %d pixels.",
        trails.size,
        int(out.sum()),
    )
    return out


def _trailCandidates(objects: np.ndarray, minLength: float, minElongation: float) -> np.ndarray:
    """Return the indices of the objects long and thin enough to be trails."""
    a = np.asarray(objects["a"], dtype=float)
    b = np.maximum(np.asarray(objects["b"], dtype=float), 1e-3)
    return np.flatnonzero((a >= minLength) & (a >= minElongation * b))


def _absentFrom(
    trails: np.ndarray,
    segmentation: np.ndarray,
    residual: np.ndarray,
    err: np.ndarray | float,
    reference: np.ndarray,
    referenceVariance: np.ndarray | None,
    maxRatio: float,
) -> np.ndarray:
    """Keep the features whose signal-to-noise in ``reference`` is below ``maxRatio`` of theirs."""
    import sep

    ref = np.asarray(reference, dtype=np.float64)
    usable = np.isfinite(ref)
    if referenceVariance is not None:
        usable &= np.isfinite(referenceVariance) & (np.asarray(referenceVariance) > 0)
    if usable.sum() < 100:
        return trails
    ref = np.ascontiguousarray(np.where(usable, ref, np.median(ref[usable])))
    box = max(8, min(64, min(ref.shape) // 2))
    background = sep.Background(ref, mask=~usable, bw=box, bh=box)
    refResidual = ref - background.back()
    if referenceVariance is not None:
        refVariance = np.where(usable, referenceVariance, np.inf)
    else:
        refVariance = np.full(ref.shape, float(background.globalrms) ** 2)
    variance = np.broadcast_to(np.asarray(err, dtype=float) ** 2, residual.shape)
    keep = []
    for index in trails:
        pixels = segmentation == index + 1
        snr = residual[pixels].sum() / np.sqrt(variance[pixels].sum())
        refSnr = refResidual[pixels].sum() / np.sqrt(refVariance[pixels].sum())
        if not refSnr >= maxRatio * snr:
            keep.append(index)
    return np.array(keep, dtype=int)


def maskStreaks(
    template: MaskedImage,
    science: MaskedImage,
    planeName: str = "STREAK",
    footprints: tuple[SourceFootprints | None, SourceFootprints | None] = (None, None),
) -> tuple[int, int]:
    """Set the trails of each image of a pair (absent from the other) in its ``STREAK`` mask plane.

    Parameters
    ----------
    template, science : `lsst.images.MaskedImage` or `lsst.images.VisitImage`
        The pair, on one grid; their masks are updated in place.
    planeName : `str`, optional
        The mask plane set.
    footprints : `tuple`, optional
        The 3-sigma sources of the template and of the science image if
        already detected (`streakPixels`).

    Returns
    -------
    nTemplate, nScience : `int`
        The number of pixels set in each mask.
    """
    from .pairMasks import maskPairPlanes

    def pixelsOf(which: int, image: MaskedImage, other: MaskedImage) -> np.ndarray:
        return streakPixels(
            image.image.array,
            image.variance.array,
            reference=other.image.array,
            referenceVariance=other.variance.array,
            footprints=footprints[which],
        )

    return maskPairPlanes(template, science, planeName, pixelsOf)
