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
"""Candidates per peak in crowded fields, exclusions and stamp lists, sparse fields.

Synthetic fields with known truth: blended and saturated stars, a variable
star, few stars for the spatial order asked.
"""

import logging

import numpy as np
import pytest
from astropy.table import Table

import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.detection import SourceDetectionTask, isolatedSources
from lsst.ip.diffim.exclusions import (
    ExclusionRegions,
    PositionListError,
    parseExcludeArguments,
    readPositions,
    stampListTable,
)
from lsst.ip.diffim.math.masks import maskPlaneBitmask
from lsst.ip.diffim.math.objectExtraction import extractObjects, extractPeaks
from lsst.ip.diffim.math.spatialCell import SpatialCellCandidateStatus
from lsst.ip.diffim.psfMatch import _lowerSpatialOrders
from lsst.ip.diffim.syntheticPairs import PsfModel, makeSyntheticPair, renderStars
from lsst.ip.diffim.tests import maskedImage


def _gaussians(shape, stars, sigma=2.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = np.zeros(shape, dtype=np.float32)
    for x, y, f in stars:
        image += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return image


def test_extract_peaks_splits_a_blend():
    """Two stars whose isophotes merge give one object but two peaks, at the stars."""
    rng = np.random.default_rng(3)
    stars = [(30.3, 40.7, 500.0), (35.1, 44.2, 300.0), (80.0, 60.0, 200.0)]
    image = _gaussians((100, 120), stars) + rng.normal(0, 1, (100, 120)).astype(np.float32)
    objects = extractObjects(image, 5.0)
    peaks = extractPeaks(image, 5.0)
    assert len(objects) == 2
    assert len(peaks) == 3
    blend = peaks[peaks["nPeaks"] == 2]
    assert len(blend) == 2 and len(set(blend["parent"])) == 1
    for x, y, _ in stars:
        d = np.hypot(peaks["x"] - x, peaks["y"] - y)
        assert d.min() < 0.3, (x, y, d.min())
    # The blend's pixels are shared: together they are the object's.
    parent = int(blend["parent"][0])
    assert blend["npix"].sum() == objects["npix"][parent]
    assert blend["flux"].sum() == pytest.approx(objects["flux"][parent], rel=1e-6)
    assert peaks["flux"][np.argmax(peaks["peak"])] > blend["flux"].min()


def _crowdedPair(seed=2, ceiling=45000.0):
    """A 256^2 field of 700 stars (merged footprints) with saturated stars clipped at a ceiling."""
    pair = makeSyntheticPair(
        size=256,
        nStars=700,
        seed=seed,
        templateFwhm=3.0,
        scienceFwhm=(4.0, 4.4),
        scienceEllipticity=0.0,
        fluxRatio=1.3,
        background=(10.0, 0.0, 0.0),
        transients=[],
    )
    template, science = pair.template.copy(), pair.science.copy()
    images = []
    for image, variance in ((template, pair.templateVariance), (science, pair.scienceVariance)):
        sat = image >= ceiling
        image[sat] = ceiling
        mi = maskedImage(image, variance)
        mi.mask.array[sat] |= maskPlaneBitmask(mi.mask.schema, ["SAT"]).astype(mi.mask.array.dtype)
        images.append(mi)
    saturated = np.zeros(len(pair.xs), dtype=bool)
    peakT = pair.fluxes / (2 * np.pi * (3.0 / 2.3548) ** 2) + 200
    peakS = 1.3 * pair.fluxes / (2 * np.pi * (4.0 / 2.3548) ** 2) + 1.3 * 200
    saturated |= (peakT >= 0.8 * ceiling) | (peakS >= 0.8 * ceiling)
    return pair, images[0], images[1], saturated


@pytest.fixture(scope="module")
def crowded():
    pair, template, science, saturated = _crowdedPair()
    task = ipDiffim.ImagePsfMatchTask()
    task.config.kernel.active.fitForBackground = True
    res = task.subtractMaskedImages(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.2)
    return pair, template, science, saturated, task, res


def test_crowded_detection_one_source_per_star(crowded):
    """Merged footprints are split: most bright stars are found, within a pixel (median 0.3 px)."""
    pair, template, _, _, _, _ = crowded
    config = SourceDetectionTask.ConfigClass()
    config.thresholdValue = 10.0
    split = SourceDetectionTask(config=config).run(template).sources
    config.splitFootprintsAtPeaks = False
    merged = SourceDetectionTask(config=config).run(template).sources
    assert merged["npix"].max() > 2000  # the footprints percolate
    bright = pair.fluxes > 1.0e4
    d = np.hypot(
        np.asarray(split["x"])[None, :] - pair.xs[bright][:, None],
        np.asarray(split["y"])[None, :] - pair.ys[bright][:, None],
    ).min(axis=1)
    # (The misses are stars with a brighter one within ~2 FWHM, unresolved after smoothing.)
    assert np.median(d) < 0.3 and np.mean(d < 1.0) > 0.8, (np.median(d), np.mean(d < 1.0))
    assert len(split) > 3 * len(merged)


def test_crowded_candidates_and_kernel(crowded):
    """On the crowded field: stamps centred on stars, bright unsaturated ones first, kernel sum right."""
    pair, _, _, saturated, task, res = crowded
    good = [c for c in res.kernelCellSet.allCandidates() if c.getStatus() == SpatialCellCandidateStatus.GOOD]
    assert len(good) >= 10
    cx = np.array([c.getXCenter() for c in good])
    cy = np.array([c.getYCenter() for c in good])
    d = np.hypot(cx[:, None] - pair.xs[None, :], cy[:, None] - pair.ys[None, :])
    nearest = np.argmin(d, axis=1)
    # Centred on a star (the stamp centre is the nearest pixel to it).
    assert np.median(d[np.arange(len(good)), nearest]) < 0.5
    # Never a saturated star.
    assert not saturated[nearest].any()
    # Bright ones: the median candidate is among the brightest quarter of the unsaturated stars.
    unsat = np.flatnonzero(~saturated)
    rank = np.empty(len(pair.xs), dtype=int)
    rank[unsat[np.argsort(-pair.fluxes[unsat])]] = np.arange(1, len(unsat) + 1)
    assert np.median(rank[nearest]) < 0.25 * len(unsat), np.median(rank[nearest])
    assert float(task.metadata["spatialKernelSum"]) == pytest.approx(pair.fluxRatio, rel=0.01)


def test_crowded_old_behaviour_reachable():
    """splitFootprintsAtPeaks=False keeps upstream's one source per footprint (big blends dropped)."""
    pair, template, science, _ = _crowdedPair(seed=5)
    task = ipDiffim.ImagePsfMatchTask()
    task.config.selectDetection.splitFootprintsAtPeaks = False
    try:
        candidates = task.makeCandidateList(template, science, 21)
    except ipDiffim.NoKernelCandidatesError:
        candidates = Table()
    split = ipDiffim.ImagePsfMatchTask().makeCandidateList(template, science, 21)
    assert len(split) > 2 * len(candidates)


def test_isolated_sources_and_ranking():
    """A bright neighbour spoils isolation; isolated candidates rank first in their cell."""
    sources = Table(
        {
            "x": [50.0, 54.0, 150.0, 200.0],
            "y": [50.0, 50.0, 150.0, 200.0],
            "peakValue": [100.0, 80.0, 50.0, 10.0],
            "flag_saturated": [False, False, False, False],
        }
    )
    isolated = isolatedSources(sources, sources, radius=8.0, peakRatio=0.5)
    assert isolated.tolist() == [False, False, True, True]
    sources["flag_saturated"][2] = True
    faint = Table({"x": [153.0], "y": [150.0], "peakValue": [1000.0]})
    # A saturated neighbour always spoils isolation, however faint it looks.
    assert not isolatedSources(faint, sources, radius=8.0, peakRatio=0.5)[0]


def test_isolated_first_in_cells():
    """In one cell, an isolated fainter star is used before a brighter one with a bright neighbour."""
    shape = (128, 128)
    psf = PsfModel(3.0, 3.0, 0.0, shape)
    xs = np.array([40.0, 46.0, 90.0])
    ys = np.array([40.0, 41.0, 90.0])
    fluxes = np.array([4.0e4, 3.5e4, 2.0e4])
    template = renderStars(shape, xs, ys, fluxes, psf) + 100
    rng = np.random.default_rng(1)
    t = maskedImage(template + rng.normal(0, 3, shape), 9.0)
    s = maskedImage(template + rng.normal(0, 3, shape), 9.0)
    task = ipDiffim.ImagePsfMatchTask()
    task.config.kernel.active.sizeCellX = 128
    task.config.kernel.active.sizeCellY = 128
    candidates = task.makeCandidateList(t, s, 31)
    cellSet = task._buildCellSet(t, s, candidates)
    ordered = list(cellSet.getCellList()[0])
    first = ordered[0]
    assert abs(first.getXCenter() - 90) < 1 and abs(first.getYCenter() - 90) < 1
    task.config.rankIsolatedFirst = False
    ordered = list(task._buildCellSet(t, s, task.makeCandidateList(t, s, 31)).getCellList()[0])
    assert abs(ordered[0].getXCenter() - 90) > 10


def test_read_positions_text_and_regions(tmp_path):
    """Text lists and ds9 files (image and sky coordinates) give 0-based parent positions."""
    text = tmp_path / "xy.txt"
    text.write_text("# x y\n11 21\n31.5 41 3\n")
    x, y, r = readPositions(str(text), x0=100, y0=200)
    np.testing.assert_allclose(x, [110.0, 130.5])
    np.testing.assert_allclose(y, [220.0, 240.0])
    np.testing.assert_allclose(r, [0.0, 3.0])
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [51.0, 51.0]  # FITS 1-based: pixel 50 (0-based)
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    region = tmp_path / "exclude.reg"
    region.write_text(
        "# Region file format: DS9 version 4.1\nimage\ncircle(11,21,4)\npoint(31,41) # point=x\n"
        'icrs\ncircle(150.0,2.0,1.0")\n'
    )
    x, y, r = readPositions(str(region), wcs=wcs)
    np.testing.assert_allclose(x, [10.0, 30.0, 50.0], atol=1e-6)
    np.testing.assert_allclose(y, [20.0, 40.0, 50.0], atol=1e-6)
    np.testing.assert_allclose(r, [4.0, 0.0, 5.0], rtol=1e-6)
    with pytest.raises(PositionListError, match="WCS"):
        readPositions(str(region))
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3 4\n")
    with pytest.raises(PositionListError, match="bad.txt:1"):
        readPositions(str(bad))
    with pytest.raises(PositionListError, match="no such"):
        readPositions(str(tmp_path / "missing.reg"))
    regions = parseExcludeArguments([["11", "21"], [str(text)]], radius=2.0)
    np.testing.assert_allclose(regions.x, [10.0, 10.0, 30.5])
    np.testing.assert_allclose(regions.radius, [2.0, 2.0, 3.0])
    with pytest.raises(PositionListError):
        parseExcludeArguments([["a", "b"]])


def test_exclusion_keeps_a_variable_star_out_of_the_fit():
    """A brightened star used as a candidate biases the kernel; excluded, its flux change is recovered."""
    shape = (160, 160)
    psfT = PsfModel(3.0, 3.0, 0.0, shape)
    psfS = PsfModel(3.6, 3.6, 0.0, shape)
    xs = np.array([80.0, 30.0, 130.0, 30.0, 130.0])
    ys = np.array([80.0, 30.0, 30.0, 130.0, 130.0])
    fluxes = np.array([4.0e5, 1.2e5, 1.2e5, 1.2e5, 1.2e5])
    change = 4.0e4
    template = renderStars(shape, xs, ys, fluxes, psfT, half=20) + 100
    science = renderStars(shape, xs, ys, fluxes, psfS, half=20) + 100
    science += renderStars(shape, xs[:1], ys[:1], np.array([change]), psfS, half=20)
    rng = np.random.default_rng(4)
    tVar, sVar = template / 4 + 4.0, science + 25.0
    t = maskedImage(template + rng.normal(size=shape) * np.sqrt(tVar), tVar)
    s = maskedImage(science + rng.normal(size=shape) * np.sqrt(sVar), sVar)

    def centreFlux(exclude):
        task = ipDiffim.ImagePsfMatchTask()
        active = task.config.kernel.active
        active.spatialKernelOrder = 0
        active.fitForBackground = True
        active.spatialBgOrder = 0
        # No clipping: every candidate given is fitted, the variable star too unless excluded.
        active.singleKernelClipping = False
        active.kernelSumClipping = False
        active.spatialKernelClipping = False
        stamps = stampListTable(np.stack([xs, ys], axis=1))
        res = task.subtractMaskedImages(
            t, s, stamps, templateFwhmPix=3.0, scienceFwhmPix=3.6, exclude=exclude
        )
        diff = res.subtractedMaskedImage.image.array
        return float(diff[68:93, 68:93].sum()), task

    absorbed, _ = centreFlux(None)
    recovered, task = centreFlux(ExclusionRegions.fromSpec([(80.0, 80.0)]))
    assert task.metadata["nExcludedCandidates"] == 1
    assert recovered == pytest.approx(change, rel=0.05)
    assert abs(absorbed - change) > 0.2 * change


def test_stamp_list_and_subtract_api():
    """subtract(stamps=...) fits on exactly the given stars; exclude= drops one of them."""
    pair = makeSyntheticPair(size=192, nStars=40, seed=7, transients=[])
    # The 12 brightest stars with no other bright one within 25 pixels.
    bright = []
    for k in np.argsort(-pair.fluxes):
        if all(np.hypot(pair.xs[k] - pair.xs[j], pair.ys[k] - pair.ys[j]) > 25 for j in bright):
            bright.append(k)
    bright = np.array(bright[:12])
    stamps = np.stack([pair.xs[bright], pair.ys[bright]], axis=1)
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.fitForBackground = True
    config.kernel.active.spatialKernelOrder = 0
    config.kernel.active.spatialBgOrder = 0
    result = ipDiffim.subtract(
        pair.template,
        pair.science,
        templateVariance=pair.templateVariance,
        scienceVariance=pair.scienceVariance,
        templateFwhm=3.0,
        scienceFwhm=4.5,
        config=config,
        stamps=stamps,
        exclude=stamps[:1],
    )
    assert result.kernelSum == pytest.approx(pair.fluxRatio, rel=0.02)
    cells = result.metadata
    flat = {}

    def walk(value):
        for k, v in value.items():
            if isinstance(v, dict):
                walk(v)
            else:
                flat[k] = v

    walk(cells)
    assert flat["nExcludedCandidates"] == 1
    table = stampListTable(stamps)
    assert len(table) == len(bright) and table["x"][0] == pytest.approx(pair.xs[bright[0]])


def test_lower_spatial_orders_rule():
    assert _lowerSpatialOrders(8, 2, 1, 2.0) == (1, 1)
    assert _lowerSpatialOrders(12, 2, 1, 2.0) == (2, 1)
    assert _lowerSpatialOrders(3, 2, 1, 2.0) == (0, 0)
    assert _lowerSpatialOrders(3, 2, 1, 0.0) == (2, 1)


def test_sparse_field_lowers_the_spatial_order(caplog):
    """Eight stars, order 2 asked: lowered to 1 with a warning; the kernel does not run away at the edges."""
    shape = (256, 256)
    psfT = PsfModel(3.0, 3.0, 0.0, shape)
    psfS = PsfModel(4.0, 4.0, 0.0, shape)
    rng = np.random.default_rng(11)
    xs = rng.uniform(30, 226, 8)
    ys = rng.uniform(30, 226, 8)
    fluxes = rng.uniform(2e4, 6e4, 8)
    template = renderStars(shape, xs, ys, fluxes, psfT) + 100
    science = renderStars(shape, xs, ys, fluxes, psfS) + 100
    tVar, sVar = template / 4 + 4.0, science + 25.0
    t = maskedImage(template + rng.normal(size=shape) * np.sqrt(tVar), tVar)
    s = maskedImage(science + rng.normal(size=shape) * np.sqrt(sVar), sVar)

    def run(perTerm):
        task = ipDiffim.ImagePsfMatchTask()
        task.config.kernel.active.sizeCellX = 32
        task.config.kernel.active.sizeCellY = 32
        task.config.kernel.active.minCandidatesPerSpatialTerm = perTerm
        res = task.subtractMaskedImages(t, s, templateFwhmPix=3.0, scienceFwhmPix=4.0)
        kernel = res.psfMatchingKernel
        centre = kernel.getArray(128.0, 128.0)
        corners = [kernel.getArray(x, y) for x in (0.0, 255.0) for y in (0.0, 255.0)]
        spread = max(np.abs(k - centre).sum() for k in corners) / np.abs(centre).sum()
        return task, spread

    with caplog.at_level(logging.WARNING):
        task, spread = run(3.0)
    assert task.metadata["spatialOrderLowered"]
    assert task.metadata["spatialKernelOrderUsed"] < 2
    assert any("lowered to kernel order" in r.getMessage() for r in caplog.records)
    oldTask, oldSpread = run(0.0)
    assert oldTask.metadata["spatialKernelOrderUsed"] == 2
    assert not oldTask.metadata["spatialOrderLowered"]
    # The truth is a constant kernel: the lowered model stays close to it at the corners.
    assert spread < 0.1 and spread < 0.1 * oldSpread, (spread, oldSpread)


def test_presets():
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    ipDiffim.applyPreset(config, "crowded")
    assert config.kernel.name == "DF" and not config.kernel.active.usePcaForSpatialKernel
    config = ipDiffim.applyPreset(ipDiffim.ImagePsfMatchTask.ConfigClass(), "crowded-al")
    assert list(config.kernel.active.alardDegGauss) == [8, 6, 4]
    with pytest.raises(ipDiffim.UnknownPresetError, match="known: crowded"):
        ipDiffim.applyPreset(config, "nope")


def test_cli_exclude_stamps_preset(tmp_path):
    """ipdiffim-subtract --exclude, --stamps, --preset: the excluded star is out of the fit; clear errors."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from astropy.io import fits

    pair = makeSyntheticPair(size=192, nStars=40, seed=7, transients=[])
    for name, image, variance in (
        ("t.fits", pair.template, pair.templateVariance),
        ("s.fits", pair.science, pair.scienceVariance),
    ):
        hdus = [fits.PrimaryHDU(image), fits.ImageHDU(variance, name="VARIANCE")]
        fits.HDUList(hdus).writeto(tmp_path / name)
    k = int(np.argmax(pair.fluxes))
    stars = tmp_path / "stars.txt"
    stars.write_text("".join(f"{x + 1:.2f} {y + 1:.2f}\n" for x, y in zip(pair.xs, pair.ys)))
    cli = shutil.which("ipdiffim-subtract", path=os.path.dirname(sys.executable)) or "ipdiffim-subtract"
    common = [cli, str(tmp_path / "t.fits"), str(tmp_path / "s.fits"), "--template-fwhm", "3"]
    common += ["--science-fwhm", "4.5", "-c", "kernel.active.spatialKernelOrder=0", "--preset", "crowded-al"]
    out = tmp_path / "out"
    args = [*common, "-o", str(out), "--exclude", f"{pair.xs[k] + 1:.2f}", f"{pair.ys[k] + 1:.2f}"]
    result = subprocess.run([*args, "--stamps", str(stars)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((out / "s" / "metadata.json").read_text())
    excluded = [np.ravel(v)[0] for key, v in meta["metadata"].items() if key.endswith("nExcludedCandidates")]
    assert excluded and excluded[0] >= 1
    bad = subprocess.run(
        [*common, "-o", str(tmp_path / "bad"), "--exclude", "a", "b"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode != 0 and "--exclude takes 'X Y' or a file name" in bad.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
