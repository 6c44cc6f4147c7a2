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
"""One 3-sigma detection per image serves the streak search and the off-source background alike."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lsst.ip.diffim.adapters.sourceFootprints import detectFootprints, pairFootprints, sharedSourceMask
from lsst.ip.diffim.adapters.streakMask import maskStreaks
from lsst.ip.diffim.offSourceBackground import detectedSourceMask
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
from lsst.ip.diffim.tests import maskedImage

SHAPE = (256, 256)


def _pair(seed: int = 3):
    psf = PsfModel(3.0, 3.0, 0.0, SHAPE)
    rng = np.random.default_rng(seed)
    xs, ys = rng.uniform(10, 246, 80), rng.uniform(10, 246, 80)
    away = (ys > 110) | (xs > 140)  # no star on the trail
    xs, ys = xs[away], ys[away]
    stars = renderStars(SHAPE, xs, ys, rng.uniform(1e3, 3e4, xs.size), psf, half=12)
    trail = np.zeros(SHAPE)
    for t in np.linspace(0.0, 1.0, 500):  # a thin trail 80 px long, in the science only
        trail[int(round(40 + 50 * t)), int(round(60 + 62 * t))] += 40.0
    trail = ndimage.gaussian_filter(trail, 0.7)
    template = maskedImage(stars + rng.normal(0, 5.0, SHAPE), 25.0)
    science = maskedImage(stars + trail + rng.normal(0, 5.0, SHAPE), 25.0)
    return template, science, trail > 1.0


def test_streaks_from_shared_footprints_are_the_same():
    template, science, truth = _pair()
    footprints = pairFootprints(template, science)
    assert all(f is not None for f in footprints)
    alone = _pair()
    assert maskStreaks(*alone[:2]) == maskStreaks(template, science, footprints=footprints)
    np.testing.assert_array_equal(science.mask.get("STREAK"), alone[1].mask.get("STREAK"))
    assert science.mask.get("STREAK")[truth].mean() > 0.95


def test_shared_mask_is_the_off_source_detection():
    template, science, _ = _pair()
    union = sharedSourceMask(pairFootprints(template, science), template, science)
    assert union is not None
    # Not deblended nor cleaned, the isophotes are those of the off-source background's own detection.
    np.testing.assert_array_equal(detectedSourceMask([science, template], grow=0), union)
    for grow in (2, 5):
        own = detectedSourceMask([science, template], grow=grow)
        shared = ndimage.binary_dilation(union, iterations=grow)
        assert 0.05 < own.mean() < 0.6
        # The same pixels, but for a handful a deblending of the other detection drops.
        assert np.count_nonzero(own != shared) <= 1e-3 * own.size


def test_small_or_other_grid_not_shared():
    template, science, _ = _pair()
    small = maskedImage(np.random.default_rng(1).normal(0, 5.0, (160, 160)), 25.0)
    assert detectFootprints(small) is None
    assert sharedSourceMask((detectFootprints(template), None), template, science) is None
    assert sharedSourceMask(pairFootprints(small, science), small, science) is None


def test_template_detected_in_a_forked_child_is_the_same(monkeypatch):
    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "2")
    template, science, _ = _pair()
    forked = pairFootprints(template, science, minPixels=0)
    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "1")  # no fork
    alone = pairFootprints(template, science, minPixels=0)
    for a, b in zip(forked, alone, strict=True):
        assert a is not None and b is not None and a.objects.size > 20
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        np.testing.assert_array_equal(a.objects, b.objects)
        assert a.nSigma == b.nSigma


def test_forked_call_value_array_and_failures():
    import os

    import pytest

    from lsst.ip.diffim.math.forkedCall import ForkedCall, ForkedCallError

    def fill(out):
        out[...] = np.arange(out.size).reshape(out.shape)
        return {"pid": os.getpid()}

    with ForkedCall(fill, (3, 4), np.dtype(np.int32)) as call:
        value, array = call.result()
    assert value["pid"] != os.getpid()
    np.testing.assert_array_equal(array, np.arange(12).reshape(3, 4))

    def fail(out):
        raise ValueError("no sources")

    with ForkedCall(fail, (2,), np.dtype(np.float32)) as call:
        with pytest.raises(ForkedCallError, match="no sources"):
            call.result()

    def die(out):
        os._exit(3)

    with ForkedCall(die, (2,), np.dtype(np.float32)) as call:
        with pytest.raises(ForkedCallError, match="without"):
            call.result()
    with ForkedCall(fill, (2,), np.dtype(np.int32)) as call:
        pass  # never asked: the child is killed and reaped on leaving
