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
"""Checks of PSF FWHM arguments (finite and positive, or absent)."""

from __future__ import annotations

__all__ = ["InvalidFwhmError", "validateFwhm", "validateFwhmArguments"]

import math
from typing import Any


class InvalidFwhmError(ValueError):
    """A PSF FWHM argument is not a finite positive number of pixels.

    NaN would flip the choice of the image to convolve, 0 be ignored in some
    places and used in others, a negative value pass unnoticed, and inf
    overflow: all are refused with this error.
    """


def validateFwhm(value: Any, name: str = "fwhm", allowNone: bool = True) -> float | None:
    """Return ``value`` as a `float` if it is a finite positive FWHM.

    Parameters
    ----------
    value : `float` or `None`
        The FWHM (pixels).
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


def validateFwhmArguments(**fwhms: Any) -> None:
    """Validate several optional FWHM keyword arguments by name (`None` allowed)."""
    for name, value in fwhms.items():
        validateFwhm(value, name)
