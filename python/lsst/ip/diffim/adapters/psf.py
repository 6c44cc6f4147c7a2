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
"""PSF widths from `lsst.images` PSF models."""

from __future__ import annotations

__all__ = ["estimateFwhmFromImage", "evaluateMeanPsfFwhm", "getPsfFwhm", "psfMoments"]

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from lsst.images import Box

from ..math.gaussian import SIGMA2FWHM
from .fwhmEstimate import estimateFwhmFromImage

if TYPE_CHECKING:
    from lsst.images.psfs import PointSpreadFunction


def psfMoments(image: np.ndarray) -> tuple[float, float, float]:
    """Return the second moments ``(Ixx, Iyy, Ixy)`` of a PSF image."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    total = float(image.sum())
    xc = float((image * xx).sum()) / total
    yc = float((image * yy).sum()) / total
    ixx = float((image * (xx - xc) ** 2).sum()) / total
    iyy = float((image * (yy - yc) ** 2).sum()) / total
    ixy = float((image * (xx - xc) * (yy - yc)).sum()) / total
    return ixx, iyy, ixy


def _psfCenter(psf: PointSpreadFunction) -> tuple[float, float]:
    bbox: Box = psf.bounds.bbox
    return bbox.x.center, bbox.y.center


def getPsfFwhm(
    psf: PointSpreadFunction, average: bool = True, position: tuple[float, float] | None = None
) -> Any:
    """Return the FWHM (pixels) of a PSF model from its second moments.

    Parameters
    ----------
    psf : `lsst.images.psfs.PointSpreadFunction`
        The PSF model.
    average : `bool`, optional
        Return ``2.3548 sqrt((Ixx + Iyy) / 2)``; otherwise the per-axis
        ``[2.3548 sqrt(Ixx), 2.3548 sqrt(Iyy)]``.
    position : `tuple` [`float`, `float`], optional
        ``(x, y)`` where the PSF is evaluated; default the centre of its
        bounds.
    """
    x, y = position if position is not None else _psfCenter(psf)
    image = np.asarray(psf.compute_kernel_image(x=x, y=y).array, dtype=float)
    ixx, iyy, _ = psfMoments(image)
    if average:
        return SIGMA2FWHM * math.sqrt(0.5 * (ixx + iyy))
    return [SIGMA2FWHM * math.sqrt(ixx), SIGMA2FWHM * math.sqrt(iyy)]


def evaluateMeanPsfFwhm(
    psf: PointSpreadFunction, bbox: Box, fwhmExposureBuffer: float = 0.05, fwhmExposureGrid: int = 10
) -> float:
    """Return the mean FWHM of a PSF model on a grid over ``bbox``.

    Raises
    ------
    ValueError
        If the PSF cannot be evaluated at any grid point.
    """
    width, height = bbox.x.max - bbox.x.min, bbox.y.max - bbox.y.min
    xs = np.linspace(
        bbox.x.min + fwhmExposureBuffer * width, bbox.x.max - fwhmExposureBuffer * width, fwhmExposureGrid
    )
    ys = np.linspace(
        bbox.y.min + fwhmExposureBuffer * height, bbox.y.max - fwhmExposureBuffer * height, fwhmExposureGrid
    )
    values = []
    for x in xs:
        for y in ys:
            try:
                values.append(getPsfFwhm(psf, True, (float(x), float(y))))
            except Exception:  # PSF models raise many types off their domain
                continue
    if not values:
        raise ValueError("Unable to evaluate the PSF anywhere on the grid.")
    return float(np.nanmean(values))
