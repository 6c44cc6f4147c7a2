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
"""lsstDebug switches draw non-blank pictures, and nothing when off."""

from __future__ import annotations

import lsstDebug
import matplotlib.image
import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
import lsst.utils.tests
from lsst.images import Box, Image, MaskedImage
from lsst.ip.diffim.math import makeDifferenceMaskSchema
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

PSF_VARIABLES = [
    "displayCandidates",
    "displayKernelBasis",
    "displayKernelMosaic",
    "plotKernelSpatialModel",
    "plotKernelCoefficients",
]
EXPECTED = {
    "displayCandidates": ["candidates", "candidateKernels", "candidateResiduals"],
    "displayKernelBasis": ["kernelBasis"],
    "displayKernelMosaic": ["kernelMosaic"],
    "plotKernelSpatialModel": ["kernelSpatialModel"],
    "plotKernelCoefficients": [
        "kernelCoefficientsByRegion",
        "kernelCoefficientHistograms",
        "kernelCoefficientsModel",
    ],
    "displayTemplate": ["template"],
    "displaySciIm": ["science"],
    "displaySpatialCells": ["spatialCells"],
    "displayDiffIm": ["difference"],
}


def _mi(a, v):
    b = Box.from_shape(a.shape)
    return MaskedImage(Image(a, bbox=b), variance=Image(v, bbox=b), mask_schema=makeDifferenceMaskSchema())


@pytest.fixture(scope="module")
def pair():
    p = makeSyntheticPair(size=256, nStars=60, seed=13, transients=[(120.4, 130.2, 5000.0)])
    science = _mi(p.science, p.scienceVariance)
    science.mask.set("SATURATED", np.pad(np.ones((4, 4), bool), ((60, 192), (60, 192))))
    return _mi(p.template, p.templateVariance), science


def _run(pair, monkeypatch, tmp_path, module, variables):
    def debugInfo(name):
        di = lsstDebug.getInfo(name)
        if name == module:
            di.display = True
            for v in variables:
                setattr(di, v, True)
            di.showBadCandidates = True
        return di

    monkeypatch.setenv("IPDIFFIM_DEBUG_DIR", str(tmp_path))
    monkeypatch.setattr(lsstDebug, "Info", debugInfo)
    try:
        config = ipDiffim.ImagePsfMatchTask.ConfigClass()
        config.kernel.active.fitForBackground = True
        config.kernel.active.spatialKernelOrder = 1
        ipDiffim.ImagePsfMatchTask(config=config).subtractMaskedImages(
            *pair, templateFwhmPix=3.0, scienceFwhmPix=4.5
        )
    finally:
        info = lsstDebug.getInfo(module)
        for v in variables + ["display", "showBadCandidates"]:
            info.__dict__.pop(v, None)
    return sorted(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    "module,variable",
    [("lsst.ip.diffim.psfMatch", v) for v in PSF_VARIABLES]
    + [
        ("lsst.ip.diffim.imagePsfMatch", v)
        for v in ("displayTemplate", "displaySciIm", "displaySpatialCells", "displayDiffIm")
    ],
)
def test_each_variable_draws(pair, monkeypatch, tmp_path, module, variable):
    """Each switch writes its PNG files, each with real content."""
    files = _run(pair, monkeypatch, tmp_path, module, [variable])
    names = {f.stem.split("_", 1)[1] for f in files}
    assert set(EXPECTED[variable]) <= names, names
    for f in files:
        image = matplotlib.image.imread(f)
        assert image.shape[0] > 200 and float(np.var(image[..., :3])) > 1e-3, f


def test_nothing_drawn_when_off(pair, monkeypatch, tmp_path):
    """With every switch off no file is written."""
    monkeypatch.setenv("IPDIFFIM_DEBUG_DIR", str(tmp_path))
    ipDiffim.ImagePsfMatchTask().subtractMaskedImages(*pair, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    assert list(tmp_path.glob("*.png")) == []


def test_frame_counter_advances(pair, monkeypatch, tmp_path):
    """The global lsstDebug.frame numbers the files."""
    monkeypatch.setattr(lsstDebug, "frame", 5)
    files = _run(
        pair, monkeypatch, tmp_path, "lsst.ip.diffim.psfMatch", ["displayKernelBasis", "displayKernelMosaic"]
    )
    assert [f.name[:3] for f in files] == ["005", "006"]
    assert lsstDebug.frame == 7


def setup_module(module):
    lsst.utils.tests.init()
