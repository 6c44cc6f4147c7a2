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
"""Bad rows and columns (`lsst.ip.diffim.adapters.badLines`) on a crowded synthetic pair with known truth."""

import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.adapters.badLines import badLinePixels, lineOffsets, maskBadLines
from lsst.ip.diffim.math.masks import maskPlaneBitmask
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair
from lsst.ip.diffim.tests import maskedImage


@pytest.fixture(scope="module")
def pair():
    """A crowded 256^2 pair (700 stars), similar seeing, no transients."""
    return makeSyntheticPair(
        size=256, nStars=700, seed=4, templateFwhm=4.0, scienceFwhm=(4.2, 4.4), scienceEllipticity=0.0,
        fluxRatio=1.0, background=(0.0, 0.0, 0.0), transients=[],
    )  # fmt: skip


def _withLine(image, variance, row=None, column=None, sigmas=-4.0, start=40):
    """Offset a row (from ``start`` on) or a column by ``sigmas`` times the pixel noise."""
    out = image.copy()
    noise = np.sqrt(variance)
    if row is not None:
        out[row, start:] += sigmas * noise[row, start:]
    if column is not None:
        out[start:, column] += sigmas * noise[start:, column]
    return out


def test_clean_crowded_images_have_no_bad_line(pair):
    """Stars average out of the line offsets: nothing is flagged on the clean pair."""
    for image, variance in ((pair.template, pair.templateVariance), (pair.science, pair.scienceVariance)):
        assert not badLinePixels(image, variance).any()
        offsets = lineOffsets(image, variance)
        assert np.nanmax(np.abs(offsets - np.nanmedian(offsets))) < 1.0


def test_offset_row_and_column_found(pair):
    """A row 4 sigma per pixel low and a column 6 sigma high: exactly those lines (grown by 1)."""
    image = _withLine(pair.template, pair.templateVariance, row=120)
    image = _withLine(image, pair.templateVariance, column=77, sigmas=6.0)
    bad = badLinePixels(
        image, pair.templateVariance, reference=pair.science, referenceVariance=pair.scienceVariance
    )
    rows = np.flatnonzero(bad.all(axis=1))
    columns = np.flatnonzero(bad.all(axis=0))
    assert rows.tolist() == [119, 120, 121]
    assert columns.tolist() == [76, 77, 78]
    assert not badLinePixels(image, pair.templateVariance, grow=0)[118, :70].any()


def test_line_in_both_images_is_not_masked(pair):
    """A line offset alike in both images is a feature of the scene: never masked."""
    image = _withLine(pair.template, pair.templateVariance, row=150, sigmas=4.0)
    other = _withLine(pair.science, pair.scienceVariance, row=150, sigmas=4.0)
    assert badLinePixels(image, pair.templateVariance).any()
    assert not badLinePixels(
        image, pair.templateVariance, reference=other, referenceVariance=pair.scienceVariance
    ).any()


def test_mask_bad_lines_sets_bad_and_keeps_it_out_of_the_difference(pair):
    """`maskBadLines` sets BAD on the image with the line; subtract() masks it in the difference."""
    image = _withLine(pair.template, pair.templateVariance, row=120)
    template = maskedImage(image, pair.templateVariance)
    science = maskedImage(pair.science, pair.scienceVariance)
    nTemplate, nScience = maskBadLines(template, science)
    assert nTemplate == 3 * 256 and nScience == 0
    bad = maskPlaneBitmask(template.mask.schema, ["BAD"])
    assert np.all(template.mask.array[119:122] & bad)
    result = ipDiffim.subtract(
        image,
        pair.science,
        templateVariance=pair.templateVariance,
        scienceVariance=pair.scienceVariance,
        templateFwhm=4.0,
        scienceFwhm=4.3,
    )
    assert np.all(result.mask[120, 30:-30])  # masked (BAD grown by the kernel) in the difference


def test_sampled_lines_find_the_same_line(pair):
    """Lines measured on every 4th pixel (as `LINE_SAMPLES` does on large images) find the same lines."""
    image = _withLine(pair.template, pair.templateVariance, row=120, start=0)
    image = _withLine(image, pair.templateVariance, column=77, sigmas=-2.0, start=0)
    for axis, line, sigmas in ((0, 120, -4.0), (1, 77, -2.0)):
        whole = lineOffsets(image, pair.templateVariance, axis)
        sampled = lineOffsets(image, pair.templateVariance, axis, maxSamples=64)
        # The noise of a line difference is sqrt(1.5) times the pixel noise; the crowded field's own
        # line-to-line scatter is about 0.5.
        truth = sigmas / np.sqrt(1.5)
        assert sampled[line] - np.nanmedian(sampled) == pytest.approx(truth, abs=0.8)
        assert sampled[line] == pytest.approx(whole[line], abs=0.3)
    assert np.array_equal(
        badLinePixels(image, pair.templateVariance),
        badLinePixels(image, pair.templateVariance, maxSamples=64),
    )
