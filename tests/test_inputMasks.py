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
"""Saturation, user masks and non-finite pixels keep pixels out of the fit and flag the difference."""

from __future__ import annotations

import glob
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from scipy import ndimage

import lsst.ip.diffim as ipDiffim
from lsst.images import Box, Image, MaskedImage
from lsst.ip.diffim.adapters.inputMasks import headerSaturation, makeInputMask, parseUnit
from lsst.ip.diffim.cli import subtract as cliSubtract
from lsst.ip.diffim.math import anyMaskPlaneSet, makeDifferenceMaskSchema
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

CEILING = 2000.0


@pytest.fixture(scope="module")
def pair():
    return makeSyntheticPair(size=256, nStars=150, seed=31, fluxRatio=1.3, transients=[])


@pytest.fixture(scope="module")
def clipped(pair):
    """The pair with both images clipped at CEILING (bright stars flat-topped)."""
    return np.minimum(pair.template, CEILING), np.minimum(pair.science, CEILING)


def _subtract(pair, template, science, **kwargs):
    return ipDiffim.subtract(
        template,
        science,
        templateVariance=pair.templateVariance,
        scienceVariance=pair.scienceVariance,
        templateFwhm=3.0,
        scienceFwhm=4.5,
        convolve="template",
        **kwargs,
    )


def test_header_saturation_cards():
    assert headerSaturation(fits.Header({"SATURATE": 40000.0, "DATAMAX": 1.0})) == 40000.0
    assert headerSaturation(fits.Header({"SATLEVEL": 30000})) == 30000.0
    assert headerSaturation(fits.Header({"DATAMAX": 65535})) == 65535.0
    assert headerSaturation(fits.Header({"SATURATE": "none", "DATAMAX": 0})) is None
    assert parseUnit("MJy/sr").to_string() == "MJy / sr" and parseUnit(None).to_string() == "adu"


def test_clipped_stars_kernel_sum(pair, clipped):
    """Stars clipped at a ceiling: with the level given, the kernel sum is within 1% of the truth."""
    template, science = clipped
    assert ndimage.label(pair.template > CEILING)[1] >= 10  # the test has saturated stars
    # Clipped stars bias an unmasked fit with upstream's candidate selection (one candidate per
    # footprint, ranked by rating only); the per-peak, isolated-first default happens to avoid most.
    upstream = _config()
    upstream.rankIsolatedFirst = False
    upstream.selectDetection.splitFootprintsAtPeaks = False
    unmasked = _subtract(pair, template, science, config=upstream)
    assert unmasked.kernelSum / pair.fluxRatio - 1 > 0.02
    masked = _subtract(pair, template, science, saturation=CEILING)
    assert abs(masked.kernelSum / pair.fluxRatio - 1) < 0.01, masked.kernelSum
    # The clipped stars are flagged in the difference (SAT, grown by the kernel).
    diffSat = anyMaskPlaneSet(masked.differenceImage.mask, ["SAT"])
    assert diffSat[pair.template > CEILING].all()
    assert diffSat.sum() > 2 * (pair.template >= CEILING).sum()
    # No star touching a saturated pixel was a kernel candidate; also, no unmasked NaN.
    assert not np.isnan(masked.difference[~masked.mask]).any()


def test_saturated_star_never_candidate(pair, clipped):
    template, science = clipped
    task = ipDiffim.ImagePsfMatchTask(config=_config())

    def masked(image, variance):
        bbox = Box.from_shape(image.shape)
        return MaskedImage(
            Image(np.asarray(image, np.float32), bbox=bbox),
            mask=makeInputMask(image, saturation=CEILING),
            variance=Image(np.asarray(variance, np.float32), bbox=bbox),
        )

    result = task.subtractMaskedImages(
        masked(template, pair.templateVariance),
        masked(science, pair.scienceVariance),
        templateFwhmPix=3.0,
        scienceFwhmPix=4.5,
    )
    candidates = result.kernelCellSet.allCandidates(ignoreBad=False)
    assert len(candidates) > 10
    for cand in candidates:
        for stamp in (cand.getTemplateMaskedImage(), cand.getScienceMaskedImage()):
            assert not anyMaskPlaneSet(stamp.mask, ["SAT"]).any()


