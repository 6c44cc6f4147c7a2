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
"""Truth tests of DecorrelateALKernelTask (and upstream's test_imageDecorrelation, ported)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erfc

from lsst.images import Box
from lsst.images.psfs import GaussianPointSpreadFunction
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.imageDecorrelation import (
    DecorrelateALKernelSpatialTask,
    DecorrelateALKernelTask,
)
from lsst.ip.diffim.math.decorrelation import applyFilterKernel, padCenterOriginArray
from lsst.ip.diffim.math.kernels import FixedKernel


def gauss(sigma: float, r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    g = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return g / g.sum()


def autocorr(a: np.ndarray, lag: int, border: int = 50) -> float:
    a = a[border:-border, border:-border].astype(float)
    a = a - a.mean()
    return max(
        abs(float(np.mean(a[:, lag:] * a[:, :-lag]) / a.var())),
        abs(float(np.mean(a[lag:, :] * a[:-lag, :]) / a.var())),
    )


def Q(z: float) -> float:
    return 0.5 * erfc(z / math.sqrt(2.0))


def noisePair(n: int, svar: float, tvar: float, sigS: float, sigT: float, seed: int):
    """Pure-noise science and template, the difference ``S - kappa * T`` and the true kappa."""
    rng = np.random.default_rng(seed)
    kappa = gauss(math.sqrt(sigS**2 - sigT**2), 12)
    S = (rng.normal(size=(n, n)) * math.sqrt(svar)).astype(np.float32)
    T = (rng.normal(size=(n, n)) * math.sqrt(tvar)).astype(np.float32)
    D = S - applyFilterKernel(T, kappa)
    bbox = Box.factory[0:n, 0:n]
    science = makeVisitImage(
        S,
        np.full((n, n), svar, np.float32),
        psf=GaussianPointSpreadFunction(sigS, bounds=bbox, stamp_size=33),
    )
    template = makeVisitImage(
        T,
        np.full((n, n), tvar, np.float32),
        psf=GaussianPointSpreadFunction(sigT, bounds=bbox, stamp_size=33),
    )
    diffVar = np.full((n, n), svar + tvar * float((kappa**2).sum()), np.float32)
    difference = makeVisitImage(D, diffVar, psf=science.psf)
    return science, template, difference, kappa


def matchedFilterSnr(
    image: np.ndarray, variance: np.ndarray, psf: np.ndarray, border: int = 60
) -> np.ndarray:
    """Detection S/N of a PSF matched filter assuming white noise of the given variance."""
    smoothed = applyFilterKernel(image, psf)[border:-border, border:-border]
    sigma = np.sqrt(variance[border:-border, border:-border] * float((psf**2).sum()))
    return smoothed / sigma


class TestTruth:
    """Pure-noise differences with known kernel, PSFs and noise."""

    @pytest.fixture(scope="class")
    @classmethod
    def noise(cls):
        science, template, difference, kappa = noisePair(2048, 1.0, 4.0, 3.3, 2.2, seed=5)
        before = difference.image.array.copy()
        beforeVar = difference.variance.array.copy()
        DecorrelateALKernelTask().run(science, template, difference, FixedKernel(kappa))
        return science, before, beforeVar, difference

    def test_autocorrelation(self, noise):
        science, before, _, corrected = noise
        for lag in (1, 2):
            assert autocorr(before, lag) > 0.03  # ~0.046 / 0.040 without decorrelation
            assert autocorr(corrected.image.array, lag) < 0.02

    def test_variancePlane(self, noise):
        _, _, _, corrected = noise
        empirical = float(corrected.image.array[50:-50, 50:-50].var())
        plane = float(np.mean(corrected.variance.array))
        assert plane == pytest.approx(1.0 + 4.0, rel=1e-3)
        assert empirical == pytest.approx(plane, rel=0.03)

    def test_falsePositives(self, noise):
        science, before, beforeVar, corrected = noise
        psf = gauss(3.3, 12)
        snrBefore = matchedFilterSnr(before, beforeVar, psf)
        snrAfter = matchedFilterSnr(corrected.image.array, corrected.variance.array, psf)
        npix = snrAfter.size
        # 5 sigma: the expected count from the measured S/N distribution (a few
        # pixels in 4e6 are too few to count) against the Gaussian one.
        expected5 = npix * Q(5.0)
        assert npix * Q(5.0 / snrAfter.std()) == pytest.approx(expected5, rel=0.5)
        assert int((snrAfter > 5).sum()) <= 20
        assert int((snrBefore > 5).sum()) > 1000 * expected5
        # 3 sigma, counted.
        expected3 = npix * Q(3.0)
        assert int((snrAfter > 3).sum()) == pytest.approx(expected3, rel=0.5)
        assert int((snrBefore > 3).sum()) > 10 * expected3


def test_scoreImageSnr():
    """The peak S/N of point sources in a decorrelated score image is the optimal S/N."""
    n, svar, tvar, sigP, sigT = 512, 1.0, 0.5, 2.5, 1.5
    rng = np.random.default_rng(11)
    psf = gauss(sigP, 12)
    kappa = gauss(math.sqrt(2 * sigP**2 - sigT**2), 15)  # matches T to S * P
    flux = 600.0
    xs, ys = np.meshgrid(np.arange(40, n - 40, 72), np.arange(40, n - 40, 72))
    scienceArr = np.zeros((n, n), np.float32)
    for x, y in zip(xs.ravel(), ys.ravel()):
        scienceArr[y - 12 : y + 13, x - 12 : x + 13] += flux * psf
    scienceArr += rng.normal(size=(n, n)).astype(np.float32) * math.sqrt(svar)
    templateArr = (rng.normal(size=(n, n)) * math.sqrt(tvar)).astype(np.float32)
    bbox = Box.factory[0:n, 0:n]
    science = makeVisitImage(
        scienceArr,
        np.full((n, n), svar, np.float32),
        psf=GaussianPointSpreadFunction(sigP, bounds=bbox, stamp_size=25),
    )
    template = makeVisitImage(
        templateArr,
        np.full((n, n), tvar, np.float32),
        psf=GaussianPointSpreadFunction(sigT, bounds=bbox, stamp_size=25),
    )
    score = applyFilterKernel(scienceArr, psf[::-1, ::-1]) - applyFilterKernel(templateArr, kappa)
    scoreExp = makeVisitImage(score, np.ones((n, n), np.float32), psf=science.psf)
    DecorrelateALKernelTask().run(
        science,
        template,
        scoreExp,
        FixedKernel(kappa),
        preConvKernel=psf,
        templateMatched=True,
        preConvMode=True,
    )
    snr = scoreExp.image.array / np.sqrt(scoreExp.variance.array)
    peaks = snr[ys.ravel(), xs.ravel()]
    # Optimal S/N: F^2 sum_f |P|^2 / (s + t |kappa|^2 / |P|^2), on a grid the kernels fit.
    shape = (128, 128)
    pft = np.fft.fft2(padCenterOriginArray(psf, shape))
    kft = np.fft.fft2(padCenterOriginArray(kappa, shape))
    p2 = np.abs(pft) ** 2
    expected = flux * math.sqrt(float(np.mean(p2 / (svar + tvar * np.abs(kft) ** 2 / p2))))
    assert float(np.mean(peaks)) == pytest.approx(expected, rel=0.05)
    # Without decorrelation the score's peak over the true noise is lower (for reference).
    assert expected > flux * math.sqrt(float((psf**2).sum())) / math.sqrt(svar + tvar) * 1.0


def makeFakeImages(svar: float, tvar: float, seed: int = 66, n: int = 256, nSources: int = 50):
    """Upstream's makeFakeImages: PSF sigma 3.3 (science), 2.2 (template); kernel on a 32x32 grid."""
    rng = np.random.default_rng(seed)
    psf1, psf2 = 3.3, 2.2
    xs = rng.uniform(20, n - 20, nSources)
    ys = rng.uniform(20, n - 20, nSources)
    fluxes = rng.uniform(500, 2000, nSources)
    yy, xx = np.mgrid[0:n, 0:n]

    def render(sig: float) -> np.ndarray:
        out = np.zeros((n, n))
        for x, y, f in zip(xs, ys, fluxes):
            out += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sig**2)) / (2 * np.pi * sig**2)
        return out

    # Even-sized (32x32) matching kernel centred at (-1, -1) offsets, as upstream.
    ky, kx = np.mgrid[-16:16, -16:16]
    ksig = math.sqrt(psf1**2 - psf2**2)
    kernel = np.exp(-((kx + 1) ** 2 + (ky + 1) ** 2) / (2 * ksig**2))
    kernel /= kernel.sum()
    bbox = Box.factory[0:n, 0:n]
    # The science stars are the template's convolved with the kernel (so the kernel matches them).
    from lsst.ip.diffim.math.convolve import ConvolutionControl, convolve

    noiseless = makeVisitImage(render(psf2).astype(np.float32), np.ones((n, n), np.float32))
    sStars = convolve(noiseless, FixedKernel(kernel), ConvolutionControl(doCopyEdge=True)).image.array
    sArr = (sStars + rng.normal(size=(n, n)) * math.sqrt(svar)).astype(np.float32)
    tArr = (render(psf2) + rng.normal(size=(n, n)) * math.sqrt(tvar)).astype(np.float32)
    science = makeVisitImage(
        sArr,
        np.full((n, n), svar, np.float32),
        psf=GaussianPointSpreadFunction(psf1, bounds=bbox, stamp_size=33),
    )
    template = makeVisitImage(
        tArr,
        np.full((n, n), tvar, np.float32),
        psf=GaussianPointSpreadFunction(psf2, bounds=bbox, stamp_size=33),
    )
    return science, template, kernel


