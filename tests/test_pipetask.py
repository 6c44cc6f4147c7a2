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
"""SubtractImagesTask under the real ``pipetask`` command, on a SQLite Butler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lsst.daf.butler import Butler
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.cli.makeDemoRepo import makeDemoRepo
from lsst.ip.diffim.math import anyMaskPlaneSet
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

PIPELINE = Path(__file__).parent.parent / "pipelines" / "DifferenceImaging.yaml"
PIPETASK = shutil.which("pipetask", path=os.path.dirname(sys.executable)) or "pipetask"


def _pairs():
    out = []
    for visit, detector, seed in ((101, 0, 21), (102, 1, 22)):
        p = makeSyntheticPair(size=256, nStars=90, seed=seed, transients=[(128.3, 100.6, 6000.0)])
        kw = dict(instrument="DemoCam", visit=visit, detectorId=detector, band="r", physicalFilter="demo_r")
        template = makeVisitImage(p.template, p.templateVariance, **kw)
        science = makeVisitImage(p.science, p.scienceVariance, **kw)
        out.append((visit, detector, template, science))
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("repo") / "repo"
    makeDemoRepo(str(path), pairs=_pairs())
    return path


def _pipetask(repo: Path, output: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        PIPETASK,
        "run",
        "-b",
        str(repo),
        "-i",
        "demo/inputs",
        "-o",
        output,
        "-p",
        str(PIPELINE),
        "--register-dataset-types",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _checkOutputs(repo: Path, collection: str, expectedOrder: int) -> None:
    butler = Butler.from_config(str(repo), collections=[collection])
    for visit, detector in ((101, 0), (102, 1)):
        dataId = {"instrument": "DemoCam", "visit": visit, "detector": detector}
        diff = butler.get("difference_image", dataId)
        matched = butler.get("matched_template", dataId)
        kernel = butler.get("psf_matching_kernel", dataId)
        assert matched.bbox == diff.bbox
        kimg = kernel.compute_kernel_image(x=128, y=128).array
        np.testing.assert_allclose(diff.kernel.compute_kernel_image(x=128, y=128).array, kimg)
        assert abs(kimg.sum() / 1.3 - 1) < 0.01
        norm = diff.image.array / np.sqrt(diff.variance.array)
        ok = np.isfinite(norm) & ~anyMaskPlaneSet(diff.mask, ["NO_DATA"])
        science = butler.get("science_image", dataId).image.array
        ok &= science < np.median(science) + 3 * np.sqrt(np.median(science))
        assert abs(np.std(norm[ok]) - 1.0) < 0.1
        metadata = butler.get("subtractImages_metadata", dataId)
        psfMatch = metadata["subtractImages:psfMatch"]
        for key in ("spatialConditionNum", "spatialKernelSum", "ALKernelSize", "KCDiffimStDev_LOCAL_MEAN"):
            assert key in psfMatch
        assert psfMatch["spatialKernelOrder"] == expectedOrder


def test_pipetask_serial_and_override(repo):
    """Serial run: outputs read back; a -c override changes the spatial order; logs at INFO."""
    result = _pipetask(
        repo, "demo/serial", "-c", "subtractImages:psfMatch.kernel.active.spatialKernelOrder=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "lsst.subtractImages.psfMatch INFO" in log and "Final spatial kernel sum" in log
    _checkOutputs(repo, "demo/serial", 1)


def test_pipetask_parallel(repo):
    """-j 2 run gives the same products with the default spatial order 2."""
    result = _pipetask(repo, "demo/parallel", "-j", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    _checkOutputs(repo, "demo/parallel", 2)


def test_pipetask_failure_leaves_nothing(tmp_path):
    """A pair with no usable stars fails its quantum with NoKernelCandidatesError and writes no outputs."""
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(200, 200)).astype(np.float32)
    kw = dict(instrument="DemoCam", visit=201, detectorId=0, band="r", physicalFilter="demo_r")
    t = makeVisitImage(noise, np.ones_like(noise), **kw)
    s = makeVisitImage(noise.copy(), np.ones_like(noise), **kw)
    path = tmp_path / "repo"
    makeDemoRepo(str(path), pairs=[(201, 0, t, s)])
    result = _pipetask(path, "demo/fail")
    assert result.returncode != 0
    assert "NoKernelCandidatesError" in result.stdout + result.stderr
    butler = Butler.from_config(str(path))
    refs = list(butler.registry.queryDatasets("difference_image", collections=...))
    assert refs == []


def test_pipetask_debug_displays(repo, tmp_path):
    """pipetask run --debug with a user's debug.py writes the requested displays (serial and -j 2)."""
    debugDir = tmp_path / "debugpy"
    debugDir.mkdir()
    (debugDir / "debug.py").write_text(
        "import lsstDebug\n\n"
        "def DebugInfo(name):\n"
        "    di = lsstDebug.getInfo(name)\n"
        "    if name == 'lsst.ip.diffim.psfMatch':\n"
        "        di.display = True\n"
        "        di.displayKernelMosaic = True\n"
        "    return di\n\n"
        "lsstDebug.Info = DebugInfo\n"
    )
    for jobs, output in (("1", "demo/debug1"), ("2", "demo/debug2")):
        pngDir = tmp_path / f"png{jobs}"
        env = dict(
            os.environ,
            PYTHONPATH=f"{debugDir}:{os.environ.get('PYTHONPATH', '')}",
            IPDIFFIM_DEBUG_DIR=str(pngDir),
            MPLBACKEND="Agg",
        )
        cmd = [
            PIPETASK,
            "--long-log",
            "run",
            "--debug",
            "-j",
            jobs,
            "-b",
            str(repo),
            "-i",
            "demo/inputs",
            "-o",
            output,
            "-p",
            str(PIPELINE),
            "--register-dataset-types",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        pngs = sorted(pngDir.glob("*kernelMosaic.png"))
        assert len(pngs) == 2, (jobs, list(pngDir.glob("*")))


@pytest.mark.slow
def test_bps_submit_parsl(tmp_path):
    """bps submit with ctrl_bps_parsl on this machine runs the pipeline (needs the [bps] extra)."""
    pytest.importorskip("lsst.ctrl.bps.parsl")
    bps = shutil.which("bps", path=os.path.dirname(sys.executable)) or "bps"
    makeDemoRepo(str(tmp_path / "demo_repo"))
    shutil.copytree(PIPELINE.parent, tmp_path / "pipelines")
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
    result = subprocess.run(
        [bps, "submit", "pipelines/bps_local.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    butler = Butler.from_config(str(tmp_path / "demo_repo"))
    refs = list(butler.registry.queryDatasets("difference_image", collections="demo/bps"))
    assert len(refs) == 1
    assert abs(butler.get(refs[0]).kernel.compute_kernel_image(x=200, y=200).array.sum() - 1.35) < 0.05


def test_insufficient_template_coverage_is_no_work_found():
    """A template covering less than requiredTemplateFraction raises NoWorkFound before any fit."""
    import lsst.pipe.base as pipeBase
    from lsst.ip.diffim.subtractImages import SubtractImagesTask, checkTemplateIsSufficient

    pair = makeSyntheticPair(size=200, nStars=40, seed=3)
    template = makeVisitImage(pair.template, pair.templateVariance)
    science = makeVisitImage(pair.science, pair.scienceVariance)
    template.mask.set("NO_DATA", np.pad(np.ones((200, 190), bool), ((0, 0), (0, 10))))
    assert checkTemplateIsSufficient(template, science, 0.0) == pytest.approx(0.05)
    with pytest.raises(pipeBase.NoWorkFound, match="Insufficient template coverage"):
        SubtractImagesTask().run(template=template, science=science)
