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
"""Checks of PSF FWHM arguments (finite and positive, or absent), and the choice of an input's FWHM."""

from __future__ import annotations

__all__ = ["InvalidFwhmError", "resolveFwhm", "validateFwhm", "validateFwhmArguments"]

import logging
import math
import os
from typing import TYPE_CHECKING, SupportsFloat

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

    from lsst.images import MaskedImage

_LOG = logging.getLogger("lsst.ip.diffim.fwhmValidation")


class InvalidFwhmError(ValueError):
    """A PSF FWHM argument is not a finite positive number of pixels.

    NaN would flip the choice of the image to convolve, 0 be ignored in some
    places and used in others, a negative value pass unnoticed, and inf
    overflow: all are refused with this error.
    """


def validateFwhm(
    value: SupportsFloat | str | None, name: str = "fwhm", allowNone: bool = True
) -> float | None:
    """Return ``value`` as a `float` if it is a finite positive FWHM.

    Parameters
    ----------
    value : `float`, `str` or `None`
        The FWHM (pixels); anything `float` accepts.
    name : `str`, optional
        Argument name for the message.
    allowNone : `bool`, optional
        Accept `None` (meaning: not given).

    Raises
    ------
    InvalidFwhmError
        If ``value`` is not a finite number greater than 0 (or is `None`
        when ``allowNone`` is false).
    """
    if value is None:
        if allowNone:
            return None
        raise InvalidFwhmError(f"{name} is required (a finite positive FWHM in pixels)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidFwhmError(f"{name} must be a finite positive number of pixels, not {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise InvalidFwhmError(f"{name} must be a finite positive number of pixels, not {value!r}")
    return number


def validateFwhmArguments(**fwhms: SupportsFloat | str | None) -> None:
    """Validate several optional FWHM keyword arguments by name (`None` allowed)."""
    for name, value in fwhms.items():
        validateFwhm(value, name)


def resolveFwhm(
    image: MaskedImage,
    explicit: float | None,
    psf: str | os.PathLike[str] | npt.ArrayLike | None = None,
    headerFwhm: float | None = None,
    *,
    name: str = "the FWHM option",
) -> float:
    """Return the PSF FWHM (pixels) of an input image.

    The FWHM comes from, in order: the explicit value; the PSF image; the
    header card (ignored with a warning if not finite and positive); the
    stars of the image
    (`~lsst.ip.diffim.adapters.fwhmEstimate.estimateFwhmFromImage`).

    Parameters
    ----------
    image : `lsst.images.MaskedImage`
        The input image (its stars give the FWHM if nothing else does).
    explicit : `float` or `None`
        A FWHM given by the user.
    psf : `str`, `os.PathLike` or `numpy.ndarray`, optional
        A PSF image, or the path of a FITS file holding one.
    headerFwhm : `float`, optional
        The FWHM of the image's header.
    name : `str`, optional
        Name of ``explicit`` (and of the PSF, ``"<name>'s PSF"``) in messages.

    Returns
    -------
    fwhm : `float`
        A finite positive FWHM in pixels.

    Raises
    ------
    InvalidFwhmError
        If ``explicit`` or the FWHM of ``psf`` is not finite and positive.
    ValueError
        If the PSF image is unusable or the FWHM cannot be estimated
        (`~lsst.ip.diffim.adapters.fwhmEstimate.FwhmEstimationError`).
    """
    from .adapters.fwhmEstimate import estimateFwhmFromImage, psfImageFwhm, readPsfImage

    fwhm = validateFwhm(explicit, name)
    if fwhm is None and psf is not None:
        if isinstance(psf, (str, bytes, os.PathLike)):
            psfName = os.fsdecode(psf)
            array = readPsfImage(psfName)
        else:
            array, psfName = np.asarray(psf, dtype=float), f"{name}'s PSF"
        fwhm = validateFwhm(psfImageFwhm(np.asarray(array, dtype=float)), f"the FWHM of {psfName}")
    if fwhm is None and headerFwhm is not None:
        try:
            fwhm = validateFwhm(headerFwhm, "the header FWHM")
        except InvalidFwhmError as exc:
            _LOG.warning("Ignoring %s; estimating the FWHM from the image instead.", exc)
    if fwhm is None:
        fwhm = validateFwhm(estimateFwhmFromImage(image), "the estimated FWHM")
    assert fwhm is not None
    return fwhm
