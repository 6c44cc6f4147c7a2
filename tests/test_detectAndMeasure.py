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
"""DetectAndMeasureTask against synthetic differences of known truth.

The differences are built so that their noise is known and white (the
template is noise-free or has the science PSF, so nothing is convolved):
recovery, photometry and false-positive rates are then tests of the
detection and measurement alone.  ``bench/bench_diaSources.py`` measures
the same figures on larger samples and on PSF-matched (correlated-noise)
differences.
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table

from lsst.images import Box
from lsst.images.psfs import GaussianPointSpreadFunction
from lsst.ip.diffim.adapters.exposures import makeDifferenceImage, makeVisitImage
from lsst.ip.diffim.detectAndMeasure import DetectAndMeasureTask
from lsst.ip.diffim.diaAssociation import FALSE_POSITIVE_KEYS
from lsst.ip.diffim.diaDetection import detectDiaFootprints
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars

FWHM = 4.0
SIGMA = FWHM / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: Gaussian model of the pixel-integrated Gaussian the images are rendered with.
SIGMA_MODEL = math.sqrt(SIGMA**2 + 1.0 / 12.0)
SKY = 200.0


def _psf(bbox: Box) -> GaussianPointSpreadFunction:
    return GaussianPointSpreadFunction(SIGMA_MODEL, bounds=bbox, stamp_size=25)


def _images(science: np.ndarray, scienceVar: np.ndarray, template: np.ndarray, templateVar: np.ndarray):
    """Return (science, matched template, difference) lsst.images objects on one grid."""
    bbox = Box.from_shape(science.shape)
    s = makeVisitImage(science, scienceVar, psf=_psf(bbox))
    t = makeVisitImage(template, templateVar, psf=_psf(bbox))
    d = makeDifferenceImage(s, science - template, scienceVar + templateVar, None)
    return s, t, d


def _expectedSnr(flux: np.ndarray, xs: np.ndarray, ys: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Optimal (PSF-weighted) S/N of point sources given the variance map."""
    out = np.empty(len(flux))
    psf = PsfModel(FWHM, FWHM, 0.0, variance.shape)
    for k in range(len(flux)):
        ix, iy = int(round(xs[k])), int(round(ys[k]))
        sx, sy = np.array([xs[k] - ix + 12]), np.array([ys[k] - iy + 12])
        stamp = renderStars((25, 25), sx, sy, np.ones(1), psf)
        var = variance[iy - 12 : iy + 13, ix - 12 : ix + 13]
        p2 = float((stamp**2).sum())
        out[k] = flux[k] * p2 / math.sqrt(float((stamp**2 * var).sum()))
    return out


def _nearest(table: Table, x: float, y: float, column: str = "") -> tuple[int, float]:
    d = np.hypot(np.asarray(table[column + "x"]) - x, np.asarray(table[column + "y"]) - y)
    d = np.where(np.isfinite(d), d, np.inf)  # dipole columns are NaN where no dipole was fitted
    k = int(np.argmin(d)) if len(d) else -1
    return k, float(d[k]) if k >= 0 else math.inf


@pytest.fixture(scope="module")
def transients():
    """Transients of S/N 7-80 on white-noise differences (noise-free template)."""
    rng = np.random.default_rng(11)
    size, n = 400, 60
    rows = []
    results = []
    for _ in range(2):
        grid = np.stack(np.meshgrid(np.arange(30, size - 30, 42.0), np.arange(30, size - 30, 42.0)), -1)
        pos = grid.reshape(-1, 2)[:n] + rng.uniform(-8, 8, (n, 2))
        snr = np.exp(rng.uniform(math.log(7.0), math.log(80.0), n))
        # Flux for the wanted S/N on the sky-dominated noise.
        noise = math.sqrt((SKY + 25.0) * 4.0 * math.pi * SIGMA_MODEL**2)
        flux = snr * noise
        psf = PsfModel(FWHM, FWHM, 0.0, (size, size))
        model = renderStars((size, size), pos[:, 0], pos[:, 1], flux, psf) + SKY
        var = model + 25.0
        science = (model + rng.normal(size=model.shape) * np.sqrt(var)).astype(np.float32)
        template = np.full_like(science, SKY)
        s, t, d = _images(science, var.astype(np.float32), template, np.full_like(science, 1e-6))
        task = DetectAndMeasureTask()
        result = task.run(s, t, d)
        expected = _expectedSnr(flux, pos[:, 0], pos[:, 1], var)
        for k in range(n):
            j, dist = _nearest(result.diaSources, pos[k, 0], pos[k, 1])
            rows.append((flux[k], expected[k], j, dist))
        results.append(result)
    table = Table(rows=rows, names=("flux", "expectedSnr", "index", "distance"))
    return table, results


