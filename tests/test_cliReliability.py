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
"""``ipdiffim-subtract`` under bad input, reruns, concurrent runs and kills (issue 12)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lsst.images import MaskedImage
from lsst.images.convolution_kernels import ImageBasisConvolutionKernel
from lsst.images.serialization import read_archive
from lsst.ip.diffim.cli.errors import OutputCollisionError
from lsst.ip.diffim.cli.outputNames import outputNames
from lsst.ip.diffim.cli.progress import RunProgress
from lsst.ip.diffim.cli.runLock import LOCK_NAME, RunLock
from lsst.ip.diffim.cli.subtract import main
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

CLI = shutil.which("ipdiffim-subtract", path=os.path.dirname(sys.executable)) or "ipdiffim-subtract"
FWHM = ["--template-fwhm", "3", "--science-fwhm", "4.5", "-c", "kernel.active.spatialKernelOrder=1"]


def _wcs(size: int, ra: float = 30.0) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, -10.0]
    wcs.wcs.crpix = [size / 2 + 1, size / 2 + 1]
    wcs.wcs.cd = [[-5.5e-5, 0.0], [0.0, 5.5e-5]]
    return wcs


def _write(path, image, variance, wcs=None):
    header = wcs.to_header() if wcs is not None else None
    fits.HDUList(
        [fits.PrimaryHDU(image.astype(np.float32), header=header), fits.ImageHDU(variance, name="VARIANCE")]
    ).writeto(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliable")
    pair = makeSyntheticPair(size=160, nStars=45, seed=23)
    tv, sv = pair.templateVariance.astype(np.float32), pair.scienceVariance.astype(np.float32)
    _write(folder / "template.fits", pair.template, tv)
    (folder / "dirA").mkdir()
    (folder / "dirB").mkdir()
    _write(folder / "dirA" / "sci.fits", pair.science, sv)
    _write(folder / "dirB" / "sci.fits", pair.science[:, ::-1].copy(), sv)
    _write(folder / "S.fits", pair.science, sv)
    with open(folder / "S.fits", "rb") as src:
        import gzip

        (folder / "S.fits.gz").write_bytes(gzip.compress(src.read()))
    _write(folder / "wcs_science.fits", pair.science, sv, _wcs(160))
    _write(folder / "small.fits", pair.science[2:, 2:].copy(), sv[2:, 2:].copy())
    raw = (folder / "S.fits").read_bytes()
    (folder / "truncated.fits").write_bytes(raw[: len(raw) * 3 // 10])  # inside the image data
    (folder / "truncated2.fits").write_bytes(raw[: len(raw) * 3 // 4])  # inside the variance extension
    fits.PrimaryHDU(pair.science.astype(np.float32)).writeto(folder / "novar.fits")
    bad = sv.copy()
    bad[:40, :] = 0.0
    bad[40:50, :] = -1.0
    bad[50:55, :] = np.nan
    _write(folder / "badvar.fits", pair.science, bad)
    mostly = sv.copy()
    mostly[:100, :] = 0.0
    _write(folder / "mostlybadvar.fits", pair.science, mostly)
    # A template with a WCS far from a science image with another WCS: no overlap.
    _write(folder / "wcs_template.fits", pair.template, tv, _wcs(160))
    _write(folder / "far.fits", pair.science, sv, _wcs(160, ra=31.0))
    return folder


@pytest.fixture(autouse=True)
def quickSheet(monkeypatch):
    """In-process runs draw no diagnostic sheet (matplotlib text layout is most of a run here).

    The sheet is still one of the six files, so the checks of the folder's
    contents hold; the subprocess (signal) tests draw the real one.
    """
    from lsst.ip.diffim.cli import sheetWorker, summarySheet

    def writeStub(data, path, *args, **kwargs):
        from pathlib import Path

        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n")
        return Path(path)

    monkeypatch.setattr(summarySheet, "drawSummarySheet", writeStub)
    # No drawing process either: writeOutputs then draws (the stub) on its own thread.
    monkeypatch.setattr(sheetWorker.SheetWorker, "start", classmethod(lambda cls: None))


def _main(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _errorLines(err):
    return [line for line in err.splitlines() if line.startswith("ipdiffim-subtract: error")]


def test_output_names():
    """Names come from the paths, grow until unique, and refuse what cannot be told apart."""
    assert outputNames(["a/sci.fits", "b/other.fits.fz"]) == ["sci", "other"]
    assert outputNames(["/d/dirA/sci.fits", "/d/dirB/sci.fits"]) == ["dirA_sci", "dirB_sci"]
    assert outputNames(["/d/S.fits", "/d/S.fits.gz"]) == ["S.fits", "S.fits.gz"]
    assert outputNames(["/x/a/sci.fits", "/y/a/sci.fits", "/y/b.fits"]) == ["x_a_sci", "y_a_sci", "b"]
    with pytest.raises(OutputCollisionError, match="given twice"):
        outputNames(["/d/S.fits", "/d/./S.fits"])
    with pytest.raises(OutputCollisionError, match="would both write"):
        outputNames(["/d/a b.fits", "/d/a_b.fits"])


def test_same_layout_and_collisions(data, tmp_path, capsys):
    """One image and two images share the layout; colliding names get distinct folders; duplicates refused."""
    out = tmp_path / "out"
    code, stdout, err = _main(capsys, data / "template.fits", data / "S.fits", "-o", out, *FWHM)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["S"]
    assert MaskedImage.read(str(out / "S" / "difference.fits")).image.array.shape == (160, 160)
    out2 = tmp_path / "out2"
    args = [data / "template.fits", data / "dirA" / "sci.fits", data / "dirB" / "sci.fits"]
    code, stdout, err = _main(capsys, *args, "-o", out2, *FWHM)
    assert code == 0, err
    assert sorted(p.name for p in out2.iterdir()) == ["dirA_sci", "dirB_sci"]
    a = MaskedImage.read(str(out2 / "dirA_sci" / "difference.fits")).image.array
    b = MaskedImage.read(str(out2 / "dirB_sci" / "difference.fits")).image.array
    assert not np.array_equal(a, b)  # two different results, both kept
    assert "done: 2 of 2" in stdout
    out3 = tmp_path / "out3"
    code, _, err = _main(capsys, data / "template.fits", data / "S.fits", data / "S.fits", "-o", out3, *FWHM)
    assert code == 2 and "given twice" in err and len(err.strip().splitlines()) == 1
    assert not out3.exists() or not any(out3.iterdir())


def test_rerun_refused_then_overwrite(data, tmp_path, capsys):
    """A second run into the same folder never overwrites silently; --overwrite replaces atomically."""
    out = tmp_path / "out"
    assert _main(capsys, data / "template.fits", data / "S.fits", "-o", out, *FWHM)[0] == 0
    before = (out / "S" / "difference.fits").stat().st_mtime_ns
    code, _, err = _main(capsys, data / "template.fits", data / "S.fits", "-o", out, *FWHM)
    assert code == 2 and "exists" in err and "--overwrite" in err
    assert (out / "S" / "difference.fits").stat().st_mtime_ns == before
    code, _, err = _main(capsys, data / "template.fits", data / "S.fits", "-o", out, "--overwrite", *FWHM)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["S"]
    assert len(list((out / "S").iterdir())) == 6
    after = (out / "S" / "difference.fits").stat().st_mtime_ns
    assert after != before
    sciences = [data / "S.fits", data / "dirA" / "sci.fits"]  # a killed run's list, run again
    code, stdout, err = _main(capsys, data / "template.fits", *sciences, "-o", out, "--skip-existing", *FWHM)
    assert code == 0, err
    assert "skipped" in stdout and "1 of 2" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["S", "sci"]
    assert (out / "S" / "difference.fits").stat().st_mtime_ns == after


def test_live_lock_refuses_and_stale_staging_removed(data, tmp_path, capsys):
    """A live run's lock refuses a second run (with its pid); debris of a killed run is removed."""
    out = tmp_path / "out"
    out.mkdir()
    with RunLock(out):
        code, _, err = _main(capsys, data / "template.fits", data / "S.fits", "-o", out, *FWHM)
        assert code == 3 and f"pid {os.getpid()}" in err and len(err.strip().splitlines()) == 1
    assert not (out / LOCK_NAME).exists()
    stale = out / ".staging-S-dead"
    stale.mkdir()
    (stale / "difference.fits").write_bytes(b"partial")
    (out / LOCK_NAME).write_text("999999 deadhost\n")  # a killed run's lock file: not held
    code, _, err = _main(capsys, data / "template.fits", data / "S.fits", "-o", out, *FWHM)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["S"]


