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
"""Synthetic template/science pairs with known truth (tests, benchmarks).

Stars have pixel-integrated elliptical Gaussian PSFs; the science PSF width
varies linearly across the field.  Noise is Gaussian with the Poisson-like
variance ``(sky + signal) / gain + readNoise^2``.
"""

from __future__ import annotations

__all__ = ["PsfModel", "SyntheticPair", "makeMisregisteredPair", "makeSyntheticPair", "renderStars"]

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

from .math.gaussian import SIGMA2FWHM


def _integratedGaussian1d(edges: np.ndarray, center: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    z = (edges - center[:, None]) / (math.sqrt(2.0) * sigma[:, None])
    cdf = 0.5 * (1.0 + erf(z))
    return np.diff(cdf, axis=1)


@dataclass
class PsfModel:
    """Elliptical Gaussian PSF whose width varies linearly with position."""

    fwhm0: float
    fwhm1: float = None  # type: ignore[assignment]
    ellipticity: float = 0.0
    size: tuple[int, int] = (512, 512)

    def sigmas(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the Gaussian widths along x and y at each position.

        The FWHM varies linearly from ``fwhm0`` at the first pixel to ``fwhm1``
        at the last (along the diagonal); the ellipticity widens x and narrows y.

        Parameters
        ----------
        x, y : `numpy.ndarray`
            Positions (pixels).

        Returns
        -------
        sigmaX, sigmaY : `numpy.ndarray`
            Widths (pixels) at each position.
        """
        ny, nx = self.size
        f1 = self.fwhm0 if self.fwhm1 is None else self.fwhm1
        frac = 0.5 * (np.asarray(x) / max(nx - 1, 1) + np.asarray(y) / max(ny - 1, 1))
        fwhm = self.fwhm0 + (f1 - self.fwhm0) * frac
        sigma = fwhm / SIGMA2FWHM
        # axis ratio (1 - e): x axis wider
        return sigma * (1.0 + self.ellipticity / 2), sigma * (1.0 - self.ellipticity / 2)

    def fwhm(self, x: float, y: float) -> float:
        """Return the FWHM (pixels) at ``(x, y)``, from the mean of the two widths' squares."""
        sx, sy = self.sigmas(np.array([x]), np.array([y]))
        return float(SIGMA2FWHM * math.sqrt(0.5 * (sx[0] ** 2 + sy[0] ** 2)))


def renderStars(
    shape: tuple[int, int], xs: np.ndarray, ys: np.ndarray, fluxes: np.ndarray, psf: PsfModel, half: int = 12
) -> np.ndarray:
    """Render pixel-integrated elliptical Gaussian stars (vectorized per star)."""
    ny, nx = shape
    image = np.zeros(shape, dtype=np.float64)
    sx, sy = psf.sigmas(xs, ys)
    ix = np.floor(xs + 0.5).astype(int)
    iy = np.floor(ys + 0.5).astype(int)
    offsets = np.arange(-half, half + 1)
    for k in range(len(xs)):
        px = ix[k] + offsets
        py = iy[k] + offsets
        gx = _integratedGaussian1d(np.append(px - 0.5, px[-1] + 0.5), xs[k : k + 1], sx[k : k + 1])[0]
        gy = _integratedGaussian1d(np.append(py - 0.5, py[-1] + 0.5), ys[k : k + 1], sy[k : k + 1])[0]
        stamp = fluxes[k] * np.outer(gy, gx)
        okx = (px >= 0) & (px < nx)
        oky = (py >= 0) & (py < ny)
        image[np.ix_(py[oky], px[okx])] += stamp[np.ix_(oky, okx)]
    return image


@dataclass
class SyntheticPair:
    """A synthetic template/science pair as arrays, with its truth (PSFs, stars, background)."""

    template: np.ndarray
    templateVariance: np.ndarray
    science: np.ndarray
    scienceVariance: np.ndarray
    templateModel: np.ndarray
    scienceModel: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    fluxes: np.ndarray
    transients: list[tuple[float, float, float]]
    fluxRatio: float
    background: tuple[float, float, float]  # science - ratio*template background: c0 + c1 x + c2 y
    templatePsf: PsfModel
    sciencePsf: PsfModel
    extra: dict = field(default_factory=dict)

    def differenceBackground(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return the true differential background ``c0 + c1 x + c2 y`` at each position."""
        c0, c1, c2 = self.background
        return c0 + c1 * x + c2 * y


def makeSyntheticPair(
    size: int = 512,
    nStars: int = 250,
    seed: int = 1,
    templateFwhm: float = 3.0,
    scienceFwhm: tuple[float, float] = (4.0, 5.0),
    scienceEllipticity: float = 0.06,
    fluxRatio: float = 1.3,
    sky: float = 200.0,
    background: tuple[float, float, float] = (20.0, 0.02, -0.015),
    gain: float = 1.0,
    readNoise: float = 5.0,
    templateNoiseFactor: float = 0.5,
    transients: list[tuple[float, float, float]] | None = None,
    variables: list[tuple[float, float, float, float]] | None = None,
    shifts: list[tuple[float, float, float, float, float]] | None = None,
) -> SyntheticPair:
    """Return a synthetic pair (see module docstring).

    ``transients`` are ``(x, y, flux)`` in the science image only (science
    units).  ``variables`` are ``(x, y, flux, deltaFlux)``: stars of
    template flux ``flux``, of science flux ``fluxRatio * flux + deltaFlux``.
    ``shifts`` are ``(x, y, flux, dx, dy)``: stars at ``(x, y)`` in the
    template and ``(x + dx, y + dy)`` in the science image (misregistered).
    Both are kept in ``extra`` and draw no random numbers, so a pair made
    without them is unchanged.
    """
    rng = np.random.default_rng(seed)
    shape = (size, size)
    border = 20
    xs = rng.uniform(border, size - 1 - border, nStars)
    ys = rng.uniform(border, size - 1 - border, nStars)
    # power-law fluxes dN/dF ~ F^-2 between 2e3 and 2e5
    u = rng.uniform(size=nStars)
    fmin, fmax = 2.0e3, 2.0e5
    fluxes = 1.0 / (1.0 / fmin - u * (1.0 / fmin - 1.0 / fmax))
    tPsf = PsfModel(templateFwhm, templateFwhm, 0.0, shape)
    sPsf = PsfModel(scienceFwhm[0], scienceFwhm[1], scienceEllipticity, shape)
    templateModel = renderStars(shape, xs, ys, fluxes, tPsf) + sky
    scienceModel = renderStars(shape, xs, ys, fluxRatio * fluxes, sPsf) + fluxRatio * sky
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c0, c1, c2 = background
    scienceModel += c0 + c1 * xx + c2 * yy
    if transients is None:
        transients = [
            (150.5, 160.2, 6000.0),
            (380.3, 120.7, 8000.0),
            (260.0, 400.4, 5000.0),
            (100.2, 420.6, 7000.0),
        ]
    if transients:
        tx = np.array([t[0] for t in transients])
        ty = np.array([t[1] for t in transients])
        tf = np.array([t[2] for t in transients])
        scienceModel += renderStars(shape, tx, ty, tf, sPsf)
    extra: dict = {}
    for key, rows in (("variables", variables), ("shifts", shifts)):
        if not rows:
            continue
        arr = np.asarray(rows, dtype=float).reshape(len(rows), -1)
        dx = arr[:, 3] if key == "shifts" else 0.0
        dy = arr[:, 4] if key == "shifts" else 0.0
        sFlux = fluxRatio * arr[:, 2] + (arr[:, 3] if key == "variables" else 0.0)
        templateModel += renderStars(shape, arr[:, 0], arr[:, 1], arr[:, 2], tPsf)
        scienceModel += renderStars(shape, arr[:, 0] + dx, arr[:, 1] + dy, sFlux, sPsf)
        extra[key] = [tuple(r) for r in rows]
    sVar = scienceModel / gain + readNoise**2
    tVar = (templateModel / gain + readNoise**2) * templateNoiseFactor**2
    science = scienceModel + rng.normal(size=shape) * np.sqrt(sVar)
    template = templateModel + rng.normal(size=shape) * np.sqrt(tVar)
    return SyntheticPair(
        template=template.astype(np.float32),
        templateVariance=tVar.astype(np.float32),
        science=science.astype(np.float32),
        scienceVariance=sVar.astype(np.float32),
        templateModel=templateModel,
        scienceModel=scienceModel,
        xs=xs,
        ys=ys,
        fluxes=fluxes,
        transients=list(transients),
        fluxRatio=fluxRatio,
        background=(c0 + fluxRatio * sky - fluxRatio * sky, c1, c2),
        templatePsf=tPsf,
        sciencePsf=sPsf,
        extra=extra,
    )


def makeMisregisteredPair(
    seed: int,
    size: int = 512,
    nShifted: int = 8,
    nTransients: int = 8,
    nStars: int = 250,
    shiftRange: tuple[float, float] = (0.3, 0.5),
    fluxRange: tuple[float, float] = (3.0e4, 2.0e5),
    transientFluxRange: tuple[float, float] = (2.0e3, 5.0e4),
) -> SyntheticPair:
    """Return a `makeSyntheticPair` pair with misregistered bright stars and transients.

    ``nShifted`` stars (log-uniform template flux in ``fluxRange``) are
    shifted in the science image by a distance uniform in ``shiftRange`` in a
    uniformly random direction; ``nTransients`` point sources (log-uniform
    flux in ``transientFluxRange``) appear in the science image only.  Both
    sit on a jittered 5 x 5 grid (no two within ~60 px), among ``nStars``
    random field stars; everything else is `makeSyntheticPair`'s default
    (spatially varying, slightly elliptical science PSF).  The truth is in
    ``extra["shifts"]`` (``x, y, flux, dx, dy``) and ``transients``.
    """
    rng = np.random.default_rng(10_000 + seed)
    n = nShifted + nTransients
    axis = 48.0 + np.arange(5) * (size - 96.0) / 4.0
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    if n > len(grid):
        raise ValueError(f"At most {len(grid)} shifted stars and transients, got {n}.")
    grid = grid[rng.permutation(len(grid))[:n]] + rng.uniform(-8.0, 8.0, (n, 2))
    flux = np.exp(rng.uniform(math.log(fluxRange[0]), math.log(fluxRange[1]), nShifted))
    dist = rng.uniform(shiftRange[0], shiftRange[1], nShifted)
    angle = rng.uniform(-math.pi, math.pi, nShifted)
    shifts = [
        (float(x), float(y), float(f), float(d * math.cos(a)), float(d * math.sin(a)))
        for (x, y), f, d, a in zip(grid[:nShifted], flux, dist, angle, strict=True)
    ]
    tFlux = np.exp(rng.uniform(math.log(transientFluxRange[0]), math.log(transientFluxRange[1]), nTransients))
    transients = [(float(x), float(y), float(f)) for (x, y), f in zip(grid[nShifted:], tFlux, strict=True)]
    return makeSyntheticPair(size=size, nStars=nStars, seed=seed, transients=transients, shifts=shifts)
