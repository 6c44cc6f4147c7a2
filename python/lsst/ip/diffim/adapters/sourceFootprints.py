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
"""One 3-sigma isophotal detection of an image, for every step that needs its source footprints.

The streak search (`lsst.ip.diffim.adapters.streakMask`) and the off-source
background of the difference (`lsst.ip.diffim.offSourceBackground`) both
threshold the background-subtracted image at 3 times the square root of its
variance, without smoothing, and take the pixels above it (sep's
segmentation map); each did it on its own, on both images of the pair: four
detections of 4096^2 images, a fifth of a whole CLI run.  `detectFootprints`
does it once per image and returns a small, explicit result
(`SourceFootprints`) the caller hands to both (``footprints=`` of
`lsst.ip.diffim.adapters.streakMask.maskStreaks`, ``sourceMask=`` of
`lsst.ip.diffim.ImagePsfMatchTask.run`).

The detection is the one both made: bad pixels (non-finite image or
variance, variance not positive, ``NO_DATA``) filled with the median and
masked, a `sep.Background` of ``max(8, min(64, side // 4))`` pixel boxes
subtracted, objects of at least 5 pixels, no deblending (a trail stays one
object) and no cleaning.  Below 256 pixels a side the two steps' background boxes differ
(`SHARED_MIN_SIDE`); there each keeps its own detection.
"""

from __future__ import annotations