def test_multi_image_run_goes_on_and_summarizes(data, tmp_path, capsys):
    """Failures are one line each naming the file; the other images are processed; summary; exit 1."""
    out = tmp_path / "out"
    sciences = ["truncated.fits", "truncated2.fits", "S.fits", "small.fits", "wcs_science.fits"]
    code, stdout, err = _main(capsys, data / "template.fits", *[data / s for s in sciences], "-o", out, *FWHM)
    assert code == 1
    errors = _errorLines(err)
    assert len(errors) == 4, err
    assert "Traceback" not in err
    assert "truncated.fits: cannot be read" in errors[0]
    assert "truncated2.fits: cannot be read" in errors[1] and "truncated" in errors[1]
    assert "small.fits" in errors[2] and "differ in size and have no WCS" in errors[2]
    assert "wcs_science.fits" in errors[3]
    assert "science image has a celestial WCS and the template has none" in errors[3]
    assert "failed (4 of 5):" in err
    assert sorted(p.name for p in out.iterdir()) == ["S"]
    assert "done: 1 of 5" in stdout


def test_no_overlap_is_one_line_and_run_goes_on(data, tmp_path, capsys):
    """ImagesDoNotOverlapError (a NoWorkFound, not an Exception) is reported and the run goes on."""
    out = tmp_path / "out"
    code, _, err = _main(
        capsys, data / "wcs_template.fits", data / "far.fits", data / "wcs_science.fits", "-o", out, *FWHM
    )
    errors = _errorLines(err)
    assert code == 1 and len(errors) == 1 and "far.fits" in errors[0] and "do not overlap" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["wcs_science"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["-c", "kernel.active.nope=1"], "unknown config field"),
        (["-c", "kernel.name=XX"], "invalid value for 'kernel.name'"),
        (["-c", "kernel.active.spatialKernelOrder=-3"], "invalid value"),
        (["--gain", "0"], "--gain 0.0: must be finite and > 0"),
        (["--template-gain", "-1"], "--template-gain -1.0: must be finite and > 0"),
        (["--science-gain", "inf"], "--science-gain inf: must be finite and > 0"),
        (["--science-read-noise", "nan"], "--science-read-noise nan: must be finite and >= 0"),
        (["--template-read-noise", "-2"], "--template-read-noise -2.0: must be finite and >= 0"),
        (["--science-fwhm", "nan"], "--science-fwhm: a FWHM must be a finite positive number of pixels"),
        (["-C", "BROKEN"], "config file failed: SyntaxError"),
        (["-C", "RAISING"], "config file failed: RuntimeError: boom"),
        (["-c", "kernel.name=DF", "-c", "kernel.active.kernelSize=201"], "GiB available"),
    ],
)
def test_refused_before_work(data, tmp_path, capsys, extra, message):
    """Bad options, config and memory-hungry configurations: one line, exit 2, nothing written."""
    (tmp_path / "broken.py").write_text("config.kernel.name = (\n")
    (tmp_path / "raising.py").write_text("raise RuntimeError('boom')\n")
    files = {"BROKEN": str(tmp_path / "broken.py"), "RAISING": str(tmp_path / "raising.py")}
    extra = [files.get(e, e) for e in extra]
    out = tmp_path / "out"
    code, _, err = _main(capsys, data / "template.fits", data / "S.fits", "-o", out, *FWHM, *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists() or not any(out.iterdir())


def test_overrides_reach_subtasks_and_choices(data, tmp_path, capsys):
    """-c takes every pipetask key: subtasks, ConfigChoiceField selection, lists."""
    out = tmp_path / "out"
    code, _, err = _main(
        capsys,
        data / "template.fits",
        data / "S.fits",
        "-o",
        out,
        *FWHM,
        "-c",
        "selectDetection.thresholdValue=8",
        "-c",
        "kernel.name=DF",
        "-c",
        "kernel.active.kernelSize=11",
        "-c",
        "kernel.active.badMaskPlanes=['NO_DATA', 'SAT', 'EDGE']",
        "--debug-errors",
    )
    assert code == 0, err
    # Inputs without a WCS give MaskedImage outputs; the kernel is in kernel.fits.
    kernel = read_archive(out / "S" / "kernel.fits", ImageBasisConvolutionKernel)
    assert kernel.compute_kernel_image(x=80, y=80).array.shape == (11, 11)  # the DF basis of size 11
    from lsst.ip.diffim.cli.configOverrides import applyConfigOverrides
    from lsst.ip.diffim.imagePsfMatch import ImagePsfMatchTask

    config = ImagePsfMatchTask.ConfigClass()
    overrides = ["selectDetection.thresholdValue=8", "kernel.name=DF", "kernel.active.badMaskPlanes=['SAT']"]
    applyConfigOverrides(config, [], overrides)
    assert config.selectDetection.thresholdValue == 8.0 and config.kernel.name == "DF"
    assert list(config.kernel.active.badMaskPlanes) == ["SAT"]


def test_debug_errors_shows_traceback(data, tmp_path, capsys):
    out = tmp_path / "o"
    code, _, err = _main(capsys, data / "template.fits", data / "small.fits", "-o", out, "--debug-errors")
    assert code == 1 and "Traceback" in err and len(_errorLines(err)) == 1


def test_bad_variance_flagged_and_kept_out(data, tmp_path, capsys):
    """Zero/negative/NaN variance pixels are flagged NO_DATA; more than half is a named error."""
    out = tmp_path / "out"
    sciences = [data / "badvar.fits", data / "mostlybadvar.fits"]
    code, _, err = _main(capsys, data / "template.fits", *sciences, "-o", out, *FWHM)
    assert code == 1
    errors = _errorLines(err)
    assert len(errors) == 1 and "mostlybadvar.fits" in errors[0] and "BadVarianceError" in errors[0]
    diff = MaskedImage.read(str(out / "badvar" / "difference.fits"))
    noData = diff.mask.get("NO_DATA") if hasattr(diff.mask, "get") else None
    rows = slice(0, 55)
    assert noData is None or noData[rows].all()
    good = diff.image.array[70:150, 20:140] / np.sqrt(diff.variance.array[70:150, 20:140])
    assert np.nanstd(good) < 1.3


def test_progress_bar_on_terminal():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = RunProgress(3, stream=stream)
    for i, name in enumerate(["a", "b", "c"], start=1):
        progress.start(i, name)
        progress.finish()
    progress.close()
    assert "3/3" in stream.getvalue()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_cleans_up(data, tmp_path, signum):
    """A signal during a run removes its staging and lock, keeps finished images, exits 128+N."""
    out = tmp_path / "out"
    sciences = [data / "S.fits"] + [data / "dirA" / "sci.fits", data / "dirB" / "sci.fits"] * 1
    proc = subprocess.Popen(
        [CLI, str(data / "template.fits"), *map(str, sciences), "-o", str(out), *FWHM],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.is_dir() and any(p.name.startswith(".staging-") for p in out.iterdir()):
            break
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "interrupted" in err and "Traceback" not in err
    names = [p.name for p in out.iterdir()]
    assert not any(n.startswith(".") for n in names), names
    for name in names:  # whatever finished is complete
        assert len(list((out / name).iterdir())) == 6


def test_stale_staging_and_interrupted_replacement(tmp_path):
    """Staging of a killed run is removed; a result a killed replacement moved aside is restored."""
    from lsst.ip.diffim.cli.staging import removeStaleStaging, stagedFolder

    (tmp_path / ".staging-a-x1").mkdir()
    (tmp_path / ".staging-a-x1" / "difference.fits").write_bytes(b"partial")
    (tmp_path / ".replaced-b").mkdir()
    (tmp_path / ".replaced-b" / "difference.fits").write_bytes(b"old result")
    removed = removeStaleStaging(tmp_path)
    assert [p.name for p in removed] == [".staging-a-x1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert (tmp_path / "b" / "difference.fits").read_bytes() == b"old result"
    with pytest.raises(RuntimeError), stagedFolder(tmp_path, "c") as staging:
        (staging / "difference.fits").write_bytes(b"half")
        raise RuntimeError("fit failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # nothing of c, no staging
    with stagedFolder(tmp_path, "b", overwrite=True) as staging:
        (staging / "difference.fits").write_bytes(b"new result")
    assert (tmp_path / "b" / "difference.fits").read_bytes() == b"new result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
