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
"""Reading FITS files into `lsst.images` objects."""

from __future__ import annotations

__all__ = ["FitsReadError", "readLegacyMaskedImage"]

import os

import numpy as np
from astropy.io import fits

from lsst.images import Box, Image, Mask, MaskedImage

from ..math.masks import makeDifferenceMaskSchema, resolveMaskPlane


class FitsReadError(OSError):
    """A FITS file is missing, unreadable, or lacks the expected content."""


def readLegacyMaskedImage(path: str | os.PathLike, resetXY0: bool = False) -> MaskedImage:
    """Read an afw ``MaskedImage`` FITS file (image, mask, variance HDUs).

    Parameters
    ----------
    path : `str` or path-like
        The file.
    resetXY0 : `bool`, optional
        Place the image at (0, 0) instead of the stored ``xy0``.

    Returns
    -------
    maskedImage : `lsst.images.MaskedImage`
        With the mask planes (``MP_<NAME>`` header cards) mapped onto the
        difference-image schema.

    Raises
    ------
    FitsReadError
        If the file is missing or does not hold three image HDUs.
    """
    if not os.path.exists(path):
        raise FitsReadError(f"No such file: {path}")
    try:
        with fits.open(path) as hdul:
            if len(hdul) < 4:
                raise FitsReadError(f"{path}: expected image, mask and variance HDUs; found {len(hdul) - 1}.")
            image = np.asarray(hdul[1].data, dtype=np.float32)
            maskData = np.asarray(hdul[2].data).astype(np.int64) & 0xFFFF
            variance = np.asarray(hdul[3].data, dtype=np.float32)
            header = hdul[1].header
            maskHeader = hdul[2].header
    except OSError as exc:
        if isinstance(exc, FitsReadError):
            raise
        raise FitsReadError(f"Unable to read {path}: {exc}") from exc
    x0 = 0 if resetXY0 else int(header.get("CRVAL1A", 0))
    y0 = 0 if resetXY0 else int(header.get("CRVAL2A", 0))
    bbox = Box.from_shape(image.shape, start=(y0, x0))
    schema = makeDifferenceMaskSchema()
    mask = Mask(0, schema=schema, bbox=bbox)
    for key, value in maskHeader.items():
        if not key.startswith("MP_"):
            continue
        plane = resolveMaskPlane(schema, key[3:])
        if plane is not None:
            mask.set(plane, (maskData >> int(value)) & 1)
    return MaskedImage(Image(image, bbox=bbox), mask=mask, variance=Image(variance, bbox=bbox))
