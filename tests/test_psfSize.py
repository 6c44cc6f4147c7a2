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
"""PSF size: the FWHM estimate from stars, PSF images, and the refusal of invalid FWHMs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from lsst.ip.diffim import ImagePsfMatchTask, InvalidFwhmError, makeKernelBasisList, subtract
from lsst.ip.diffim.adapters.fwhmEstimate import (
    FwhmEstimationError,
    estimateFwhmFromImage,
    psfImageFwhm,
    readPsfImage,
)
from lsst.ip.diffim.fwhmValidation import validateFwhm
from lsst.ip.diffim.tests import maskedImage

DATA = Path(__file__).parent / "data" / "noiseAndPsf"
SIGMA2FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _moffat(shape, x, y, fwhm, beta, flux):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    profile = (1.0 + ((xx - x) ** 2 + (yy - y) ** 2) / alpha**2) ** (-beta)
    return flux * profile / profile.sum()


def _galaxyField(starFwhm=2.3, seed=11):
    """Four stars among twenty brighter, broader galaxies (the JWST cluster-field situation)."""
    rng = np.random.default_rng(seed)
    shape = (240, 240)
    image = np.zeros(shape)
    for x, y in [(40.3, 50.6), (180.2, 60.1), (120.7, 200.4), (60.5, 170.2)]:
        image += _moffat(shape, x, y, starFwhm, 3.0, 2e4)
    positions = rng.uniform(15, 225, size=(40, 2))
    kept = []
    for x, y in positions:
        if all(math.hypot(x - a, y - b) > 25 for a, b in kept + [(40, 50), (180, 60), (120, 200), (60, 170)]):
            kept.append((x, y))
        if len(kept) == 20:
            break
    for x, y in kept:
        image += _moffat(shape, x, y, rng.uniform(5.0, 9.0), 1.5, rng.uniform(3e4, 1e5))
    image += rng.normal(0.0, 2.0, shape)
    return maskedImage(image, 4.0)


@pytest.mark.parametrize("fwhm", [2.0, 4.0])
def test_psfImageFwhmOfKnownProfiles(fwhm):
    gauss = _moffat((41, 41), 20, 20, fwhm, 50.0, 1.0)  # beta 50: a Gaussian to 0.5%
    assert psfImageFwhm(gauss) == pytest.approx(fwhm, rel=0.05)
    moffat = _moffat((41, 41), 20.3, 19.8, fwhm * 1.5, 2.5, 1.0)
    assert psfImageFwhm(moffat) == pytest.approx(fwhm * 1.5, rel=0.05)


def test_psfImageFwhmRefusesUnusableImages():
    with pytest.raises(FwhmEstimationError, match="positive peak"):
        psfImageFwhm(np.zeros((11, 11)))
    with pytest.raises(FwhmEstimationError, match="border"):
        psfImageFwhm(np.ones((11, 11)))


def test_estimateFindsStarsAmongGalaxies():
    # The former median-of-all-detections estimate measured the galaxies (5-9 px).  A Gaussian
    # fitted to these Moffat (beta 3) stars is ~8% wider than their half-maximum width.
    assert estimateFwhmFromImage(_galaxyField(2.3)) == pytest.approx(2.3, rel=0.1)


def test_estimateOnRealJwstCutout():
    """Five stars among many galaxies: the estimate is the stars' size, near the WebbPSF model's."""
    with fits.open(DATA / "jwst_f200w_glass_cutout.fits") as hdul:
        image, err = hdul["SCI"].data.astype(float), hdul["ERR"].data.astype(float)
    estimate = estimateFwhmFromImage(maskedImage(image, err**2))
    model = psfImageFwhm(readPsfImage(DATA / "jwst_f200w_glass_webbpsf_core.fits"))
    assert model == pytest.approx(2.15, abs=0.1)
    # The drizzled stars are ~13% broader than the bare model (Gaussian FWHM 2.36-2.49 each);
    # the galaxies of the field are 3-18 px.
    assert 2.3 <= estimate <= 2.55
    assert estimate == pytest.approx(model, rel=0.2)


def test_estimateOnZtfCutouts():
    for name in ("ztf_1661382530015060001_ref.fits", "ztf_1661382530015060001_sci.fits"):
        image = fits.getdata(DATA / name).astype(float)
        variance = np.maximum(image, 0) / 6.2 + (8 / 6.2) ** 2
        # The former estimate failed on both (isolation over 20 px, 21 px windows).
        assert 1.4 < estimateFwhmFromImage(maskedImage(image, variance)) < 3.0, name
    image = fits.getdata(DATA / "ztf_472263571115090000_sci.fits").astype(float)
    with pytest.raises(FwhmEstimationError, match="0 detections at 5 sigma"):
        estimateFwhmFromImage(maskedImage(image, np.maximum(image, 0) / 6.2 + 2.0))


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -2.0, float("inf"), "wide"])
def test_invalidFwhmRefusedEverywhere(bad, tmp_path):
    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (60, 60))
    mi = maskedImage(image, 1.0)
    task = ImagePsfMatchTask()
    with pytest.raises(InvalidFwhmError, match="templateFwhmPix must be a finite positive"):
        task.subtractMaskedImages(mi, mi, templateFwhmPix=bad, scienceFwhmPix=3.0)
    with pytest.raises(InvalidFwhmError, match="scienceFwhmPix"):
        task.matchMaskedImages(mi, mi, [{"x": 1}], templateFwhmPix=3.0, scienceFwhmPix=bad)
    with pytest.raises(InvalidFwhmError, match="scienceFwhmPix"):
        task.run(mi, mi, templateFwhmPix=3.0, scienceFwhmPix=bad)
    with pytest.raises(InvalidFwhmError, match="targetFwhmPix"):
        makeKernelBasisList(task.kConfig, targetFwhmPix=bad, referenceFwhmPix=3.0)
    with pytest.raises(InvalidFwhmError, match="scienceFwhm"):
        subtract(
            image,
            image,
            templateVariance=np.ones_like(image),
            scienceVariance=np.ones_like(image),
            templateFwhm=3.0,
            scienceFwhm=bad,
        )
    assert issubclass(InvalidFwhmError, ValueError)
    assert validateFwhm(None) is None and validateFwhm(2) == 2.0


@pytest.mark.parametrize("bad", ["nan", "0", "-1", "inf"])
def test_cliRefusesInvalidFwhm(bad, capsys):
    from lsst.ip.diffim.cli.subtract import main

    code = main(
        [
            str(DATA / "decam_OBS18a.fits"),
            str(DATA / "decam_OBS04a.fits"),
            "-o",
            "/nonexistent",
            f"--science-fwhm={bad}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--science-fwhm: a FWHM must be a finite positive number of pixels" in err
    assert len(err.strip().splitlines()) == 1


def test_psfImagesGiveTheFwhm(tmp_path):
    from lsst.ip.diffim.adapters.exposures import makeVisitImage
    from lsst.ip.diffim.cli.psfOptions import resolveFwhm
    from lsst.ip.diffim.fwhmValidation import resolveFwhm as resolveImageFwhm

    psf = _moffat((31, 31), 15, 15, 3.4, 3.0, 1.0)
    fits.PrimaryHDU(psf.astype(np.float32)).writeto(tmp_path / "psf.fits")
    image = makeVisitImage(np.zeros((50, 50), dtype=np.float32), np.ones((50, 50), dtype=np.float32))
    # The PSF image wins over the header card; the explicit value over both.
    fwhm = resolveFwhm(image, None, 7.0, str(tmp_path / "psf.fits"))
    assert fwhm == pytest.approx(3.4, rel=0.05)
    assert image.psf.sigma * SIGMA2FWHM == pytest.approx(fwhm)
    assert resolveFwhm(image, 2.5, 7.0, str(tmp_path / "psf.fits")) == 2.5
    # An invalid header card is ignored (estimated instead: this image has no star).
    with pytest.raises(FwhmEstimationError):
        resolveFwhm(image, None, 0.0, None)
    # subtract(): an array or a path.
    assert resolveImageFwhm(image, None, psf, name="templateFwhm") == pytest.approx(3.4, rel=0.05)
    assert resolveImageFwhm(image, None, tmp_path / "psf.fits") == pytest.approx(3.4, rel=0.05)


def test_subtractImagesTaskRefusesNanPsfFwhm():
    from types import SimpleNamespace

    from lsst.images import Box, Image
    from lsst.ip.diffim import SubtractImagesTask

    class NanPsf:
        bounds = SimpleNamespace(bbox=Box.from_shape((20, 20)))

        def compute_kernel_image(self, *, x, y):
            return Image(np.full((5, 5), np.nan, dtype=np.float32))

    task = SubtractImagesTask()
    task.config.mode = "auto"
    good = SimpleNamespace(psf=NanPsf())
    # NaN <= x is False: without the check the science image would silently be convolved.
    with pytest.raises(InvalidFwhmError, match="templatePsfFwhm"):
        task._convolveTemplate(good, good)
