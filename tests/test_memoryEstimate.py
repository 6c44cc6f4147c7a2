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
"""Memory estimate and refusal of a kernel fit; released systems; build progress lines."""

import logging

import pytest

import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.kernel import buildProgress, memoryEstimate
from lsst.ip.diffim.math import SpatialCellCandidateStatus
from lsst.ip.diffim.math.exceptions import KernelSolutionError
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair
from lsst.ip.diffim.tests import makeDeltaPair, maskedImage


def test_estimate_counts_the_kept_systems() -> None:
    common = dict(
        nBasis=441,
        nCandidates=3000,
        nCells=256,
        nStarPerCell=5,
        nSpatialKernelTerms=6,
        nSpatialBgTerms=3,
        fitForBackground=True,
        useRegularization=True,
        stampPixels=1000,
    )
    kept = memoryEstimate.estimateKernelFitBytes(**common)
    # 1280 kept systems of 442^2 + 2 * 442 doubles (2.0 GB) and the spatial system (2 copies of
    # (441 * 6 + 3)^2 doubles) dominate.
    assert kept == pytest.approx(1280 * (442**2 + 2 * 442) * 8 + 2 * (441 * 6 + 3) ** 2 * 8, rel=0.01)
    released = memoryEstimate.estimateKernelFitBytes(**common, keepsSystems=False, nSpatialBasis=5)
    assert released < kept / 50
    assert memoryEstimate.availableMemoryBytes() > 0


def test_check_refuses_with_the_estimate_in_a_named_error() -> None:
    with pytest.raises(memoryEstimate.MemoryEstimateError, match=r"3\.00 GiB.*1\.00 GiB") as info:
        memoryEstimate.checkMemoryEstimate(3 * 2**30, "This fit", availableBytes=2**30)
    assert info.value.estimateBytes == 3 * 2**30 and info.value.availableBytes == 2**30
    memoryEstimate.checkMemoryEstimate(2**20, "This fit", availableBytes=2**30)  # fits: no error


def test_task_refuses_a_fit_the_machine_cannot_hold(monkeypatch) -> None:
    pair = makeSyntheticPair(size=192, nStars=30, seed=4, transients=[])
    template = maskedImage(pair.template, pair.templateVariance)
    science = maskedImage(pair.science, pair.scienceVariance)
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.name = "DF"
    task = ipDiffim.ImagePsfMatchTask(config=config)
    monkeypatch.setattr(memoryEstimate, "availableMemoryBytes", lambda: 1024)
    with pytest.raises(memoryEstimate.MemoryEstimateError, match="basis kernels"):
        task.subtractMaskedImages(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    assert task.metadata["kernelFitMemoryEstimateBytes"] > 1024


def test_rejected_candidate_drops_its_system() -> None:
    config = ipDiffim.PsfMatchConfigDF()
    ps = ipDiffim.makePropertySet(config)
    ps["useRegularization"] = False
    ps["usePcaForSpatialKernel"] = False
    t, s = makeDeltaPair(2.0)
    kc = ipDiffim.makeKernelCandidate(0.0, 0.0, t, s, ps)
    kc.build(ipDiffim.makeKernelBasisList(config))
    solution = kc.getKernelSolution(ipDiffim.KernelCandidateF.ORIG)
    nloc = solution.getM().shape[0]
    assert solution.designShape[1] == nloc
    kc.setStatus(SpatialCellCandidateStatus.BAD)
    with pytest.raises(KernelSolutionError):
        solution.getM()
    assert kc.getKernel(ipDiffim.KernelCandidateF.ORIG).getSum() == pytest.approx(2.0, rel=1e-6)


def test_progress_lines_and_rate(monkeypatch, caplog) -> None:
    monkeypatch.setattr(buildProgress, "INTERVAL_SECONDS", 0.0)
    log = logging.getLogger("test.progress")
    progress = buildProgress.BuildProgress(3, log, minTotal=1)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for _ in range(3):
            progress.add(0.5, 442, 1000)
        progress.finish()
    flops = 3 * buildProgress.systemFlops(442, 1000)
    assert flops == pytest.approx(3 * (2 * 442**2 * 1000 + 2 * 442 * 1000 + 2 / 3 * 442**3))
    assert progress.rate() == pytest.approx(flops / 1.5 / 1e9)
    messages = [r.getMessage() for r in caplog.records]
    assert any("built 1/3" in m for m in messages) and "built 3 candidate systems" in messages[-1]
