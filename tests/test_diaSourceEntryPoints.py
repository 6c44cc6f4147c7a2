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
"""DIA sources from the command line, the notebook API and the lsstDebug display."""

from __future__ import annotations

import json

import lsstDebug
import matplotlib.image
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.cli.subtract import main
from lsst.ip.diffim.diaAssociation import FALSE_POSITIVE_KEYS
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

TRANSIENT = (128.4, 140.2, 6000.0)


@pytest.fixture(scope="module")
def pair():
    return makeSyntheticPair(size=256, nStars=80, seed=17, scienceFwhm=(4.5, 4.5), transients=[TRANSIENT])


def _nearest(table: Table, x: float, y: float) -> tuple[int, float]:
    d = np.hypot(np.asarray(table["x"]) - x, np.asarray(table["y"]) - y)
    return int(np.argmin(d)), float(d.min())


def test_cli_detect(pair, tmp_path, capsys):
    """--detect writes dia_sources.fits (units, the transient), prints and records the counts."""
    for name, image, var in (
        ("template", pair.template, pair.templateVariance),
        ("science", pair.science, pair.scienceVariance),
    ):
        fits.HDUList([fits.PrimaryHDU(image), fits.ImageHDU(var, name="VARIANCE")]).writeto(
            tmp_path / f"{name}.fits"
        )
    out = tmp_path / "out"
    argv = [str(tmp_path / "template.fits"), str(tmp_path / "science.fits"), "-o", str(out), "--detect",
            "--template-fwhm", "3.0", "--science-fwhm", "4.5", "-c",
            "detectAndMeasure.thresholdValue=5.5"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    table = Table.read(out / "science" / "dia_sources.fits")
    assert table["psfFlux"].unit == "adu"  # plain FITS without BUNIT: the input's ADU, not nJy
    k, d = _nearest(table, *TRANSIENT[:2])
    assert d < 0.5 and abs(table["psfFlux"][k] / TRANSIENT[2] - 1) < 0.1
    meta = json.loads((out / "science" / "metadata.json").read_text())["detectAndMeasure"]
    assert meta["detectAndMeasure.NFalsePositivesTotal"] == len(table)
    assert f"DIA sources: {len(table)} (" in printed and "unassociated" in printed
    assert (out / "science" / "summary.png").exists()


def test_notebook_detect(pair):
    """subtract(detect=True) fills result.diaSources; detectDiaSources re-runs with another config."""
    result = ipDiffim.subtract(
        pair.template,
        pair.science,
        templateVariance=pair.templateVariance,
        scienceVariance=pair.scienceVariance,
        templateFwhm=3.0,
        scienceFwhm=4.5,
        detect=True,
    )
    table = result.diaSources
    k, d = _nearest(table, *TRANSIENT[:2])
    assert d < 0.5 and table["srcMatchId"][k] > 0
    assert [table.meta[key] for key in FALSE_POSITIVE_KEYS][0] == len(table)
    from lsst.ip.diffim.detectAndMeasure import DetectAndMeasureConfig

    config = DetectAndMeasureConfig()
    config.thresholdValue = 1000.0
    assert len(ipDiffim.detectDiaSources(result, config=config)) == 0
    assert len(result.diaSources) == 0


def test_lsstdebug_display(pair, monkeypatch, tmp_path):
    """display + displayDiaSources of lsst.ip.diffim.detectAndMeasure write a non-blank PNG."""
    module = "lsst.ip.diffim.detectAndMeasure"

    def debugInfo(name):
        di = lsstDebug.getInfo(name)
        if name == module:
            di.display = True
            di.displayDiaSources = True
        return di

    monkeypatch.setenv("IPDIFFIM_DEBUG_DIR", str(tmp_path))
    monkeypatch.setattr(lsstDebug, "Info", debugInfo)
    try:
        ipDiffim.subtract(
            pair.template,
            pair.science,
            templateVariance=pair.templateVariance,
            scienceVariance=pair.scienceVariance,
            templateFwhm=3.0,
            scienceFwhm=4.5,
            detect=True,
        )
    finally:
        info = lsstDebug.getInfo(module)
        for v in ("display", "displayDiaSources"):
            info.__dict__.pop(v, None)
    files = sorted(tmp_path.glob("*_diaSources.png"))
    assert len(files) == 1
    image = matplotlib.image.imread(files[0])
    assert image.shape[0] > 200 and float(np.var(image[..., :3])) > 1e-3
