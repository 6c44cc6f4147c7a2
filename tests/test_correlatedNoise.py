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
"""Variance of convolved images whose input noise is correlated (resampled, coadded images)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lsst.ip.diffim.math.correlatedNoise import convolvedVarianceFactor, noiseCorrelation

#: The smoothing that correlates the noise: neighbour correlation 2 * 0.2 * 0.6 / (0.36 + 0.08) = 0.545.
SMOOTH = np.array([0.2, 0.6, 0.2])


def _correlatedNoise(shape: tuple[int, int], seed: int) -> np.ndarray:
    white = np.random.default_rng(seed).normal(0.0, 1.0, shape)
    return ndimage.correlate1d(ndimage.correlate1d(white, SMOOTH, axis=0, mode="wrap"), SMOOTH, axis=1,
                               mode="wrap")  # fmt: skip


def test_noise_correlation_of_smoothed_white_noise():
    noise = _correlatedNoise((400, 400), 1)
    rho = noiseCorrelation(noise, np.ones(noise.shape, bool), maxLag=2)
    one = 2 * 0.2 * 0.6 / (0.2**2 * 2 + 0.6**2)  # 0.545 per axis; 0.297 on the diagonal
    two = 0.2 * 0.2 / (0.2**2 * 2 + 0.6**2)  # 0.091
    assert rho[2, 3] == pytest.approx(one, abs=0.02) and rho[3, 2] == pytest.approx(one, abs=0.02)
    assert rho[3, 3] == pytest.approx(one * one, abs=0.02)
    assert rho[2, 4] == pytest.approx(two, abs=0.02)
    white = np.random.default_rng(2).normal(0.0, 1.0, (400, 400))
    rhoWhite = noiseCorrelation(white, np.ones(white.shape, bool), maxLag=2)
    assert np.abs(rhoWhite - np.eye(5)[2:3].T @ np.eye(5)[2:3]).max() < 0.01


@pytest.mark.parametrize("kernel", [np.array([[0.5, 0.5]]), np.array([[0.3, 0.7]]), np.ones((3, 3)) / 9])
def test_convolved_variance_factor_matches_the_measured_variance(kernel):
    noise = _correlatedNoise((600, 600), 3)
    rho = noiseCorrelation(noise, np.ones(noise.shape, bool), maxLag=2)
    convolved = ndimage.convolve(noise, kernel, mode="wrap")
    naive = float(np.sum(kernel**2)) * float(noise.var())  # K^2 * var: independent pixels
    factor = convolvedVarianceFactor(kernel, rho)
    assert factor > 1.3  # smoothing a positively correlated noise keeps more of it
    assert factor * naive == pytest.approx(float(convolved.var()), rel=0.03)
    # Independent noise: the factor is 1.
    assert convolvedVarianceFactor(kernel, np.pad(np.ones((1, 1)), 2)) == pytest.approx(1.0)


def test_sources_are_kept_out_of_the_correlation():
    noise = np.random.default_rng(4).normal(0.0, 1.0, (300, 300))
    yy, xx = np.mgrid[0:300, 0:300]
    stars = sum(500 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2)) for x, y in
                [(50, 50), (150, 80), (250, 200), (100, 240)])  # fmt: skip
    rho = noiseCorrelation(noise + stars, np.ones(noise.shape, bool), maxLag=1)
    assert abs(rho[1, 2]) < 0.02 and abs(rho[2, 1]) < 0.02


@pytest.mark.parametrize("correct", [True, False])
def test_difference_noise_of_a_resampled_template(correct):
    # A template whose noise is correlated (as after resampling), matched to a science image of wider
    # PSF, offset by half a pixel: the difference's variance plane must describe its noise (D / sigma
    # of unit std off the stars), which K^2 * var alone underestimates.
    from astropy.table import Table

    from lsst.ip.diffim import ImagePsfMatchTask
    from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
    from lsst.ip.diffim.tests import maskedImage

    shape = (256, 256)
    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(30, 226, 25), rng.uniform(30, 226, 25)
    fluxes = rng.uniform(2e4, 6e4, 25)
    template = renderStars(shape, xs, ys, fluxes, PsfModel(2.0, 2.0, 0.0, shape))
    # Neighbour correlation 0.24 along x (per-pixel sigma 3), as the DECam stamps resampled by SWarp.
    white = np.random.default_rng(8).normal(0.0, 1.0, shape)
    template += 3.0 * ndimage.correlate1d(white, [0.1, 0.8, 0.1], axis=1, mode="wrap") / np.sqrt(0.66)
    science = renderStars(shape, xs + 0.5, ys, fluxes, PsfModel(2.6, 2.6, 0.0, shape))
    science += rng.normal(0.0, 1.0, shape)
    config = ImagePsfMatchTask.ConfigClass()
    config.doCorrelatedNoiseVariance = correct
    config.kernel.active.spatialKernelOrder = 0
    config.kernel.active.spatialBgOrder = 0
    task = ImagePsfMatchTask(config=config)
    result = task.subtractMaskedImages(
        maskedImage(template.astype(np.float32), 9.0), maskedImage(science.astype(np.float32), 1.0),
        Table({"x": xs, "y": ys}), templateFwhmPix=4.71, scienceFwhmPix=6.12,
    )  # fmt: skip
    d = result.subtractedMaskedImage
    z = d.image.array / np.sqrt(d.variance.array)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    far = np.min(np.hypot(xx[..., None] - xs, yy[..., None] - ys), axis=-1) > 12
    far[:20] = far[-20:] = False
    far[:, :20] = far[:, -20:] = False
    q25, q75 = np.percentile(z[far & np.isfinite(z)], [25, 75])
    std = (q75 - q25) / 1.349
    if correct:
        assert std == pytest.approx(1.0, abs=0.03)
        assert task.metadata["correlatedNoiseVarianceFactor"] > 1.2
    else:
        assert std > 1.08


def test_decam_stamps_difference_noise(tmp_path):
    # The real DECam pair 04e-18b (tests/data/decamCorrelated), template convolved at the defaults: at
    # a0f719e (K^2 * var only) the star-free robust std of D/sigma was 1.090 and 0.114% of the pixels
    # had |D/sigma| > 5; the issue asks for at most 0.1%.
    import json
    from pathlib import Path

    import sep
    from astropy.io import fits

    from lsst.ip.diffim.cli.subtract import main

    data = Path(__file__).parent / "data" / "decamCorrelated"
    template, science = data / "decam_OBS18b.fits", data / "decam_OBS04e.fits"
    out = tmp_path / "o"
    assert main([str(template), str(science), "-o", str(out), "-q", "--no-plots", "--convolve",
                 "template"]) == 0  # fmt: skip
    meta = json.loads(next(out.glob("*/metadata.json")).read_text())["metadata"]
    assert meta["psfMatch.correlatedNoiseVarianceFactor"] == pytest.approx(1.45, abs=0.1)
    from lsst.images import VisitImage
    from lsst.ip.diffim.math.masks import anyMaskPlaneSet

    diff = VisitImage.read(str(next(out.glob("*/difference.fits"))))
    z = diff.image.array / np.sqrt(diff.variance.array)
    flagged = anyMaskPlaneSet(diff.mask, ["NO_DATA", "EDGE", "SAT", "BAD", "STREAK"])
    stars = np.zeros(z.shape, bool)
    for path in (template, science):
        image = np.ascontiguousarray(fits.getdata(path), dtype=np.float64)
        background = sep.Background(image, bw=32, bh=32)
        _, seg = sep.extract(image - background.back(), 3.0, err=background.globalrms, segmentation_map=True)
        stars |= seg > 0
    stars = ndimage.binary_dilation(stars, iterations=4)
    usable = np.isfinite(z) & ~flagged  # as bench/bench_realFrames.py: EDGE covers the kernel's border
    q25, q75 = np.percentile(z[usable & ~stars], [25, 75])
    assert (q75 - q25) / 1.349 == pytest.approx(1.0, abs=0.03)
    assert np.mean(np.abs(z[usable]) > 5) <= 0.001