__all__ = [
    "FORK_MIN_PIXELS",
    "SHARED_MIN_SIDE",
    "SourceFootprints",
    "detectFootprints",
    "pairFootprints",
    "sharedSourceMask",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..math.skySubtraction import skySubtractedPlanes
from ..math.sourceDetection import sepExtract

if TYPE_CHECKING:
    from lsst.images import MaskedImage

    from ..math.forkedCall import ForkedCall

#: Smallest image side at which the streak search and the off-source
#: background use the same background boxes (64 pixels), so one detection
#: serves both.
SHARED_MIN_SIDE = 256

#: Fewest template pixels detected in a forked child beside the science image (`pairFootprints`):
#: at 4096^2 each detection takes about a second, at 1024^2 a twentieth of one.
FORK_MIN_PIXELS = 2048 * 2048


@dataclass(frozen=True)
class SourceFootprints:
    """The sources of one image above ``nSigma`` (`detectFootprints`)."""

    #: Label of each pixel (0 on the sky; object ``k`` of `objects` has label ``k + 1``).
    segmentation: np.ndarray
    #: sep's object table (``x``, ``y``, ``a``, ``b``, ``flux`` ...), in array coordinates.
    objects: np.ndarray
    #: Detection threshold in units of the pixel noise.
    nSigma: float

    @property
    def mask(self) -> np.ndarray:
        """Return `True` on the pixels of the sources (not grown)."""
        return self.segmentation > 0


def detectFootprints(maskedImage: MaskedImage, nSigma: float = 3.0) -> SourceFootprints | None:
    """Detect the sources of an image once (see the module documentation).

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage` or `lsst.images.VisitImage`
        The image, with its (final, rescaled) variance plane.
    nSigma : `float`, optional
        Threshold in units of the pixel noise.

    Returns
    -------
    footprints : `SourceFootprints` or `None`
        `None` when the image is smaller than `SHARED_MIN_SIDE` a side or
        has no usable pixel (each step then detects on its own, as before).
    """
    if min(maskedImage.image.array.shape) < SHARED_MIN_SIDE:
        return None
    planes = skySubtractedPlanes(maskedImage)
    if planes is None:
        return None
    # sep's pixel stack grown only as far as the image needs: one of twice the image's pixels (what
    # the two steps set) is 0.6 GB of touched memory at 4096^2, the whole run's peak.
    objects, segmentation = sepExtract(
        planes.data,
        nSigma,
        var=planes.variance,
        mask=planes.bad,
        minarea=5,
        filter_kernel=None,
        # No deblending (a trail stays one object): one threshold level instead of deblend_cont=1.0's 32
        # (the same objects and segmentation on the 4096^2 bench pair in 60% of the time), and no cleaning
        # (the isophotes as the off-source background's own detection finds them; 2.4 times faster).
        deblend_nthresh=1,
        clean=False,
        segmentation_map=True,
    )
    return SourceFootprints(segmentation=segmentation, objects=objects, nSigma=float(nSigma))


def pairFootprints(
    template: MaskedImage, science: MaskedImage, needed: bool = True, minPixels: int = FORK_MIN_PIXELS
) -> tuple[SourceFootprints | None, SourceFootprints | None]:
    """Return the footprints of the template and of the science image (`None`, `None` if not ``needed``).

    Detection failures (sep raises plain exceptions, e.g. on too many
    objects) give `None` for that image: each step then detects on its own.
    sep holds the GIL, so on images of at least ``minPixels`` pixels the
    template is detected in a forked child of the process
    (`lsst.ip.diffim.math.forkedCall`) while this process detects the
    science image: the same footprints in half the time on two cores (if
    the child fails, the template is detected here).
    """
    if not needed:
        return None, None
    forked = _forkedTemplateFootprints(template, science, minPixels)
    found: list[SourceFootprints | None] = []
    try:
        for image in (template, science) if forked is None else (science,):
            try:
                found.append(detectFootprints(image))
            except Exception:  # sep raises plain Exceptions
                found.append(None)
    except BaseException:
        if forked is not None:
            forked.close()
        raise
    if forked is not None:
        found.insert(0, _templateResult(forked, template))
    return found[0], found[1]


def _forkedTemplateFootprints(
    template: MaskedImage, science: MaskedImage, minPixels: int
) -> ForkedCall | None:
    """Start the template's detection in a forked child, or return `None` (see `pairFootprints`)."""
    from ..math.forkedCall import ForkedCall, forkAvailable

    shape = template.image.array.shape
    if template.image.array.size < minPixels or min(shape) < SHARED_MIN_SIDE or not forkAvailable():
        return None

    def detect(out: np.ndarray) -> tuple[np.ndarray, float] | None:
        footprints = detectFootprints(template)
        if footprints is None:
            return None
        out[...] = footprints.segmentation
        return footprints.objects, footprints.nSigma

    try:
        return ForkedCall(detect, shape, np.dtype(np.int32))
    except OSError:  # no fork, pipe or shared memory: detect in this process
        return None


def _templateResult(forked: ForkedCall, template: MaskedImage) -> SourceFootprints | None:
    """Return the forked detection's footprints (detected here again if the child failed)."""
    from ..math.forkedCall import ForkedCallError

    with forked:
        try:
            value, segmentation = forked.result()
        except ForkedCallError:
            value = segmentation = None
    if segmentation is not None:
        if value is None:
            return None
        objects, nSigma = value
        return SourceFootprints(segmentation=segmentation, objects=objects, nSigma=float(nSigma))
    try:
        return detectFootprints(template)
    except Exception:  # sep raises plain Exceptions
        return None


def sharedSourceMask(
    footprints: Sequence[SourceFootprints | None], template: MaskedImage, science: MaskedImage
) -> np.ndarray | None:
    """Return the union of the footprints of a pair on one grid, or `None` if they cannot be shared.

    They can when every image was detected and the template needs no
    warping onto the science grid: the same bounding box and, when both
    carry a sky projection, the same grid
    (`lsst.ip.diffim.math.warping.sameGrid`), as the task decides it.
    """
    if any(f is None for f in footprints) or template.bbox != science.bbox:
        return None
    tProjection = getattr(template, "sky_projection", None)
    sProjection = getattr(science, "sky_projection", None)
    if tProjection is not None and sProjection is not None:
        # The task warps the template only then (as `ImagePsfMatchTask` decides it).
        from ..math.warping import sameGrid

        if not sameGrid(template, science):
            return None
    union = None
    for f in footprints:
        assert f is not None
        union = f.mask if union is None else union | f.mask
    return union
