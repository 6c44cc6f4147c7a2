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
"""Excluded positions on an alert-sized cutout, where every stamp covers the transient."""

from __future__ import annotations

import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.exclusions import ExclusionRegions, excludedForFit, stampListTable
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
from lsst.ip.diffim.tests import maskedImage

SHAPE = (63, 63)
CHANGE = 3000.0


def _cutout(seed=3):
    """A 63x63 pair: one static star (47, 43) and a transient at the centre that brightens by CHANGE."""
    psfT = PsfModel(2.0, 2.0, 0.0, SHAPE)
    psfS = PsfModel(2.8, 2.8, 0.0, SHAPE)
    xs, ys = np.array([47.0, 31.0]), np.array([43.0, 31.0])
    fluxes = np.array([6.0e4, 1.5e4])
    template = renderStars(SHAPE, xs, ys, fluxes, psfT, half=15) + 200.0
    science = renderStars(SHAPE, xs, ys, fluxes, psfS, half=15) + 200.0
    science += renderStars(SHAPE, xs[1:], ys[1:], np.array([CHANGE]), psfS, half=15)
    rng = np.random.default_rng(seed)
    tVar, sVar = template / 8.0 + 2.0, science + 25.0
    t = maskedImage(template + rng.normal(size=SHAPE) * np.sqrt(tVar), tVar)
    s = maskedImage(science + rng.normal(size=SHAPE) * np.sqrt(sVar), sVar)
    return t, s, xs, ys


def _fit(t, s, xs, ys, exclude):
    task = ipDiffim.ImagePsfMatchTask()
    active = task.config.kernel.active
    active.spatialKernelOrder = 0
    active.fitForBackground = True
    active.spatialBgOrder = 0
    stamps = stampListTable(np.stack([xs, ys], axis=1))
    result = task.subtractMaskedImages(t, s, stamps, templateFwhmPix=2.0, scienceFwhmPix=2.8, exclude=exclude)
    diff = result.subtractedMaskedImage.image.array
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    centre = float(diff[np.hypot(xx - 31.0, yy - 31.0) <= 8.0].sum())
    return centre, float(task.metadata["spatialKernelSum"])


def test_excluded_transient_is_kept_out_of_every_stamp():
    t, s, xs, ys = _cutout()
    # The static star's stamp (half-size > 16 px) covers the transient 20 px away.
    centre, kernelSum = _fit(t, s, xs[:1], ys[:1], ExclusionRegions.fromSpec([(31.0, 31.0)]))
    assert kernelSum == pytest.approx(1.0, abs=0.02)
    assert centre == pytest.approx(CHANGE, rel=0.08)
    # Without the exclusion the transient, in the star's stamp, drags the fit off.
    absorbed, biased = _fit(t, s, xs[:1], ys[:1], None)
    assert abs(absorbed - CHANGE) > 2 * abs(centre - CHANGE)


def test_excluded_for_fit_replaces_only_the_circles():
    t, s, _, _ = _cutout()
    regions = ExclusionRegions.fromSpec([(31.0, 31.0, 2.0)])
    ft, fs = excludedForFit(t, s, regions, extent=4.0)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    inside = np.hypot(xx - 31.0, yy - 31.0) <= 6.0
    for orig, fit in ((t, ft), (s, fs)):
        assert np.array_equal(fit.image.array[~inside], orig.image.array[~inside])
        # Sky level (200) plus noise, not the transient's peak.
        assert abs(float(np.median(fit.image.array[inside])) - 200.0) < 10.0
        assert float(orig.image.array[inside].max()) > 500.0
    # The inputs are not changed, the result repeats, and no region means no copy.
    again = excludedForFit(t, s, regions, extent=4.0)
    assert np.array_equal(again[1].image.array, fs.image.array)
    assert excludedForFit(t, s, None, 4.0)[0] is t
