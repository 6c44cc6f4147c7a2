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
"""The row-band subtraction primitive (`lsst.ip.diffim.math.subtraction`)."""

import numpy as np
import pytest

from lsst.ip.diffim.math import makeSpatialFunction
from lsst.ip.diffim.math.convolveImage import ConvolutionResult
from lsst.ip.diffim.math.subtraction import subtractMatched
from lsst.ip.diffim.tests import maskedImage


@pytest.mark.parametrize("workers", [1, 2])
def test_subtractMatchedIsScienceMinusMatchedMinusBackground(workers: int) -> None:
    """Image, variance and mask of the difference against numpy, on an offset grid of many bands."""
    rng = np.random.default_rng(9)
    shape, start = (600, 70), (40, -15)
    science = maskedImage(rng.normal(size=shape), rng.uniform(1, 2, size=shape), start=start)
    matched = maskedImage(rng.normal(size=shape), rng.uniform(1, 2, size=shape), start=start)
    science.mask.array[..., 0] = rng.integers(0, 4, size=shape)
    matched.mask.array[..., 0] = rng.integers(0, 4, size=shape) << 2
    background = makeSpatialFunction("polynomial", 1, science.bbox)
    background.setParameters(np.array([0.5, 0.01, -0.02]))
    given = np.full(shape, 7.0, dtype=np.float32)
    out = ConvolutionResult(image=given, variance=None, mask=None)
    difference = subtractMatched(science, matched, background, out=out, workers=workers)
    expected = science.image.array - matched.image.array - background.render(science.bbox)
    np.testing.assert_allclose(difference.image.array, expected, rtol=0, atol=1e-5)
    assert difference.image.array is given
    np.testing.assert_array_equal(difference.variance.array, science.variance.array + matched.variance.array)
    np.testing.assert_array_equal(difference.mask.array, science.mask.array | matched.mask.array)
    assert difference.bbox == science.bbox
    noBackground = subtractMatched(science, matched, workers=workers)
    np.testing.assert_array_equal(noBackground.image.array, science.image.array - matched.image.array)