def test_recovery_at_snr_above_7(transients):
    """>= 99% of the transients with expected S/N >= 7 are detected within 1.5 px."""
    table, _ = transients
    sel = table["expectedSnr"] >= 7.0
    found = table["distance"][sel] < 1.5
    assert sel.sum() >= 100
    assert found.mean() >= 0.99, (found.mean(), table[sel][~found])


def test_psf_flux_unbiased_at_snr_above_20(transients):
    """PSF fluxes at S/N >= 20: median within 3% of truth, pulls unbiased and of unit width."""
    table, results = transients
    ratios, pulls = [], []
    n = 60
    for i, row in enumerate(table):
        if row["expectedSnr"] < 20.0 or row["distance"] > 1.0:
            continue
        measured = results[i // n].diaSources[int(row["index"])]
        ratios.append(measured["psfFlux"] / row["flux"])
        pulls.append((measured["psfFlux"] - row["flux"]) / measured["psfFluxErr"])
        assert measured["snr"] == pytest.approx(measured["psfFlux"] / measured["psfFluxErr"])
    ratios, pulls = np.array(ratios), np.array(pulls)
    assert len(ratios) >= 40
    assert abs(np.median(ratios) - 1.0) < 0.03
    assert abs(pulls.mean()) < 3.0 / math.sqrt(len(pulls))
    assert 0.75 < pulls.std() < 1.3
    # Aperture fluxes (1.5 FWHM radius: 99.8% of a Gaussian) agree too.
    ap = np.array(
        [
            results[i // n].diaSources[int(r["index"])]["apFlux"] / r["flux"]
            for i, r in enumerate(table)
            if r["expectedSnr"] >= 20.0 and r["distance"] <= 1.0
        ]
    )
    assert abs(np.median(ap) - 1.0) < 0.03


def test_correlated_noise_and_measured_stdev_threshold():
    """A non-decorrelated difference (template noise convolved by the kernel) has many more noise
    detections than the variance plane predicts; thresholdType="stdev" brings them back."""
    from scipy import ndimage

    rng = np.random.default_rng(5)
    size, nImages, threshold = 512, 3, 4.0
    sigmaK = math.sqrt(SIGMA**2 - (3.0 / 2.35482) ** 2)
    counts = {"pixel_stdev": 0, "stdev": 0}
    for _ in range(nImages):
        image = rng.normal(size=(size, size)) * math.sqrt(50.0)
        image -= ndimage.gaussian_filter(rng.normal(size=(size, size)) * math.sqrt(50.0), sigmaK)
        var = np.full((size, size), 50.0 + 50.0 / (4 * math.pi * sigmaK**2))  # exact per-pixel variance
        for kind in counts:
            fp = detectDiaFootprints(image, var, None, SIGMA_MODEL, threshold=threshold, thresholdType=kind)
            counts[kind] += fp.nPositive + fp.nNegative
    expected = _ecExpectation(threshold, nImages * size * size, SIGMA_MODEL)
    assert counts["pixel_stdev"] > 3 * expected
    assert 0.5 * expected < counts["stdev"] < 1.5 * expected, (counts, expected)


def _ecExpectation(threshold: float, area: int, sigma: float) -> float:
    """Expected number of excursions above +-threshold of white noise smoothed by a Gaussian.

    The Euler-characteristic density of a 2-d Gaussian field (Adler):
    ``lambda u exp(-u^2/2) / (2 pi)^(3/2)`` per pixel, ``lambda = 1/(2 sigma^2)``
    for white noise smoothed with a Gaussian of width ``sigma``; two signs.
    """
    lam = 1.0 / (2.0 * sigma * sigma)
    return 2.0 * area * lam * threshold * math.exp(-0.5 * threshold**2) / (2.0 * math.pi) ** 1.5


def test_false_detections_on_white_noise():
    """Noise-only differences: detections within 1.5x the Gaussian expectation (4 sigma), ~0 at 5."""
    rng = np.random.default_rng(3)
    size, nImages, threshold = 512, 4, 4.0
    count = 0
    for _ in range(nImages):
        var = np.full((size, size), 50.0)
        image = rng.normal(size=(size, size)) * np.sqrt(var)
        fp = detectDiaFootprints(image, var, None, SIGMA_MODEL, threshold=threshold, minPixels=1, grow=0)
        count += fp.nPositive + fp.nNegative
    expected = _ecExpectation(threshold, nImages * size * size, SIGMA_MODEL)
    assert 0.5 * expected < count < 1.5 * expected, (count, expected)
    # The task at its default 5 sigma: expectation 0.05 per image.
    science = (rng.normal(size=(size, size)) * math.sqrt(50.0)).astype(np.float32)
    var = np.full_like(science, 50.0)
    s, t, d = _images(science, var, np.zeros_like(science), np.full_like(science, 1e-6))
    result = DetectAndMeasureTask().run(s, t, d)
    assert len(result.diaSources) <= 2


@pytest.fixture(scope="module")
def dipoles():
    """Bright stars shifted by 0.3-0.5 px between template and science, and variable stars."""
    rng = np.random.default_rng(8)
    size, n = 400, 20
    grid = np.stack(np.meshgrid(np.arange(40, size - 40, 64.0), np.arange(40, size - 40, 64.0)), -1)
    pos = grid.reshape(-1, 2) + rng.uniform(-5, 5, (25, 2))
    shiftPos, varPos = pos[:n], pos[n:]
    flux = np.exp(rng.uniform(math.log(5e4), math.log(2e5), n))
    dist = rng.uniform(0.3, 0.5, n)
    angle = rng.uniform(-math.pi, math.pi, n)
    dx, dy = dist * np.cos(angle), dist * np.sin(angle)
    varFlux = np.full(len(varPos), 5e4)
    psf = PsfModel(FWHM, FWHM, 0.0, (size, size))
    tModel = renderStars((size, size), shiftPos[:, 0], shiftPos[:, 1], flux, psf)
    tModel += renderStars((size, size), varPos[:, 0], varPos[:, 1], varFlux, psf) + SKY
    sModel = renderStars((size, size), shiftPos[:, 0] + dx, shiftPos[:, 1] + dy, flux, psf)
    sModel += renderStars((size, size), varPos[:, 0], varPos[:, 1], 1.2 * varFlux, psf) + SKY
    sVar, tVar = sModel + 25.0, 0.25 * (tModel + 25.0)
    science = (sModel + rng.normal(size=sModel.shape) * np.sqrt(sVar)).astype(np.float32)
    template = (tModel + rng.normal(size=tModel.shape) * np.sqrt(tVar)).astype(np.float32)
    s, t, d = _images(science, sVar.astype(np.float32), template, tVar.astype(np.float32))
    result = DetectAndMeasureTask().run(s, t, d)
    return result.diaSources, shiftPos, dx, dy, varPos


def test_misregistered_stars_are_dipoles(dipoles):
    """>= 90% of 0.3-0.5 px misregistrations of bright stars are dipoles, with the right geometry."""
    table, pos, dx, dy, _ = dipoles
    isDipole, sepErr, angleErr = [], [], []
    for k in range(len(pos)):
        j, dist = _nearest(table, pos[k, 0] + 0.5 * dx[k], pos[k, 1] + 0.5 * dy[k], "dipole_")
        assert dist < 1.5
        row = table[j]
        isDipole.append(bool(row["isDipole"]))
        sepErr.append(row["dipole_separation"] - math.hypot(dx[k], dy[k]))
        delta = row["dipole_orientation"] - math.degrees(math.atan2(dy[k], dx[k]))
        angleErr.append((delta + 180.0) % 360.0 - 180.0)
        assert row["dipole_posFlux"] > 0 > row["dipole_negFlux"]
    assert np.mean(isDipole) >= 0.9
    assert np.median(np.abs(sepErr)) < 0.1
    assert np.median(np.abs(angleErr)) < 15.0


def test_variable_stars_are_not_dipoles(dipoles):
    """A star 20% brighter in the science image is a positive point source, not a dipole."""
    table, _, _, _, varPos = dipoles
    for x, y in varPos:
        j, dist = _nearest(table, x, y)
        assert dist < 1.0
        assert not table["isDipole"][j]
        assert table["psfFlux"][j] == pytest.approx(1e4, rel=0.1)


def _pointSources(size: int, sources: list[tuple[float, float, float]], noise: float, seed: int):
    rng = np.random.default_rng(seed)
    xs, ys, fs = (np.array(c, dtype=float) for c in zip(*sources, strict=True))
    image = renderStars((size, size), xs, ys, fs, PsfModel(FWHM, FWHM, 0.0, (size, size)))
    image += rng.normal(size=image.shape) * noise
    return image.astype(np.float32), np.full((size, size), noise**2, dtype=np.float32)


def test_false_positive_counts_hand_computed():
    """The four NFalsePositives counts on a constructed case equal the counts made by hand."""
    dia = [(50.0, 50.0, 5000.0), (150.0, 50.0, -5000.0), (50.0, 150.0, 5000.0), (150.0, 150.0, 5000.0),
           (100.0, 100.0, -5000.0)]  # fmt: skip
    image, var = _pointSources(200, dia, 5.0, 1)
    bbox = Box.from_shape(image.shape)
    s = makeVisitImage(image, var, psf=_psf(bbox))
    d = makeDifferenceImage(s, image, var, None)
    # A: both catalogues; B: template only; C: science only; D: neither;
    # E: a template source 2.8 px away (outside 2.5 px, inside 3 px).
    templateSources = Table(
        {"id": [11, 12, 13, 14], "x": [50.4, 150.0, 102.8, 20.0], "y": [49.7, 51.0, 100.0, 20.0]}
    )
    scienceSources = Table({"id": [21, 22, 23], "x": [50.0, 50.9, 180.0], "y": [50.6, 149.5, 30.0]})
    task = DetectAndMeasureTask()
    result = task.run(None, None, d, scienceSources=scienceSources, templateSources=templateSources)
    table = result.diaSources
    assert len(table) == 5
    expected = dict(zip(FALSE_POSITIVE_KEYS, (5, 2, 2, 2), strict=True))
    assert {k: task.metadata[k] for k in FALSE_POSITIVE_KEYS} == expected
    k, _ = _nearest(table, 50, 50)
    assert (table["refMatchId"][k], table["srcMatchId"][k]) == (11, 21)
    k, _ = _nearest(table, 150, 50)
    assert (table["refMatchId"][k], table["srcMatchId"][k]) == (12, 0)
    assert table["isNegative"][k] and table["psfFlux"][k] < 0
    task.config.matchRadius = 3.0
    task.run(None, None, d, scienceSources=scienceSources, templateSources=templateSources)
    assert [task.metadata[k] for k in FALSE_POSITIVE_KEYS] == [5, 3, 2, 1]


def test_flags_and_columns(tmp_path):
    """Edge, NO_DATA, BAD and near-a-masked-star flags; documented columns with units; FITS round trip."""
    dia = [(3.0, 100.0, 5000.0), (60.0, 60.0, 5000.0), (140.0, 60.0, 5000.0), (100.0, 150.0, 5000.0)]
    image, var = _pointSources(200, dia, 5.0, 2)
    from lsst.images import Mask
    from lsst.ip.diffim.math.masks import makeDifferenceMaskSchema

    schema = makeDifferenceMaskSchema()
    mask = Mask(0, schema=schema, bbox=Box.from_shape(image.shape))
    noData = np.zeros(image.shape, bool)
    noData[58:62, 64:70] = True
    mask.set("NO_DATA", noData)
    badPix = np.zeros(image.shape, bool)
    badPix[60, 143] = True
    mask.set("BAD", badPix)
    sat = np.zeros(image.shape, bool)
    sat[150:153, 108:110] = True
    mask.set("SATURATED", sat)
    bbox = Box.from_shape(image.shape)
    s = makeVisitImage(image, var, psf=_psf(bbox))
    d = makeDifferenceImage(s, image, var, mask)
    table = DetectAndMeasureTask().run(None, None, d).diaSources
    flags = {}
    for x, y, _ in dia:
        k, dist = _nearest(table, x, y)
        assert dist < 1.5
        flags[(x, y)] = {c: bool(table[c][k]) for c in table.colnames if c.startswith("flag_")}
    assert flags[(3.0, 100.0)]["flag_edge"] and not flags[(60.0, 60.0)]["flag_edge"]
    assert flags[(60.0, 60.0)]["flag_noData"] and not flags[(140.0, 60.0)]["flag_noData"]
    assert flags[(140.0, 60.0)]["flag_bad"] and not flags[(100.0, 150.0)]["flag_bad"]
    assert flags[(100.0, 150.0)]["flag_nearMaskedStar"] and not flags[(140.0, 60.0)]["flag_nearMaskedStar"]
    # Detections are recorded in the difference mask.
    assert d.mask.get("DETECTED")[60, 60] and not d.mask.get("DETECTED_NEGATIVE").any()
    for name in table.colnames:
        assert table[name].description, name
    assert table["psfFlux"].unit == u.nJy and table["x"].unit == u.pix
    assert table["dipole_orientation"].unit == u.deg
    path = tmp_path / "dia.fits"
    table.write(path)
    back = Table.read(path)
    assert back["psfFlux"].unit == u.nJy
    np.testing.assert_array_equal(back["psfFlux"], table["psfFlux"])
    assert back.meta["NFalsePositivesTotal"] == len(table)


def test_missing_psf_and_empty_image():
    """No PSF model and no psfFwhm: a named error; all pixels unusable: NoWorkFound."""
    import lsst.pipe.base as pipeBase
    from lsst.images import Image, MaskedImage
    from lsst.ip.diffim.math.masks import makeDifferenceMaskSchema

    schema = makeDifferenceMaskSchema()
    arr = np.zeros((50, 50), np.float32)
    mi = MaskedImage(Image(arr), variance=Image(np.ones_like(arr)), mask_schema=schema)
    with pytest.raises(pipeBase.InvalidQuantumError, match="psfFwhm"):
        DetectAndMeasureTask().run(None, None, mi)
    nan = MaskedImage(Image(np.full_like(arr, np.nan)), variance=Image(np.ones_like(arr)), mask_schema=schema)
    with pytest.raises(pipeBase.NoWorkFound):
        DetectAndMeasureTask().run(None, None, nan, psfFwhm=4.0)
    # With psfFwhm a plain MaskedImage works.
    image, var = _pointSources(60, [(30.0, 30.0, 5000.0)], 5.0, 4)
    mi = MaskedImage(Image(image), variance=Image(var), mask_schema=schema)
    table = DetectAndMeasureTask().run(None, None, mi, psfFwhm=FWHM).diaSources
    assert len(table) == 1 and table["psfFlux"][0] == pytest.approx(5000.0, rel=0.05)
