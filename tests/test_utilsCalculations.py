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
"""Small utility calculations (upstream's test_utilsCalculations)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsst.images import Box
from lsst.images.psfs import GaussianPointSpreadFunction
from lsst.ip.diffim.math import FixedKernel
from lsst.ip.diffim.utils import (
    angleMean,
    computePSFNoiseEquivalentArea,
    evaluateMeanPsfFwhm,
    getKernelCenterDisplacement,
    getPsfFwhm,
)


def test_angle_mean():
    """The circular mean of 100 angles scattered (1 deg) around 30 degrees is within 1%."""
    rng = np.random.default_rng(5)
    angles = np.radians(30.0 + rng.normal(0.0, 1.0, 100))
    assert abs(math.degrees(angleMean(angles)) / 30.0 - 1) < 0.01
    assert angleMean(np.radians([179.0, -179.0])) == pytest.approx(math.pi, abs=1e-9)


@pytest.mark.parametrize("sigma", [1.0, 1.23456, 2.1])
@pytest.mark.parametrize("size", [23, 25, 21])
def test_psf_fwhm(sigma, size):
    """getPsfFwhm of a Gaussian PSF is 2.3548 sigma within 1%; per-axis values agree."""
    psf = GaussianPointSpreadFunction(sigma, bounds=Box.from_shape((100, 100)), stamp_size=size)
    fwhm = getPsfFwhm(psf)
    assert abs(fwhm / (2.35482 * sigma) - 1) < 0.01
    perAxis = getPsfFwhm(psf, average=False)
    assert all(abs(v / fwhm - 1) < 0.01 for v in perAxis)
    assert abs(evaluateMeanPsfFwhm(psf, Box.from_shape((100, 100))) / fwhm - 1) < 1e-9


def test_noise_equivalent_area():
    """The NEA of a Gaussian PSF is 4 pi sigma^2."""
    psf = GaussianPointSpreadFunction(2.0, bounds=Box.from_shape((64, 64)), stamp_size=31)
    assert computePSFNoiseEquivalentArea(psf) == pytest.approx(4 * math.pi * 4.0, rel=0.01)


def test_kernel_center_displacement():
    """A kernel shifted by (+2, -1) px reports that offset and its sum."""
    image = np.zeros((11, 11))
    image[4, 7] = 2.0
    total, dx, dy, direction, length = getKernelCenterDisplacement(FixedKernel(image), 0.0, 0.0)
    assert (total, dx, dy) == (2.0, 2.0, -1.0)
    assert direction == pytest.approx(math.atan2(-1, 2)) and length == pytest.approx(math.sqrt(5))
