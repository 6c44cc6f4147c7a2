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
"""The tile mosaic that measures a large image's variance factor (math/tileMosaic.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lsst.ip.diffim.adapters.noiseModel import applyVarianceScaling
from lsst.ip.diffim.math.tileMosaic import MOSAIC_PIXELS, mosaicLayout, tileMosaic
from lsst.ip.diffim.tests import maskedImage


def test_layoutSpreadsTilesOverTheImage():
    assert mosaicLayout((1024, 1024)) is None  # small enough: measured whole
    layout = mosaicLayout((4096, 4096), maxPixels=1 << 20, tile=512)
    assert layout is not None
    assert layout.shape == (1024, 1024)
    # One tile centred in each 2048^2 quadrant.
    assert layout.rowStarts == layout.colStarts == (768, 2816)
    wide = mosaicLayout((1000, 9000), maxPixels=1 << 20, tile=256)
    assert wide is not None and wide.shape[0] * wide.shape[1] <= 1 << 20
    assert len(wide.rowStarts) == 1 and len(wide.colStarts) == 16  # 16 tiles along the long side
    assert all(0 <= x <= 9000 - 256 for x in wide.colStarts)
    array = np.arange(4096 * 4096, dtype=np.int64).reshape(4096, 4096)
    mosaic = tileMosaic(array, layout)
    assert mosaic[0, 0] == array[768, 768] and mosaic[1023, 1023] == array[2816 + 511, 2816 + 511]
    assert mosaic[512, 0] == array[2816, 768]


def _noisyField(shape, sigma, seed):
    """Stars on a sky with a steep gradient (a sigma per 300 px), white noise of ``sigma``."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    image = 200.0 + sigma * (xx + 0.5 * yy) / 300.0 + rng.normal(0.0, sigma, shape).astype(np.float32)
    for _ in range(600):  # 2-px stars of 50-500 sigma peaks, painted in small boxes
        x, y = rng.uniform(8, nx - 8), rng.uniform(8, ny - 8)
        peak = sigma * rng.uniform(50, 500)
        ix, iy = int(x), int(y)
        sy, sx = slice(iy - 8, iy + 9), slice(ix - 8, ix + 9)
        image[sy, sx] += peak * np.exp(-((xx[sy, sx] - x) ** 2 + (yy[sy, sx] - y) ** 2) / 8.0)
    return image.astype(np.float32)


def test_mosaicFactorMatchesTruthAndWholeImage():
    sigma, shape = 10.0, (1100, 1150)  # 1.27 Mpx: above MOSAIC_PIXELS
    assert shape[0] * shape[1] > MOSAIC_PIXELS
    image = _noisyField(shape, sigma, seed=5)
    variance = np.full(shape, sigma**2 / 2.5, dtype=np.float32)  # 2.5x too small
    sampled = applyVarianceScaling(maskedImage(image, variance.copy()))
    whole = applyVarianceScaling(maskedImage(image, variance.copy()), maxPixels=None)
    assert whole == pytest.approx(2.5, rel=0.01)
    assert sampled == pytest.approx(2.5, rel=0.01)
    assert sampled == pytest.approx(whole, rel=0.005)
    mi = maskedImage(image, variance.copy())
    factor = applyVarianceScaling(mi)
    assert factor == sampled  # deterministic
    assert np.allclose(mi.variance.array, variance * factor, rtol=1e-6)


def test_fwhmOfALargeImageFromItsMosaic():
    """Above fwhmEstimate.MOSAIC_PIXELS the FWHM comes from tiles, NaN between them: the same stars' size."""
    from lsst.ip.diffim.adapters.fwhmEstimate import MOSAIC_PIXELS as FWHM_PIXELS
    from lsst.ip.diffim.adapters.fwhmEstimate import estimateFwhmFromImage

    rng = np.random.default_rng(3)
    shape, fwhm = (1450, 1450), 3.2
    assert shape[0] * shape[1] > FWHM_PIXELS
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    image = rng.normal(0.0, 5.0, shape).astype(np.float32)
    for _ in range(800):  # Gaussian stars of 20-2000 sigma peaks
        x, y = rng.uniform(10, shape[1] - 10), rng.uniform(10, shape[0] - 10)
        ix, iy = int(x), int(y)
        yy, xx = np.mgrid[iy - 9 : iy + 10, ix - 9 : ix + 10]
        peak = 5.0 * 10 ** rng.uniform(1.3, 3.3)
        image[iy - 9 : iy + 10, ix - 9 : ix + 10] += peak * np.exp(
            -((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)
        )
    mi = maskedImage(image, np.full(shape, 25.0, dtype=np.float32))
    sampled = estimateFwhmFromImage(mi)
    whole = estimateFwhmFromImage(mi, maxPixels=None)
    # The lower envelope of the fitted sizes of point-sampled Gaussians is a few percent below the truth.
    assert whole == pytest.approx(fwhm, rel=0.08)
    assert sampled == pytest.approx(fwhm, rel=0.08)
    assert sampled == pytest.approx(whole, rel=0.01)