def _config() -> ipDiffim.ImagePsfMatchConfig:
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.fitForBackground = True
    return config


def test_nan_pixels_flagged_everywhere(pair):
    """25 NaN template pixels: subtract() and a MaskedImage without NO_DATA leave no unmasked NaN."""
    template = pair.template.copy()
    rng = np.random.default_rng(3)
    ys, xs = rng.integers(30, 226, 25), rng.integers(30, 226, 25)
    template[ys, xs] = np.nan
    template[ys[0], xs[0]] = np.inf
    result = _subtract(pair, template, pair.science)
    bad = ~np.isfinite(result.difference)
    assert bad.any() and not (bad & ~result.mask).any()
    assert abs(result.kernelSum / pair.fluxRatio - 1) < 0.01
    bbox = Box.from_shape(template.shape)
    schema = makeDifferenceMaskSchema()
    task = ipDiffim.ImagePsfMatchTask(config=_config())
    for convolveTemplate in (True, False):
        res = task.run(
            MaskedImage(
                Image(template, bbox=bbox),
                variance=Image(pair.templateVariance, bbox=bbox),
                mask_schema=schema,
            ),
            MaskedImage(
                Image(pair.science, bbox=bbox),
                variance=Image(pair.scienceVariance, bbox=bbox),
                mask_schema=schema,
            ),
            templateFwhmPix=3.0 if convolveTemplate else 4.5,
            scienceFwhmPix=4.5 if convolveTemplate else 3.0,
            convolveTemplate=convolveTemplate,
        )
        diff = res.subtractedMaskedImage
        flagged = anyMaskPlaneSet(diff.mask, ["NO_DATA", "EDGE"])
        nonFinite = ~np.isfinite(diff.image.array)
        assert nonFinite.any() and not (nonFinite & ~flagged).any()


def test_ccddata_mask_excludes_pixels(pair):
    """CCDData.mask: a flagged region is BAD in the difference; a mask of every pixel leaves no candidate."""
    unc = StdDevUncertainty(np.sqrt(pair.templateVariance))
    region = np.zeros(pair.template.shape, bool)
    region[:, :128] = True
    t = CCDData(pair.template, unit="adu", uncertainty=unc, mask=region)
    s = CCDData(pair.science, unit="adu", uncertainty=StdDevUncertainty(np.sqrt(pair.scienceVariance)))
    result = ipDiffim.subtract(t, s, templateFwhm=3.0, scienceFwhm=4.5, convolve="template")
    bad = anyMaskPlaneSet(result.differenceImage.mask, ["BAD"])
    inner = slice(20, -20)  # the border of a kernel half-width is NO_DATA
    assert bad[inner, 20:128].all() and bad[:, 140:].sum() == 0  # grown by at most the kernel half-width
    assert result.mask[:, :128].all()
    assert result.differenceImage.unit.to_string() == "adu"
    everything = CCDData(pair.template, unit="adu", uncertainty=unc, mask=np.ones(pair.template.shape, bool))
    with pytest.raises(ipDiffim.NoKernelCandidatesError):
        ipDiffim.subtract(everything, s, templateFwhm=3.0, scienceFwhm=4.5, convolve="template")


def _writeFits(path, image, variance, header=None, mask=None):
    hdus = [fits.PrimaryHDU(image, header=header), fits.ImageHDU(np.sqrt(variance), name="ERR")]
    if mask is not None:
        hdus.append(fits.ImageHDU(mask.astype(np.int16), name="DQ"))
    fits.HDUList(hdus).writeto(path)