def _difference(science, template, kernel):
    from lsst.ip.diffim.math.convolve import ConvolutionControl, convolve

    matched = convolve(template, FixedKernel(kernel), ConvolutionControl(doCopyEdge=True))
    d = science.image.array - matched.image.array
    v = science.variance.array + matched.variance.array
    return makeVisitImage(d, v, psf=science.psf)


def _clippedStats(exposure) -> tuple[float, float]:
    from lsst.ip.diffim.math.statistics import clippedMeanStd

    _, std, _ = clippedMeanStd(exposure.image.array[20:-20, 20:-20])
    varMean, _, _ = clippedMeanStd(exposure.variance.array[20:-20, 20:-20])
    return std * std, varMean


@pytest.mark.parametrize("svar, tvar", [(0.04, 0.04), (0.08, 0.04), (0.04, 0.08)])
@pytest.mark.parametrize("complete", [False, True])
def test_upstreamDiffimCorrection(svar, tvar, complete):
    science, template, kernel = makeFakeImages(svar, tvar)
    diff = _difference(science, template, kernel)
    pixVar, planeVar = _clippedStats(diff)
    assert pixVar < svar + tvar and planeVar < svar + tvar
    task = DecorrelateALKernelTask()
    task.config.completeVarPlanePropagation = complete
    corrected = task.run(science, template, diff, FixedKernel(kernel)).correctedExposure
    pixVar, planeVar = _clippedStats(corrected)
    assert pixVar == pytest.approx(svar + tvar, rel=0.05)
    assert planeVar == pytest.approx(svar + tvar, rel=0.02)
    assert pixVar == pytest.approx(planeVar, rel=0.05)


