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
"""The detection's sep background reused by the variable-candidate screen's aperture photometry."""

from __future__ import annotations

import numpy as np
import pytest

from lsst.ip.diffim.apertureFluxes import candidateFluxes
from lsst.ip.diffim.math.meshBackground import MeshBackground
from lsst.ip.diffim.math.sourceDetection import DetectionSettings, detectSources
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
from lsst.ip.diffim.tests import maskedImage

SHAPE = (200, 240)


def _field(seed: int = 5) -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = rng.uniform(20, SHAPE[1] - 20, 25)
    ys = rng.uniform(20, SHAPE[0] - 20, 25)
    fluxes = rng.uniform(5e3, 5e4, 25)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    sky = 100.0 + 0.05 * xx + 0.03 * yy  # a sloped sky: the background map matters
    image = renderStars(SHAPE, xs, ys, fluxes, PsfModel(2.0, 2.0, 0.0, SHAPE), half=10) + sky
    mi = maskedImage((image + rng.normal(0, 4.0, SHAPE)).astype(np.float32), 16.0)
    return mi, xs, ys, fluxes


def test_the_detection_background_gives_the_fluxes_of_a_new_fit():
    mi, xs, ys, fluxes = _field()
    found = detectSources(mi, DetectionSettings(thresholdValue=10.0))
    mesh = found.meshBackground
    assert mesh is not None and mesh.box == 64 and mesh.masked is None
    box = 64
    assert mesh.fits(np.zeros(SHAPE, dtype=bool), box)
    fresh = candidateFluxes(mi, xs, ys, 5.0)
    reused = candidateFluxes(mi, xs, ys, 5.0, background=mesh)
    np.testing.assert_array_equal(reused[0], fresh[0])
    np.testing.assert_array_equal(reused[1], fresh[1])
    # And the fluxes are the stars' (the sloped sky is taken off): within 3% for these apertures.
    assert np.nanmedian(fresh[0] / fluxes) == pytest.approx(0.99, abs=0.03)


def test_a_background_of_other_pixels_or_boxes_is_not_reused():
    mi, xs, ys, _ = _field()
    bad = np.zeros(SHAPE, dtype=bool)
    bad[50:60, 70:90] = True
    mesh = MeshBackground(background=None, box=64, masked=bad)
    assert mesh.fits(bad.copy(), 64)
    assert not mesh.fits(np.zeros(SHAPE, dtype=bool), 64)
    assert not mesh.fits(bad, 32)
    assert not MeshBackground(background=None, box=64, masked=None).fits(bad, 64)
    # A wrong background that does not fit is left alone: the fluxes are those of a new fit.
    found = detectSources(maskedImage(np.full(SHAPE, 1e4, dtype=np.float32), 16.0), DetectionSettings())
    wrong = found.meshBackground
    assert wrong is not None and wrong.masked is None
    other = MeshBackground(wrong.background, 32, None)
    np.testing.assert_array_equal(
        candidateFluxes(mi, xs, ys, 5.0, background=other)[0], candidateFluxes(mi, xs, ys, 5.0)[0]
    )
    # ... and one that claims to fit is used (so the reuse is real): here the fluxes change.
    assert not np.allclose(
        candidateFluxes(mi, xs, ys, 5.0, background=wrong)[0], candidateFluxes(mi, xs, ys, 5.0)[0]
    )
