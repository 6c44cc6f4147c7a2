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
"""The whole-plane finiteness tests (allFinite, finiteWithPositiveVariance) against numpy's own."""

from __future__ import annotations

import numpy as np

from lsst.ip.diffim.math.statistics import allFinite
from lsst.ip.diffim.math.usablePixels import finiteWithPositiveVariance


def test_allFinite_answers_as_isfinite_all():
    rng = np.random.default_rng(1)
    plane = rng.normal(size=(64, 64)).astype(np.float32)
    assert allFinite(plane)
    huge = np.full((64, 64), 3e38, dtype=np.float32)  # its float32 sum overflows; all finite
    assert allFinite(huge)
    for value in (np.nan, np.inf, -np.inf):
        for case in (plane.copy(), huge.copy(), np.full((8, 8), 1e308)):
            case[3, 5] = value
            assert not allFinite(case)
    assert allFinite(np.full((8, 8), 1e308))  # float64 overflow of the sum, every value finite
    assert not allFinite(np.array([1 + 1j, complex(np.nan, 0)]))


def test_finiteWithPositiveVariance_is_the_three_tests():
    rng = np.random.default_rng(2)
    image = rng.normal(size=(40, 50)).astype(np.float32)
    variance = rng.uniform(0.5, 2.0, size=(40, 50)).astype(np.float32)
    cases = []
    cases.append((image, variance))
    bad = image.copy()
    bad[3, 4], bad[10, 11] = np.nan, np.inf
    cases.append((bad, variance))
    badVar = variance.copy()
    badVar[5, 6], badVar[7, 8], badVar[9, 9], badVar[1, 1] = np.inf, np.nan, 0.0, -1.0
    cases.append((image, badVar))
    cases.append((bad, badVar))
    for im, var in cases:
        expected = np.isfinite(im) & np.isfinite(var) & (var > 0)
        np.testing.assert_array_equal(finiteWithPositiveVariance(im, var), expected)
    assert finiteWithPositiveVariance(bad, badVar).sum() == 40 * 50 - 6
