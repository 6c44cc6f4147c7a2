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
"""rowMedians gives numpy's median of each row's usable elements."""

import numpy as np
import pytest

from lsst.ip.diffim.math.rowMedians import rowMedians


@pytest.mark.parametrize("width", [1, 2, 7, 64, 101])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_medians_match_nanmedian(width, dtype):
    rng = np.random.default_rng(width)
    values = rng.normal(size=(40, width)).astype(dtype)
    values[rng.random(values.shape) < 0.3] = np.nan
    values[0] = np.nan  # a row with nothing usable
    kept = values.copy()
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(values.astype(np.float64) if dtype == np.float64 else values, axis=1)
    got = rowMedians(values)
    np.testing.assert_array_equal(values, kept)  # not overwritten by default
    assert np.isnan(got[0])
    for row, want, med in zip(values[1:], expected[1:], got[1:], strict=True):
        ok = ~np.isnan(row)
        if not ok.any():
            assert np.isnan(med)
        else:
            assert med == float(np.median(row[ok])) == pytest.approx(float(want), rel=1e-6)


def test_row_medians_with_usable_mask_and_overwrite():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(25, 33))
    usable = rng.random(values.shape) > 0.5
    expected = [np.median(v[u]) if u.any() else np.nan for v, u in zip(values, usable, strict=True)]
    got = rowMedians(values.copy(), usable, overwrite=True)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="2-d"):
        rowMedians(np.zeros(5))
