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
"""lsstDebug switches draw readable, non-blank pictures, and nothing when off."""

from __future__ import annotations

import logging
import math

import lsstDebug
import matplotlib.image
import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
import lsst.utils.tests
from lsst.images import Box, Image, MaskedImage
from lsst.ip.diffim.display import switches
from lsst.ip.diffim.display.candidateMaps import CandidateStatusMap, subsample
from lsst.ip.diffim.display.candidateMosaics import displayKernelCandidates, sortedCandidates
from lsst.ip.diffim.display.core import pyplot
from lsst.ip.diffim.display.imageDisplays import displaySpatialCells
from lsst.ip.diffim.display.kernelDisplays import measureKernelShapes
from lsst.ip.diffim.math import (
    SpatialCellCandidateStatus,
    SpatialCellImageCandidate,
    SpatialCellSet,
    makeDifferenceMaskSchema,
)
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

PSF = "lsst.ip.diffim.psfMatch"
IMAGE = "lsst.ip.diffim.imagePsfMatch"
EXPECTED = {
    "displayCandidates": ["candidates"],
    "displayKernelBasis": ["kernelBasis"],
    "displayKernelMosaic": ["kernelMosaic"],
    "plotKernelSpatialModel": ["kernelSpatialModel", "kernelSpatialModelCoefficients"],
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


def _kind(path):
    """The display name of ``<frame>_<name>[_pNNN].png``."""
    name = path.stem.split("_", 1)[1]
    return name.rsplit("_p", 1)[0] if "_p" in name and name.rsplit("_p", 1)[1].isdigit() else name


def assertPicture(path, minWidth=400, minHeight=300):
    """The PNG has at least the given size and real content (not one flat colour)."""
    image = matplotlib.image.imread(path)[..., :3]
    height, width = image.shape[:2]
    assert width >= minWidth and height >= minHeight, (path, image.shape)
    flat = image.reshape(-1, 3)
    background = np.median(flat, axis=0)
    differs = np.abs(flat - background).max(axis=1) > 0.05
    assert differs.mean() > 0.02, (path, differs.mean())
    assert float(np.var(flat)) > 1e-3, path


def _run(pair, monkeypatch, tmp_path, module, variables, showBad=True):
    def debugInfo(name):
        di = lsstDebug.getInfo(name)
        if name == module:
            di.display = True
            for key, value in variables.items():
                setattr(di, key, value)
            di.showBadCandidates = showBad
        return di

    monkeypatch.setenv("IPDIFFIM_DEBUG_DIR", str(tmp_path))
    monkeypatch.setattr(lsstDebug, "Info", debugInfo)
    try:
        config = ipDiffim.ImagePsfMatchTask.ConfigClass()
        config.kernel.active.fitForBackground = True
        config.kernel.active.spatialKernelOrder = 1
        result = ipDiffim.ImagePsfMatchTask(config=config).subtractMaskedImages(
            *pair, templateFwhmPix=3.0, scienceFwhmPix=4.5
        )
    finally:
        info = lsstDebug.getInfo(module)
        for v in list(variables) + ["display", "showBadCandidates"]:
            info.__dict__.pop(v, None)
    return sorted(tmp_path.glob("*.png")), result


@pytest.mark.parametrize(
    "module,variable",
    [(PSF, v) for v in switches.DISPLAY_VARIABLES[PSF]]
    + [(IMAGE, v) for v in switches.DISPLAY_VARIABLES[IMAGE]],
)
def test_each_variable_draws(pair, monkeypatch, tmp_path, module, variable):
    """Each switch writes its PNG files, each of a readable size with real content."""
    files, _ = _run(pair, monkeypatch, tmp_path, module, {variable: True})
    assert {_kind(f) for f in files} == set(EXPECTED[variable]), files
    for f in files:
        assertPicture(f)


def test_candidate_pages(pair, monkeypatch, tmp_path):
    """Every candidate is drawn, on ceil(n / candidatesPerPage) pages sorted BAD, UNKNOWN, GOOD by rating."""
    files, result = _run(
        pair, monkeypatch, tmp_path, PSF, {"displayCandidates": True, "candidatesPerPage": 7}
    )
    cands = sortedCandidates(result.kernelCellSet, showBad=True)
    assert len(cands) == len(result.kernelCellSet.allCandidates()) > 20
    assert len(files) == math.ceil(len(cands) / 7)
    heights = [matplotlib.image.imread(f).shape[0] for f in files]
    assert heights[:-1] == [heights[0]] * (len(files) - 1)  # full pages are all the same size
    assert (heights[-1] < heights[0]) == (len(cands) % 7 != 0)
    order = {SpatialCellCandidateStatus.BAD: 0, SpatialCellCandidateStatus.UNKNOWN: 1}
    keys = [(order.get(c.getStatus(), 2), -c.getCandidateRating()) for c in cands]
    assert keys == sorted(keys)
    statuses = {c.getStatus() for c in cands}
    assert SpatialCellCandidateStatus.BAD in statuses and SpatialCellCandidateStatus.GOOD in statuses
    # maxCandidatePages limits the pages; without showBadCandidates the BAD ones are left out.
    capped = tmp_path / "capped"
    capped.mkdir()
    nGood = sum(c.getStatus() != SpatialCellCandidateStatus.BAD for c in cands)
    written = displayKernelCandidates(
        type("Info", (), {"candidatesPerPage": 5, "maxCandidatePages": 2, "displayDir": str(capped)})(),
        None,
        result.kernelCellSet,
        result.psfMatchingKernel,
        result.backgroundModel,
        showBad=False,
    )
    assert len(written) == min(2, math.ceil(nGood / 5))


def test_bad_candidates_carry_reasons(pair):
    """Every BAD candidate says why it was rejected; the others say nothing."""
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.spatialKernelOrder = 1
    result = ipDiffim.ImagePsfMatchTask(config=config).subtractMaskedImages(
        *pair, templateFwhmPix=3.0, scienceFwhmPix=4.5
    )
    cands = result.kernelCellSet.allCandidates()
    bad = [c for c in cands if c.getStatus() == SpatialCellCandidateStatus.BAD]
    assert bad
    for c in cands:
        assert bool(c.getRejectionReason()) == (c.getStatus() == SpatialCellCandidateStatus.BAD), c
    cand = bad[0]
    cand.setStatus(SpatialCellCandidateStatus.GOOD)
    assert cand.getRejectionReason() == ""
    cand.setStatus(SpatialCellCandidateStatus.BAD, "kernel sum 3.1 outside 1.0 +/- 0.2")
    assert cand.getRejectionReason() == "kernel sum 3.1 outside 1.0 +/- 0.2"


@pytest.mark.parametrize("module", [PSF, IMAGE])
def test_display_alone_draws_the_default_set(pair, monkeypatch, tmp_path, caplog, module):
    """``display = True`` with no display variable draws the default set and logs what to set."""
    switches._announced.discard(module)
    with caplog.at_level(logging.INFO):
        files, _ = _run(pair, monkeypatch, tmp_path, module, {}, showBad=False)
    wanted = {name for v in switches.DEFAULT_DISPLAYS[module] for name in EXPECTED[v]}
    assert {_kind(f) for f in files} == wanted
    for f in files:
        assertPicture(f)
    messages = [r.getMessage() for r in caplog.records if "default set" in r.getMessage()]
    assert len(messages) == 1 and all(v in messages[0] for v in switches.DISPLAY_VARIABLES[module])


def test_model_psf_match_spatial_cells(monkeypatch, tmp_path):
    """ModelPsfMatchTask's displaySpatialCells (also its default set) draws the image and its cells."""
    from lsst.images.psfs import GaussianPointSpreadFunction
    from lsst.ip.diffim.adapters.exposures import makeVisitImage

    bbox = Box.from_shape((256, 256))
    image = np.random.default_rng(7).normal(size=(256, 256)).astype(np.float32)
    exposure = makeVisitImage(
        image, np.ones_like(image), psf=GaussianPointSpreadFunction(2.0, bounds=bbox, stamp_size=11)
    )
    reference = GaussianPointSpreadFunction(3.7, bounds=bbox, stamp_size=11)
    config = ipDiffim.ModelPsfMatchTask.ConfigClass()
    config.kernel.active.scaleByFwhm = False
    config.kernel.active.kernelSize = config.kernel.active.kernelSizeMin = 9
    module = "lsst.ip.diffim.modelPsfMatch"
    for variables in ({"displaySpatialCells": True}, {}):
        folder = tmp_path / str(len(variables))
        monkeypatch.setenv("IPDIFFIM_DEBUG_DIR", str(folder))
        info = lsstDebug.getInfo(module)
        info.display = True
        info.__dict__.update(variables)
        try:
            ipDiffim.ModelPsfMatchTask(config=config).run(exposure, reference)
        finally:
            for v in ["display", *variables]:
                info.__dict__.pop(v, None)
        files = sorted(folder.glob("*.png"))
        assert [_kind(f) for f in files] == ["spatialCells"]
        assertPicture(files[0])


def test_nothing_drawn_when_off(pair, monkeypatch, tmp_path):
    """With every switch off no file is written."""
    monkeypatch.setenv("IPDIFFIM_DEBUG_DIR", str(tmp_path))
    ipDiffim.ImagePsfMatchTask().subtractMaskedImages(*pair, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    assert list(tmp_path.glob("*.png")) == []


def test_frame_counter_advances(pair, monkeypatch, tmp_path):
    """The global lsstDebug.frame numbers the files."""
    monkeypatch.setattr(lsstDebug, "frame", 5)
    files, _ = _run(
        pair, monkeypatch, tmp_path, PSF, {"displayKernelBasis": True, "displayKernelMosaic": True}
    )
    assert [f.name[:3] for f in files] == ["005", "006"]
    assert lsstDebug.frame == 7


class _Star(SpatialCellImageCandidate):
    def __init__(self, x, y, rating):
        super().__init__(x, y)
        self._rating = rating

    def getCandidateRating(self):
        return self._rating


def _crowdedCellSet(n, size, seed=3):
    rng = np.random.default_rng(seed)
    cellSet = SpatialCellSet(Box.from_shape((size, size)), 64, 64)
    for x, y in rng.uniform(0, size - 1, (n, 2)):
        cand = _Star(x, y, float(rng.uniform(1, 100)))
        u = rng.uniform()
        cand.setStatus(
            SpatialCellCandidateStatus.BAD
            if u < 0.05
            else SpatialCellCandidateStatus.UNKNOWN
            if u < 0.25
            else SpatialCellCandidateStatus.GOOD
        )
        cellSet.insertCandidate(cand)
    return cellSet


def test_map_of_10000_candidates(monkeypatch, tmp_path):
    """At 10,000 candidates the map draws a subsample, counts every status in the legend, draws the grid."""
    monkeypatch.setenv("IPDIFFIM_DEBUG_DIR", str(tmp_path))
    size = 1024
    cellSet = _crowdedCellSet(10_000, size)
    rng = np.random.default_rng(1)
    image = _mi(rng.normal(100, 5, (size, size)).astype(np.float32), np.full((size, size), 25, np.float32))
    info = type("Info", (), {"maxMapPoints": 800, "maskTransparency": 0})()
    displaySpatialCells(IMAGE, None, info, image, cellSet)
    (path,) = tmp_path.glob("*_spatialCells.png")
    assertPicture(path, 800, 700)
    cands = cellSet.allCandidates()
    truth = {s: sum(c.getStatus() == s for c in cands) for s in SpatialCellCandidateStatus}

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.set_xlim(0, size)
    ax.set_ylim(0, size)
    xs = np.array([c.getXCenter() for c in cands])
    ys = np.array([c.getYCenter() for c in cands])
    statusMap = CandidateStatusMap(
        ax, xs, ys, [c.getStatus() for c in cands], maxPoints=800, interactive=True
    )
    assert {s: n for s, (n, _) in statusMap.counts.items()} == truth
    assert sum(d for _, d in statusMap.counts.values()) <= 800
    assert {s: d for s, (_, d) in statusMap.counts.items()} == subsample(truth, 800)
    assert all(d > 0 for _, d in statusMap.counts.values())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"good: {truth[SpatialCellCandidateStatus.GOOD]} (" in labels[0] and "drawn)" in labels[0]
    # Zooming in (as the interactive toolbar does) redraws every candidate of the view.
    ax.set_xlim(100, 300)
    ax.set_ylim(100, 300)
    inView = (xs >= 100) & (xs <= 300) & (ys >= 100) & (ys <= 300)
    assert sum(n for n, _ in statusMap.counts.values()) == inView.sum()
    assert all(n == d for n, d in statusMap.counts.values())
    plt.close(fig)


def test_subsample_shares():
    """Small groups are kept whole; the rest share the budget in proportion."""
    assert subsample({"a": 10, "b": 5000, "c": 3000}, 810) == {"a": 10, "b": 500, "c": 300}
    assert subsample({"a": 10, "b": 20}, 100) == {"a": 10, "b": 20}
    assert sum(subsample({"a": 9000, "b": 1000, "c": 0}, 1000).values()) <= 1000


def test_kernel_shapes_of_gaussians():
    """Sum, centroid offset and FWHM of Gaussian kernels are measured to 1e-3."""
    yy, xx = np.mgrid[0:31, 0:31].astype(float)
    images = []
    for sigma, dx, dy, total in ((1.5, 0.0, 0.0, 1.0), (2.5, 1.2, -0.7, 1.3)):
        g = np.exp(-((xx - 15 - dx) ** 2 + (yy - 15 - dy) ** 2) / (2 * sigma**2))
        images.append(total * g / g.sum())
    shapes = measureKernelShapes(np.array(images), 15, 15)
    np.testing.assert_allclose(shapes.sum, [1.0, 1.3], atol=1e-6)
    np.testing.assert_allclose(shapes.dx, [0.0, 1.2], atol=1e-3)
    np.testing.assert_allclose(shapes.dy, [0.0, -0.7], atol=1e-3)
    np.testing.assert_allclose(shapes.fwhm, [2.35482 * 1.5, 2.35482 * 2.5], rtol=1e-3)


def setup_module(module):
    lsst.utils.tests.init()
