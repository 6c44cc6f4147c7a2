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
"""firstOfCloseGroups gives what the all-pairs walk gives."""

import numpy as np
import pytest

from lsst.ip.diffim.math.closePositions import firstOfCloseGroups


def _allPairs(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    keep = np.ones(x.size, dtype=bool)
    for i in range(x.size):
        if keep[i]:
            close = np.hypot(x - x[i], y - y[i]) < radius
            close[: i + 1] = False
            keep &= ~close
    return keep


@pytest.mark.parametrize("n, side", [(10, 20.0), (400, 100.0), (1500, 300.0)])
@pytest.mark.parametrize("radius", [0.5, 3.0, 4.5])
def testSameAsAllPairs(n: int, side: float, radius: float) -> None:
    rng = np.random.default_rng(n)
    x, y = rng.uniform(0, side, n), rng.uniform(0, side, n)
    # The same stars found again on the other image, a fraction of a pixel away, and chains of neighbours.
    x = np.concatenate([x, x + rng.normal(0, 0.5, n)])
    y = np.concatenate([y, y + rng.normal(0, 0.5, n)])
    keep = firstOfCloseGroups(x, y, radius)
    np.testing.assert_array_equal(keep, _allPairs(x, y, radius))
    assert 0 < keep.sum() < x.size


def testExactRadiusIsNotClose() -> None:
    x = np.array([0.0, 3.0, 6.0, 6.0])
    y = np.array([0.0, 0.0, 0.0, 2.9])
    # 3.0 away is not closer than 3.0; the last is 2.9 from the third, which is kept.
    np.testing.assert_array_equal(firstOfCloseGroups(x, y, 3.0), [True, True, True, False])
    np.testing.assert_array_equal(firstOfCloseGroups(x[:1], y[:1], 3.0), [True])
