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
"""Checks of input images that every entry point shares (task, `subtract`, CLI).

- `checkImageArray`: an image must be a real, 2-d, non-empty numeric array;
- `checkRegistration`: a pair with a celestial WCS on one side only, or of
  different sizes without a WCS to register them, is refused (never
  silently resampled on a made-up grid);
- `flagBadVariance`: pixels whose variance is not positive and finite (and
  non-finite image pixels) are flagged ``NO_DATA`` (kept out of the kernel
  fit through ``badMaskPlanes``); more than half such variance pixels is an
  error.
"""

from __future__ import annotations

__all__ = [
    "BadVarianceError",
    "InvalidImageError",
    "MAX_BAD_VARIANCE_FRACTION",
    "MissingWcsError",
    "UnregisteredImagesError",
    "checkImageArray",
    "checkRegistration",
    "flagBadVariance",
]

import logging
from typing import TYPE_CHECKING

import numpy as np

from .math.masks import anyMaskPlaneSet, maskPlaneBitmask, resolveMaskPlane
from .math.statistics import allFinite

if TYPE_CHECKING:
    import numpy.typing as npt

    from lsst.images import Mask, MaskedImage

MAX_BAD_VARIANCE_FRACTION = 0.5
"""Largest fraction of an image whose variance may be non-positive or non-finite."""

_log = logging.getLogger("lsst.ip.diffim.inputChecks")


class MismatchedImagesError(ValueError):
    """The template and science images cannot be matched as given.

    Exported by `lsst.ip.diffim.imagePsfMatch`; defined here, with the
    checks that raise it, so that the checks need no task module.
    """


class InvalidImageError(MismatchedImagesError):
    """An input image cannot be used at all (shape, dtype, variance, registration).

    A `MismatchedImagesError` (a `ValueError`), which callers of the task
    already catch for images that cannot be matched as given.
    """


class BadVarianceError(InvalidImageError):
    """More than half of an image's variance pixels are non-positive or non-finite."""


class MissingWcsError(InvalidImageError):
    """One image of the pair has a celestial WCS and the other has none."""


class UnregisteredImagesError(InvalidImageError):
    """The images differ in size and have no WCS to register them."""


def checkImageArray(array: npt.ArrayLike, name: str) -> np.ndarray:
    """Return ``array`` as a numpy array after checking it is a usable image.

    Raises
    ------
    InvalidImageError
        If it is not 2-d, is empty, is complex, or is not numeric.
    """
    arr = np.asarray(array)
    if np.iscomplexobj(arr):
        raise InvalidImageError(f"The {name} image is complex ({arr.dtype}); give its real part explicitly.")
    if arr.dtype.kind not in "biuf":
        raise InvalidImageError(f"The {name} image has non-numeric dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise InvalidImageError(f"The {name} image must be 2-d; it has shape {arr.shape}.")
    if arr.size == 0:
        raise InvalidImageError(f"The {name} image is empty (shape {arr.shape}).")
    return arr


def checkRegistration(
    templateHasWcs: bool, templateShape: tuple[int, ...], scienceHasWcs: bool, scienceShape: tuple[int, ...]
) -> None:
    """Refuse pairs the task cannot register honestly.

    Raises
    ------
    MissingWcsError
        If exactly one of the two images has a celestial WCS.
    UnregisteredImagesError
        If neither has one and their shapes differ.
    """
    if templateHasWcs != scienceHasWcs:
        has, lacks = ("template", "science image") if templateHasWcs else ("science image", "template")
        raise MissingWcsError(
            f"The {has} has a celestial WCS and the {lacks} has none: give both images a WCS "
            "(to resample the template), or neither (pixel-aligned images of one size)."
        )
    if not templateHasWcs and tuple(templateShape) != tuple(scienceShape):
        t = "x".join(str(n) for n in templateShape[::-1])
        s = "x".join(str(n) for n in scienceShape[::-1])
        raise UnregisteredImagesError(
            f"The template ({t} px) and science image ({s} px) differ in size and have no WCS to "
            "register them; crop them to the same pixel grid or give both a WCS."
        )


def _flagNoData(mask: Mask, where: np.ndarray) -> None:
    if resolveMaskPlane(mask.schema, "NO_DATA") is None:
        raise InvalidImageError("The mask has no NO_DATA plane to flag unusable pixels in.")
    bits = maskPlaneBitmask(mask.schema, ["NO_DATA"])
    for element in np.flatnonzero(bits):
        mask.array[where, element] |= bits[element]


def flagBadVariance(
    maskedImage: MaskedImage, name: str, maxFraction: float = MAX_BAD_VARIANCE_FRACTION
) -> int:
    """Flag ``NO_DATA`` where the variance is not positive and finite; return how many.

    Pixels already flagged ``NO_DATA`` are not counted.  Non-finite image
    pixels are flagged ``NO_DATA`` too (not counted), so that no NaN of an
    input reaches a result unmasked.

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage` or `lsst.images.VisitImage`
        Its mask is updated in place.
    name : `str`
        ``"template"`` or ``"science"``, for messages.
    maxFraction : `float`, optional
        Largest tolerated fraction of such pixels.

    Raises
    ------
    BadVarianceError
        If more than ``maxFraction`` of the pixels have such a variance.
    """
    variance = maskedImage.variance.array
    with np.errstate(invalid="ignore"):
        bad = ~(variance > 0)  # NaN compares False
        bad |= ~np.isfinite(variance)
    image = maskedImage.image.array
    mask = maskedImage.mask
    if not allFinite(image):
        _flagNoData(mask, ~np.isfinite(image))  # NaN/inf pixels: never unmasked in a result
    if not bad.any():
        return 0
    flagged = anyMaskPlaneSet(mask, ["NO_DATA"])
    if flagged is not None:
        bad &= ~flagged  # already out of the fit (e.g. off the warped template)
    nBad = int(np.count_nonzero(bad))
    if nBad == 0:
        return 0
    fraction = nBad / bad.size
    if fraction > maxFraction:
        raise BadVarianceError(
            f"{fraction:.0%} of the {name} variance pixels ({nBad} of {bad.size}) are zero, negative or "
            f"not finite (at most {maxFraction:.0%} allowed); supply a valid variance plane."
        )
    _flagNoData(mask, bad)
    _log.warning(
        "%d %s pixels (%.2g%%) have a zero, negative or non-finite variance; flagged NO_DATA and "
        "left out of the kernel fit.",
        nBad,
        name,
        100 * fraction,
    )
    return nBad
