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
"""The PSF options of ``ipdiffim-subtract``: FWHM values, PSF images, and how the FWHM is chosen."""

from __future__ import annotations

__all__ = ["addPsfArguments", "fwhmArgument", "resolveFwhm"]

import argparse
from typing import TYPE_CHECKING

from ..fwhmValidation import InvalidFwhmError, validateFwhm

if TYPE_CHECKING:
    from lsst.images import MaskedImage


def fwhmArgument(text: str) -> float:
    """Argparse type of FWHM options: a finite positive number of pixels."""
    try:
        value = validateFwhm(float(text) if _isNumber(text) else text, "a FWHM")
    except InvalidFwhmError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert value is not None
    return value


def _isNumber(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def addPsfArguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--template-psf`` and ``--science-psf``."""
    parser.add_argument(
        "--template-psf",
        help="FITS image of the template PSF (e.g. a WebbPSF/PSFEx stamp); its FWHM (width at half "
        "maximum) is used unless --template-fwhm is given",
    )
    parser.add_argument(
        "--science-psf",
        help="FITS image of the science PSF (one for all science images); its FWHM is used unless "
        "--science-fwhm is given",
    )


def resolveFwhm(
    image: MaskedImage, explicit: float | None, headerFwhm: float | None, psfPath: str | None
) -> float:
    """Return the FWHM (pixels) of an input and give it a Gaussian PSF of that FWHM.

    The FWHM is that of `lsst.ip.diffim.fwhmValidation.resolveFwhm`: the
    explicit option; the PSF image; the header card (ignored with a warning
    if not finite and positive); the stars of the image.  The image's PSF
    becomes a circular Gaussian of that FWHM (`lsst.images` cannot store
    an image PSF), so the written products carry the PSF size used.

    Raises
    ------
    ValueError
        If the PSF image is unusable or the FWHM cannot be estimated
        (`FwhmEstimationError`), or a value is invalid (`InvalidFwhmError`).
    """
    from ..fwhmValidation import resolveFwhm as resolveImageFwhm

    fwhm = resolveImageFwhm(image, explicit, psfPath, headerFwhm, name="the FWHM option")
    if hasattr(image, "psf"):
        from lsst.images.psfs import GaussianPointSpreadFunction

        from ..adapters.fwhmEstimate import SIGMA2FWHM

        stamp = max(21, 2 * int(2.0 * fwhm) + 1)
        image.psf = GaussianPointSpreadFunction(fwhm / SIGMA2FWHM, bounds=image.bbox, stamp_size=stamp)
    return fwhm
