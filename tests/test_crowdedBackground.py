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
"""Crowded fields: the basis a crowded field gets, and the background re-measured off sources."""

import numpy as np
import pytest
from astropy.table import Table

import lsst.ip.diffim as ipDiffim
from lsst.images import Box
from lsst.ip.diffim.crowdedField import crowdedBasisDegrees, medianFootprintPeaks
from lsst.ip.diffim.math.functions import Chebyshev1Function2
from lsst.ip.diffim.offSourceBackground import detectedSourceMask, refineBackgroundOffSources
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair
from lsst.ip.diffim.tests import maskedImage


def test_crowded_basis_rule():
    """Higher degrees only when the footprints merge, the list fits, and the rule is on."""
    crowded = Table({"nPeaks": [12, 900, 900, 3]})
    sparse = Table({"nPeaks": [1, 1, 2, 1]})
    assert medianFootprintPeaks(crowded) == pytest.approx(456.0)
    assert medianFootprintPeaks(Table({"x": [1.0]})) == 1.0
    assert crowdedBasisDegrees(crowded, [4, 2, 2], [8, 6, 4], 10.0) == [8, 6, 4]
    assert crowdedBasisDegrees(sparse, [4, 2, 2], [8, 6, 4], 10.0) is None
    assert crowdedBasisDegrees(crowded, [4, 2, 2], [8, 6, 4], 0.0) is None
    assert crowdedBasisDegrees(crowded, [4, 2], [8, 6, 4], 10.0) is None  # other number of Gaussians
    assert crowdedBasisDegrees(crowded, [9, 2, 2], [8, 6, 4], 10.0) is None  # never lowers a degree
    assert crowdedBasisDegrees(crowded, [4, 2, 2], [], 10.0) is None


