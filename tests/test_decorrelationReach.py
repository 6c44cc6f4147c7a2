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
"""Decorrelation where users are: ipDiffim.subtract(decorrelate=True), the CLI flags, pipetask."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import lsst.ip.diffim as ipDiffim
from lsst.images import MaskedImage
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

BIN = os.path.dirname(sys.executable)
PIPETASK = shutil.which("pipetask", path=BIN) or "pipetask"
PIPELINE = Path(__file__).parent.parent / "pipelines" / "AlardLuptonSubtract.yaml"


def _pair():
    # A noisy template (3x the noise of the science image) so that its convolved noise is correlated.
    return makeSyntheticPair(
        size=256, nStars=40, seed=4, templateNoiseFactor=3.0, transients=[(128.0, 128.0, 9000.0)]
    )


def _offSource(pair, border=30):
    yy, xx = np.mgrid[0:256, 0:256]
    ok = np.ones((256, 256), bool)
    for x, y, f in zip(pair.xs, pair.ys, pair.fluxes):
        ok &= (xx - x) ** 2 + (yy - y) ** 2 > (12 if f < 2e4 else 20) ** 2
    ok &= (xx - 128) ** 2 + (yy - 128) ** 2 > 15**2
    ok[:border] = ok[-border:] = False
    ok[:, :border] = ok[:, -border:] = False
    return ok


def _lag1(image, ok):
    a = np.where(ok, image - np.median(image[ok]), 0.0)
    both = ok[:, 1:] & ok[:, :-1]
    return float(np.sum((a[:, 1:] * a[:, :-1])[both]) / np.sum(a[ok] ** 2) * ok.sum() / both.sum())


def test_notebook_decorrelate():
    pair = _pair()
    ok = _offSource(pair)
    kw = dict(
        templateVariance=pair.templateVariance,
        scienceVariance=pair.scienceVariance,
        templateFwhm=3.0,
        scienceFwhm=4.5,
        convolve="template",
    )
    plain = ipDiffim.subtract(pair.template, pair.science, **kw)
    dec = ipDiffim.subtract(pair.template, pair.science, decorrelate=True, **kw)
    assert _lag1(plain.difference, ok) > 0.1
    assert abs(_lag1(dec.difference, ok)) < 0.02
    z = dec.difference[ok] / np.sqrt(dec.variance[ok])
    assert float(np.std(z)) == pytest.approx(1.0, rel=0.05)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    pair = _pair()
    for name, image, var in (
        ("t", pair.template, pair.templateVariance),
        ("s", pair.science, pair.scienceVariance),
    ):
        fits.HDUList([fits.PrimaryHDU(image), fits.ImageHDU(var, name="VARIANCE")]).writeto(
            folder / f"{name}.fits"
        )
    return folder, pair


def _cli(folder, out, *extra):
    from lsst.ip.diffim.cli.subtract import main

    args = [
        folder / "t.fits",
        folder / "s.fits",
        "-o",
        out,
        "-q",
        "--template-fwhm",
        "3",
        "--science-fwhm",
        "4.5",
    ]
    assert main([str(a) for a in args + list(extra)]) == 0
    return MaskedImage.read(str(out / "s" / "difference.fits"))  # inputs without a WCS: a MaskedImage


def test_cli_decorrelate_and_score(files, tmp_path):
    folder, pair = files
    ok = _offSource(pair)
    dec = _cli(folder, tmp_path / "dec", "--decorrelate")
    score = _cli(folder, tmp_path / "score", "--score")
    assert abs(_lag1(dec.image.array, ok)) < 0.02
    # The score's variance plane describes its noise, and the transient stands out at its S/N.
    zScore = score.image.array / np.sqrt(score.variance.array)
    assert float(np.std(zScore[ok])) == pytest.approx(1.0, rel=0.1)
    assert zScore[128, 128] > 3 * (dec.image.array[128, 128] / np.sqrt(dec.variance.array[128, 128]))


def test_pipetask_alard_lupton(tmp_path):
    """The README's pipetask command on the demo repository."""
    repo = tmp_path / "demo_repo"
    make = shutil.which("ipdiffim-make-demo-repo", path=BIN) or "ipdiffim-make-demo-repo"
    subprocess.run([make, str(repo)], check=True, capture_output=True, timeout=300)
    cmd = [
        PIPETASK,
        "run",
        "-b",
        str(repo),
        "-i",
        "demo/inputs",
        "-o",
        "demo/al",
        "-p",
        str(PIPELINE),
        "--register-dataset-types",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lsst.subtractImages.decorrelate INFO" in result.stdout + result.stderr
    from lsst.daf.butler import Butler

    butler = Butler.from_config(str(repo), collections=["demo/al"])
    dataId = {"instrument": "DemoCam", "visit": 15, "detector": 0}
    diff = butler.get("deepDiff_differenceTempExp", dataId)
    sources = butler.get("deepDiff_psfMatchSources", dataId)
    metadata = butler.get("subtractImages_metadata", dataId)
    assert len(sources) >= 3
    assert metadata["subtractImages"]["convolvedExposure"] == "Template"
    assert metadata["subtractImages"]["differenceFootprintRatioMean"] < 0.05
    z = (diff.image.array / np.sqrt(diff.variance.array))[50:-50, 50:-50]
    assert abs(float(np.median(z))) < 0.5
