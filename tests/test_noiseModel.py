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
"""The noise model of images without a variance plane, variance files, and variance scaling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from lsst.ip.diffim.adapters.noiseModel import (
    VarianceFileError,
    applyVarianceScaling,
    modelVariance,
    readVarianceFile,
)
from lsst.ip.diffim.tests import maskedImage

DATA = Path(__file__).parent / "data" / "noiseAndPsf"

GAIN, READ_NOISE, SKY_E = 2.0, 6.0, 2000.0


def _skySubtractedFrame(shape=(160, 150), seed=2):
    """Stars on a sky of SKY_E electrons, Poisson + read noise, in ADU, sky then subtracted."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    signal = np.zeros(shape)
    stars = [(30, 40, 4e5), (100, 60, 1e5), (70, 120, 2.5e5), (130, 130, 5e4)]
    for x, y, flux in stars:
        signal += flux / (2 * np.pi * 2.0**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    electrons = rng.poisson(signal + SKY_E) + rng.normal(0.0, READ_NOISE, shape)
    image = (electrons - SKY_E) / GAIN
    trueVariance = (signal + SKY_E + READ_NOISE**2) / GAIN**2
    return image, trueVariance, stars, signal / GAIN


def test_skyNoiseIsMeasuredOnSkySubtractedFrames():
    image, truth, stars, expected = _skySubtractedFrame()
    variance = modelVariance(image, GAIN, READ_NOISE)
    # Off the stars the model is the sky variance (truth 501 ADU^2); the plain
    # gain/read-noise model gives only (6/2)^2 = 9.
    sky = truth < 1.01 * truth.min()
    assert np.median(variance[sky]) == pytest.approx(np.median(truth[sky]), rel=0.05)
    plain = modelVariance(image, GAIN, READ_NOISE, measureSky=False)
    assert np.median(plain[sky]) < 0.05 * np.median(truth[sky])
    # On the star peaks the Poisson term of the star is added.
    for x, y, _ in stars:
        assert variance[y, x] == pytest.approx(truth[y, x], rel=0.1)
    # The normalized noise is 1 everywhere, sources included.
    resid = (image - expected) / np.sqrt(variance)
    assert np.std(resid) == pytest.approx(1.0, abs=0.05)


def test_skyNoiseOnRealDecamStamp():
    # DEC-OBS18a: sky-subtracted, sky sigma 54.9 ADU; GAIN/RDNOISE alone predict 2.9 ADU.
    with fits.open(DATA / "decam_OBS18a.fits") as hdul:
        image = hdul[0].data.astype(float)
        gain, readNoise = hdul[0].header["GAIN"], hdul[0].header["RDNOISE"]
    variance = modelVariance(image, gain, readNoise)
    assert np.sqrt(np.median(variance)) == pytest.approx(54.9, rel=0.08)
    assert np.sqrt(np.median(modelVariance(image, gain, readNoise, measureSky=False))) < 3.5


def test_modelVarianceRefusesBadGain():
    with pytest.raises(ValueError, match="gain"):
        modelVariance(np.zeros((20, 20)), 0.0, 1.0)
    with pytest.raises(ValueError, match="read noise"):
        modelVariance(np.zeros((20, 20)), 1.0, float("nan"))


def _writeHdu(path, data, name=None):
    hdu = fits.ImageHDU(np.asarray(data, dtype=np.float32), name=name)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def test_readVarianceFileKinds(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.normal(0.0, 4.0, (64, 64))
    sigma = np.full(image.shape, 4.0)
    _writeHdu(tmp_path / "err.fits", sigma, "ERR")
    _writeHdu(tmp_path / "var.fits", sigma**2, "VARIANCE")
    _writeHdu(tmp_path / "anon_sigma.fits", sigma)
    _writeHdu(tmp_path / "anon_var.fits", sigma**2)
    for name in ("err", "var", "anon_sigma", "anon_var"):
        variance = readVarianceFile(tmp_path / f"{name}.fits", image.shape, "auto", image)
        assert np.allclose(variance, 16.0), name
    # The kind can be forced.
    assert np.allclose(readVarianceFile(tmp_path / "anon_var.fits", image.shape, "sigma"), 256.0)
    with pytest.raises(VarianceFileError, match="differs from image shape"):
        readVarianceFile(tmp_path / "err.fits", (10, 10))
    with pytest.raises(VarianceFileError, match="no such variance file"):
        readVarianceFile(tmp_path / "missing.fits", image.shape)
    # Non-positive entries become NaN (the caller masks them).
    sigma[0, 0] = 0.0
    _writeHdu(tmp_path / "err0.fits", sigma, "ERR")
    assert np.isnan(readVarianceFile(tmp_path / "err0.fits", image.shape)[0, 0])


def test_applyVarianceScalingMasksSourcesAndScales():
    image, truth, _, _ = _skySubtractedFrame(seed=4)
    mi = maskedImage(image, truth / 3.0)  # the variance plane is 3x too small
    factor = applyVarianceScaling(mi)
    assert factor == pytest.approx(3.0, rel=0.05)
    assert np.allclose(mi.variance.array, truth / 3.0 * factor, rtol=1e-5)
    # The input mask is not changed (DETECTED was set on a copy only).
    assert not mi.mask.array.any()


def test_cliDecamStampsAtDefaults(tmp_path, capsys):
    """Sky-subtracted DECam stamps without variance: exit 0, D/sigma clean, factors in metadata."""
    from lsst.images import VisitImage
    from lsst.ip.diffim.cli.subtract import main

    out = tmp_path / "out"
    status = main([str(DATA / "decam_OBS18a.fits"), str(DATA / "decam_OBS04a.fits"), "-o", str(out), "-q"])
    assert status == 0, capsys.readouterr().err
    meta = json.loads((out / "decam_OBS04a" / "metadata.json").read_text())["metadata"]
    factors = {k.split(".")[-1]: v for k, v in meta.items() if k.endswith("VarianceFactor")}
    # The sky-noise model already describes the noise: the factors are near 1.
    assert factors["scaleTemplateVarianceFactor"] == pytest.approx(1.0, abs=0.1)
    assert factors["scaleScienceVarianceFactor"] == pytest.approx(1.0, abs=0.1)
    diff = VisitImage.read(str(out / "decam_OBS04a" / "difference.fits"))
    z = diff.image.array / np.sqrt(diff.variance.array)
    z = z[np.isfinite(z)]
    assert np.mean(np.abs(z) > 5) <= 0.001
    q1, q3 = np.percentile(z, [25, 75])
    assert (q3 - q1) / 1.349 == pytest.approx(1.0, abs=0.1)


def test_cliVarianceFileAndScalingOff(tmp_path, capsys):
    """A separate variance file is used as given when scaling is off, and rescaled when on."""
    from lsst.ip.diffim.cli.noiseOptions import scaleInputVariance
    from lsst.ip.diffim.cli.subtract import InputError, readInput

    image = fits.getdata(DATA / "decam_OBS18a.fits")
    _writeHdu(tmp_path / "sigma.fits", np.full(image.shape, 27.45), "SIGMA")  # half the true 54.9
    vi, _ = readInput(str(DATA / "decam_OBS18a.fits"), variancePath=str(tmp_path / "sigma.fits"))
    assert np.median(vi.variance.array) == pytest.approx(27.45**2, rel=1e-4)

    class Args:
        scale_variance = True

    factor = scaleInputVariance(vi, Args, "template")
    # The frame's sky sigma (AVSIG, measured before sky subtraction) is 54.9 ADU: (54.9/27.45)^2 = 4
    # within 7% in sigma (the resampled frame's pixel noise is a little lower).
    assert factor == pytest.approx(4.0, rel=0.15)
    assert np.median(vi.variance.array) == pytest.approx(27.45**2 * factor, rel=1e-4)
    Args.scale_variance = False
    assert scaleInputVariance(vi, Args, "template") is None
    with pytest.raises(InputError, match="--gain and --read-noise"):
        hdr = fits.getheader(DATA / "decam_OBS18a.fits")
        del hdr["GAIN"]
        fits.PrimaryHDU(image, header=hdr).writeto(tmp_path / "nogain.fits")
        readInput(str(tmp_path / "nogain.fits"))


def test_fillValuesAreNoDataAndDoNotSpoilTheNoise(tmp_path):
    """ZTF cutouts at a CCD edge hold -FLT_MAX fill values: masked, and the variance factor stays sane."""
    from lsst.ip.diffim.cli.subtract import readInput
    from lsst.ip.diffim.math.masks import anyMaskPlaneSet

    rng = np.random.default_rng(5)
    sigma = math.sqrt(200.0 / 6.2 + (8.0 / 6.2) ** 2)  # Poisson sky of 200 ADU and read noise, gain 6.2
    image = (200.0 + rng.normal(0.0, sigma, (63, 63))).astype(np.float32)
    image[:, :20] = np.finfo(np.float32).min
    fits.PrimaryHDU(image).writeto(tmp_path / "edge.fits")
    vi, _ = readInput(str(tmp_path / "edge.fits"), gain=6.2, readNoise=8.0)
    noData = anyMaskPlaneSet(vi.mask, ["NO_DATA"])
    assert noData[:, :20].all() and not noData[:, 20:].any()
    factor = applyVarianceScaling(vi)
    # The sky's Poisson noise is in the model already: the factor is near 1.
    assert factor == pytest.approx(1.0, abs=0.15)
    assert np.median(vi.variance.array[:, 20:]) == pytest.approx(sigma**2, rel=0.2)


def test_perImageNoiseOptions():
    import argparse

    from lsst.ip.diffim.cli.noiseOptions import addNoiseArguments, noiseReadOptions

    parser = argparse.ArgumentParser()
    parser.add_argument("science", nargs="+")
    parser.add_argument("--gain", type=float)
    parser.add_argument("--read-noise", type=float)
    addNoiseArguments(parser)
    args = parser.parse_args(
        [
            "a.fits",
            "b.fits",
            "--gain",
            "2",
            "--read-noise",
            "5",
            "--science-gain",
            "4",
            "--science-variance",
            "va.fits",
            "--science-variance",
            "vb.fits",
        ]
    )
    template = noiseReadOptions(args, "template")
    science = noiseReadOptions(args, "science", 1)
    assert (template["gain"], template["readNoise"], template["variancePath"]) == (2.0, 5.0, None)
    assert (science["gain"], science["readNoise"], science["variancePath"]) == (4.0, 5.0, "vb.fits")
    assert args.scale_variance and args.sky_noise
    args = parser.parse_args(["a.fits", "b.fits", "--science-variance", "va.fits", "--no-scale-variance"])
    assert not args.scale_variance
    with pytest.raises(ValueError, match="once per science image"):
        noiseReadOptions(args, "template")


def test_cross_dilation_is_scipys():
    from scipy import ndimage

    from lsst.ip.diffim.math.crossDilation import dilateCross

    rng = np.random.default_rng(8)
    mask = rng.random((61, 47)) < 0.01
    mask[0, 0] = mask[-1, 5] = mask[30, -1] = True  # at the edges
    for steps in (0, 1, 2, 3):
        expected = ndimage.binary_dilation(mask, iterations=steps) if steps else mask
        np.testing.assert_array_equal(dilateCross(mask, steps), expected)
    assert not dilateCross(np.zeros((5, 5), bool), 2).any()