def test_upstreamNoiseOnlyAutocorrelation():
    science, template, difference, kappa = noisePair(256, 1.0, 100.0, 3.3, 2.2, seed=22)
    for lag in (1, 2, 3):
        assert autocorr(science.image.array, lag, border=20) < 0.1
        assert autocorr(difference.image.array, lag, border=20) > 0.2
    DecorrelateALKernelTask().run(science, template, difference, FixedKernel(kappa))
    for lag in (1, 2, 3):
        assert autocorr(difference.image.array, lag, border=20) < 0.1


def test_spatialTaskAgrees():
    science, template, kernel = makeFakeImages(0.04, 0.04)
    results = []
    for spatiallyVarying in (False, True):
        task = DecorrelateALKernelSpatialTask()
        task.config.gridSpacing = 64
        diff = _difference(science, template, kernel)
        results.append(
            task.run(science, template, diff, FixedKernel(kernel), spatiallyVarying).correctedExposure
        )
    for r in results:
        pixVar, planeVar = _clippedStats(r)
        assert pixVar == pytest.approx(0.08, rel=0.05)
        assert planeVar == pytest.approx(0.08, rel=0.02)
    np.testing.assert_allclose(results[0].image.array, results[1].image.array, atol=1e-4)
    np.testing.assert_allclose(results[0].variance.array, results[1].variance.array, rtol=0.03)


