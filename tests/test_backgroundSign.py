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
"""The differential background is removed with the right sign, whichever image is convolved.

A science sky offset of +/-200 ADU must leave no offset in the difference
(|median D/sigma| < 0.1 off sources) through every entry point: the task,
`subtract()`, the CLI and the PipelineTask.
"""

from __future__ import annotations

import glob

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

import lsst.ip.diffim as ipDiffim
from lsst.images import Box, MaskedImage
from lsst.images.psfs import GaussianPointSpreadFunction
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.cli import subtract as cliSubtract
from lsst.ip.diffim.math import anyMaskPlaneSet
from lsst.ip.diffim.syntheticPairs import SIGMA2FWHM, makeSyntheticPair
from lsst.ip.diffim.tests import maskedImage

SIZE = 192
NARROW, BROAD = 3.0, 4.5
CASES = [(offset, convolve) for convolve in ("template", "science") for offset in (200.0, -200.0)]
IDS = [f"{c}{o:+.0f}" for o, c in CASES]


def _fwhms(convolve: str) -> tuple[float, float]:
    """(template, science) FWHM: the convolved image is always the narrower."""
    return (NARROW, BROAD) if convolve == "template" else (BROAD, NARROW)


_PAIRS: dict = {}


def _pair(offset: float, convolve: str):
    key = (offset, convolve)
    if key not in _PAIRS:
        tF, sF = _fwhms(convolve)
        _PAIRS[key] = makeSyntheticPair(
            size=SIZE,
            nStars=70,
            seed=23,
            templateFwhm=tF,
            scienceFwhm=(sF, sF),
            scienceEllipticity=0.0,
            fluxRatio=1.2,
            background=(offset, 0.0, 0.0),
            transients=[],
        )
    return _PAIRS[key]


def _starFree(pair) -> np.ndarray:
    """Pixels where neither image has star light above a tenth of its noise (from the truth)."""
    sky = pair.templateModel.min()
    tStars = pair.templateModel - sky
    sStars = pair.scienceModel - pair.scienceModel.min()
    stars = (tStars > 0.1 * np.sqrt(pair.templateVariance)) | (sStars > 0.1 * np.sqrt(pair.scienceVariance))
    return ~ndimage.binary_dilation(stars, iterations=3)


def _medianOffSources(pair, image: np.ndarray, variance: np.ndarray, unusable: np.ndarray | None) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = image / np.sqrt(variance)
    ok = np.isfinite(z) & _starFree(pair)
    if unusable is not None:
        ok &= ~unusable
    assert ok.sum() > 2000
    return float(np.median(z[ok]))


def _config() -> ipDiffim.ImagePsfMatchConfig:
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.fitForBackground = True
    return config


def _unusable(mask) -> np.ndarray:
    return anyMaskPlaneSet(mask, ["NO_DATA", "EDGE", "SAT"])


@pytest.mark.parametrize("offset,convolve", CASES, ids=IDS)
def test_task_background_sign(offset, convolve):
    pair = _pair(offset, convolve)
    tF, sF = _fwhms(convolve)
    task = ipDiffim.ImagePsfMatchTask(config=_config())
    result = task.run(
        maskedImage(pair.template, pair.templateVariance),
        maskedImage(pair.science, pair.scienceVariance),
        templateFwhmPix=tF,
        scienceFwhmPix=sF,
        convolveTemplate=convolve == "template",
    )
    diff = result.subtractedMaskedImage
    median = _medianOffSources(pair, diff.image.array, diff.variance.array, _unusable(diff.mask))
    assert abs(median) < 0.1, median


@pytest.mark.parametrize("offset,convolve", CASES, ids=IDS)
def test_subtract_background_sign(offset, convolve):
    pair = _pair(offset, convolve)
    tF, sF = _fwhms(convolve)
    result = ipDiffim.subtract(
        pair.template,
        pair.science,
        templateVariance=pair.templateVariance,
        scienceVariance=pair.scienceVariance,
        templateFwhm=tF,
        scienceFwhm=sF,
        convolve=convolve,
    )
    median = _medianOffSources(pair, result.difference, result.variance, result.mask)
    assert abs(median) < 0.1, median


@pytest.mark.parametrize("offset,convolve", CASES, ids=IDS)
def test_cli_background_sign(offset, convolve, tmp_path):
    pair = _pair(offset, convolve)
    tF, sF = _fwhms(convolve)
    for name, image, variance in (
        ("template", pair.template, pair.templateVariance),
        ("science", pair.science, pair.scienceVariance),
    ):
        fits.HDUList(
            [fits.PrimaryHDU(image), fits.ImageHDU(np.sqrt(variance).astype(np.float32), name="ERR")]
        ).writeto(tmp_path / f"{name}.fits")
    out = tmp_path / "out"
    status = cliSubtract.main(
        [
            str(tmp_path / "template.fits"),
            str(tmp_path / "science.fits"),
            "-o",
            str(out),
            "-q",
            "--convolve",
            convolve,
            "--template-fwhm",
            str(tF),
            "--science-fwhm",
            str(sF),
        ]
    )
    assert status == 0
    (path,) = glob.glob(str(out / "*" / "difference.fits"))
    diff = MaskedImage.read(path)
    median = _medianOffSources(pair, diff.image.array, diff.variance.array, _unusable(diff.mask))
    assert abs(median) < 0.1, median


@pytest.mark.parametrize("offset,convolve", CASES, ids=IDS)
def test_pipelinetask_background_sign(offset, convolve):
    pair = _pair(offset, convolve)
    tF, sF = _fwhms(convolve)
    bbox = Box.from_shape(pair.science.shape)

    def visit(image, variance, fwhm):
        psf = GaussianPointSpreadFunction(fwhm / SIGMA2FWHM, bounds=bbox, stamp_size=25)
        return makeVisitImage(image, variance, psf=psf)

    config = ipDiffim.SubtractImagesTask.ConfigClass()
    config.psfMatch.kernel.active.fitForBackground = True
    config.mode = "auto"
    task = ipDiffim.SubtractImagesTask(config=config)
    result = task.run(
        template=visit(pair.template, pair.templateVariance, tF),
        science=visit(pair.science, pair.scienceVariance, sF),
    )
    assert task.metadata["convolvedExposure"] == convolve.capitalize()
    diff = result.difference
    median = _medianOffSources(pair, diff.image.array, diff.variance.array, _unusable(diff.mask))
    assert abs(median) < 0.1, median
