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
from typing import Any

import numpy as np

from lsst.images import Box

#: FWHM / sigma of a Gaussian.
SIGMA2FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


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


def _psfCenter(psf: Any) -> tuple[float, float]:
    bbox: Box = psf.bounds.bbox
    return bbox.x.center, bbox.y.center


def getPsfFwhm(psf: Any, average: bool = True, position: tuple[float, float] | None = None) -> Any:
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
    psf: Any, bbox: Box, fwhmExposureBuffer: float = 0.05, fwhmExposureGrid: int = 10
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


def estimateFwhmFromImage(maskedImage: Any, maxStars: int = 60, half: int = 10) -> float:
    """Estimate the PSF FWHM (pixels) of an image without a PSF model.

    Bright, unsaturated, isolated detections (20 sigma) are fitted with a
    circular Gaussian plus constant in ``(2 half + 1)^2`` windows; the median
    FWHM is returned.

    Raises
    ------
    ValueError
        If no usable star is found.
    """
    from ..detection import SourceDetectionTask

    task = SourceDetectionTask()
    task.config.thresholdValue = 20.0
    sources = task.run(maskedImage).sources
    if len(sources) == 0:
        raise ValueError("No stars bright enough to estimate the PSF FWHM; give the FWHM explicitly.")
    image = maskedImage.image.array
    x0, y0 = maskedImage.bbox.x.start, maskedImage.bbox.y.start
    ny, nx = image.shape
    xs = np.asarray(sources["x"]) - x0
    ys = np.asarray(sources["y"]) - y0
    ok = ~np.asarray(sources["flag_saturated"]) & ~np.asarray(sources["flag_badMask"])
    ok &= (xs > half) & (xs < nx - half - 1) & (ys > half) & (ys < ny - half - 1)
    order = np.argsort(-np.asarray(sources["flux"]))
    fwhms = []
    for k in order:
        if not ok[k]:
            continue
        d = np.hypot(xs - xs[k], ys - ys[k])
        d[k] = np.inf
        if d.min() < 2 * half:
            continue
        ix, iy = int(round(xs[k])), int(round(ys[k]))
        stamp = image[iy - half : iy + half + 1, ix - half : ix + half + 1].astype(float)
        border = np.concatenate([stamp[0], stamp[-1], stamp[:, 0], stamp[:, -1]])
        stamp = stamp - np.median(border)
        if not np.all(np.isfinite(stamp)) or stamp.sum() <= 0:
            continue
        sigma = _fitGaussianSigma(stamp)
        if sigma is not None:
            fwhms.append(SIGMA2FWHM * sigma)
        if len(fwhms) >= maxStars:
            break
    if not fwhms:
        raise ValueError("No isolated unsaturated star to estimate the PSF FWHM; give the FWHM explicitly.")
    return float(np.median(fwhms))


def _fitGaussianSigma(stamp: np.ndarray) -> float | None:
    """Return the sigma of a circular Gaussian + constant fitted to a star stamp."""
    from scipy.optimize import least_squares

    h, w = stamp.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    peak = float(stamp.max())
    if not peak > 0:
        return None

    def residual(p: np.ndarray) -> np.ndarray:
        amp, xc, yc, sig, sky = p
        model = amp * np.exp(-((xx - xc) ** 2 + (yy - yc) ** 2) / (2 * sig * sig)) + sky
        return (model - stamp).ravel()

    def jacobian(p: np.ndarray) -> np.ndarray:
        # Analytic derivatives: one model evaluation per step instead of six.
        amp, xc, yc, sig, _ = p
        dx, dy = xx - xc, yy - yc
        r2 = dx * dx + dy * dy
        g = np.exp(-r2 / (2 * sig * sig))
        ag = amp * g
        return np.stack(
            [g, ag * dx / sig**2, ag * dy / sig**2, ag * r2 / sig**3, np.ones_like(g)], axis=-1
        ).reshape(-1, 5)

    start = np.array([peak, w / 2 - 0.5, h / 2 - 0.5, 1.5, 0.0])
    try:
        fit = least_squares(
            residual, start, jac=jacobian, bounds=([0, 0, 0, 0.3, -np.inf], [np.inf, w, h, w, np.inf])
        )
    except ValueError:
        return None
    if not fit.success:
        return None
    return float(abs(fit.x[3]))
