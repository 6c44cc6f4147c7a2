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
"""The kernel sum of a fit with a differential background is the flux ratio of the pair.

The science image of `makeSyntheticPair` is ``1.3 * (stars + sky 200)``
plus a differential background ``20 + 0.02 x - 0.015 y``: the background
term of the fit must take the offset, leaving the kernel sum at 1.3 (a fit
without it puts the offset into the sum: 1.378 on this pair), through
`subtract()` and through the task, and the spatial background model must be
the true one.  A cutout misregistered by 1 px keeps the sum; tests/test_fuzz.py
relies on both.
"""

from __future__ import annotations

import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair
from lsst.ip.diffim.tests import maskedImage

RATIO = 1.3


@pytest.fixture(scope="module")
def pair():
    return makeSyntheticPair(size=606, nStars=520, seed=41, fluxRatio=RATIO)


def _config(fitForBackground: bool = True) -> ipDiffim.ImagePsfMatchConfig:
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.fitForBackground = fitForBackground
    return config


def _subtract(pair, config=None, window=(slice(None), slice(None)), offset=(0, 0)):
    ty, tx = window
    sy = slice(ty.start + offset[0], ty.stop + offset[0]) if ty.start is not None else ty
    sx = slice(tx.start + offset[1], tx.stop + offset[1]) if tx.start is not None else tx
    return ipDiffim.subtract(
        pair.template[ty, tx],
        pair.science[sy, sx],
        templateVariance=pair.templateVariance[ty, tx],
        scienceVariance=pair.scienceVariance[sy, sx],
        templateFwhm=3.0,
        scienceFwhm=4.5,
        config=config,
    )


def test_subtract_default_config(pair):
    """`subtract()` without a config fits the background: the kernel sum is the flux ratio."""
    assert pair.background == (20.0, 0.02, -0.015)
    result = _subtract(pair)
    assert abs(result.kernelSum / RATIO - 1) < 0.01, result.kernelSum


def test_subtract_background_term_matters(pair):
    """With fitForBackground the sum is the ratio; without it the 20 ADU offset biases it (> 3%)."""
    withBg = _subtract(pair, _config(True)).kernelSum
    withoutBg = _subtract(pair, _config(False)).kernelSum
    assert abs(withBg / RATIO - 1) < 0.01, withBg
    assert withoutBg / RATIO - 1 > 0.03, withoutBg  # the offset is positive: the sum goes up


def test_task_kernel_sum_and_background(pair):
    """`ImagePsfMatchTask.subtractMaskedImages`: the kernel sum and the spatial background are the truth."""
    task = ipDiffim.ImagePsfMatchTask(config=_config(True))
    result = task.subtractMaskedImages(
        maskedImage(pair.template, pair.templateVariance),
        maskedImage(pair.science, pair.scienceVariance),
        templateFwhmPix=3.0,
        scienceFwhmPix=4.5,
    )
    kernelSum = float(task.metadata["spatialKernelSum"])
    assert abs(kernelSum / RATIO - 1) < 0.01, kernelSum
    for x, y in [(30, 30), (303, 303), (575, 30), (30, 575), (575, 575)]:
        truth = float(pair.differenceBackground(np.array(x), np.array(y)))
        assert abs(result.backgroundModel(x, y) - truth) < 0.5, (x, y, result.backgroundModel(x, y), truth)


@pytest.mark.parametrize("offset", [(1, -1), (-1, 1)])
def test_subtract_misregistered_by_one_pixel(pair, offset):
    """A 300 x 300 cutout of the science shifted by 1 px on each axis keeps the kernel sum within 1%."""
    result = _subtract(pair, window=(slice(150, 450), slice(150, 450)), offset=offset)
    assert abs(result.kernelSum / RATIO - 1) < 0.01, result.kernelSum