def _stars(shape, stars, sigma=2.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = np.zeros(shape, dtype=np.float32)
    for x, y, f in stars:
        image += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return image


@pytest.mark.parametrize("scale", [1.0, -1.5])
def test_refine_background_off_sources(scale):
    """A sky offset and gradient left in a difference are measured off the stars and removed."""
    rng = np.random.default_rng(4)
    shape = (160, 200)
    stars = [(rng.uniform(5, 195), rng.uniform(5, 155), rng.uniform(200, 2000)) for _ in range(40)]
    science = maskedImage(_stars(shape, stars) + rng.normal(0, 1, shape).astype(np.float32) + 100.0, 1.0)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    sky = 3.0 + 0.01 * (xx - 100) - 0.02 * (yy - 80)
    # The difference: noise, the sky error, and star residuals (positive wings) that must not bias it.
    residual = 0.05 * _stars(shape, stars, sigma=3.0)
    difference = maskedImage(rng.normal(0, 1, shape).astype(np.float32) + sky + residual, 1.0)
    background = Chebyshev1Function2(1, Box.from_shape(shape), [10.0, 0.0, 0.0])
    refined = refineBackgroundOffSources(
        difference, [science], background, backgroundScale=scale, blockSize=20, grow=4
    )
    assert refined is not None and refined.order == 1 and refined.nBlocks >= 9
    free = ~detectedSourceMask([science], grow=4)
    left = difference.image.array - residual
    assert abs(np.median(left[free])) < 0.05
    assert np.std(left[free]) < 1.05  # the gradient is gone too (it alone has a std of 0.6)
    # The model moved by the measured sky, times the scale (at the image centre: 3 ADU).
    assert float(background(100.0, 80.0)) == pytest.approx(10.0 + 3.0 * scale, abs=0.1)


def test_refine_background_needs_sky():
    """A difference with no sky between sources is left alone (None)."""
    shape = (64, 64)
    science = maskedImage(np.full(shape, 1000.0) + _stars(shape, [(32, 32, 5e5)], sigma=20.0), 1.0)
    difference = maskedImage(np.full(shape, 2.0), 1.0)
    background = Chebyshev1Function2(1, Box.from_shape(shape))
    assert refineBackgroundOffSources(difference, [science], background, grow=20) is None
    assert np.all(difference.image.array == 2.0)


@pytest.mark.parametrize("convolveTemplate", [True, False])
def test_task_background_truth_kept(convolveTemplate):
    """On a sparse synthetic pair the re-measured sky stays at the truth, in both directions."""
    pair = makeSyntheticPair(size=192, nStars=60, seed=3, scienceFwhm=(4.0, 4.0), transients=[])
    template = maskedImage(pair.template, pair.templateVariance)
    science = maskedImage(pair.science, pair.scienceVariance)
    if not convolveTemplate:
        template, science = (
            maskedImage(pair.science, pair.scienceVariance),
            maskedImage(pair.template, pair.templateVariance),
        )
    medians = {}
    for refine in (False, True):
        task = ipDiffim.ImagePsfMatchTask()
        task.config.kernel.active.fitForBackground = True
        task.config.doRefineBackgroundOffSources = refine
        result = (
            task.run(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.0)
            if convolveTemplate
            else task.run(template, science, templateFwhmPix=4.0, scienceFwhmPix=3.0, convolveTemplate=False)
        )
        diff = result.subtractedMaskedImage
        z = diff.image.array / np.sqrt(diff.variance.array)
        free = ~detectedSourceMask([template, science], grow=4) & np.isfinite(z)
        medians[refine] = float(np.median(z[free]))
        assert task.metadata.get("crowdedField") is False
    assert abs(medians[True]) < 0.1 and abs(medians[True]) <= abs(medians[False]) + 0.05, medians


def test_crowded_similar_seeing_gets_higher_degrees():
    """Merged footprints and similar seeing: the Alard-Lupton basis of crowdedAlardDegGauss."""
    pair = makeSyntheticPair(
        size=192, nStars=500, seed=2, templateFwhm=4.0, scienceFwhm=(4.4, 4.4), scienceEllipticity=0.0,
        background=(10.0, 0.0, 0.0), transients=[],
    )  # fmt: skip
    template = maskedImage(pair.template, pair.templateVariance)
    science = maskedImage(pair.science, pair.scienceVariance)
    nTerms = {}
    for minPeaks in (10.0, 0.0):
        task = ipDiffim.ImagePsfMatchTask()
        task.config.kernel.active.fitForBackground = True
        task.config.crowdedFieldMinPeaks = minPeaks
        result = task.run(template, science, templateFwhmPix=4.0, scienceFwhmPix=4.4)
        assert task.metadata["medianFootprintPeaks"] >= 10
        assert task.metadata["crowdedField"] is (minPeaks > 0)
        nTerms[minPeaks] = result.psfMatchingKernel.getNKernelParameters()
        assert float(task.metadata["spatialKernelSum"]) == pytest.approx(pair.fluxRatio, rel=0.01)
    assert nTerms == {10.0: 45 + 28 + 15, 0.0: 15 + 6 + 6}


def test_grow_mask_matches_binary_dilation():
    """growMask is scipy's binary_dilation with the cross structure, iterated."""
    from scipy import ndimage

    from lsst.ip.diffim.offSourceBackground import growMask

    rng = np.random.default_rng(3)
    mask = rng.random((97, 131)) > 0.98
    for grow in (1, 2, 5):
        np.testing.assert_array_equal(growMask(mask, grow), ndimage.binary_dilation(mask, iterations=grow))
    np.testing.assert_array_equal(growMask(mask, 0), mask)


def test_block_medians_match_numpy_median():
    """blockMedians gives numpy's median and mean position of each block's usable pixels."""
    from lsst.ip.diffim.offSourceBackground import blockMedians

    rng = np.random.default_rng(4)
    image = rng.normal(size=(70, 83)).astype(np.float32)
    usable = rng.random(image.shape) > 0.4
    usable[:16, :16] = False  # one block with no usable pixel
    count, median, xMean, yMean = blockMedians(image, usable, 16)
    assert count.shape == (5, 6)
    for i, y0 in enumerate(range(0, 70, 16)):
        for j, x0 in enumerate(range(0, 83, 16)):
            ok = usable[y0 : y0 + 16, x0 : x0 + 16]
            assert count[i, j] == ok.sum()
            if not ok.any():
                assert np.isnan(median[i, j])
                continue
            yy, xx = np.nonzero(ok)
            assert median[i, j] == float(np.median(image[y0 : y0 + 16, x0 : x0 + 16][ok]))
            assert xMean[i, j] == pytest.approx(xx.mean()) and yMean[i, j] == pytest.approx(yy.mean())
