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
"""The all-bins-at-once clipped mean gives the per-bin clipped mean bit for bit."""

import numpy as np
import pytest

from lsst.ip.diffim.math.binnedBackground import binnedBackgroundImage
from lsst.ip.diffim.math.clippedBinLevels import clippedBinLevels, clippedMean


def _perBin(image, good, xEdges, yEdges):
    levels = np.full((len(yEdges) - 1, len(xEdges) - 1), np.nan)
    for j in range(len(yEdges) - 1):
        for i in range(len(xEdges) - 1):
            sub = (slice(yEdges[j], yEdges[j + 1]), slice(xEdges[i], xEdges[i + 1]))
            levels[j, i] = clippedMean(image[sub][good[sub]])
    return levels


@pytest.mark.parametrize("seed", [0, 1, 2])
def testBitIdenticalToPerBin(seed):
    rng = np.random.default_rng(seed)
    ny, nx = 101, 157  # unequal bins: the edges are rounded
    image = rng.normal(100.0, 5.0, size=(ny, nx))
    # Stars (clipped), quantized values (ties at the clip limits), a constant bin (sigma 0).
    image[rng.integers(0, ny, 60), rng.integers(0, nx, 60)] += rng.uniform(50, 5000, 60)
    image[:20, 40:80] = np.round(image[:20, 40:80])
    image[30:45, :25] = 7.0
    good = rng.uniform(size=image.shape) > 0.2
    good[55:90, 90:150] = False  # empty bins
    good[0, 0:12] = False
    good[0:3, 0] = True
    xEdges = np.linspace(0, nx, 13).round().astype(int)
    yEdges = np.linspace(0, ny, 8).round().astype(int)
    fast = clippedBinLevels(image, good, xEdges, yEdges)
    slow = _perBin(image, good, xEdges, yEdges)
    np.testing.assert_array_equal(fast, slow)
    assert np.isnan(fast).sum() == np.isnan(slow).sum() > 0
    # A star-free level is near the sky (100) where bins have enough pixels.
    assert abs(np.nanmedian(fast) - 100.0) < 1.0


def testSmallBinsAndSinglePixels():
    rng = np.random.default_rng(5)
    image = rng.normal(size=(9, 9))
    good = rng.uniform(size=image.shape) > 0.5
    edges = np.arange(10)  # one pixel per bin: its value, or NaN
    np.testing.assert_array_equal(clippedBinLevels(image, good, edges, edges), np.where(good, image, np.nan))


def testBackgroundImageUnchanged():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:130, 0:190]
    image = 50.0 + 0.1 * xx - 0.05 * yy + rng.normal(0.0, 2.0, size=xx.shape)
    good = np.ones(image.shape, dtype=bool)
    bg = binnedBackgroundImage(image, good, 32)
    # The gradient is recovered in the interior.
    truth = 50.0 + 0.1 * xx - 0.05 * yy
    assert np.abs(bg - truth)[32:-32, 32:-32].max() < 0.5
