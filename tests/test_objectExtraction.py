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
"""The isophotal extraction against `sep.extract` (no filter, deblending or cleaning)."""

import numpy as np
import pytest
import sep

from lsst.ip.diffim.math.objectExtraction import extractObjects


def _starField(seed: int = 7, shape: tuple[int, int] = (300, 420)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    image = np.zeros(shape)
    for _ in range(120):
        x0, y0 = rng.uniform(-3, nx + 3), rng.uniform(-3, ny + 3)
        sigma = rng.uniform(1.0, 2.5)
        image += rng.uniform(20, 3000) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    variance = np.full(shape, 25.0) + 0.1 * image
    image += rng.normal(size=shape) * np.sqrt(variance)
    return image.astype(np.float32), variance.astype(np.float32)


def _sep(data, thresh, **kwargs):
    return sep.extract(data, thresh, filter_kernel=None, deblend_cont=1.0, clean=False, **kwargs)


def _assertSame(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert len(ours) == len(theirs)
    for name in ("npix", "xmin", "xmax", "ymin", "ymax"):
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    np.testing.assert_array_equal(ours["peak"], theirs["peak"])
    np.testing.assert_allclose(ours["x"], theirs["x"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours["y"], theirs["y"], rtol=0, atol=1e-5)
    # sep sums the flux in single precision.
    np.testing.assert_allclose(ours["flux"], theirs["flux"], rtol=1e-5)


@pytest.mark.parametrize("minarea", [1, 5])
def test_relative_threshold_matches_sep(minarea):
    data, variance = _starField()
    ours = extractObjects(data, 3.0, var=variance, minarea=minarea)
    theirs = _sep(data, 3.0, var=variance, minarea=minarea)
    assert len(ours) > 50
    _assertSame(ours, theirs)


def test_absolute_threshold_and_mask_match_sep():
    data, _ = _starField(seed=11)
    rng = np.random.default_rng(2)
    mask = rng.random(data.shape) < 0.02
    ours = extractObjects(data, 40.0, mask=mask, minarea=3)
    theirs = _sep(data, 40.0, mask=mask, minarea=3)
    _assertSame(ours, theirs)
    # The mask removes pixels from the objects.
    assert ours["npix"].sum() < extractObjects(data, 40.0, minarea=3)["npix"].sum()


def test_connectivity_and_edges():
    data = np.zeros((8, 10), dtype=np.float32)
    data[1, 1] = data[2, 2] = 5.0  # diagonal neighbours: one object
    data[5, 0] = data[5, 1] = 7.0  # on the left edge
    data[0, 8] = data[0, 9] = data[1, 9] = 3.0  # in a corner
    data[4, 5] = 9.0
    data[6, 5] = 9.0  # two rows apart from (4, 5): separate objects
    ours = extractObjects(data, 1.0, minarea=1)
    np.testing.assert_array_equal(ours["npix"], [3, 2, 1, 2, 1])
    _assertSame(ours, _sep(data, 1.0, minarea=1))
    first = ours[0]
    assert (first["xmin"], first["xmax"], first["ymin"], first["ymax"]) == (8, 9, 0, 1)
    assert first["flux"] == pytest.approx(9.0)
    assert first["x"] == pytest.approx((8 * 3 + 9 * 3 + 9 * 3) / 9.0)


def test_nothing_above_threshold():
    data = np.zeros((16, 16), dtype=np.float32)
    assert len(extractObjects(data, 1.0)) == 0
    assert len(extractObjects(data, 1.0, var=np.ones_like(data))) == 0