def test_preConvKernelNeedsScoreMode():
    science, template, kernel = makeFakeImages(0.04, 0.04, n=64, nSources=2)
    diff = _difference(science, template, kernel)
    with pytest.raises(ValueError):
        DecorrelateALKernelTask().run(science, template, diff, FixedKernel(kernel), preConvKernel=kernel)


def test_scienceConvolvedVarianceRule():
    """Science convolved: roles swap and the variance is divided by kSum^2 (upstream's rule)."""
    from lsst.ip.diffim.math.decorrelation import computeCommonShape, computeDiffimCorrection

    science, template, kernel = makeFakeImages(0.04, 0.08, n=128, nSources=5)
    kernel = 1.3 * kernel  # a kernel sum of 1.3
    diff = _difference(template, science, kernel)  # the science image's role is the convolved one
    task = DecorrelateALKernelTask()
    svar, tvar = task.computeVarianceMean(science), task.computeVarianceMean(template)
    result = task.run(science, template, diff, FixedKernel(kernel), templateMatched=False)
    corrected = result.correctedExposure
    # Recompute the weights as upstream defines them (unconvolved = template, convolved = science).
    half = task._kernelHalfSize(kernel.shape, (33, 33))
    shape = computeCommonShape((2 * half[0] + 1, 2 * half[1] + 1), kernel.shape, (33, 33))
    f = computeDiffimCorrection(kernel, tvar, svar, shape)
    w1, w2 = f.varianceWeights()
    expected = (w1 * template.variance.array + w2 * science.variance.array) / 1.3**2
    np.testing.assert_allclose(corrected.variance.array, expected, rtol=1e-5)


def test_spatiallyVaryingFollowsKernel():
    """With a kernel that widens across the image, the spatial variant matches the constant filter
    computed at each node, at that node."""
    from lsst.ip.diffim.math.functions import Box2D, Chebyshev1Function2
    from lsst.ip.diffim.math.kernels import LinearCombinationKernel

    n = 256
    science, template, difference, _ = noisePair(n, 1.0, 4.0, 3.3, 2.2, seed=3)
    g1, g2 = gauss(1.2, 12), gauss(2.8, 12)
    kernel = LinearCombinationKernel(
        [FixedKernel(g1), FixedKernel(g2 - g1)], Chebyshev1Function2(1, Box2D.fromBox(difference.bbox))
    )
    kernel.setSpatialParameters([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])  # 0 at x = min, 1 at x = max
    spatial = DecorrelateALKernelSpatialTask()
    spatial.config.gridSpacing = 255  # nodes at the corners
    varying = makeVisitImage(
        difference.image.array.copy(), difference.variance.array.copy(), psf=difference.psf
    )
    spatial.run(science, template, varying, kernel, spatiallyVarying=True)
    fixed = {}
    for x in (0, n - 1):
        fixed[x] = makeVisitImage(
            difference.image.array.copy(), difference.variance.array.copy(), psf=difference.psf
        )
        DecorrelateALKernelTask().run(science, template, fixed[x], kernel, xcen=float(x), ycen=128.0)
        np.testing.assert_allclose(varying.variance.array[128, x], fixed[x].variance.array[128, x], rtol=1e-4)

    def rms(a, b, x):
        cols = slice(max(x - 20, 0), x + 21)
        return float(np.std(a.image.array[100:156, cols] - b.image.array[100:156, cols]))

    # Near each end the spatial filter is that end's filter, not the other end's.
    for x, other in ((0, n - 1), (n - 1, 0)):
        assert rms(varying, fixed[x], x) < 0.3 * rms(varying, fixed[other], x)
