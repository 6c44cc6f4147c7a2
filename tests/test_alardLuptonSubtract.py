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
"""AlardLuptonSubtractTask and friends on synthetic pairs (upstream's test_subtractTask, ported)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.ip.diffim.math.masks import anyMaskPlaneSet, resolveMaskPlane
from lsst.ip.diffim.math.statistics import clippedMeanStd
from lsst.ip.diffim.subtractImages import (
    AlardLuptonPreconvolveSubtractTask,
    AlardLuptonSubtractConfig,
    AlardLuptonSubtractTask,
    InsufficientKernelSourcesError,
    SimplifiedSubtractTask,
)
from lsst.ip.diffim.tests import makePair, offSourceMask

STATS_BAD = ["EDGE", "BAD", "NO_DATA", "DETECTED", "DETECTED_NEGATIVE"]


def makeTask(cls=AlardLuptonSubtractTask, **overrides):
    config = cls.ConfigClass()
    config.doSubtractBackground = False
    config.restrictKernelEdgeSources = False
    for key, value in overrides.items():
        setattr(config, key, value)
    return cls(config=config)


def diffStats(difference):
    bad = anyMaskPlaneSet(difference.mask, STATS_BAD)
    values = difference.image.array[~bad]
    mean, std, n = clippedMeanStd(values)
    return mean, std, n


def offSourceZ(pair, difference, border=25):
    off = offSourceMask(pair)
    off[:border] = off[-border:] = False
    off[:, :border] = off[:, -border:] = False
    return difference.image.array[off] / np.sqrt(difference.variance.array[off])


def test_allowed_config_modes():
    config = AlardLuptonSubtractConfig()
    for mode in ("auto", "convolveScience", "convolveTemplate"):
        config.mode = mode
    with pytest.raises(pexConfig.FieldValidationError):
        config.mode = "aotu"
    assert config.doDecorrelation is True
    assert config.doScaleVariance is True
    assert config.makeKernel.kernel.active.spatialKernelOrder == 1
    assert config.makeKernel.kernel.active.spatialBgOrder == 2
    assert config.makeKernel.kernel.active.fitForBackground is True


def test_mismatched_template():
    science = makePair(size=220, nSrc=10).science
    template = makePair(size=200, nSrc=10).template
    with pytest.raises(AssertionError):
        makeTask().run(template, science, makePair(size=220, nSrc=10).sources)


def test_mismatched_filter():
    pair = makePair(nSrc=10)
    other = makePair(nSrc=10, band="r")
    with pytest.raises(AssertionError):
        makeTask().run(other.template, pair.science, pair.sources)


@pytest.mark.parametrize("coverage, raises", [(0.09, True), (0.15, True), (0.7, False)])
def test_incomplete_template_coverage(coverage, raises):
    pair = makePair(size=256, nSrc=60, templateBorder=20)
    template = pair.template
    cut = int(256 * coverage + 20)
    template.image.array[:, cut:] = 0.0
    template.mask.set(
        resolveMaskPlane(template.mask.schema, "NO_DATA"), np.zeros_like(template.image.array, bool)
    )
    noData = np.zeros(template.image.array.shape, bool)
    noData[:, cut:] = True
    template.mask.set(resolveMaskPlane(template.mask.schema, "NO_DATA"), noData)
    task = makeTask(requiredTemplateFraction=0.2)
    if raises:
        with pytest.raises(pipeBase.NoWorkFound):
            task.run(template, pair.science, pair.sources)
    else:
        task.run(template, pair.science, pair.sources)
        assert task.metadata["templateCoveragePercent"] == pytest.approx(100 * (cut - 20) / 256, abs=0.5)


def test_clear_template_mask():
    pair = makePair(templateBorder=20)
    template = pair.template
    schema = template.mask.schema
    box = np.zeros(template.image.array.shape, bool)
    box[50:75, 150:175] = True
    for name in schema.names:
        template.mask.set(name, template.mask.get(name) | box)
    task = makeTask()
    result = task.run(template, pair.science, pair.sources)
    for name in schema.names:
        nSet = int(template.mask.get(name).sum())
        if name in {resolveMaskPlane(schema, n) for n in task.config.preserveTemplateMask}:
            assert nSet == 625
        else:
            assert nSet == 0
    diffMask = result.difference.mask
    for name in ("DETECTED", "DETECTED_NEGATIVE"):
        plane = resolveMaskPlane(diffMask.schema, name)
        assert int(diffMask.get(plane).sum()) == 0
    # SAT was renamed: SAT_TEMPLATE is set (dilated by the kernel) where the template had SAT.
    assert int(diffMask.get("SAT_TEMPLATE").sum()) >= 25 * 25 - 0
    assert int(diffMask.get(resolveMaskPlane(diffMask.schema, "NO_DATA")).sum()) >= 25 * 25 - 0


def test_equal_images():
    pair = makePair(templateSigma=(2.4, 2.4), scienceSigma=(2.4, 2.4), templateBorder=20)
    result = makeTask().run(pair.template, pair.science, pair.sources)
    assert np.all(np.isfinite(result.difference.image.array))
    mean, std, n = diffStats(result.difference)
    assert abs(mean) < 5 / math.sqrt(n)
    assert std == pytest.approx(math.sqrt(2), rel=0.1)


@pytest.mark.parametrize(
    "templateSigma, scienceSigma, expected",
    [
        ((2.0, 2.0), (2.4, 2.4), "Template"),  # sharper template
        ((2.4, 2.4), (2.0, 2.0), "Science"),  # sharper science
        ((2.6, 2.0), (2.0, 2.6), "Template"),  # crossed: template narrower along y
    ],
)
def test_auto_mode(templateSigma, scienceSigma, expected):
    results = {}
    for mode in ("auto", "convolveTemplate" if expected == "Template" else "convolveScience"):
        pair = makePair(templateSigma=templateSigma, scienceSigma=scienceSigma, templateBorder=20)
        task = makeTask(mode=mode)
        results[mode] = task.run(pair.template, pair.science, pair.sources)
        assert task.metadata["convolvedExposure"] == expected
        z = offSourceZ(pair, results[mode].difference)
        assert abs(float(np.median(z))) < 0.1
    a, b = (r.difference for r in results.values())
    np.testing.assert_array_equal(a.image.array, b.image.array)


@pytest.mark.parametrize(
    "mode, templateSigma, scienceSigma",
    [
        ("convolveTemplate", (2.0, 2.0), (2.4, 2.4)),
        ("convolveScience", (2.4, 2.4), (2.0, 2.0)),
    ],
)
def test_background_subtraction(mode, templateSigma, scienceSigma):
    background = (30.0, 0.02, -0.015)
    z = {}
    for doSubtract in (True, False):
        pair = makePair(
            templateSigma=templateSigma,
            scienceSigma=scienceSigma,
            templateBorder=20,
            background=background,
            seed=8,
        )
        task = makeTask(mode=mode, doSubtractBackground=doSubtract)
        result = task.run(pair.template, pair.science, pair.sources)
        z[doSubtract] = offSourceZ(pair, result.difference)
        # The fitted background is the science's (sign as fitted: convolved - reference for science).
        bg = result.backgroundModel if doSubtract else None
        if bg is not None:
            xc, yc = 128.0, 128.0
            truth = background[0] + background[1] * xc + background[2] * yc
            sign = 1.0 if mode == "convolveTemplate" else -1.0
            assert float(bg(xc, yc)) * sign == pytest.approx(truth, rel=0.05)
    assert abs(float(np.median(z[True]))) < 0.1
    assert float(np.std(z[True])) == pytest.approx(1.0, rel=0.1)
    assert abs(float(np.median(z[False]))) > 2.0


def test_few_sources():
    pair = makePair(nSrc=1)
    with pytest.raises(InsufficientKernelSourcesError) as info:
        makeTask().run(pair.template, pair.science, pair.sources)
    assert info.value.metadata == {"nSources": 1, "nRequired": 3}


@pytest.mark.parametrize("maxKernelSources", [1000, 12, -1])
def test_kernel_source_selector(maxKernelSources):
    pair = makePair(nSrc=40, templateBorder=20)
    # Sources whose stamps (2 x kernel size + 1) fit in the image; upstream's test also drops the rest.
    x, y = np.asarray(pair.sources["x"]), np.asarray(pair.sources["y"])
    sources = pair.sources[(x > 40) & (x < 215) & (y > 40) & (y < 215)]
    bad = np.zeros(len(sources), bool)
    bad[::3] = True
    sources["base_PsfFlux_flag"] = bad
    task = makeTask(maxKernelSources=maxKernelSources)
    task.config.sourceSelector.doFlags = True
    task.config.sourceSelector.flags.bad = ["base_PsfFlux_flag"]
    task._prepareInputs(pair.template, pair.science)
    task.matchedPsfSize = task.sciencePsfSize
    kernelSources = task._sourceSelector(pair.template, pair.science, sources)
    good = sources[~bad]
    snr = np.asarray(good["base_PsfFlux_instFlux"]) / np.asarray(good["base_PsfFlux_instFluxErr"])
    nExpected = len(good) if maxKernelSources < 0 else min(len(good), maxKernelSources)
    assert len(kernelSources) == nExpected
    best = np.sort(snr)[::-1][:nExpected]
    kept = np.asarray(kernelSources["base_PsfFlux_instFlux"]) / np.asarray(
        kernelSources["base_PsfFlux_instFluxErr"]
    )
    np.testing.assert_allclose(np.sort(kept)[::-1], best)
    task.config.minKernelSources = 1000
    with pytest.raises(InsufficientKernelSourcesError):
        task._sourceSelector(pair.template, pair.science, sources)


@pytest.mark.parametrize(
    "mode, templateSigma, scienceSigma",
    [
        ("convolveTemplate", (2.0, 2.0), (2.4, 2.4)),
        ("convolveScience", (2.4, 2.4), (2.0, 2.0)),
    ],
)
@pytest.mark.parametrize("doDecorrelation", [True, False])
def test_scale_variance(mode, templateSigma, scienceSigma, doDecorrelation):
    factor = 1.345
    pair = makePair(
        templateSigma=templateSigma,
        scienceSigma=scienceSigma,
        templateBorder=20,
        scienceNoise=4.0,
        templateNoise=2.0,
    )
    pair.science.variance.array[...] /= factor
    pair.template.variance.array[...] /= factor
    task = makeTask(mode=mode, doDecorrelation=doDecorrelation)
    result = task.run(pair.template, pair.science, pair.sources)
    assert task.metadata["scaleScienceVarianceFactor"] == pytest.approx(factor, abs=0.05)
    assert task.metadata["scaleTemplateVarianceFactor"] == pytest.approx(factor, abs=0.05)
    z = offSourceZ(pair, result.difference)
    # The variance plane describes the pixel noise after the rescaling.
    assert float(np.std(z)) == pytest.approx(1.0, rel=0.1)


def test_exposure_properties():
    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), templateBorder=20)
    result = makeTask(mode="convolveTemplate").run(pair.template, pair.science, pair.sources)
    assert result.difference.psf is pair.science.psf
    assert result.difference.band == pair.science.band
    assert result.difference.bbox == pair.science.bbox
    pair = makePair(templateSigma=(2.4, 2.4), scienceSigma=(2.0, 2.0), templateBorder=20)
    result = makeTask(mode="convolveScience").run(pair.template, pair.science, pair.sources)
    assert result.difference.psf is pair.template.psf


def test_fake_mask_plane_propagation():
    from lsst.images import Mask, MaskPlane, MaskSchema, VisitImage

    def withFake(image, boxes):
        planes = list(image.mask.schema) + [MaskPlane("FAKE", "Injected source.")]
        schema = MaskSchema(planes, dtype=image.mask.schema.dtype)
        mask = Mask(0, schema=schema, bbox=image.bbox)
        for name in image.mask.schema.names:
            mask.set(name, image.mask.get(name))
        fake = np.zeros(image.image.array.shape, bool)
        for y, x in boxes:
            fake[y - 1 : y + 2, x - 1 : x + 2] = True
        mask.set("FAKE", fake)
        out = VisitImage(
            image.image,
            mask=mask,
            variance=image.variance,
            sky_projection=image.sky_projection,
            obs_info=image.obs_info,
            psf=image.psf,
            detector=image.detector,
            band=image.band,
        )
        return out, fake

    pair = makePair(size=200, nSrc=30)
    science, scienceFake = withFake(pair.science, [(60, 70), (140, 120)])
    template, templateFake = withFake(pair.template, [(100, 40), (30, 150)])
    result = makeTask().run(template, science, pair.sources)
    mask = result.difference.mask
    np.testing.assert_array_equal(mask.get("INJECTED"), scienceFake)
    np.testing.assert_array_equal(mask.get("INJECTED_TEMPLATE"), templateFake)


def test_metadata():
    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), templateBorder=20)
    task = makeTask()
    task.run(pair.template, pair.science, pair.sources)
    for key in (
        "templateCoveragePercent",
        "scaleScienceVarianceFactor",
        "scaleTemplateVarianceFactor",
        "sciencePsfSize",
        "templatePsfSize",
        "scienceLimitingMagnitude",
        "templateLimitingMagnitude",
        "diffimLimitingMagnitude",
        "convolvedExposure",
        "nPsfSources",
        "differenceFootprintRatioMean",
        "differenceFootprintRatioStdev",
        "differenceFootprintSkyRatioMean",
        "differenceFootprintSkyRatioStdev",
    ):
        assert key in task.metadata
    sigma2fwhm = 2 * math.sqrt(2 * math.log(2))
    assert task.metadata["sciencePsfSize"] == pytest.approx(2.4 * sigma2fwhm, rel=1e-3)
    assert task.metadata["templatePsfSize"] == pytest.approx(2.0 * sigma2fwhm, rel=1e-3)
    assert task.metadata["nPsfSources"] >= 0.9 * len(pair.sources)
    assert task.metadata["templateCoveragePercent"] == 100.0
    assert task.metadata["differenceFootprintRatioMean"] < 0.02
    # AB zero point of nJy is 31.4; maglim = zp - 2.5 log10(5 sqrt(pi sigma^2)).
    expected = 31.4 - 2.5 * math.log10(5 * math.sqrt(math.pi * 2.4**2))
    assert task.metadata["scienceLimitingMagnitude"] == pytest.approx(expected, abs=1e-3)


def test_allow_kernel_source_detection():
    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), templateBorder=20, nSrc=40)
    task = makeTask(allowKernelSourceDetection=True)
    result = task.run(pair.template, pair.science, pair.sources[:1])
    assert len(result.kernelSources) >= 3
    mean, std, n = diffStats(result.difference)
    assert std == pytest.approx(math.sqrt(2), rel=0.1)


# ------------------------------------------------------------------ preconvolve
def test_preconvolve_equal_images():
    pair = makePair(templateSigma=(2.4, 2.4), scienceSigma=(2.4, 2.4), templateBorder=20)
    task = makeTask(AlardLuptonPreconvolveSubtractTask)
    result = task.run(pair.template, pair.science, pair.sources)
    score = result.scoreExposure
    assert task.metadata["convolvedExposure"] == "Preconvolution"
    assert np.all(np.isfinite(score.image.array))
    psf = pair.science.psf.compute_kernel_image(x=128, y=128).array
    nea = 1.0 / float((psf**2).sum())
    mean, std, n = diffStats(score)
    assert abs(mean) < 5 * math.sqrt(2 / nea) / math.sqrt(n) * 3
    assert std == pytest.approx(math.sqrt(2) / math.sqrt(nea), rel=0.1)
    # The score border is EDGE.
    edge = anyMaskPlaneSet(score.mask, ["EDGE"])
    assert edge[0].all() and edge[:, -1].all()


def test_preconvolve_point_source_snr():
    """A transient's peak in the score image is its optimal S/N."""
    pair = makePair(
        templateSigma=(2.0, 2.0),
        scienceSigma=(2.4, 2.4),
        templateBorder=20,
        nSrc=40,
        scienceNoise=1.0,
        templateNoise=0.5,
    )
    psf = pair.science.psf.compute_kernel_image(x=0, y=0).array
    r = psf.shape[0] // 2
    flux = 400.0
    spots = [(60, 60), (60, 190), (190, 60), (190, 190), (128, 128)]
    for y, x in spots:
        pair.science.image.array[y - r : y + r + 1, x - r : x + r + 1] += flux * psf.astype(np.float32)
    task = makeTask(AlardLuptonPreconvolveSubtractTask)
    result = task.run(pair.template, pair.science, pair.sources)
    score = result.scoreExposure
    snr = score.image.array / np.sqrt(score.variance.array)
    peaks = np.array([snr[y, x] for y, x in spots])
    # Optimal S/N of a point source in S - K * T, K matching T (sigma 2.0) to S (sigma 2.4).
    shape = (128, 128)
    from lsst.ip.diffim.math.decorrelation import padCenterOriginArray

    yy, xx = np.mgrid[-15:16, -15:16]
    ks = math.sqrt(2.4**2 - 2.0**2)
    kappa = np.exp(-(xx**2 + yy**2) / (2 * ks**2))
    kappa /= kappa.sum()
    p2 = np.abs(np.fft.fft2(padCenterOriginArray(psf.astype(float), shape))) ** 2
    k2 = np.abs(np.fft.fft2(padCenterOriginArray(kappa, shape))) ** 2
    expected = flux * math.sqrt(float(np.mean(p2 / (1.0 + 0.25 * k2))))
    assert float(np.mean(peaks)) == pytest.approx(expected, rel=0.05)


