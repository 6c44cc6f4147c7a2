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
"""The fitted kernel sum against the photometric scaling of the pair's stars."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lsst.ip.diffim.kernelSumCheck import KernelSumMismatchError, checkKernelSum, photometricScaling
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
from lsst.ip.diffim.tests import maskedImage

SHAPE = (100, 100)
RATIO = 0.8


def _pair(seed=5):
    """Five stars; the science is RATIO times the template, broader; one more star varies (x3)."""
    xs = np.array([20.0, 75.0, 30.0, 70.0, 50.0, 50.0])
    ys = np.array([20.0, 25.0, 75.0, 80.0, 50.0, 20.0])
    fluxes = np.array([2e4, 3e4, 1.5e4, 2.5e4, 1e4, 2e4])
    rng = np.random.default_rng(seed)
    template = renderStars(SHAPE, xs, ys, fluxes, PsfModel(2.0, 2.0, 0.0, SHAPE), half=12) + 100.0
    varying = fluxes * RATIO
    varying[-1] *= 3.0
    science = renderStars(SHAPE, xs, ys, varying, PsfModel(3.0, 3.0, 0.0, SHAPE), half=12) + 80.0
    t = maskedImage(template + rng.normal(0, 3.0, SHAPE), 9.0)
    s = maskedImage(science + rng.normal(0, 3.0, SHAPE), 9.0)
    return t, s


def test_photometric_scaling_is_the_flux_ratio_despite_a_variable():
    t, s = _pair()
    scaling, nStars = photometricScaling(t, s, 3.0)
    assert nStars == 6
    assert scaling == pytest.approx(RATIO, rel=0.03)
    inverse, _ = photometricScaling(s, t, 3.0)
    assert inverse == pytest.approx(1 / RATIO, rel=0.03)


def test_a_wrong_sum_from_few_candidates_is_refused(caplog):
    t, s = _pair()
    assert checkKernelSum(0.82, t, s, 3.0, nUsed=2) == pytest.approx(RATIO, rel=0.03)
    with pytest.raises(KernelSumMismatchError, match="disagrees with the flux ratio") as info:
        checkKernelSum(2.4, t, s, 3.0, nUsed=2)  # the variable star's ratio
    assert info.value.metadata["photometricScaling"] == pytest.approx(RATIO, rel=0.03)
    with caplog.at_level(logging.WARNING):
        checkKernelSum(1.1, t, s, 3.0, nUsed=20)  # many candidates, +37%: warned, not refused
    assert "disagrees with the flux ratio" in caplog.text
    with pytest.raises(KernelSumMismatchError, match="disagrees with the flux ratio"):
        checkKernelSum(2.4, t, s, 3.0, nUsed=20)  # +200% is refused whatever the candidate count


def test_a_sum_fitted_to_noise_is_refused():
    """No star in both images: refused unless a used candidate is a star of the convolved image."""
    rng = np.random.default_rng(2)
    noise = maskedImage(rng.normal(0, 3.0, SHAPE) + 100.0, 9.0)
    t, _ = _pair()
    with pytest.raises(KernelSumMismatchError, match="unconstrained") as info:
        checkKernelSum(0.03, noise, t, 3.0, nUsed=2, positions=([20.0, 75.0], [20.0, 25.0]))
    assert np.isnan(info.value.expected)
    # Stars of the convolved image too faint in the target for the scaling (S/N < 20): their summed
    # flux ratio (RATIO) judges the sum.
    _, s = _pair()
    faint = maskedImage(s.image.array + rng.normal(0, 300.0, SHAPE), 300.0**2)
    where = ([20.0, 75.0, 30.0, 70.0], [20.0, 25.0, 75.0, 80.0])
    assert np.isnan(checkKernelSum(0.82, t, faint, 3.0, nUsed=4, positions=where))
    with pytest.raises(KernelSumMismatchError, match="flux ratio .* of its 4 kernel candidate") as info:
        checkKernelSum(2.4, t, faint, 3.0, nUsed=4, positions=where)
    assert info.value.expected == pytest.approx(RATIO, abs=0.15)
