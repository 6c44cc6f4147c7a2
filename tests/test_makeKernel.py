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
"""MakeKernelTask: config, source selection, kernel fit against known PSFs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsst.ip.diffim import MakeKernelConfig, MakeKernelTask, NoKernelCandidatesError, PsfMatchConfig
from lsst.ip.diffim.adapters.psf import psfMoments
from lsst.ip.diffim.math.masks import resolveMaskPlane
from lsst.ip.diffim.tests import makePair

SIGMA2FWHM = 2 * math.sqrt(2 * math.log(2))


def test_config_defaults():
    config = MakeKernelConfig()
    assert isinstance(config, PsfMatchConfig)
    assert config.kernel.name == "AL"
    assert set(config.kernel.keys()) == {"AL", "DF"}
    assert config.fwhmExposureGrid == 10
    assert config.fwhmExposureBuffer == 0.05
    assert config.selectDetection.thresholdValue == 10.0
    assert list(config.selectDetection.excludeMaskPlanes) == ["EDGE"]
    assert list(config.badMaskPlanes) == ["NO_DATA", "EDGE", "SAT"]
    assert MakeKernelTask._DefaultName == "makeALKernel"


def test_checkPsfWidths():
    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), nSrc=5)
    task = MakeKernelTask()
    assert task._checkPsfWidths(pair.template, pair.science, 3.0, 4.0, preconvolved=True) == (3.0, 4.0)
    t, s = task._checkPsfWidths(pair.template, pair.science, 3.0, None)
    assert t == pytest.approx(2.0 * SIGMA2FWHM, rel=1e-3)  # both recomputed
    assert s == pytest.approx(2.4 * SIGMA2FWHM, rel=1e-3)
    t2, s2 = task._checkPsfWidths(pair.template, pair.science, None, None, preconvolved=True)
    assert t2 == pytest.approx(t) and s2 == pytest.approx(s * math.sqrt(2))


def test_selectKernelSources_and_run():
    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.6, 2.6), nSrc=40, templateNoise=0.3)
    task = MakeKernelTask()
    task.kConfig.spatialKernelOrder = 0
    task.kConfig.fitForBackground = True
    # A masked star is rejected; so are stamps crossing the edge.
    sat = resolveMaskPlane(pair.science.mask.schema, "SAT")
    x0, y0 = int(round(pair.sources["x"][0])), int(round(pair.sources["y"][0]))
    flags = np.zeros(pair.science.image.array.shape, bool)
    flags[y0, x0] = True
    pair.science.mask.set(sat, flags)
    kernelSources = task.selectKernelSources(pair.template, pair.science, pair.sources)
    kSize = task.makeKernelBasisList(2.0 * SIGMA2FWHM, 2.6 * SIGMA2FWHM)[0].getWidth()
    assert np.all(kernelSources["stampXmax"] - kernelSources["stampXmin"] == 2 * kSize + 1)
    inside = (
        (np.floor(pair.sources["x"] + 0.5) - kSize >= 0)
        & (np.floor(pair.sources["x"] + 0.5) + kSize < 256)
        & (np.floor(pair.sources["y"] + 0.5) - kSize >= 0)
        & (np.floor(pair.sources["y"] + 0.5) + kSize < 256)
    )
    # Every stamp covering the SAT pixel is rejected.
    cx, cy = np.floor(pair.sources["x"] + 0.5), np.floor(pair.sources["y"] + 0.5)
    inside &= ~((np.abs(cx - x0) <= kSize) & (np.abs(cy - y0) <= kSize))
    assert inside.sum() >= 20
    assert len(kernelSources) == int(inside.sum())
    result = task.run(pair.template, pair.science, kernelSources)
    assert set(result.getDict()) == {"psfMatchingKernel", "backgroundModel"}
    image = result.psfMatchingKernel.getArray(128, 128)
    assert image.sum() == pytest.approx(1.0, abs=0.01)
    ixx, iyy, _ = psfMoments(image)
    truth = 2.6**2 - 2.0**2
    assert ixx == pytest.approx(truth, rel=0.1)
    assert iyy == pytest.approx(truth, rel=0.1)


def test_detection_and_psf_flux():
    pair = makePair(templateSigma=(2.0, 2.0), scienceSigma=(2.4, 2.4), nSrc=20, seed=12)
    task = MakeKernelTask()
    sources = task.getSelectSources(pair.science, sigma=2.4)
    assert len(sources) >= 10
    for row in sources:
        d = np.hypot(pair.truth["xs"] - row["x"], pair.truth["ys"] - row["y"])
        k = int(np.argmin(d))
        if d[k] < 1.0 and np.sort(d)[1] > 15:  # isolated match
            assert row["base_PsfFlux_instFlux"] == pytest.approx(pair.truth["fluxes"][k], rel=0.05)
    # The PSF flux error is the PSF-weighted noise: 1 / sqrt(sum P^2) for unit noise.
    psf = pair.science.psf.compute_kernel_image(x=0, y=0).array
    np.testing.assert_allclose(sources["base_PsfFlux_instFluxErr"], 1 / math.sqrt((psf**2).sum()), rtol=1e-3)


def test_no_candidates():
    pair = makePair(nSrc=3)
    task = MakeKernelTask()
    sources = pair.sources.copy()
    sources["x"] = 2.0  # every stamp crosses the edge
    with pytest.raises(NoKernelCandidatesError):
        task.makeCandidateList(pair.template, pair.science, 21, sources)
    with pytest.raises(NoKernelCandidatesError):
        task.run(pair.template, pair.science, sources[:0])


def _variableStarPair() -> tuple:
    """Nine stars on a 200^2 pair (flux ratio 1), the brightest of which is 2x brighter in the science."""
    from astropy.table import Table

    from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
    from lsst.ip.diffim.tests import maskedImage

    shape = (200, 200)
    xs = np.array([40.0, 100.0, 160.0, 40.0, 100.0, 160.0, 40.0, 100.0, 160.0])
    ys = np.array([40.0, 40.0, 40.0, 100.0, 100.0, 100.0, 160.0, 160.0, 160.0])
    fluxes = np.array([2e4, 3e4, 2.5e4, 1.5e4, 6e4, 2e4, 3e4, 1.8e4, 2.2e4])
    science = fluxes.copy()
    science[4] *= 2.0  # the variable star (the brightest), ratio 2 where the others have 1
    rng = np.random.default_rng(11)
    t = renderStars(shape, xs, ys, fluxes, PsfModel(1.8, 1.8, 0.0, shape), half=15)
    s = renderStars(shape, xs, ys, science, PsfModel(2.4, 2.4, 0.0, shape), half=15)
    template = maskedImage(t + rng.normal(0, 2.0, shape), 4.0)
    scienceMI = maskedImage(s + rng.normal(0, 2.0, shape), 4.0)
    return template, scienceMI, Table({"x": xs, "y": ys, "flux": fluxes})


@pytest.mark.parametrize("screen", [True, False])
def test_makeCandidateList_drops_a_variable_star(screen):
    # MakeKernelTask (the AlardLuptonSubtractTask path) screens variable candidates as
    # ImagePsfMatchTask does (doRejectVariableCandidates); without the screen the variable star stays.
    template, science, sources = _variableStarPair()
    config = MakeKernelConfig()
    assert config.doRejectVariableCandidates  # on by default, as in ImagePsfMatchConfig
    config.doRejectVariableCandidates = screen
    task = MakeKernelTask(config=config)
    fwhm = 2.4 * SIGMA2FWHM
    kept = task.makeCandidateList(template, science, 21, sources, fwhm=fwhm)
    atVariable = np.hypot(kept["x"] - 100.0, kept["y"] - 100.0) < 1.0
    assert int(atVariable.sum()) == (0 if screen else 1)
    assert len(kept) == (8 if screen else 9)
    if screen:
        assert task.metadata["nVariableCandidates"] == 1
    # Without the FWHM the screen is skipped (as ImagePsfMatchTask.makeCandidateList).
    assert len(task.makeCandidateList(template, science, 21, sources)) == 9


def test_alardLuptonSubtract_kernel_sources_drop_a_variable_star():
    # AlardLuptonSubtractTask detects its kernel sources through makeKernel.makeCandidateList, which
    # now gets the PSF FWHM: a star twice as bright in the science image is no kernel source.
    from lsst.ip.diffim.subtractImages import AlardLuptonSubtractTask
    from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars

    pair = makePair(nSrc=30, templateNoise=0.5, scienceNoise=0.5, fluxLevel=4000.0)
    x, y = np.asarray(pair.sources["x"]), np.asarray(pair.sources["y"])
    inner = (x > 45) & (x < 210) & (y > 45) & (y < 210)
    flux = np.asarray(pair.sources["base_PsfFlux_instFlux"])
    i = int(np.flatnonzero(inner)[np.argmax(flux[inner])])
    shape = pair.science.image.array.shape
    extra = renderStars(shape, x[i : i + 1], y[i : i + 1], flux[i : i + 1], PsfModel(2.4, 2.4, 0.0, shape))
    pair.science.image.array[...] += extra.astype(np.float32)
    config = AlardLuptonSubtractTask.ConfigClass()
    config.restrictKernelEdgeSources = False
    task = AlardLuptonSubtractTask(config=config)
    task._prepareInputs(pair.template, pair.science)
    task.matchedPsfSize = task.sciencePsfSize
    # The selector after the detection (sourceSelector criteria) is not what is tested here.
    task._sourceSelector = lambda template, science, sources, fallback=False: sources  # type: ignore
    sources = task.runKernelSourceDetection(pair.template, pair.science)
    assert task.makeKernel.metadata["nVariableCandidates"] == 1
    assert np.min(np.hypot(sources["x"] - x[i], sources["y"] - y[i])) > 2.0
