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
