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
"""ScaleVarianceTask and the binned background it measures the noise on."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lsst.ip.diffim.math.binnedBackground import binnedBackgroundImage
from lsst.ip.diffim.scaleVariance import (
    ExceedsMaxVarianceScaleError,
    ScaleVarianceConfig,
    ScaleVarianceTask,
)
from lsst.ip.diffim.tests import maskedImage


def _noisyImage(sigma: float, predictedSigma: float, shape=(200, 180), seed=1, sky=None):
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, sigma, shape)
    if sky is not None:
        image += sky
    return maskedImage(image, predictedSigma**2)


def test_pixelAndImageFactorsRecoverTrueRatio():
    # The noise is 1.5x the prediction: both factors are 2.25.
    mi = _noisyImage(3.0, 2.0)
    task = ScaleVarianceTask()
    factors = task.computeScaleFactors(mi)
    assert factors.pixelFactor == pytest.approx(2.25, rel=0.03)
    assert factors.imageFactor == pytest.approx(2.25, rel=0.03)
    assert task.computePixelScaleFactor(mi) == pytest.approx(factors.pixelFactor)
    assert task.computeImageScaleFactor(mi) == pytest.approx(factors.imageFactor)
    # Nothing was changed.
    assert np.all(mi.variance.array == np.float32(4.0))


def test_runAppliesFactorInPlaceAndRestoresImage():
    yy, xx = np.mgrid[0:200, 0:180]
    sky = 1000.0 + 2.0 * xx + 0.01 * (yy - 100) ** 2
    mi = _noisyImage(5.0, 2.5, sky=sky)
    before = mi.image.array.copy()
    task = ScaleVarianceTask()
    factor = task.run(mi)
    # A sloped, curved sky does not inflate the measurement: truth (5/2.5)^2 = 4.
    assert factor == pytest.approx(4.0, rel=0.04)
    assert np.allclose(mi.variance.array, 6.25 * factor)
    assert np.array_equal(mi.image.array, before)
    assert task.metadata["factor"] == pytest.approx(factor)


def test_maskedPixelsAreIgnored():
    mi = _noisyImage(2.0, 2.0)
    # Bright "sources" in a masked area would inflate the pixel statistics.
    mi.image.array[50:120, 40:140] += np.random.default_rng(5).normal(0, 200, (70, 100))
    mi.mask.set("DETECTED", np.pad(np.ones((70, 100), dtype=bool), ((50, 80), (40, 40))))
    factor = ScaleVarianceTask().computeScaleFactors(mi).pixelFactor
    assert factor == pytest.approx(1.0, rel=0.05)
    config = ScaleVarianceConfig()
    config.maskPlanes = []
    config.background.ignoredPixelMask = []
    assert ScaleVarianceTask(config=config).computeScaleFactors(mi).pixelFactor > 1.3


def test_fallsBackToImageBasedThenRaises(caplog):
    # Pixel-based factor 9 exceeds a limit of 5; the image-based one uses the
    # median variance, which a few tiny-variance pixels do not move.
    mi = _noisyImage(3.0, 1.0)
    config = ScaleVarianceConfig()
    config.limit = 5.0
    task = ScaleVarianceTask(config=config)
    with pytest.raises(ExceedsMaxVarianceScaleError, match="exceeds configured limit") as info:
        task.run(mi)
    assert info.value.metadata["scaleVarianceLimit"] == 5.0
    assert info.value.metadata["scaleVarianceValue"] == pytest.approx(9.0, rel=0.05)
    # The variance was left alone.
    assert np.all(mi.variance.array == np.float32(1.0))
    # A third of the variance far too small: pixel-based is 2.8, above a limit
    # of 2; image-based (median variance 1) is near the truth of 1.
    mi2 = _noisyImage(1.0, 1.0, seed=3)
    mi2.variance.array[:, ::3] = 1e-4
    config.limit = 2.0
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        factor = ScaleVarianceTask(config=config).run(mi2)
    assert "trying image-based method" in caplog.text
    assert factor == pytest.approx(1.0, rel=0.05)


def test_warnsWhenNoiseDiffersByMoreThan20Percent(caplog):
    task = ScaleVarianceTask()
    with caplog.at_level(logging.WARNING):
        task.run(_noisyImage(1.1, 1.0, seed=7))
    assert "times the noise" not in caplog.text
    with caplog.at_level(logging.WARNING):
        task.run(_noisyImage(1.3, 1.0, seed=8))
    assert "times the noise" in caplog.text


def test_allMaskedGivesUnity():
    mi = _noisyImage(3.0, 1.0)
    mi.mask.set("BAD", np.ones(mi.image.array.shape, dtype=bool))
    assert ScaleVarianceTask().run(mi) == 1.0


@pytest.mark.parametrize("algorithm", ["CONSTANT", "LINEAR", "NATURAL_SPLINE", "AKIMA_SPLINE"])
def test_binnedBackgroundFollowsSmoothSky(algorithm):
    yy, xx = np.mgrid[0:150, 0:130].astype(float)
    sky = 50.0 + 0.3 * xx - 0.2 * yy
    good = np.ones(sky.shape, dtype=bool)
    good[40:60, 40:60] = False
    image = sky.copy()
    image[40:60, 40:60] = 1e6  # masked, must not leak
    bg = binnedBackgroundImage(image, good, 32, algorithm=algorithm)
    if algorithm == "CONSTANT":
        assert np.median(bg) == pytest.approx(np.mean(sky), abs=3.0)
    else:
        assert np.max(np.abs(bg - sky)) < 1.0
    with pytest.raises(ValueError, match="too few"):
        binnedBackgroundImage(image[:40, :40], good[:40, :40], 32, undersampleStyle="THROW_EXCEPTION")


def _crowdedField(shape=(240, 240), nStars=3000, fwhm=4.5, seed=11):
    """Unit white noise (predicted variance 1) plus thousands of faint stars (peaks 0.3-2 sigma)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    stars = np.zeros(shape)
    ys, xs = rng.integers(0, shape[0], nStars), rng.integers(0, shape[1], nStars)
    sigma = fwhm / 2.3548
    np.add.at(stars, (ys, xs), rng.uniform(0.3, 2.0, nStars) * 2 * np.pi * sigma**2)
    stars = ndimage.gaussian_filter(stars, sigma, mode="wrap")
    return maskedImage(stars + rng.normal(0.0, 1.0, shape), 1.0)


