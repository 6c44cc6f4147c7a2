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
"""pipelines/DifferenceImagingAndDetection.yaml under the real ``pipetask`` command."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from lsst.daf.butler import Butler
from lsst.images import Box
from lsst.images.psfs import GaussianPointSpreadFunction
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.cli.makeDemoRepo import makeDemoRepo
from lsst.ip.diffim.diaAssociation import FALSE_POSITIVE_KEYS
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

PIPELINE = Path(__file__).parent.parent / "pipelines" / "DifferenceImagingAndDetection.yaml"
PIPETASK = shutil.which("pipetask", path=os.path.dirname(sys.executable)) or "pipetask"
TRANSIENT = (128.3, 100.6, 8000.0)


def test_pipetask_subtract_and_detect(tmp_path):
    """Subtraction then detection: the transient is a DIA source in dia_source_unfiltered, with units,
    and the NFalsePositives counts are in detectAndMeasure_metadata."""
    p = makeSyntheticPair(size=256, nStars=90, seed=21, scienceFwhm=(4.0, 4.0), transients=[TRANSIENT])
    bbox = Box.from_shape((256, 256))
    kw = dict(instrument="DemoCam", visit=301, detectorId=0, band="r", physicalFilter="demo_r")

    def psf(fwhm: float) -> GaussianPointSpreadFunction:
        sigma = fwhm / 2.35482
        return GaussianPointSpreadFunction(math.sqrt(sigma**2 + 1 / 12), bounds=bbox, stamp_size=25)

    template = makeVisitImage(p.template, p.templateVariance, psf=psf(3.0), **kw)
    science = makeVisitImage(p.science, p.scienceVariance, psf=psf(4.0), **kw)
    repo = tmp_path / "repo"
    makeDemoRepo(str(repo), pairs=[(301, 0, template, science)])
    cmd = [PIPETASK, "run", "-b", str(repo), "-i", "demo/inputs", "-o", "demo/dia", "-p", str(PIPELINE),
           "--register-dataset-types"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    butler = Butler.from_config(str(repo), collections=["demo/dia"])
    dataId = {"instrument": "DemoCam", "visit": 301, "detector": 0}
    table = butler.get("dia_source_unfiltered", dataId)
    assert table["psfFlux"].unit == "nJy" and table["psfFlux"].description
    d = np.hypot(table["x"] - TRANSIENT[0], table["y"] - TRANSIENT[1])
    k = int(np.argmin(d))
    assert d[k] < 0.5
    assert abs(table["psfFlux"][k] / TRANSIENT[2] - 1) < 0.1
    assert table["srcMatchId"][k] > 0 and table["refMatchId"][k] == 0
    metadata = butler.get("detectAndMeasure_metadata", dataId)["detectAndMeasure"]
    counts = [int(metadata[key]) for key in FALSE_POSITIVE_KEYS]
    assert counts[0] == len(table)
    assert counts[1] == int((table["refMatchId"] > 0).sum())
    assert counts[2] == int((table["srcMatchId"] > 0).sum())
    assert counts[3] == int(((table["refMatchId"] == 0) & (table["srcMatchId"] == 0)).sum())