def _cli(tmp_path, *extra, out="out"):
    out = tmp_path / out
    status = cliSubtract.main(
        [
            str(tmp_path / "t.fits"),
            str(tmp_path / "s.fits"),
            "-o",
            str(out),
            "-q",
            "--convolve",
            "template",
            "--template-fwhm",
            "3",
            "--science-fwhm",
            "4.5",
            *extra,
        ]
    )
    paths = glob.glob(str(out / "*" / "difference.fits"))
    return status, (MaskedImage.read(paths[0]) if paths else None)


def test_cli_saturate_card_and_options(pair, clipped, tmp_path):
    template, science = clipped
    _writeFits(tmp_path / "t.fits", template, pair.templateVariance, fits.Header({"SATURATE": CEILING}))
    _writeFits(tmp_path / "s.fits", science, pair.scienceVariance, fits.Header({"SATURATE": CEILING}))
    status, diff = _cli(tmp_path)
    assert status == 0
    (meta,) = glob.glob(str(tmp_path / "out" / "*" / "metadata.json"))
    kernelSum = json.loads(open(meta).read())["summary"]["kernelSum"]
    assert abs(kernelSum / pair.fluxRatio - 1) < 0.01, kernelSum
    # No WCS in the inputs: none in the output (no invented RA 150, Dec 2); BUNIT kept.
    with fits.open(glob.glob(str(tmp_path / "out" / "*" / "difference.fits"))[0]) as hdul:
        cards = [k for h in hdul for k in h.header if k.startswith(("CTYPE", "CRVAL"))]
        assert not [k for k in cards if not k.endswith("A")]  # only the pixel-offset WCS "A"
        assert hdul["IMAGE"].header["BUNIT"] == "adu"
    assert diff.sky_projection is None
    assert anyMaskPlaneSet(diff.mask, ["SAT"])[template >= CEILING].all()  # stars are >= 20 px in
    # An option above the clipped values overrides the card: nothing is SAT any more.
    status, diff = _cli(tmp_path, "--template-saturation", "1e9", "--science-saturation", "1e9", out="out2")
    assert status == 0 and not anyMaskPlaneSet(diff.mask, ["SAT"]).any()
    assert diff.unit.to_string() == "adu"


def test_cli_mask_extension(pair, tmp_path):
    """A DQ extension flagging a region sets BAD; one flagging every pixel leaves no candidate (exit 1)."""
    region = np.zeros(pair.template.shape, bool)
    region[140:, :] = True
    _writeFits(tmp_path / "t.fits", pair.template, pair.templateVariance, mask=region)
    _writeFits(tmp_path / "s.fits", pair.science, pair.scienceVariance)
    status, diff = _cli(tmp_path)
    assert status == 0
    assert anyMaskPlaneSet(diff.mask, ["BAD"])[140:-20, 20:-20].all()
    (tmp_path / "t.fits").unlink()
    _writeFits(tmp_path / "t.fits", pair.template, pair.templateVariance, mask=np.ones(region.shape, bool))
    status, diff = _cli(tmp_path, out="out2")
    assert status == 1 and diff is None


def test_cli_keeps_input_wcs_and_unit(pair, tmp_path):
    """A celestial WCS and BUNIT of the inputs reach the difference unchanged."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [30.0, -10.0]
    wcs.wcs.crpix = [129.0, 129.0]
    wcs.wcs.cd = [[-5.5e-5, 0.0], [0.0, 5.5e-5]]
    header = wcs.to_header()
    header["BUNIT"] = "electron"
    _writeFits(tmp_path / "t.fits", pair.template, pair.templateVariance, header)
    _writeFits(tmp_path / "s.fits", pair.science, pair.scienceVariance, header)
    status, diff = _cli(tmp_path)
    assert status == 0
    with fits.open(glob.glob(str(tmp_path / "out" / "*" / "difference.fits"))[0]) as hdul:
        image = hdul["IMAGE"].header
        assert image["BUNIT"] == "electron"
        out = WCS(image, naxis=2)
        assert np.allclose(out.pixel_to_world_values(10.0, 200.0), wcs.pixel_to_world_values(10.0, 200.0))
