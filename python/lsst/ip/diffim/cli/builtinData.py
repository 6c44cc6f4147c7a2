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
"""The built-in example pair shipped with the package (see data/SOURCE.md)."""

from __future__ import annotations

__all__ = ["BUILTIN_GAIN", "BUILTIN_READ_NOISE", "BUILTIN_SATURATION", "loadBuiltinPair"]

import math
from importlib.resources import as_file, files
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits

from lsst.images import Box
from lsst.images.psfs import GaussianPointSpreadFunction

from ..adapters.exposures import makeVisitImage
from ..adapters.inputMasks import headerSaturation, makeInputMask
from ..math.gaussian import SIGMA2FWHM

#: Detector gain (e-/ADU) and read noise (e-) of the SAAO STE3 frames.
BUILTIN_GAIN = 1.9
BUILTIN_READ_NOISE = 5.0
#: Saturation level (ADU) used when the header has none: the flat-fielded
#: frames clip at 65300 ADU and the detector is non-linear above about 60000.
BUILTIN_SATURATION = 60000.0

_TEMPLATE = "AKB13475I0100_aligned.fits.gz"
_SCIENCE = "AKB13475I0015_aligned.fits.gz"


def _load(name: str, visit: int) -> Any:
    resource = files("lsst.ip.diffim") / "data" / name
    with as_file(resource) as path, fits.open(path) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        fwhm = float(hdul[0].header.get("PFWHM", 5.0))
        saturation = headerSaturation(hdul[0].header) or BUILTIN_SATURATION
    variance = np.maximum(data, 0.0) / BUILTIN_GAIN + (BUILTIN_READ_NOISE / BUILTIN_GAIN) ** 2
    bbox = Box.from_shape(data.shape)
    psf = GaussianPointSpreadFunction(fwhm / SIGMA2FWHM, bounds=bbox, stamp_size=int(4 * fwhm) | 1)
    # Saturated stars are flagged out to one FWHM: their non-linear halo
    # otherwise leaves residuals around the flagged cores.
    mask = makeInputMask(data, variance=variance, saturation=saturation, saturationGrow=math.ceil(fwhm))
    return makeVisitImage(
        data,
        variance.astype(np.float32),
        mask,
        psf=psf,
        visit=visit,
        band="I",
        instrument="SAAO1m",
        unit=u.adu,
    )


def loadBuiltinPair() -> tuple[Any, Any]:
    """Return the built-in (template, science) `lsst.images.VisitImage` pair.

    The template is the best-seeing frame (FWHM 4.52 px), the science frame
    has FWHM 7.94 px; the variance comes from the gain and read noise, the
    PSFs are Gaussians of the header FWHMs, saturated pixels are masked.
    """
    return _load(_TEMPLATE, 100), _load(_SCIENCE, 15)
