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
"""Measurement of DIA sources: PSF and aperture photometry and a dipole fit.

Every source gets a point-source fit on the difference (centroid, PSF flux
and error, chi^2) and a fit of the dipole model: a positive PSF of flux
``posFlux`` at ``(posX, posY)`` minus a PSF of flux ``|negFlux|`` at
``(negX, negY)``.  As upstream's ``DipoleFitPlugin`` (DMTN-007), the fit can
be constrained by the pre-subtraction images: the science stamp is modelled
as the positive lobe plus a linear background and the (matched) template
stamp as the negative lobe plus a linear background, with weight
``relWeight`` relative to the difference.  The fit is separable: for given
lobe positions the fluxes and backgrounds follow by linear least squares
(fluxes kept non-negative), and `scipy.optimize.least_squares`
(Levenberg-Marquardt, variable projection with Kaufman's analytic Jacobian;
analytic PSF derivatives for Gaussian models) searches the four positions.
A footprint with peaks of both signs starts from them (and, if they are more
than two sigma apart, from the centroid too, keeping the best fit); one of
one sign starts from its centroid.  When the PSF model does not describe a
bright star to its noise (the pre-subtraction stamps' reduced chi^2 ``r`` is
above 2), those stamps would outweigh the difference: ``doAdaptRelWeight``
refits with ``relWeight / sqrt(r)``.

A source is classified a dipole, as upstream, when the lobes' S/N summed in
quadrature exceeds ``minSn`` and neither lobe carries more than
``maxFluxRatio`` of the total flux; in addition (deviations from upstream,
which only fits footprints holding peaks of both signs), the dipole must fit
the difference better than a point source by ``minDeltaChi2``, so that a
variable star (both lobes bright, at the same place) is not called a dipole,
and its lobes must be at most ``maxSeparation`` PSF sigma apart (farther,
they are two sources in one merged footprint).  Footprints of one sign whose
point-source fit is within ``oneSignMinChi2Excess`` sigma of its expected
chi^2 are not fitted (nothing for a dipole to improve on).
``minDeltaChi2 = 0`` and ``fitOnlyPutativeDipoles = True`` restore
upstream's behaviour.

Through the whole subtraction, a misregistered bright star can only be a
dipole if the kernel fit has not absorbed its shift: a star that is a
kernel candidate and stays one (its residual under the spatial kernel below
``candidateResidualStdMax``) can leave no residual at all
(``bench/bench_diaSources.py`` measures how often).
"""

from __future__ import annotations

__all__ = ["DipoleFitConfig", "DipoleFitTask", "PsfStampModel", "fitDipole", "fitPointSource"]

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sep
from astropy.table import Row, Table
from scipy.optimize import least_squares

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.utils.timer import timeMethod

from .imageTypes import MaskedImageLike
from .math.gaussian import SIGMA2FWHM
from .math.threads import singleThreadedBlas

if TYPE_CHECKING:
    from lsst.images.psfs import PointSpreadFunction


class DipoleFitConfig(pexConfig.Config):
    """Configuration of `DipoleFitTask` (DIA source measurement)."""

    stampHalfWidthFwhm = pexConfig.RangeField(
        dtype=float,
        doc="Half-width of the fitted stamp around a source, in units of the PSF FWHM (the footprint's "
        "box plus one pixel is used if larger, up to twice this).",
        default=2.0,
        min=1.0,
    )
    apertureRadiusFwhm = pexConfig.RangeField(
        dtype=float,
        doc="Radius of the circular aperture flux, in units of the PSF FWHM.",
        default=1.5,
        min=0.1,
    )
    maxCentroidShift = pexConfig.RangeField(
        dtype=float,
        doc="Maximum distance (in PSF sigma) the point-source centroid may move from the detection peak.",
        default=2.0,
        min=0.1,
    )
    doDipoleFit = pexConfig.Field[bool](dtype=bool, doc="Fit the dipole model.", default=True)
    fitOnlyPutativeDipoles = pexConfig.Field[bool](
        dtype=bool,
        doc="Fit the dipole model only to footprints holding peaks of both signs (upstream's rule); "
        "otherwise every source is fitted (but see oneSignMinChi2Excess).",
        default=False,
    )
    oneSignMinChi2Excess = pexConfig.Field[float](
        dtype=float,
        doc="A footprint of one sign gets the dipole fit only if the chi^2 of its point-source fit exceeds "
        "its expectation by this many standard deviations, (chi2 - nDof) / sqrt(2 nDof) >= value (nDof: "
        "pixels - 3): a point source it describes to its noise is not fitted again (the dipole fits of "
        "such footprints almost never beat minDeltaChi2).  None: fit every footprint.",
        default=1.0,
        optional=True,
    )
    relWeight = pexConfig.RangeField(
        dtype=float,
        doc="Weight of the pre-subtraction (science, matched template) stamps relative to the difference "
        "in the dipole fit; 0 fits the difference alone.",
        default=0.5,
        min=0.0,
    )
    doAdaptRelWeight = pexConfig.Field[bool](
        dtype=bool,
        doc="Divide relWeight by sqrt(r) and refit when the pre-subtraction stamps' reduced chi^2 r at the "
        "dipole fit exceeds 2 (the PSF model does not describe a bright star to its noise, and the images "
        "would outweigh the difference); False: upstream's fixed weight.",
        default=True,
    )
    maxSeparation = pexConfig.RangeField(
        dtype=float,
        doc="Each lobe stays within maxSeparation/2 PSF sigma (plus 1 px) of the starting centre, and a "
        "dipole's lobes are at most maxSeparation PSF sigma apart (farther: two sources in one footprint).",
        default=5.0,
        min=0.1,
    )
    minSn = pexConfig.Field[float](
        dtype=float,
        doc="Minimum quadrature sum of the positive and negative lobe S/N for a dipole.",
        default=math.sqrt(2.0) * 5.0,
    )
    maxFluxRatio = pexConfig.RangeField(
        dtype=float,
        doc="Maximum fraction of the total absolute (positive plus negative) flux in either lobe.",
        default=0.65,
        min=0.5,
        max=1.0,
    )
    minDeltaChi2 = pexConfig.RangeField(
        dtype=float,
        doc="Minimum chi^2 improvement of the dipole over the point-source model on the difference "
        "pixels for a dipole (0: upstream's criteria only).",
        default=25.0,
        min=0.0,
    )


