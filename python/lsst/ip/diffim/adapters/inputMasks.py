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
"""The mask plane of an input image: user bad pixels, saturation, missing data.

Inputs that come as arrays or plain FITS files carry their pixel quality in
several ways: a MASK/DQ extension or ``CCDData.mask`` (non-zero = bad), a
saturation level (``SATURATE``/``SATLEVEL``/``DATAMAX`` header cards or a
user-given level) and NaN/inf pixels.  `makeInputMask` turns them into the
``BAD``, ``SAT`` and ``NO_DATA`` planes the kernel fit and the difference
mask use, as the ISR of the stack does for camera data.
"""

from __future__ import annotations

__all__ = [
    "SATURATION_KEYWORDS",
    "headerSaturation",
    "makeInputImage",
    "makeInputMask",
    "parseUnit",
    "saturatedPixels",
]

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Unpack

import astropy.units as u
import numpy as np
from scipy import ndimage

from lsst.images import Box, Mask

from ..math.masks import makeDifferenceMaskSchema, requireMaskPlane
from .noiseModel import usablePixels

if TYPE_CHECKING:
    from astropy.wcs import WCS

    from lsst.images import MaskedImage

    from .exposures import VisitImageOptions

#: Header cards giving the saturation level, in order of preference.
SATURATION_KEYWORDS = ("SATURATE", "SATLEVEL", "DATAMAX")


def headerSaturation(header: Mapping[str, Any] | None) -> float | None:
    """Return the saturation level of a FITS header, or `None`.

    The first of `SATURATION_KEYWORDS` holding a finite positive number wins.
    """
    for key in SATURATION_KEYWORDS:
        value: Any = header.get(key) if header is not None else None
        try:
            level = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(level) and level > 0:
            return level
    return None


def saturatedPixels(image: np.ndarray, level: float | None, grow: int = 1) -> np.ndarray | None:
    """Pixels at or above ``level``, grown by ``grow`` pixels (`None` if no level).

    The growth (one pixel by default, as the stack's ISR grows saturated
    footprints) also flags the neighbours of a clipped core, whose values are
    affected by charge overflow.
    """
    if level is None:
        return None
    if not math.isfinite(level):
        raise ValueError(f"Saturation level must be finite, not {level}.")
    with np.errstate(invalid="ignore"):
        sat = np.asarray(image) >= level
    if grow > 0 and sat.any():
        sat = ndimage.binary_dilation(sat, structure=np.ones((3, 3), bool), iterations=grow)
    return sat


def makeInputMask(
    image: np.ndarray,
    *,
    variance: np.ndarray | None = None,
    badPixels: np.ndarray | None = None,
    saturation: float | None = None,
    saturationGrow: int = 1,
    bbox: Box | None = None,
) -> Mask:
    """Return the mask of an input image (difference-image schema).

    Parameters
    ----------
    image : `numpy.ndarray`
        The image plane.
    variance : `numpy.ndarray`, optional
        The variance plane; its non-finite pixels are NO_DATA too.
    badPixels : `numpy.ndarray`, optional
        A user mask: non-zero (or `True`) pixels are set BAD.
    saturation : `float`, optional
        Saturation level; pixels at or above it (grown by ``saturationGrow``
        pixels) are SAT.
    saturationGrow : `int`, optional
        Growth of the saturated pixels (1, as the stack's ISR; more to cover
        the non-linear halo of saturated stars).
    bbox : `lsst.images.Box`, optional
        Box of the mask (default: the image's shape at the origin).

    Raises
    ------
    ValueError
        If ``badPixels`` does not have the image's shape.
    """
    schema = makeDifferenceMaskSchema()
    bbox = Box.from_shape(image.shape) if bbox is None else bbox
    # np.zeros, not Mask(0, ...)'s np.full: the pages of a mask no pixel is set in stay unallocated.
    mask = Mask(np.zeros(bbox.shape + (schema.mask_size,), dtype=schema.dtype), schema=schema, bbox=bbox)
    if badPixels is not None:
        badPixels = np.asarray(badPixels)
        if badPixels.shape != image.shape:
            raise ValueError(f"Mask shape {badPixels.shape} differs from image shape {image.shape}.")
        mask.set(requireMaskPlane(schema, "BAD"), badPixels != 0)
    sat = saturatedPixels(image, saturation, grow=saturationGrow)
    if sat is not None:
        mask.set(requireMaskPlane(schema, "SAT"), sat)
    noData = ~usablePixels(image)  # NaN/inf and fill values such as 1e32
    if variance is not None:
        noData |= ~np.isfinite(variance)
    if noData.any():
        mask.set(requireMaskPlane(schema, "NO_DATA"), noData)
    return mask


def parseUnit(value: str | u.UnitBase | None, default: u.UnitBase = u.adu) -> u.UnitBase:
    """Return the unit of a ``BUNIT`` card (or an astropy unit), ``default`` if absent or unknown."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, u.UnitBase):
        return value
    unit = u.Unit(str(value).strip(), format="fits", parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit):
        unit = u.Unit(str(value).strip(), parse_strict="silent")
    return default if isinstance(unit, u.UnrecognizedUnit) else unit


def makeInputImage(
    image: np.ndarray,
    variance: np.ndarray,
    mask: Mask,
    *,
    wcs: WCS | None = None,
    unit: u.UnitBase = u.adu,
    **kwargs: Unpack[VisitImageOptions],
) -> MaskedImage:
    """Return an input image with exactly the astrometry it came with.

    With a celestial WCS this is an `lsst.images.VisitImage` (see
    `lsst.ip.diffim.adapters.exposures.makeVisitImage`, which takes the
    other keywords); without one it is an `lsst.images.MaskedImage` with no
    sky projection, so that no WCS is invented for it and none reaches the
    outputs.
    """
    if wcs is not None:
        from .exposures import makeVisitImage

        return makeVisitImage(image, variance, mask, wcs=wcs, unit=unit, **kwargs)
    from lsst.images import Image, MaskedImage

    bbox = mask.bbox
    return MaskedImage(
        Image(np.asarray(image, dtype=np.float32), bbox=bbox, unit=unit),
        mask=mask,
        variance=Image(np.asarray(variance, dtype=np.float32), bbox=bbox, unit=unit**2),
    )
