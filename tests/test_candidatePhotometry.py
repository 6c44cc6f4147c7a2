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
"""The kernel-sum check's photometry on the fit's candidates, and the masked area of apertures."""

from __future__ import annotations

import numpy as np
import pytest
import sep

from lsst.ip.diffim.kernelSumCheck import MIN_CANDIDATE_STARS, photometricScaling
from lsst.ip.diffim.math.apertureMask import maskedOverlap
from lsst.ip.diffim.math.masks import resolveMaskPlane
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
from lsst.ip.diffim.tests import maskedImage

RATIO = 0.8
SHAPE = (420, 420)


def _field(nStars=144, seed=7):
    """A grid of stars; the science is RATIO times the template, with a broader PSF."""
    rng = np.random.default_rng(seed)
    g = np.linspace(30.0, SHAPE[0] - 30.0, int(np.sqrt(nStars)))
    xs, ys = (a.ravel() + rng.uniform(-2, 2, a.size) for a in np.meshgrid(g, g))
    fluxes = rng.uniform(1e4, 4e4, xs.size)
    t = renderStars(SHAPE, xs, ys, fluxes, PsfModel(2.0, 2.0, 0.0, SHAPE), half=10) + 100.0
    s = renderStars(SHAPE, xs, ys, fluxes * RATIO, PsfModel(2.6, 2.6, 0.0, SHAPE), half=10) + 80.0
    tMi = maskedImage(t + rng.normal(0, 3.0, SHAPE), 9.0)
    sMi = maskedImage(s + rng.normal(0, 3.0, SHAPE), 9.0)
    return tMi, sMi, xs, ys


def test_masked_overlap_is_the_summed_bad_map_where_sep_flags_a_masked_pixel():
    rng = np.random.default_rng(4)
    bad = rng.random((200, 240)) < 0.003
    data = rng.normal(size=bad.shape).astype(np.float32)
    x, y = rng.uniform(-5, 245, 3000), rng.uniform(-5, 205, 3000)
    for radius in (2.3, 6.0):
        _, _, flag = sep.sum_circle(data, x, y, radius, mask=bad)
        expected, _, _ = sep.sum_circle(bad.astype(np.float64), x, y, radius)
        got = maskedOverlap(bad, x, y, radius, flag)
        assert np.array_equal(got, expected)
        assert np.array_equal(maskedOverlap(bad, x, y, radius), expected)
        assert (expected > 0).sum() > 100


def test_candidates_give_the_scaling_without_a_detection():
    t, s, xs, ys = _field()
    detected, nDetected = photometricScaling(t, s, 2.6 * 2.355 / 2.0)
    onCandidates, nCandidates = photometricScaling(t, s, 2.6 * 2.355 / 2.0, candidates=(xs, ys))
    assert nCandidates >= MIN_CANDIDATE_STARS
    assert onCandidates == pytest.approx(RATIO, rel=0.01)
    assert onCandidates == pytest.approx(detected, rel=0.005)
    # Too few candidates for a median of their own: the stars are detected, as without them.
    few = photometricScaling(t, s, 2.6 * 2.355 / 2.0, candidates=(xs[:20], ys[:20]))
    assert few == (detected, nDetected)


def test_a_star_with_a_flagged_pixel_in_its_aperture_is_not_measured():
    t, s, xs, ys = _field()
    fwhm = 2.6 * 2.355 / 2.0
    _, nAll = photometricScaling(t, s, fwhm, candidates=(xs, ys))
    sat = np.zeros(SHAPE, bool)
    for x, y in zip(xs[:10], ys[:10]):
        sat[int(round(y)), int(round(x)) + 2] = True
    s.mask.set(resolveMaskPlane(s.mask.schema, "SAT"), sat)
    scaling, n = photometricScaling(t, s, fwhm, candidates=(xs, ys))
    assert n == nAll - 10
    assert scaling == pytest.approx(RATIO, rel=0.01)