def test_crowdedFieldGivesPixelNoiseNotStarLight():
    # Unresolved stars inflate the pixel scatter; the true noise ratio is 1.
    mi = _crowdedField()
    upstream = ScaleVarianceConfig()
    upstream.structureLimit = 0.0
    assert ScaleVarianceTask(config=upstream).run(maskedImage(mi.image.array, 1.0)) > 1.5
    # Nothing is masked as a source: not a crowded field by the mask, the pixel factor stays.
    assert ScaleVarianceTask().run(maskedImage(mi.image.array, 1.0)) > 1.5
    # Taken as crowded whatever the mask (the CLI masks the detected sources, most of a crowded field).
    config = ScaleVarianceConfig()
    config.crowdedMaskedFraction = 0.0
    task = ScaleVarianceTask(config=config)
    factors = task.computeScaleFactors(mi)
    assert factors.neighbourFactor2 < 0.87 * factors.pixelFactor
    factor = task.run(mi)
    assert factor == pytest.approx(1.0, abs=0.08)
    assert task.metadata["crowded"] is True
    assert task.metadata["pixelFactor"] > 1.5


def test_correlatedNoiseKeepsPixelFactor():
    # Noise correlated over neighbouring pixels as a half-pixel bilinear resampling leaves it
    # (lag-1 correlation 0.5), per-pixel variance 2.25 against a predicted 1: lag-1 differences
    # would say 1.1; the truth is 2.25.
    from scipy import ndimage

    rng = np.random.default_rng(4)
    kernel = np.array([0.5, 0.5])
    noise = ndimage.convolve1d(ndimage.convolve1d(rng.normal(0, 1, (260, 260)), kernel, 0), kernel, 1)
    noise *= 1.5 / noise.std()
    task = ScaleVarianceTask()
    factors = task.computeScaleFactors(maskedImage(noise, 1.0))
    assert factors.neighbourFactor1 < 0.7 * factors.pixelFactor  # the lag-1 pairs are correlated
    factor = task.run(maskedImage(noise, 1.0))
    assert factor == pytest.approx(2.25, rel=0.05)
    assert task.metadata["crowded"] is False


def test_neighbourDifferenceVarianceOfWhiteNoise():
    from lsst.ip.diffim.math.pixelNoise import neighbourDifferenceVariance

    rng = np.random.default_rng(2)
    values = rng.normal(0.0, 3.0, (200, 200))
    good = np.ones(values.shape, dtype=bool)
    good[:, 100:] = False
    values[:, 100:] = 1e6  # never paired with a good pixel
    for lag in (1, 2, 3):
        variance, n = neighbourDifferenceVariance(values, good, lag=lag)
        assert variance == pytest.approx(9.0, rel=0.04)
        assert n == 200 * (100 - lag) + (200 - lag) * 100
    assert np.isnan(neighbourDifferenceVariance(values[:2, :2], good[:2, :2])[0])
    with pytest.raises(ValueError, match="lag"):
        neighbourDifferenceVariance(values, good, lag=0)
