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
"""Synthetic template/science VisitImage pairs with known PSFs, noise and sources (as makeTestImage)."""

from __future__ import annotations

__all__ = ["EllipticalGaussianPsf", "Pair", "makePair", "offSourceMask"]

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from astropy.table import Table

from lsst.images import Box, Image, VisitImage
from lsst.images.psfs import PointSpreadFunction
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars


class EllipticalGaussianPsf(PointSpreadFunction):
    """A constant axis-aligned elliptical Gaussian PSF (sigmas in pixels)."""

    def __init__(self, sigmaX: float, sigmaY: float, bounds: Box, stampSize: int = 31) -> None:
        self.sigmaX, self.sigmaY = float(sigmaX), float(sigmaY)
        self._bounds = bounds
        self._stamp = stampSize

    @property
    def bounds(self) -> Box:
        """Region over which the PSF is defined (`lsst.images.Box`)."""
        return self._bounds

    @cached_property
    def kernel_bbox(self) -> Box:
        """Box of the centred PSF image, ``stampSize`` square (`lsst.images.Box`)."""
        r = self._stamp // 2
        return Box.factory[-r : r + 1, -r : r + 1]

    def _array(self, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        r = self._stamp // 2
        c = np.arange(-r, r + 1, dtype=float)
        px = np.exp(-0.5 * ((c - dx) / self.sigmaX) ** 2)
        py = np.exp(-0.5 * ((c - dy) / self.sigmaY) ** 2)
        a = np.outer(py, px)
        return a / a.sum()

    def compute_kernel_image(self, *, x: float, y: float) -> Image:
        """Return the unit-sum PSF image centred on the origin (the same everywhere)."""
        return Image(self._array(), bbox=self.kernel_bbox)

    def compute_stellar_bbox(self, *, x: float, y: float) -> Box:
        """Return the box of the PSF image of a star at ``(x, y)``, on the nearest pixel."""
        r = self._stamp // 2
        xi, yi = math.floor(x + 0.5), math.floor(y + 0.5)
        return Box.factory[yi - r : yi + r + 1, xi - r : xi + r + 1]

    def compute_stellar_image(self, *, x: float, y: float) -> Image:
        """Return the unit-sum PSF image of a star at ``(x, y)``, with its sub-pixel offset."""
        bbox = self.compute_stellar_bbox(x=x, y=y)
        return Image(self._array(x - bbox.x.center, y - bbox.y.center), bbox=bbox)


@dataclass
class Pair:
    """A synthetic template/science pair, its source table and its truth."""

    template: VisitImage
    science: VisitImage
    sources: Table
    truth: dict


def _psfModel(sigma: tuple[float, float], shape: tuple[int, int]) -> PsfModel:
    sx, sy = sigma
    mean = math.sqrt(0.5 * (sx * sx + sy * sy))
    # PsfModel: sigma_x = s (1 + e/2), sigma_y = s (1 - e/2).
    s = 0.5 * (sx + sy)
    e = (sx - sy) / s
    # fwhm1=None: no variation with position (PsfModel's own default).
    model = PsfModel(2.0 * math.sqrt(2.0 * math.log(2.0)) * s, None, e, shape)  # type: ignore[arg-type]
    del mean
    return model


def makePair(
    templateSigma: tuple[float, float] = (2.0, 2.0),
    scienceSigma: tuple[float, float] = (2.4, 2.4),
    size: int = 256,
    nSrc: int = 40,
    templateNoise: float = 1.0,
    scienceNoise: float = 1.0,
    fluxLevel: float = 2000.0,
    fluxRange: float = 3.0,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    templateBorder: int = 0,
    seed: int = 5,
    xy0: tuple[int, int] = (0, 0),
    band: str = "g",
) -> Pair:
    """Return a template/science pair on one grid (same stars, calibrated: flux ratio 1).

    The science image carries the differential background ``c0 + c1 x + c2 y``
    (parent pixel coordinates).  The template's bbox is the science bbox
    grown by ``templateBorder``.
    """
    rng = np.random.default_rng(seed)
    border = templateBorder
    tShape = (size + 2 * border, size + 2 * border)
    margin = 20
    xs = rng.uniform(margin, size - 1 - margin, nSrc)
    ys = rng.uniform(margin, size - 1 - margin, nSrc)
    fluxes = (rng.uniform(size=nSrc) * (fluxRange - 1) + 1) * fluxLevel
    tModel = renderStars(tShape, xs + border, ys + border, fluxes, _psfModel(templateSigma, tShape))
    sShape = (size, size)
    sModel = renderStars(sShape, xs, ys, fluxes, _psfModel(scienceSigma, sShape))
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c0, c1, c2 = background
    sModel = sModel + c0 + c1 * (xx + xy0[0]) + c2 * (yy + xy0[1])
    tImage = tModel + rng.normal(size=tShape) * templateNoise
    sImage = sModel + rng.normal(size=sShape) * scienceNoise
    sBox = Box.factory[xy0[1] : xy0[1] + size, xy0[0] : xy0[0] + size]
    tBox = Box.factory[xy0[1] - border : xy0[1] + size + border, xy0[0] - border : xy0[0] + size + border]
    science = makeVisitImage(
        sImage.astype(np.float32),
        np.full(sShape, scienceNoise**2, np.float32),
        psf=EllipticalGaussianPsf(*scienceSigma, bounds=sBox),
        band=band,
        xy0=xy0,
    )
    template = makeVisitImage(
        tImage.astype(np.float32),
        np.full(tShape, templateNoise**2, np.float32),
        psf=EllipticalGaussianPsf(*templateSigma, bounds=tBox),
        band=band,
        xy0=(xy0[0] - border, xy0[1] - border),
        skyProjection=None,
        detector=science.detector,
    )
    # DETECTED where the stars are above 1 sigma (as upstream's makeTestImage runs detection).
    _setDetected(science, sModel - (sModel.min()), scienceNoise)
    _setDetected(template, tModel, templateNoise)
    sources = Table()
    sources["x"] = xs + xy0[0]
    sources["y"] = ys + xy0[1]
    sources["base_PsfFlux_instFlux"] = fluxes
    sources["base_PsfFlux_instFluxErr"] = np.full(nSrc, 20.0)
    truth = dict(xs=xs + xy0[0], ys=ys + xy0[1], fluxes=fluxes, sModel=sModel, background=background)
    return Pair(template=template, science=science, sources=sources, truth=truth)


def offSourceMask(pair: Pair, radius: float = 12.0) -> np.ndarray:
    """Return a mask, `True` on science pixels farther than ``radius`` from every star."""
    bbox = pair.science.bbox
    yy, xx = np.mgrid[bbox.y.start : bbox.y.stop, bbox.x.start : bbox.x.stop]
    ok = np.ones(xx.shape, dtype=bool)
    for x, y in zip(pair.truth["xs"], pair.truth["ys"]):
        ok &= (xx - x) ** 2 + (yy - y) ** 2 > radius**2
    return ok


def _setDetected(image: VisitImage, model: np.ndarray, noise: float) -> None:
    from lsst.ip.diffim.math.masks import resolveMaskPlane

    name = resolveMaskPlane(image.mask.schema, "DETECTED")
    assert name is not None, "the visit mask schema has a DETECTED plane"
    image.mask.set(name, model > noise)
