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
"""``ipdiffim-subtract`` through a subprocess, and the notebook API."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs import WCS

import lsst.ip.diffim as ipDiffim
from lsst.images import DifferenceImage
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair
from lsst.ip.diffim.tests import subtractSyntheticPair

CLI = shutil.which("ipdiffim-subtract", path=os.path.dirname(sys.executable)) or "ipdiffim-subtract"


def _wcs(size: int, shift: float = 0.0) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [30.0, -10.0]
    wcs.wcs.crpix = [size / 2 + 1 + shift, size / 2 + 1]
    wcs.wcs.cd = [[-5.5e-5, 0.0], [0.0, 5.5e-5]]
    return wcs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fits")
    pair = makeSyntheticPair(size=256, nStars=80, seed=17, transients=[(128.4, 140.2, 6000.0)])
    # Template: uint16 with BZERO and gain/read-noise keywords; science: float with an ERR extension and WCS.
    hdr = _wcs(256).to_header()
    hdr["GAIN"] = 1.0
    hdr["RDNOISE"] = 5.0 * 0.5
    tpl = fits.PrimaryHDU(np.clip(np.round(pair.template), 0, 65535).astype(np.uint16), header=hdr)
    tpl.writeto(folder / "template.fits")
    sci = fits.HDUList(
        [
            fits.PrimaryHDU(pair.science, header=_wcs(256).to_header()),
            fits.ImageHDU(np.sqrt(pair.scienceVariance), name="ERR"),
        ]
    )
    sci.writeto(folder / "science.fits")
    # A second epoch of the same field: more noise.  (A mirrored copy of the science image, used
    # before, matches no template star: its kernel sum of -0.009 is now refused.)
    extra = np.random.default_rng(3).normal(0.0, np.sqrt(pair.scienceVariance))
    sci2 = fits.HDUList(
        [
            fits.PrimaryHDU(pair.science + extra, header=_wcs(256).to_header()),
            fits.ImageHDU(np.sqrt(2.0 * pair.scienceVariance), name="ERR"),
        ]
    )
    sci2.writeto(folder / "science2.fits")
    far = _wcs(256)
    far.wcs.crval = [31.0, -10.0]
    fits.HDUList(
        [
            fits.PrimaryHDU(pair.science, header=far.to_header()),
            fits.ImageHDU(np.sqrt(pair.scienceVariance), name="ERR"),
        ]
    ).writeto(folder / "far.fits")
    (folder / "broken.fits").write_bytes(b"SIMPLE  =  this is not FITS")
    fits.PrimaryHDU(pair.science).writeto(folder / "novar.fits")
    return folder, pair


def _run(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_subtracts(files, tmp_path):
    """Two science images against one template: products written, truth recovered, progress shown."""
    folder, pair = files
    out = tmp_path / "out"
    result = _run(
        folder / "template.fits",
        folder / "science.fits",
        folder / "science2.fits",
        "-o",
        out,
        "--template-fwhm",
        "3.0",
        "--science-fwhm",
        "4.5",
        "-c",
        "kernel.active.spatialKernelOrder=1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[1/2] science.fits" in result.stdout and "[2/2] science2.fits" in result.stdout
    diff = DifferenceImage.read(str(out / "science" / "difference.fits"))
    assert abs(diff.kernel.compute_kernel_image(x=128, y=128).array.sum() / pair.fluxRatio - 1) < 0.01
    yy, xx = np.mgrid[0:256, 0:256]
    aperture = (xx - 128.4) ** 2 + (yy - 140.2) ** 2 <= 15**2
    flux = diff.image.array[aperture].sum()
    assert abs(flux - 6000.0) < 3 * np.sqrt(diff.variance.array[aperture].sum())
    for name in ("matched_template.fits", "kernel.fits", "background.fits", "metadata.json", "summary.png"):
        assert (out / "science2" / name).exists()
    assert sorted(p.name for p in out.iterdir()) == ["science", "science2"]  # no staging, no lock left


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "no such file"),
        ("broken", "not a readable FITS"),
        ("novar", "--gain and --read-noise"),
    ],
)
def test_cli_bad_inputs(files, tmp_path, case, message):
    """Bad inputs print one clear line, exit non-zero and write nothing."""
    folder, _ = files
    out = tmp_path / "out"
    template = folder / ("nope.fits" if case == "missing" else "template.fits")
    science = folder / f"{case}.fits" if case != "missing" else folder / "science.fits"
    result = _run(template, science, "-o", out, "--template-fwhm", "3", "--science-fwhm", "4.5")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_no_overlap(files, tmp_path):
    """Images that do not overlap on the sky fail cleanly."""
    folder, _ = files
    out = tmp_path / "out"
    result = _run(
        folder / "template.fits",
        folder / "far.fits",
        "-o",
        out,
        "--template-fwhm",
        "3",
        "--science-fwhm",
        "4.5",
    )
    assert result.returncode != 0
    assert "do not overlap" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_bad_override(files, tmp_path):
    """An unknown config key is refused before any work."""
    folder, _ = files
    result = _run(
        folder / "template.fits", folder / "science.fits", "-o", tmp_path / "o", "-c", "kernel.active.nope=1"
    )
    assert result.returncode == 2 and "unknown config field" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_notebook_api_arrays_and_ccddata():
    """subtract() from arrays and from CCDData recovers the flux ratio and unit residuals."""
    pair = makeSyntheticPair(size=256, nStars=70, seed=19)
    result = subtractSyntheticPair(pair)
    assert abs(result.kernelSum / pair.fluxRatio - 1) < 0.01
    assert result.difference.shape == pair.science.shape
    t = CCDData(pair.template, unit="adu", uncertainty=StdDevUncertainty(np.sqrt(pair.templateVariance)))
    s = CCDData(pair.science, unit="adu", uncertainty=StdDevUncertainty(np.sqrt(pair.scienceVariance)))
    r2 = ipDiffim.subtract(t, s)
    assert abs(r2.kernelSum / pair.fluxRatio - 1) < 0.01
    assert "spatialKernelSum" in str(r2.metadata)
    with pytest.raises(ValueError, match="variance"):
        ipDiffim.subtract(pair.template, pair.science)