class PsfStampModel:
    """Render a PSF model on stamps at sub-pixel positions.

    Parameters
    ----------
    psf : `lsst.images.psfs.PointSpreadFunction`
        The PSF of the difference image (parent pixel coordinates).
    """

    def __init__(self, psf: PointSpreadFunction) -> None:
        from lsst.images.psfs import GaussianPointSpreadFunction

        self.psf = psf
        # Gaussian models are rendered here as the model does it (sampled
        # separable profiles normalized over the model's stamp), without the
        # per-call image objects.
        self._gaussian: tuple[float, int] | None = None
        if type(psf) is GaussianPointSpreadFunction:
            self._gaussian = (float(psf.sigma) ** 2, psf.kernel_bbox.x.size // 2)

    def render(self, x: float, y: float, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        """Return the unit-flux PSF at parent position ``(x, y)`` on a stamp.

        The stamp's lower-left pixel is ``(x0, y0)``; parts of the PSF outside
        it are dropped.
        """
        if self._gaussian is not None:
            return np.outer(self._profile(y, y0, height), self._profile(x, x0, width))
        image = self.psf.compute_stellar_image(x=float(x), y=float(y))
        b = image.bbox
        out = np.zeros((height, width))
        xa, xb = max(b.x.start, x0), min(b.x.stop, x0 + width)
        ya, yb = max(b.y.start, y0), min(b.y.stop, y0 + height)
        if xa < xb and ya < yb:
            out[ya - y0 : yb - y0, xa - x0 : xb - x0] = image.array[
                ya - b.y.start : yb - b.y.start, xa - b.x.start : xb - b.x.start
            ]
        return out

    def renderWithGradient(
        self, x: float, y: float, x0: int, y0: int, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the unit-flux PSF at ``(x, y)`` on a stamp and its derivatives in ``x`` and ``y``.

        Analytic for Gaussian models; central differences of `render`
        (0.05 px steps) otherwise.
        """
        if self._gaussian is not None:
            py, dpy = self._profileWithDerivative(y, y0, height)
            px, dpx = self._profileWithDerivative(x, x0, width)
            return np.outer(py, px), np.outer(py, dpx), np.outer(dpy, px)
        h = 0.05
        p = self.render(x, y, x0, y0, width, height)
        dx = (self.render(x + h, y, x0, y0, width, height) - self.render(x - h, y, x0, y0, width, height)) / (
            2 * h
        )
        dy = (self.render(x, y + h, x0, y0, width, height) - self.render(x, y - h, x0, y0, width, height)) / (
            2 * h
        )
        return p, dx, dy

    def _profileWithDerivative(self, center: float, start: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        # The normalized sampled profile g / sum(g) and its derivative in the centre.
        assert self._gaussian is not None  # only used for Gaussian models
        sigma2, r = self._gaussian
        ic = math.floor(center + 0.5)
        u = np.arange(ic - r, ic + r + 1) - center
        g = np.exp(-0.5 * u * u / sigma2)
        dg = g * u / sigma2
        norm = g.sum()
        full = g / norm
        dfull = dg / norm - full * (dg.sum() / norm)
        out = np.zeros(size)
        dout = np.zeros(size)
        a, b = max(ic - r, start), min(ic + r + 1, start + size)
        if a < b:
            out[a - start : b - start] = full[a - (ic - r) : b - (ic - r)]
            dout[a - start : b - start] = dfull[a - (ic - r) : b - (ic - r)]
        return out, dout

    def _profile(self, center: float, start: int, size: int) -> np.ndarray:
        assert self._gaussian is not None  # only used for Gaussian models
        sigma2, r = self._gaussian
        ic = math.floor(center + 0.5)
        full = np.exp(-0.5 * np.square(np.arange(ic - r, ic + r + 1) - center) / sigma2)
        full /= full.sum()
        out = np.zeros(size)
        a, b = max(ic - r, start), min(ic + r + 1, start + size)
        if a < b:
            out[a - start : b - start] = full[a - (ic - r) : b - (ic - r)]
        return out


@dataclass
class Stamp:
    """The pixels of one source: difference, optional science and template.

    ``x0, y0`` is the parent position of the lower-left pixel; ``good``
    selects the pixels used; the ``*Var`` arrays are variances.
    """

    x0: int
    y0: int
    diff: np.ndarray
    diffVar: np.ndarray
    good: np.ndarray
    science: np.ndarray | None = None
    scienceVar: np.ndarray | None = None
    template: np.ndarray | None = None
    templateVar: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.diff.shape

    def render(self, model: PsfStampModel, x: float, y: float) -> np.ndarray:
        h, w = self.shape
        return model.render(x, y, self.x0, self.y0, w, h)

    def renderWithGradient(
        self, model: PsfStampModel, x: float, y: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = self.shape
        return model.renderWithGradient(x, y, self.x0, self.y0, w, h)


def _positionBounds(center: tuple[float, float], halfRange: float, stamp: Stamp) -> tuple[list, list]:
    h, w = stamp.shape
    xlo = max(stamp.x0 - 0.5, center[0] - halfRange)
    xhi = min(stamp.x0 + w - 0.5, center[0] + halfRange)
    ylo = max(stamp.y0 - 0.5, center[1] - halfRange)
    yhi = min(stamp.y0 + h - 0.5, center[1] + halfRange)
    return [xlo, ylo], [xhi, yhi]


def _clip(value: np.ndarray, lo: list, hi: list) -> np.ndarray:
    eps = 1e-6
    return np.minimum(np.maximum(value, np.asarray(lo) + eps), np.asarray(hi) - eps)


def fitPointSource(
    stamp: Stamp, model: PsfStampModel, xStart: float, yStart: float, maxShift: float
) -> pipeBase.Struct:
    """Fit a PSF of free position and flux to the difference stamp.

    Returns
    -------
    result : `lsst.pipe.base.Struct`
        ``x, y, xErr, yErr`` (parent pixels); ``flux, fluxErr``: the
        unweighted PSF flux at the fitted centroid and its error from the
        variance plane; ``chi2`` (weighted, of the best fit) and ``nData``;
        ``ok``.
    """
    good = stamp.good
    data = stamp.diff[good]
    weight = 1.0 / stamp.diffVar[good]
    sw = np.sqrt(weight)
    wData = data * sw

    lo, hi = _positionBounds((xStart, yStart), maxShift, stamp)
    lo2, hi2 = np.array(lo), np.array(hi)
    cache: dict = {}

    def parts(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # The position is clamped to the bounds (zero derivative outside).
        key = tuple(float(v) for v in np.clip(theta[:2], lo2, hi2))
        if key not in cache:
            cache.clear()
            p, dx, dy = stamp.renderWithGradient(model, key[0], key[1])
            cache[key] = (p[good] * sw, dx[good] * sw, dy[good] * sw)
        return cache[key]

    def residual(theta: np.ndarray) -> np.ndarray:
        return wData - theta[2] * parts(theta)[0]

    def jacobian(theta: np.ndarray) -> np.ndarray:
        p, dx, dy = parts(theta)
        inside = (theta[:2] > lo2) & (theta[:2] < hi2)
        return -np.stack([theta[2] * dx * inside[0], theta[2] * dy * inside[1], p], axis=1)

    start = _clip(np.array([xStart, yStart], dtype=float), lo, hi)
    p0 = parts(start)[0]
    p02 = float(np.dot(p0, p0))
    start = np.append(start, float(np.dot(p0, wData)) / p02 if p02 > 0 else 0.0)
    try:
        fit = least_squares(residual, start, jac=jacobian, method="lm", x_scale="jac", xtol=1e-4,
                            ftol=1e-6, max_nfev=100)  # fmt: skip
        theta, ok = np.append(np.clip(fit.x[:2], lo2, hi2), fit.x[2]), bool(fit.status > 0)
        chi2 = float(np.sum(residual(theta) ** 2))
        try:
            cov = np.linalg.inv(fit.jac.T @ fit.jac)
            xErr, yErr = (float(math.sqrt(max(c, 0.0))) for c in np.diag(cov)[:2])
        except np.linalg.LinAlgError:
            xErr = yErr = math.nan
    except ValueError:
        theta, ok, chi2, xErr, yErr = start, False, math.nan, math.nan, math.nan
    p = stamp.render(model, theta[0], theta[1])[good]
    p2 = float(np.dot(p, p))
    if p2 <= 0:
        return pipeBase.Struct(
            x=theta[0], y=theta[1], xErr=xErr, yErr=yErr, flux=math.nan, fluxErr=math.nan,
            chi2=chi2, nData=int(good.sum()), ok=False,
        )  # fmt: skip
    flux = float(np.dot(p, data)) / p2
    fluxErr = math.sqrt(float(np.dot(p * p, stamp.diffVar[good]))) / p2
    return pipeBase.Struct(
        x=float(theta[0]), y=float(theta[1]), xErr=xErr, yErr=yErr, flux=flux, fluxErr=fluxErr,
        chi2=chi2, nData=int(good.sum()), ok=ok,
    )  # fmt: skip


class _DipoleDesign:
    """The linear part of the dipole model for given lobe positions."""

    def __init__(self, stamp: Stamp, relWeight: float) -> None:
        self.stamp = stamp
        good = stamp.good
        self.good = good
        h, w = stamp.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(float)
        xx = (xx - 0.5 * (w - 1))[good] / max(w, 1)
        yy = (yy - 0.5 * (h - 1))[good] / max(h, 1)
        self.nD = int(good.sum())
        blocks = [stamp.diff[good] / np.sqrt(stamp.diffVar[good])]
        self.useImages = (
            relWeight > 0
            and stamp.science is not None
            and stamp.template is not None
            and stamp.scienceVar is not None
            and stamp.templateVar is not None
        )
        if self.useImages:
            assert stamp.science is not None and stamp.template is not None  # useImages says so
            assert stamp.scienceVar is not None and stamp.templateVar is not None
            self.wS = relWeight / np.sqrt(stamp.scienceVar[good])
            self.wT = relWeight / np.sqrt(stamp.templateVar[good])
            blocks += [stamp.science[good] * self.wS, stamp.template[good] * self.wT]
            self.bg = np.stack([np.ones_like(xx), xx, yy], axis=1)
        self.wD = 1.0 / np.sqrt(stamp.diffVar[good])
        self.b = np.concatenate(blocks)
        self.bReduced = self.b
        if self.useImages:
            # The backgrounds enter linearly and apart from the lobes: they are
            # eliminated once per stamp by projecting the science and template
            # rows off their (weighted) background columns.
            self._bgS = self._projector(self.bg * self.wS[:, None])
            self._bgT = self._projector(self.bg * self.wT[:, None])
            nD = self.nD
            self.bReduced = np.concatenate(
                [self.b[:nD], self._project(self._bgS, self.b[nD : 2 * nD]),
                 self._project(self._bgT, self.b[2 * nD :])]
            )  # fmt: skip

    @staticmethod
    def _projector(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gram = columns.T @ columns
        try:
            return columns, np.linalg.solve(gram, columns.T)
        except np.linalg.LinAlgError:
            return columns, np.linalg.pinv(columns)

    @staticmethod
    def _project(projector: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
        columns, pinv = projector
        return x - columns @ (pinv @ x)

    def reducedColumns(self, pPos: np.ndarray, pNeg: np.ndarray) -> np.ndarray:
        """Return the two lobe-flux columns of the background-eliminated design (negative: magnitude)."""
        if not self.useImages:
            return np.column_stack([pPos * self.wD, -pNeg * self.wD])
        nD = self.nD
        a = np.zeros((3 * nD, 2))
        a[:nD, 0] = pPos * self.wD
        a[:nD, 1] = -pNeg * self.wD
        a[nD : 2 * nD, 0] = self._project(self._bgS, pPos * self.wS)
        a[2 * nD :, 1] = self._project(self._bgT, pNeg * self.wT)
        return a

    def reducedDerivatives(self, dPos: list[np.ndarray], dNeg: list[np.ndarray]) -> np.ndarray:
        """Reduced columns of the lobes' position derivatives (x, y of each lobe)."""
        if not self.useImages:
            return np.column_stack([d * self.wD for d in dPos] + [-d * self.wD for d in dNeg])
        nD = self.nD
        out = np.zeros((3 * nD, 4))
        for k, d in enumerate(dPos):
            out[:nD, k] = d * self.wD
            out[nD : 2 * nD, k] = self._project(self._bgS, d * self.wS)
        for k, d in enumerate(dNeg):
            out[:nD, 2 + k] = -d * self.wD
            out[2 * nD :, 2 + k] = self._project(self._bgT, d * self.wT)
        return out

    def solveReduced(self, pPos: np.ndarray, pNeg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (lobe fluxes >= 0, weighted residual, reduced columns) of the background-eliminated fit.

        The residual equals that of `solve` (the backgrounds at their best).
        """
        a = self.reducedColumns(pPos, pNeg)
        ata = a.T @ a
        atb = a.T @ self.bReduced
        fluxes = np.zeros(2)
        det = ata[0, 0] * ata[1, 1] - ata[0, 1] ** 2
        if det > 1e-12 * max(ata[0, 0] * ata[1, 1], 1e-300):
            fluxes = (
                np.array([ata[1, 1] * atb[0] - ata[0, 1] * atb[1], ata[0, 0] * atb[1] - ata[0, 1] * atb[0]])
                / det
            )
        if not (fluxes >= 0).all() or det <= 1e-12 * max(ata[0, 0] * ata[1, 1], 1e-300):
            # One lobe at its bound: the better of the two one-lobe fits.
            best, fluxes = -np.inf, np.zeros(2)
            for k in (0, 1):
                if ata[k, k] > 0 and atb[k] > 0:
                    gain = atb[k] ** 2 / ata[k, k]
                    if gain > best:
                        best, fluxes = gain, np.zeros(2)
                        fluxes[k] = atb[k] / ata[k, k]
        self.activeReduced = fluxes > 0
        return fluxes, self.bReduced - a @ fluxes, a

    def matrix(self, pPos: np.ndarray, pNeg: np.ndarray) -> np.ndarray:
        nD = self.nD
        if not self.useImages:
            a = np.empty((nD, 2))
            a[:, 0] = pPos * self.wD
            a[:, 1] = -pNeg * self.wD
            return a
        a = np.zeros((3 * nD, 8))
        a[:nD, 0] = pPos * self.wD
        a[:nD, 1] = -pNeg * self.wD
        a[nD : 2 * nD, 0] = pPos * self.wS
        a[2 * nD :, 1] = pNeg * self.wT
        a[nD : 2 * nD, 2:5] = self.bg * self.wS[:, None]
        a[2 * nD :, 5:8] = self.bg * self.wT[:, None]
        return a

    def positiveColumn(self, p: np.ndarray) -> np.ndarray:
        """Return the design-matrix column of the positive lobe's flux for lobe image ``p``."""
        if not self.useImages:
            return p * self.wD
        return np.concatenate([p * self.wD, p * self.wS, np.zeros(self.nD)])

    def negativeColumn(self, p: np.ndarray) -> np.ndarray:
        """Return the design-matrix column of the negative lobe's flux magnitude for lobe image ``p``."""
        if not self.useImages:
            return -p * self.wD
        return np.concatenate([-p * self.wD, np.zeros(self.nD), p * self.wT])

    def solve(self, pPos: np.ndarray, pNeg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (parameters, weighted residual, design matrix) with non-negative fluxes."""
        a = self.matrix(pPos, pNeg)
        # Normal equations (a few columns, many rows); singular -> lstsq.
        ata = a.T @ a
        atb = a.T @ self.b
        active = np.ones(a.shape[1], dtype=bool)
        for _ in range(3):
            params = np.zeros(a.shape[1])
            sub = np.ix_(active, active)
            try:
                params[active] = np.linalg.solve(ata[sub], atb[active])
            except np.linalg.LinAlgError:
                params[active] = np.linalg.lstsq(a[:, active], self.b, rcond=None)[0]
            negative = (params[:2] < 0) & active[:2]
            if not negative.any():
                break
            active[:2] &= ~negative
        params[:2] = np.maximum(params[:2], 0.0)
        self.active = active & (np.abs(a).sum(axis=0) > 0)
        return params, self.b - a @ params, a


#: Pre-subtraction reduced chi^2 above which ``adaptRelWeight`` refits.
_ADAPT_REDUCED_CHI2 = 2.0


def _fitLobes(
    stamp: Stamp,
    model: PsfStampModel,
    design: _DipoleDesign,
    start: np.ndarray,
    lo4: np.ndarray,
    hi4: np.ndarray,
) -> tuple[np.ndarray, bool, float]:
    """Fit the four lobe coordinates from ``start``; return them, success and the total chi^2."""
    good = design.good
    cache: dict = {}

    def state(theta: np.ndarray) -> tuple:
        # Lobe positions are clamped to the bounds (zero derivative outside).
        key = tuple(float(v) for v in np.clip(theta, lo4, hi4))
        if key not in cache:
            cache.clear()
            pos = [v[good] for v in stamp.renderWithGradient(model, key[0], key[1])]
            neg = [v[good] for v in stamp.renderWithGradient(model, key[2], key[3])]
            fluxes, res, a = design.solveReduced(pos[0], neg[0])
            cache[key] = (pos, neg, fluxes, res, a, design.activeReduced.copy())
        return cache[key]

    # Variable projection: the fluxes and backgrounds are solved linearly
    # for given lobe positions (the backgrounds eliminated once per stamp);
    # the Jacobian is Kaufman's (the derivative of the model at fixed linear
    # parameters, projected off the design's column space).
    def residual(theta: np.ndarray) -> np.ndarray:
        return state(theta)[3]

    def jacobian(theta: np.ndarray) -> np.ndarray:
        pos, neg, fluxes, _, a, active = state(theta)
        v = design.reducedDerivatives(pos[1:], neg[1:]) * np.repeat(fluxes, 2)[None, :]
        aa = a[:, active]
        if aa.shape[1]:
            gram = aa.T @ aa
            if np.all(np.diag(gram) > 0):
                v = v - aa @ np.linalg.solve(gram, aa.T @ v)
        inside = (theta > lo4) & (theta < hi4)
        return -v * inside

    try:
        fit = least_squares(residual, start, jac=jacobian, method="lm", x_scale=0.5, xtol=1e-4, ftol=1e-6,
                            max_nfev=100)  # fmt: skip
        theta, ok = np.clip(fit.x, lo4, hi4), bool(fit.status > 0)
    except ValueError:
        theta, ok = start, False
    return theta, ok, float(np.sum(residual(theta) ** 2))


def fitDipole(
    stamp: Stamp,
    model: PsfStampModel,
    posStart: tuple[float, float],
    negStart: tuple[float, float],
    halfRange: float,
    relWeight: float = 0.5,
    otherStarts: list[tuple[tuple[float, float], tuple[float, float]]] | None = None,
    adaptRelWeight: bool = False,
) -> pipeBase.Struct:
    """Fit the dipole model (positive minus negative PSF) to a stamp.

    Parameters
    ----------
    stamp : `Stamp`
        The pixels; with science and template stamps (and ``relWeight > 0``)
        they constrain the two lobes.
    model : `PsfStampModel`
        The PSF.
    posStart, negStart : `tuple` [`float`, `float`]
        Starting lobe positions (parent pixels).
    halfRange : `float`
        Each lobe stays within this distance (pixels, per axis) of the
        starting midpoint.
    relWeight : `float`, optional
        Weight of the pre-subtraction stamps.
    otherStarts : `list`, optional
        Further ``(posStart, negStart)`` pairs; the fit of lowest total
        chi^2 is kept.
    adaptRelWeight : `bool`, optional
        If the pre-subtraction stamps' reduced chi^2 ``r`` at the best fit
        exceeds 2 (the PSF model does not describe a bright star to its
        noise), refit with ``relWeight / sqrt(r)``.

    Returns
    -------
    result : `lsst.pipe.base.Struct`
        ``posFlux, posFluxErr, negFlux, negFluxErr`` (``negFlux <= 0``),
        ``posX, posY, negX, negY``, ``chi2`` (difference pixels only),
        ``chi2Total`` and ``nData``, ``ok``, ``relWeight`` (the weight of
        the final fit).  The flux errors are those at the fitted positions.
    """
    design = _DipoleDesign(stamp, relWeight)
    good = design.good
    nD = design.nD
    mid = (0.5 * (posStart[0] + negStart[0]), 0.5 * (posStart[1] + negStart[1]))
    lo, hi = _positionBounds(mid, halfRange, stamp)
    lo4, hi4 = np.array(lo + lo), np.array(hi + hi)
    best = None
    for pStart, nStart in [(posStart, negStart)] + list(otherStarts or []):
        start = np.clip(np.array(list(pStart) + list(nStart), dtype=float), lo4 + 1e-6, hi4 - 1e-6)
        fitted = _fitLobes(stamp, model, design, start, lo4, hi4)
        if best is None or fitted[2] < best[2]:
            best = fitted
    assert best is not None  # at least one start was fitted
    theta, ok, _ = best
    if adaptRelWeight and design.useImages:
        pPos = stamp.render(model, theta[0], theta[1])[good]
        pNeg = stamp.render(model, theta[2], theta[3])[good]
        res = design.solve(pPos, pNeg)[1]
        reduced = float(np.sum(res[nD:] ** 2)) / (relWeight**2 * max(2 * nD - 8, 1))
        if reduced > _ADAPT_REDUCED_CHI2:
            relWeight = relWeight / math.sqrt(reduced)
            design = _DipoleDesign(stamp, relWeight)
            theta, ok, _ = _fitLobes(stamp, model, design, theta, lo4, hi4)
    pPos = stamp.render(model, theta[0], theta[1])[good]
    pNeg = stamp.render(model, theta[2], theta[3])[good]
    params, res, a = design.solve(pPos, pNeg)
    errors = np.full(2, math.nan)
    active = np.abs(a).sum(axis=0) > 0
    try:
        cov = np.linalg.inv(a[:, active].T @ a[:, active])
        diag = np.full(a.shape[1], math.nan)
        diag[active] = np.diag(cov)
        errors = np.sqrt(np.maximum(diag[:2], 0.0))
    except np.linalg.LinAlgError:
        pass
    # Lobe errors at fixed positions on the difference alone, when the
    # images do not constrain a lobe (flux fixed at 0 by the bound).
    for k, p in enumerate((pPos, pNeg)):
        if not np.isfinite(errors[k]):
            p2 = float(np.dot(p, p))
            errors[k] = math.sqrt(float(np.dot(p * p, stamp.diffVar[good]))) / p2 if p2 > 0 else math.nan
    chi2 = float(np.sum(res[:nD] ** 2))
    return pipeBase.Struct(
        posFlux=float(params[0]), posFluxErr=float(errors[0]),
        negFlux=-float(params[1]), negFluxErr=float(errors[1]),
        posX=float(theta[0]), posY=float(theta[1]), negX=float(theta[2]), negY=float(theta[3]),
        chi2=chi2, chi2Total=float(np.sum(res**2)), nData=nD, ok=ok, relWeight=relWeight,
    )  # fmt: skip


#: Columns written by `DipoleFitTask`: name -> (dtype, unit key, description).
#: Unit keys: "pix", "flux" (the image unit), "deg", None.
MEASUREMENT_COLUMNS: dict[str, tuple[Any, str | None, str]] = {
    "x": (float, "pix", "Centroid x of the point-source fit (parent pixels)."),
    "y": (float, "pix", "Centroid y of the point-source fit (parent pixels)."),
    "xErr": (float, "pix", "Uncertainty of x."),
    "yErr": (float, "pix", "Uncertainty of y."),
    "psfFlux": (float, "flux", "PSF flux on the difference at the centroid (negative for a fading source)."),
    "psfFluxErr": (float, "flux", "Uncertainty of psfFlux, from the variance plane."),
    "psfChi2": (float, None, "Chi^2 of the point-source fit on the stamp's difference pixels."),
    "psfNdata": (np.int64, None, "Number of difference pixels in the fits."),
    "apFlux": (float, "flux", "Circular aperture flux on the difference (radius in table meta)."),
    "apFluxErr": (float, "flux", "Uncertainty of apFlux, from the variance plane."),
    "snr": (float, None, "Signal-to-noise ratio psfFlux / psfFluxErr."),
    "dipole_posFlux": (float, "flux", "Flux of the positive lobe of the dipole fit (>= 0)."),
    "dipole_posFluxErr": (float, "flux", "Uncertainty of dipole_posFlux (lobe positions fixed)."),
    "dipole_negFlux": (float, "flux", "Flux of the negative lobe of the dipole fit (<= 0)."),
    "dipole_negFluxErr": (float, "flux", "Uncertainty of dipole_negFlux (lobe positions fixed)."),
    "dipole_posX": (float, "pix", "x of the positive lobe."),
    "dipole_posY": (float, "pix", "y of the positive lobe."),
    "dipole_negX": (float, "pix", "x of the negative lobe."),
    "dipole_negY": (float, "pix", "y of the negative lobe."),
    "dipole_x": (float, "pix", "x of the dipole centre (mean of the lobes)."),
    "dipole_y": (float, "pix", "y of the dipole centre (mean of the lobes)."),
    "dipole_separation": (float, "pix", "Distance between the lobes."),
    "dipole_orientation": (float, "deg", "Angle of the negative-to-positive lobe vector from +x."),
    "dipole_snr": (float, None, "Quadrature sum of the two lobes' flux / error."),
    "dipole_chi2": (float, None, "Chi^2 of the dipole fit on the difference pixels (same as psfChi2's)."),
    "dipole_deltaChi2": (float, None, "psfChi2 - dipole_chi2: the dipole's improvement on a point source."),
    "dipole_flag": (bool, None, "The dipole fit was not done or failed."),
    "isDipole": (bool, None, "Classified as a dipole (see DipoleFitConfig)."),
    "flag_psfFit": (bool, None, "The point-source fit failed (too few pixels or no convergence)."),
}


class DipoleFitTask(pipeBase.Task):
    """Measure DIA sources: centroid, PSF and aperture fluxes, dipole fit.

    See the module documentation for the models and the classification.
    """

    ConfigClass = DipoleFitConfig
    _DefaultName = "dipoleFit"
    config: DipoleFitConfig

    @timeMethod
    def run(
        self,
        footprints: Table,
        difference: MaskedImageLike,
        psf: PointSpreadFunction,
        fwhm: float,
        science: MaskedImageLike | None = None,
        template: MaskedImageLike | None = None,
        bad: np.ndarray | None = None,
    ) -> Table:
        """Measure every footprint.

        Parameters
        ----------
        footprints : `astropy.table.Table`
            Detections as from `lsst.ip.diffim.diaDetection.detectDiaFootprints`
            (array-index coordinates of the difference).
        difference : `lsst.images.MaskedImage`
            The difference image (its ``bbox`` gives the parent origin).
        psf : `lsst.images.psfs.PointSpreadFunction`
            PSF of the difference.
        fwhm : `float`
            PSF FWHM (pixels), for the stamp and aperture sizes.
        science, template : `lsst.images.MaskedImage`, optional
            Pre-subtraction images on the difference's grid, constraining
            the dipole lobes.
        bad : `numpy.ndarray`, optional
            Pixels excluded from the fits.

        Returns
        -------
        measurements : `astropy.table.Table`
            One row per footprint, the columns of ``MEASUREMENT_COLUMNS``
            (parent pixel coordinates).
        """
        cfg = self.config
        x0, y0 = difference.bbox.x.start, difference.bbox.y.start
        image = np.asarray(difference.image.array, dtype=np.float64)
        variance = np.asarray(difference.variance.array, dtype=np.float64)
        usable = np.isfinite(image) & np.isfinite(variance) & (variance > 0)
        if bad is not None:
            usable &= ~bad
        n = len(footprints)
        out = {name: np.full(n, math.nan if dt is float else 0, dtype=dt) for name, (dt, _, _) in
               MEASUREMENT_COLUMNS.items()}  # fmt: skip
        sigma = fwhm / SIGMA2FWHM
        model = PsfStampModel(psf)
        baseHalf = int(math.ceil(cfg.stampHalfWidthFwhm * fwhm))
        sciArrays = _arrays(science) if science is not None else None
        tmpArrays = _arrays(template) if template is not None else None
        if any(a is not None and a[0].shape != image.shape for a in (sciArrays, tmpArrays)):
            self.log.warning("Science or template not on the difference's grid: dipoles fitted on it alone.")
            sciArrays = tmpArrays = None
        stampContext = (image, variance, usable, sciArrays, tmpArrays, x0, y0)
        nFit = 0
        # Many small fits: BLAS threads would only add contention (math.threads).
        with singleThreadedBlas():
            for i, row in enumerate(footprints):
                nFit += self._measureOne(out, i, row, stampContext, model, baseHalf, sigma)
        apFlux, apFluxErr = _apertureFluxes(image, variance, usable, out["x"] - x0, out["y"] - y0,
                                            cfg.apertureRadiusFwhm * fwhm)  # fmt: skip
        out["apFlux"], out["apFluxErr"] = apFlux, apFluxErr
        with np.errstate(divide="ignore", invalid="ignore"):
            out["snr"] = out["psfFlux"] / out["psfFluxErr"]
        self.metadata["nDipoleFits"] = nFit
        self.metadata["nDipoles"] = int(np.count_nonzero(out["isDipole"]))
        table = Table(out)
        table.meta["apertureRadius"] = cfg.apertureRadiusFwhm * fwhm
        return table

    def _measureOne(
        self,
        out: dict[str, np.ndarray],
        i: int,
        row: Row,
        context: tuple,
        model: PsfStampModel,
        baseHalf: int,
        sigma: float,
    ) -> int:
        """Measure footprint ``row`` into row ``i`` of ``out``; return 1 if a dipole was fitted."""
        cfg = self.config
        image, variance, usable, sciArrays, tmpArrays, x0, y0 = context
        ny, nx = image.shape
        span = max(row["xmax"] - row["xmin"], row["ymax"] - row["ymin"]) // 2 + 1
        half = int(min(max(baseHalf, span), 2 * baseHalf))
        cx = 0.5 * (row["xmin"] + row["xmax"])
        cy = 0.5 * (row["ymin"] + row["ymax"])
        ia, ib = max(int(round(cx)) - half, 0), min(int(round(cx)) + half + 1, nx)
        ja, jb = max(int(round(cy)) - half, 0), min(int(round(cy)) + half + 1, ny)
        sl = (slice(ja, jb), slice(ia, ib))
        good = usable[sl]
        if good.sum() < 10:
            out["flag_psfFit"][i] = True
            out["dipole_flag"][i] = True
            return 0
        stamp = Stamp(
            x0=x0 + ia, y0=y0 + ja, diff=image[sl], diffVar=np.where(good, variance[sl], 1.0), good=good
        )
        if sciArrays is not None and tmpArrays is not None:
            stamp.science, stamp.scienceVar = sciArrays[0][sl], sciArrays[1][sl]
            stamp.template, stamp.templateVar = tmpArrays[0][sl], tmpArrays[1][sl]
            ok = np.isfinite(stamp.science) & np.isfinite(stamp.template)
            ok &= (stamp.scienceVar > 0) & (stamp.templateVar > 0)
            stamp.good = good & ok
            if stamp.good.sum() < 10:
                stamp.good = good
                stamp.science = stamp.template = None
        px, py = float(row["peakX"]) + x0, float(row["peakY"]) + y0
        ps = fitPointSource(stamp, model, px, py, cfg.maxCentroidShift * sigma + 1.0)
        out["x"][i], out["y"][i], out["xErr"][i], out["yErr"][i] = ps.x, ps.y, ps.xErr, ps.yErr
        out["psfFlux"][i], out["psfFluxErr"][i] = ps.flux, ps.fluxErr
        out["psfChi2"][i], out["psfNdata"][i] = ps.chi2, ps.nData
        out["flag_psfFit"][i] = not ps.ok
        putative = row["nPositive"] > 0 and row["nNegative"] > 0
        skip = not cfg.doDipoleFit or (cfg.fitOnlyPutativeDipoles and not putative)
        if not putative and cfg.oneSignMinChi2Excess is not None and math.isfinite(ps.chi2):
            nDof = max(ps.nData - 3, 1)
            skip |= (ps.chi2 - nDof) / math.sqrt(2.0 * nDof) < cfg.oneSignMinChi2Excess
        if skip:
            out["dipole_flag"][i] = True
            return 0
        # One sign: start at the centroid, the lobes half a sigma apart.  Peaks
        # of both signs: start from them, and if they are far apart (noise
        # peaks of a weak dipole), from the centroid too, along x and along y.
        d = 0.25 * sigma
        starts = [((ps.x + d, ps.y), (ps.x - d, ps.y))]
        if putative:
            posStart = (float(row["posPeakX"]) + x0, float(row["posPeakY"]) + y0)
            negStart = (float(row["negPeakX"]) + x0, float(row["negPeakY"]) + y0)
            far = math.hypot(posStart[0] - negStart[0], posStart[1] - negStart[1]) > 2.0 * sigma
            starts = [(posStart, negStart)] + (starts + [((ps.x, ps.y + d), (ps.x, ps.y - d))] if far else [])
        dp = fitDipole(stamp, model, *starts[0], 0.5 * cfg.maxSeparation * sigma + 1.0,
                       relWeight=cfg.relWeight, otherStarts=starts[1:],
                       adaptRelWeight=cfg.doAdaptRelWeight)  # fmt: skip
        self._storeDipole(out, i, dp, ps.chi2, cfg.maxSeparation * sigma)
        return 1

    def _storeDipole(self, out: dict, i: int, dp: pipeBase.Struct, psChi2: float, maxSep: float) -> None:
        cfg = self.config
        out["dipole_posFlux"][i], out["dipole_posFluxErr"][i] = dp.posFlux, dp.posFluxErr
        out["dipole_negFlux"][i], out["dipole_negFluxErr"][i] = dp.negFlux, dp.negFluxErr
        out["dipole_posX"][i], out["dipole_posY"][i] = dp.posX, dp.posY
        out["dipole_negX"][i], out["dipole_negY"][i] = dp.negX, dp.negY
        out["dipole_x"][i], out["dipole_y"][i] = 0.5 * (dp.posX + dp.negX), 0.5 * (dp.posY + dp.negY)
        out["dipole_separation"][i] = math.hypot(dp.posX - dp.negX, dp.posY - dp.negY)
        out["dipole_orientation"][i] = math.degrees(math.atan2(dp.posY - dp.negY, dp.posX - dp.negX))
        with np.errstate(divide="ignore", invalid="ignore"):
            fluxes = np.array([dp.posFlux, dp.negFlux])
            snr = float(np.sqrt(np.sum((fluxes / np.array([dp.posFluxErr, dp.negFluxErr])) ** 2)))
        out["dipole_snr"][i] = snr
        out["dipole_chi2"][i] = dp.chi2
        delta = psChi2 - dp.chi2
        out["dipole_deltaChi2"][i] = delta
        out["dipole_flag"][i] = not dp.ok
        total = abs(dp.posFlux) + abs(dp.negFlux)
        isDipole = dp.ok and total > 0 and snr > cfg.minSn
        if isDipole:
            fractions = (abs(dp.posFlux) / total, abs(dp.negFlux) / total)
            isDipole = max(fractions) < cfg.maxFluxRatio
        separated = out["dipole_separation"][i] <= maxSep
        out["isDipole"][i] = bool(isDipole and delta >= cfg.minDeltaChi2 and separated)


def _arrays(maskedImage: MaskedImageLike) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray(maskedImage.image.array, dtype=np.float64),
        np.asarray(maskedImage.variance.array, dtype=np.float64),
    )


def _apertureFluxes(
    image: np.ndarray, variance: np.ndarray, usable: np.ndarray, xs: np.ndarray, ys: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return sep's circular-aperture sums (array-index positions), NaN where not measurable."""
    flux = np.full(len(xs), math.nan)
    err = np.full(len(xs), math.nan)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        return flux, err
    data = np.ascontiguousarray(np.where(usable, image, 0.0), dtype=np.float64)
    var = np.ascontiguousarray(np.where(usable, variance, 0.0), dtype=np.float64)
    f, e, _ = sep.sum_circle(
        data, xs[ok], ys[ok], radius, var=var, mask=np.ascontiguousarray(~usable), subpix=5
    )
    flux[ok], err[ok] = f, e
    return flux, err
