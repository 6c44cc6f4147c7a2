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
"""End-to-end tests of ImagePsfMatchTask on synthetic pairs with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
import lsst.utils.tests
from lsst.images import Box, Image, MaskedImage
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.adapters.psf import psfMoments
from lsst.ip.diffim.imagePsfMatch import MismatchedImagesError
from lsst.ip.diffim.math import anyMaskPlaneSet, makeDifferenceMaskSchema
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair
from lsst.ip.diffim.tests import maskedImage


def _config(spatialKernelOrder: int = 2) -> ipDiffim.ImagePsfMatchConfig:
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.fitForBackground = True
    config.kernel.active.spatialKernelOrder = spatialKernelOrder
    config.kernel.active.spatialBgOrder = 1
    return config


@pytest.fixture(scope="module")
def pair():
    return makeSyntheticPair()


@pytest.fixture(scope="module")
def result(pair):
    task = ipDiffim.ImagePsfMatchTask(config=_config())
    template = maskedImage(pair.template, pair.templateVariance)
    science = maskedImage(pair.science, pair.scienceVariance)
    res = task.subtractMaskedImages(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    return task, res


def _sourceMask(pair, radius: float = 12.0) -> np.ndarray:
    size = pair.science.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros(pair.science.shape, dtype=bool)
    bright = pair.fluxes > 3000
    xs = np.concatenate([pair.xs[bright], [t[0] for t in pair.transients]])
    ys = np.concatenate([pair.ys[bright], [t[1] for t in pair.transients]])
    for x, y in zip(xs, ys, strict=True):
        x0, x1 = int(max(x - radius, 0)), int(min(x + radius + 1, size))
        y0, y1 = int(max(y - radius, 0)), int(min(y + radius + 1, size))
        sub = (xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2 <= radius**2
        mask[y0:y1, x0:x1] |= sub
    return mask


def _normalized(diff: MaskedImage) -> tuple[np.ndarray, np.ndarray]:
    norm = diff.image.array / np.sqrt(diff.variance.array)
    ok = np.isfinite(norm) & ~anyMaskPlaneSet(diff.mask, ["NO_DATA", "EDGE"])
    return norm, ok


def test_kernel_sum_recovers_flux_ratio(pair, result):
    """The spatial kernel sum equals the injected flux ratio to 1%."""
    task, res = result
    kSum = task.metadata["spatialKernelSum"]
    assert abs(kSum / pair.fluxRatio - 1.0) < 0.01
    bbox = res.subtractedMaskedImage.bbox
    for x, y in [(bbox.x.min + 50, bbox.y.min + 50), (bbox.x.max - 50, bbox.y.max - 50)]:
        assert abs(res.psfMatchingKernel.getSum(x, y) / pair.fluxRatio - 1.0) < 0.01


def test_background_recovered(pair, result):
    """The fitted differential background matches the truth within its noise."""
    _, res = result
    bg = res.backgroundModel
    # Noise of the background estimate: per-pixel sigma over the ~ (number of fitted pixels).
    sigmaPix = math.sqrt(float(np.median(pair.scienceVariance)))
    for x, y in [(60.0, 60.0), (256.0, 256.0), (450.0, 450.0), (450.0, 60.0)]:
        truth = float(pair.differenceBackground(np.array(x), np.array(y)))
        assert abs(bg(x, y) - truth) < 0.1 * sigmaPix, (x, y, bg(x, y), truth)


def test_normalized_difference_away_from_sources(pair, result):
    """difference/sqrt(variance) has a std within 5% of 1 away from sources."""
    _, res = result
    norm, ok = _normalized(res.subtractedMaskedImage)
    ok &= ~_sourceMask(pair)
    values = norm[ok]
    assert values.size > 50000
    assert abs(np.std(values) - 1.0) < 0.05
    assert abs(np.mean(values)) < 0.05


def test_normalized_difference_on_bright_stars(pair, result):
    """On bright static stars the normalized std is within 20% of 1."""
    _, res = result
    norm, ok = _normalized(res.subtractedMaskedImage)
    bright = np.argsort(pair.fluxes)[-25:]
    values = []
    for k in bright:
        x, y = int(round(pair.xs[k])), int(round(pair.ys[k]))
        patch = norm[y - 6 : y + 7, x - 6 : x + 7]
        good = ok[y - 6 : y + 7, x - 6 : x + 7]
        values.append(patch[good])
    values = np.concatenate(values)
    assert abs(np.std(values) - 1.0) < 0.2


def test_transients_recovered(pair, result):
    """Each injected transient is in the difference at its flux within 3 sigma."""
    _, res = result
    diff = res.subtractedMaskedImage
    size = pair.science.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    for x, y, flux in pair.transients:
        aperture = (xx - x) ** 2 + (yy - y) ** 2 <= 15.0**2
        measured = float(diff.image.array[aperture].sum())
        error = math.sqrt(float(diff.variance.array[aperture].sum()))
        # PSF flux outside r=15 px is negligible for FWHM <= 5 px.
        assert abs(measured - flux) < 3 * error, (x, y, measured, flux, error)


def test_matched_template_psf(pair, result):
    """The kernel turns the noiseless template into the noiseless science image.

    The noiseless template stars, convolved with the fitted kernel,
    reproduce the noiseless science stars around bright
    isolated stars to 2% of their flux; in the interior the kernel's second
    moments are the difference of the two PSFs' (median error < 5%).
    """
    _, res = result
    from lsst.ip.diffim.math.convolve import convolve

    sky = 200.0
    model = maskedImage(pair.templateModel - sky, np.ones_like(pair.templateVariance))
    matched = convolve(model, res.psfMatchingKernel).image.array.astype(float)
    yy, xx = np.mgrid[0 : pair.science.shape[0], 0 : pair.science.shape[1]]
    science = pair.scienceModel - pair.fluxRatio * sky - pair.differenceBackground(xx, yy)
    order = np.argsort(pair.fluxes)[::-1]
    checked = 0
    momentErrors: list[float] = []
    for k in order[:150]:
        x, y = pair.xs[k], pair.ys[k]
        if pair.fluxes[k] < 1.0e4:
            break
        if np.sort(np.hypot(pair.xs - x, pair.ys - y))[1] < 20 or min(x, y) < 60 or max(x, y) > 452:
            continue
        if any(math.hypot(tx - x, ty - y) < 30 for tx, ty, _ in pair.transients):
            continue
        ix, iy = int(round(x)), int(round(y))
        sl = (slice(iy - 12, iy + 13), slice(ix - 12, ix + 13))
        flux = pair.fluxRatio * pair.fluxes[k]
        residual = np.abs(matched[sl] - science[sl]).sum()
        assert residual / flux < 0.02, (k, residual / flux)
        # The kernel's second moments add to the template's to give the science PSF's.
        kernelImage = res.psfMatchingKernel.getArray(x, y)
        mK = psfMoments(kernelImage)
        sxS, syS = pair.sciencePsf.sigmas(np.array([x]), np.array([y]))
        sxT, syT = pair.templatePsf.sigmas(np.array([x]), np.array([y]))
        momentErrors.append(abs(mK[0] / (sxS[0] ** 2 - sxT[0] ** 2) - 1))
        momentErrors.append(abs(mK[1] / (syS[0] ** 2 - syT[0] ** 2) - 1))
        checked += 1
    assert checked >= 4
    assert np.median(momentErrors) < 0.05 and max(momentErrors) < 0.12, momentErrors


def test_visit_image_path_returns_difference_image(pair):
    """run() on VisitImages returns a DifferenceImage with the kernel attached."""
    template = makeVisitImage(pair.template, pair.templateVariance)
    science = makeVisitImage(pair.science, pair.scienceVariance)
    task = ipDiffim.ImagePsfMatchTask(config=_config(1))
    res = task.run(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    from lsst.images import DifferenceImage

    assert isinstance(res.difference, DifferenceImage)
    kimage = res.difference.kernel.compute_kernel_image(x=256, y=256).array
    np.testing.assert_allclose(kimage, res.psfMatchingKernel.getArray(256, 256), rtol=0, atol=1e-12)
    assert abs(kimage.sum() / pair.fluxRatio - 1) < 0.01


def test_convolve_science_path():
    """With a sharper science image, convolving it (convolveTemplate=False) matches the template.

    The kernel sum is then 1 / fluxRatio, and the difference (in science
    units) has unit normalized scatter away from sources.
    """
    sharp = makeSyntheticPair(
        size=384,
        nStars=150,
        seed=4,
        templateFwhm=4.5,
        scienceFwhm=(3.0, 3.4),
        scienceEllipticity=0.0,
        templateNoiseFactor=1.0,
    )
    template = maskedImage(sharp.template, sharp.templateVariance)
    science = maskedImage(sharp.science, sharp.scienceVariance)
    task = ipDiffim.ImagePsfMatchTask(config=_config(1))
    res = task.run(template, science, templateFwhmPix=4.5, scienceFwhmPix=3.2, convolveTemplate=False)
    kSum = task.metadata["spatialKernelSum"]
    assert abs(kSum * sharp.fluxRatio - 1.0) < 0.01
    norm, ok = _normalized(res.difference)
    ok &= ~_sourceMask(sharp)
    assert abs(np.std(norm[ok]) - 1.0) < 0.05


class TestBadInput:
    def test_mismatched_sizes(self, pair):
        """Images of different sizes without sky projections are refused by name."""
        t = maskedImage(pair.template[:500, :500], pair.templateVariance[:500, :500])
        s = maskedImage(pair.science, pair.scienceVariance)
        with pytest.raises(MismatchedImagesError, match="differ in size"):
            ipDiffim.ImagePsfMatchTask().subtractMaskedImages(t, s)

    def test_all_nan(self, pair):
        """An all-NaN template is refused."""
        t = maskedImage(np.full_like(pair.template, np.nan), pair.templateVariance)
        s = maskedImage(pair.science, pair.scienceVariance)
        with pytest.raises(MismatchedImagesError, match="no finite pixels"):
            ipDiffim.ImagePsfMatchTask().subtractMaskedImages(t, s)

    def test_nonpositive_variance(self, pair):
        """A variance plane with no positive values is refused."""
        t = maskedImage(pair.template, np.zeros_like(pair.templateVariance))
        s = maskedImage(pair.science, pair.scienceVariance)
        with pytest.raises(MismatchedImagesError, match="variance"):
            ipDiffim.ImagePsfMatchTask().subtractMaskedImages(t, s)

    def test_no_candidates(self):
        """Pure noise yields NoKernelCandidatesError, an AlgorithmError."""
        rng = np.random.default_rng(3)
        a = rng.normal(size=(200, 200)).astype(np.float32)
        var = np.ones_like(a)
        with pytest.raises(ipDiffim.NoKernelCandidatesError) as info:
            ipDiffim.ImagePsfMatchTask().subtractMaskedImages(maskedImage(a, var), maskedImage(a, var))
        import lsst.pipe.base as pipeBase

        assert isinstance(info.value, pipeBase.AlgorithmError)

    def test_kernel_larger_than_image(self, pair):
        """A kernel that cannot fit the image is refused with advice."""
        t = maskedImage(pair.template[:40, :40], pair.templateVariance[:40, :40])
        s = maskedImage(pair.science[:40, :40], pair.scienceVariance[:40, :40])
        with pytest.raises(MismatchedImagesError, match="too small"):
            ipDiffim.ImagePsfMatchTask().subtractMaskedImages(t, s)


def setup_module(module):
    lsst.utils.tests.init()


class TestUpstreamImageTaskCases:
    """Equivalents of the removed upstream image-task tests (spec §6.14)."""

    def test_all_masked_input(self, pair):
        """A template entirely NO_DATA is refused."""
        t = maskedImage(pair.template, pair.templateVariance)
        t.mask.set("NO_DATA", np.ones(pair.template.shape, bool))
        s = maskedImage(pair.science, pair.scienceVariance)
        with pytest.raises(MismatchedImagesError, match="NO_DATA"):
            ipDiffim.ImagePsfMatchTask().subtractMaskedImages(t, s)

    def test_convolve_and_subtract_self(self):
        """convolveAndSubtract of an image with its own Gaussian-convolved version leaves -background."""
        from scipy.ndimage import correlate

        from lsst.ip.diffim.math import AnalyticKernel, GaussianFunction2, PolynomialFunction2

        rng = np.random.default_rng(6)
        image = rng.normal(size=(105, 105)) * 10 + 100
        kernel = AnalyticKernel(21, 21, GaussianFunction2(2, 3))
        convolved = correlate(image, kernel.getArray(), mode="constant")
        t, s = maskedImage(image, np.ones_like(image)), maskedImage(convolved, np.ones_like(image))
        inner = (slice(10, 95), slice(10, 95))
        for bg in (0.0, 10.0):
            diff = ipDiffim.convolveAndSubtract(t, s, kernel, bg)
            np.testing.assert_allclose(diff.image.array[inner], -bg, atol=1e-3)
        for order in (0, 2):
            diff = ipDiffim.convolveAndSubtract(t, s, kernel, PolynomialFunction2(order))
            np.testing.assert_allclose(diff.image.array[inner], 0.0, atol=1e-3)

    def test_chebyshev_and_polynomial_agree(self, pair):
        """Chebyshev and polynomial spatial models give the same kernel and background (constant terms)."""
        results = []
        for modelType in ("chebyshev1", "polynomial"):
            config = _config(0)
            config.kernel.active.spatialBgOrder = 0
            config.kernel.active.spatialModelType = modelType
            task = ipDiffim.ImagePsfMatchTask(config=config)
            res = task.subtractMaskedImages(
                maskedImage(pair.template, pair.templateVariance),
                maskedImage(pair.science, pair.scienceVariance),
                templateFwhmPix=3.0,
                scienceFwhmPix=4.5,
            )
            results.append(res)
        k0 = results[0].psfMatchingKernel.getArray(0, 0)
        k1 = results[1].psfMatchingKernel.getArray(0, 0)
        np.testing.assert_allclose(k0, k1, atol=1e-7)
        assert abs(results[0].backgroundModel(0, 0) - results[1].backgroundModel(0, 0)) < 1e-3

    def test_xy0_invariance(self, pair):
        """Moving both images to another parent origin leaves the kernel images unchanged."""
        outs = []
        for start in ((0, 0), (1234, 567)):
            bbox = Box.from_shape(pair.template.shape, start=start)
            mis = [
                MaskedImage(
                    Image(np.asarray(a, np.float32), bbox=bbox),
                    variance=Image(np.asarray(v, np.float32), bbox=bbox),
                    mask_schema=makeDifferenceMaskSchema(),
                )
                for a, v in ((pair.template, pair.templateVariance), (pair.science, pair.scienceVariance))
            ]
            res = ipDiffim.ImagePsfMatchTask(config=_config(1)).subtractMaskedImages(
                *mis, templateFwhmPix=3.0, scienceFwhmPix=4.5
            )
            outs.append(res.psfMatchingKernel.getArray(start[1] + 200.0, start[0] + 300.0))
        np.testing.assert_allclose(outs[0], outs[1], atol=1e-7)

    @pytest.mark.parametrize("basis", ["AL", "DF", "DFreg"])
    def test_subtract_exposures_types(self, pair, basis):
        """AL, DF and regularized DF all run subtractExposures with per-pixel weights; result types."""
        config = ipDiffim.ImagePsfMatchTask.ConfigClass()
        config.kernel.name = "AL" if basis == "AL" else "DF"
        k = config.kernel.active
        k.constantVarianceWeighting = False
        k.fitForBackground = True
        k.spatialKernelOrder = 1
        k.singleKernelClipping = k.kernelSumClipping = k.spatialKernelClipping = False
        if basis != "AL":
            k.kernelSize = 11
            k.useRegularization = basis == "DFreg"
        template = makeVisitImage(pair.template, pair.templateVariance)
        science = makeVisitImage(pair.science, pair.scienceVariance)
        res = ipDiffim.ImagePsfMatchTask(config=config).subtractExposures(
            template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5
        )
        from lsst.images import DifferenceImage
        from lsst.ip.diffim.math import Function2, LinearCombinationKernel, SpatialCellSet

        assert isinstance(res.subtractedExposure, DifferenceImage)
        assert isinstance(res.psfMatchingKernel, LinearCombinationKernel)
        assert isinstance(res.backgroundModel, Function2)
        assert isinstance(res.kernelCellSet, SpatialCellSet)
        assert abs(res.psfMatchingKernel.getSum(256, 256) / pair.fluxRatio - 1) < 0.03
