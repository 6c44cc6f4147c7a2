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
"""Percentiles from bracketed ranks: numpy's numbers, bit for bit."""

import numpy as np
import pytest

from lsst.ip.diffim.math.bracketedPercentiles import bracketedPercentiles

_RNG = np.random.default_rng(17)
_ARRAYS = {
    "normal-float32": _RNG.normal(size=40_001).astype(np.float32),
    "ties": _RNG.integers(0, 7, size=30_000).astype(np.float32),
    "cauchy-float64": _RNG.standard_cauchy(size=25_000),
    "sorted": np.arange(20_000, dtype=np.float32)[::-1].copy(),
    "constant": np.full(17_000, 3.5, np.float32),
}
_PERCENTS = [[25, 50, 75], [0, 100], [0.1, 33.3, 50, 99.99], [50]]


@pytest.mark.parametrize("name", list(_ARRAYS))
@pytest.mark.parametrize("percents", _PERCENTS, ids=str)
def test_same_numbers_as_numpy(name, percents):
    values = _ARRAYS[name]
    before = values.copy()
    got = bracketedPercentiles(values, percents, sampleSize=256)
    np.testing.assert_array_equal(got, np.percentile(values, percents))
    np.testing.assert_array_equal(values, before)  # not modified


def test_arrays_numpy_handles_itself():
    values = _ARRAYS["normal-float32"].copy()
    values[5] = np.nan
    assert np.isnan(bracketedPercentiles(values, [25, 75], sampleSize=256)).all()
    small = np.array([3.0, 1.0, 2.0])
    np.testing.assert_array_equal(bracketedPercentiles(small, [50]), [2.0])
    ints = np.arange(10_000)
    got = bracketedPercentiles(ints, [10, 90], sampleSize=64)
    np.testing.assert_array_equal(got, np.percentile(ints, [10, 90]))
    np.testing.assert_allclose(got, [999.9, 8999.1])