def test_preconvolve_few_sources():
    pair = makePair(nSrc=1)
    with pytest.raises(InsufficientKernelSourcesError):
        makeTask(AlardLuptonPreconvolveSubtractTask).run(pair.template, pair.science, pair.sources)


# ------------------------------------------------------------------- simplified
def test_simplified_existing_kernel_reproduces():
    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), templateBorder=20)
    al = makeTask().run(pair.template, pair.science, pair.sources)
    pair2 = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), templateBorder=20)
    simple = makeTask(SimplifiedSubtractTask)
    result = simple.run(pair2.template, pair2.science, inputPsfMatchingKernel=al.psfMatchingKernel)
    np.testing.assert_array_equal(result.difference.image.array, al.difference.image.array)


def test_simplified_detection():
    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), templateBorder=20, nSrc=40)
    simple = makeTask(SimplifiedSubtractTask, useExistingKernel=False)
    result = simple.run(pair.template, pair.science)
    assert np.all(np.isfinite(result.difference.image.array))
    mean, std, n = diffStats(result.difference)
    assert abs(mean) < 5 / math.sqrt(n) * 3
    assert std == pytest.approx(math.sqrt(2), rel=0.1)
    assert len(result.kernelSources) >= 3


def test_psf_size_grid_fallback(caplog):
    """A template PSF not evaluable at its centre: FWHMs from the grid, with upstream's log line."""
    from lsst.ip.diffim.tests import EllipticalGaussianPsf

    class HoleyPsf(EllipticalGaussianPsf):
        def compute_kernel_image(self, *, x, y):
            if abs(x - self.bounds.bbox.x.center) < 1 and abs(y - self.bounds.bbox.y.center) < 1:
                raise ValueError("no input images at this position")
            return super().compute_kernel_image(x=x, y=y)

    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), templateBorder=20)
    from lsst.images import VisitImage

    t = pair.template
    template = VisitImage(
        t.image,
        mask=t.mask,
        variance=t.variance,
        sky_projection=t.sky_projection,
        obs_info=t.obs_info,
        psf=HoleyPsf(2.0, 2.0, bounds=t.bbox),
        detector=t.detector,
        band=t.band,
    )
    task = makeTask()
    with caplog.at_level("INFO", logger="lsst.alardLuptonSubtract"):
        task.run(template, pair.science, pair.sources)
    assert "Unable to evaluate PSF at the average position. Evaluting PSF on a grid of points." in caplog.text
    sigma2fwhm = 2 * math.sqrt(2 * math.log(2))
    assert task.metadata["templatePsfSize"] == pytest.approx(2.0 * sigma2fwhm, rel=1e-3)


def test_symmetry():
    """Swapping template and science (auto mode) gives the opposite difference."""
    a = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), seed=9)
    forward = makeTask(mode="auto").run(a.template, a.science, a.sources).difference
    b = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), seed=9)
    task = makeTask(mode="auto")
    backward = task.run(b.science, b.template, b.sources).difference
    assert task.metadata["convolvedExposure"] == "Science"
    bad = anyMaskPlaneSet(forward.mask, STATS_BAD) | anyMaskPlaneSet(backward.mask, STATS_BAD)
    delta = (forward.image.array - backward.image.array)[~bad]
    mean, std, n = clippedMeanStd(delta)
    assert abs(mean) < 5 * 2 / math.sqrt(n)
    assert std == pytest.approx(2 * math.sqrt(2), rel=0.1)
