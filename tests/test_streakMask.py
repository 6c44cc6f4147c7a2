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
"""Trails (STREAK) found on the inputs: in one image only, long and thin."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lsst.ip.diffim.adapters.streakMask import maskStreaks, streakPixels
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
from lsst.ip.diffim.tests import maskedImage

SHAPE = (160, 160)


def _pair(seed=2):
    psf = PsfModel(3.0, 3.0, 0.0, SHAPE)
    rng = np.random.default_rng(seed)
    xs = np.concatenate([rng.uniform(10, 150, 12), 40.0 + 5.0 * np.arange(8)])  # field stars + a chain
    ys = np.concatenate([rng.uniform(10, 150, 12), np.full(8, 120.0)])
    fluxes = np.concatenate([rng.uniform(2e3, 2e4, 12), np.full(8, 3e3)])
    stars = renderStars(SHAPE, xs, ys, fluxes, psf, half=12)
    trail = np.zeros(SHAPE)
    for t in np.linspace(0.0, 1.0, 400):  # a thin straight trail 60 px long, in the science only
        trail[int(round(30 + 40 * t)), int(round(50 + 45 * t))] += 40.0
    trail = ndimage.gaussian_filter(trail, 0.7)
    template = stars + rng.normal(0, 5.0, SHAPE)
    science = stars + trail + rng.normal(0, 5.0, SHAPE)
    return maskedImage(template, 25.0), maskedImage(science, 25.0), trail > 1.0


def test_trail_in_one_image_is_streak_and_the_star_chain_is_not():
    template, science, truth = _pair()
    nTemplate, nScience = maskStreaks(template, science)
    assert nTemplate == 0
    streak = science.mask.get("STREAK")
    assert streak[truth].mean() > 0.95  # the trail is covered
    assert streak.sum() < 4 * truth.sum()  # and little else
    assert not streak[115:126, 35:80].any()  # the chain of stars, in both images, is not a trail
    # Without the other image the chain of stars alone passes for a trail.
    alone = streakPixels(science.image.array, science.variance.array)
    assert alone[115:126, 35:80].any()


def test_no_trail_no_streak():
    template, science, _ = _pair()
    science.image.array[...] = template.image.array + np.random.default_rng(9).normal(0, 5.0, SHAPE)
    assert maskStreaks(template, science) == (0, 0)
