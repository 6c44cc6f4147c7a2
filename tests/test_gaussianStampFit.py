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
"""The batched Gaussian stamp fit of the FWHM estimate's passes, against the truth and least_squares."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from lsst.ip.diffim.adapters.fwhmEstimate import _measure
from lsst.ip.diffim.math.gaussianStampFit import fitCircularGaussians


def _stamp(sigma: float, xc: float, yc: float, amp: float = 100.0, sky: float = 0.5, half: int = 8):
    yy, xx = np.mgrid[0 : 2 * half + 1, 0 : 2 * half + 1].astype(float)
    return amp * np.exp(-((xx - xc) ** 2 + (yy - yc) ** 2) / (2 * sigma**2)) + sky


def _scipySigma(stamp: np.ndarray) -> float:
    """The reference: a bounded `scipy.optimize.least_squares` fit of one stamp."""
    h, w = stamp.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)

    def residual(p: np.ndarray) -> np.ndarray:
        amp, xc, yc, sig, sky = p
        return (amp * np.exp(-((xx - xc) ** 2 + (yy - yc) ** 2) / (2 * sig * sig)) + sky - stamp).ravel()

    start = [float(stamp.max()), (w - 1) / 2, (h - 1) / 2, 1.5, 0.0]
    bounds = ([0, 0, 0, 0.3, -np.inf], [np.inf, w - 1, h - 1, w, np.inf])
    return float(least_squares(residual, start, bounds=bounds, xtol=1e-12, ftol=1e-12).x[3])


def test_noiseFreeStampsGiveTheirSigma():
    sigmas = np.array([0.9, 1.3, 1.7, 2.2, 2.9])
    stamps = np.stack([_stamp(s, 8.0 + 0.3 * i, 7.6 + 0.1 * i) for i, s in enumerate(sigmas)])
    np.testing.assert_allclose(fitCircularGaussians(stamps), sigmas, rtol=1e-8)


def test_noisyStampsAgreeWithLeastSquares():
    rng = np.random.default_rng(3)
    truth = rng.uniform(1.0, 2.5, 40)
    stamps = np.stack(
        [_stamp(s, 8 + rng.uniform(-0.5, 0.5), 8 + rng.uniform(-0.5, 0.5)) for s in truth]
    ) + rng.normal(0, 1.0, (40, 17, 17))
    batched = fitCircularGaussians(stamps)
    single = np.array([_scipySigma(s) for s in stamps], dtype=float)
    np.testing.assert_allclose(batched, single, rtol=1e-4)
    np.testing.assert_allclose(batched, truth, rtol=0.05)
    # A stamp's result does not depend on the others in the batch.
    np.testing.assert_allclose(fitCircularGaussians(stamps[5:6]), batched[5:6], rtol=1e-12)


def test_stampWithoutPositivePixelIsNan():
    stamps = np.stack([_stamp(1.5, 8, 8), -np.ones((17, 17))])
    result = fitCircularGaussians(stamps)
    assert np.isfinite(result[0]) and np.isnan(result[1])
    assert fitCircularGaussians(np.empty((0, 17, 17))).shape == (0,)


def test_measureKeepsTheOrderAndCount():
    # Sources on a grid, brightest first; with maxStars 3 the three brightest are measured, in order.
    image = np.zeros((100, 100))
    xs, ys = [20, 50, 80, 20, 50], [20, 20, 20, 60, 60]
    flux, sig = [900, 800, 700, 600, 500], [1.2, 1.4, 1.6, 1.8, 2.0]
    yy, xx = np.mgrid[0:100, 0:100]
    for x, y, f, s in zip(xs, ys, flux, sig):
        image += f / (2 * np.pi * s * s) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    sources = {
        "x": np.array(xs, float),
        "y": np.array(ys, float),
        "flux": np.array(flux, float),
        "flag_saturated": np.zeros(5, bool),
        "flag_badMask": np.zeros(5, bool),
    }
    fwhms = _measure(image, sources, 0, 0, 8, 3)
    assert len(fwhms) == 3
    np.testing.assert_allclose(np.array(fwhms) / 2.3548200450309493, sig[:3], rtol=1e-3)
    assert len(_measure(image, sources, 0, 0, 8, 10)) == 5
