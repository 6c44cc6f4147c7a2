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
"""Circular Gaussian + constant fitted to many star stamps at once.

The PSF-size estimate fits a few dozen to a few hundred small stamps.  One
`scipy.optimize.least_squares` call per stamp costs about 10 ms of Python
bookkeeping for a few hundred pixels of arithmetic; here every stamp takes
its Levenberg-Marquardt steps in the same numpy operations (a batch of 5 x 5
normal equations per iteration), so a hundred fits cost about as much as
one.  Each stamp's iteration depends only on its own pixels: the result of
a stamp does not depend on the others in the batch.
"""

from __future__ import annotations

__all__ = ["fitCircularGaussians"]

import numpy as np

#: Relative decrease of the cost below which a stamp's fit has converged.
FTOL = 1e-12
#: Relative parameter step below which a stamp's fit has converged.
XTOL = 1e-10
#: Most iterations per stamp (a fit still running then counts as failed).
MAX_ITERATIONS = 200
#: Smallest sigma (pixels) allowed; the largest is the stamp width.
MIN_SIGMA = 0.3


def _profile(
    params: np.ndarray, xx: np.ndarray, yy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the unit Gaussian, the offsets from the centre and r^2 of each stamp's pixels."""
    xc, yc, sig = params[:, 1, None], params[:, 2, None], params[:, 3, None]
    dx, dy = xx[None, :] - xc, yy[None, :] - yc
    r2 = dx * dx + dy * dy
    return np.exp(-r2 / (2.0 * sig * sig)), dx, dy, r2


def _residuals(params: np.ndarray, stamps: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    g = _profile(params, xx, yy)[0]
    return params[:, 0, None] * g + params[:, 4, None] - stamps


def _residualsAndJacobian(
    params: np.ndarray, stamps: np.ndarray, xx: np.ndarray, yy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    g, dx, dy, r2 = _profile(params, xx, yy)
    amp, sig = params[:, 0, None], params[:, 3, None]
    residual = amp * g + params[:, 4, None] - stamps
    ag = amp * g / (sig * sig)
    return residual, np.stack([g, ag * dx, ag * dy, ag * r2 / sig, np.ones_like(g)], axis=-1)


def fitCircularGaussians(stamps: np.ndarray) -> np.ndarray:
    """Fit ``amp exp(-r^2 / 2 sigma^2) + sky`` to each stamp; return the sigmas.

    Each fit starts from the stamp's maximum as amplitude, its centre, sigma
    1.5 and sky 0, and keeps the centre inside the stamp, the amplitude
    non-negative and sigma within [`MIN_SIGMA`, stamp width] (a step leaving
    these bounds is clipped onto them).  Levenberg-Marquardt with the
    analytic Jacobian, iterated to `FTOL` / `XTOL`.

    Parameters
    ----------
    stamps : `numpy.ndarray`
        The stamps, shape ``(n, height, width)``, background near zero.

    Returns
    -------
    sigmas : `numpy.ndarray`
        The fitted sigma (pixels) of each stamp; NaN where the stamp has no
        positive pixel or the fit did not converge in `MAX_ITERATIONS`.
    """
    stamps = np.asarray(stamps, dtype=float)
    n, h, w = stamps.shape
    sigmas = np.full(n, np.nan)
    if n == 0:
        return sigmas
    yy, xx = (a.ravel() for a in np.mgrid[0:h, 0:w].astype(float))
    data = stamps.reshape(n, h * w)
    peak = data.max(axis=1)
    todo = np.flatnonzero(peak > 0)
    lower = np.array([0.0, 0.0, 0.0, MIN_SIGMA, -np.inf])
    upper = np.array([np.inf, w - 1.0, h - 1.0, float(w), np.inf])
    params = np.empty((todo.size, 5))
    params[:] = [0.0, (w - 1) / 2.0, (h - 1) / 2.0, 1.5, 0.0]
    params[:, 0] = peak[todo]
    data = data[todo]
    residual, jac = _residualsAndJacobian(params, data, xx, yy)
    cost = 0.5 * np.einsum("ij,ij->i", residual, residual)
    damping = np.full(todo.size, 1e-3)
    active = np.ones(todo.size, dtype=bool)
    converged = np.zeros(todo.size, dtype=bool)
    for _ in range(MAX_ITERATIONS):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        J, r = jac[idx], residual[idx]
        normal = np.einsum("nmi,nmj->nij", J, J)
        gradient = np.einsum("nmi,nm->ni", J, r)
        diag = np.einsum("nii->ni", normal)
        scale = np.maximum(diag, 1e-300)
        damped = normal + (damping[idx, None] * scale)[:, :, None] * np.eye(5)[None]
        try:
            step = -np.linalg.solve(damped, gradient[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([-np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(damped, gradient)])
        trial = np.clip(params[idx] + step, lower, upper)
        trialResidual = _residuals(trial, data[idx], xx, yy)
        trialCost = 0.5 * np.einsum("ij,ij->i", trialResidual, trialResidual)
        better = np.isfinite(trialCost) & (trialCost <= cost[idx])
        moved = np.abs(trial - params[idx])
        small = np.all(moved <= XTOL * (XTOL + np.abs(params[idx])), axis=1)
        flat = (cost[idx] - trialCost) <= FTOL * cost[idx]
        accept = idx[better]
        params[accept] = trial[better]
        cost[accept] = trialCost[better]
        if accept.size:
            residual[accept], jac[accept] = _residualsAndJacobian(params[accept], data[accept], xx, yy)
        damping[accept] = np.maximum(damping[accept] / 3.0, 1e-12)
        damping[idx[~better]] *= 4.0
        done = (better & (small | flat)) | (~better & small) | (damping[idx] > 1e12)
        converged[idx[done]] = True
        active[idx[done]] = False
    good = converged & np.isfinite(params[:, 3])
    sigmas[todo[good]] = np.abs(params[good, 3])
    return sigmas
