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
"""Output planes prepared on a background thread, and the task results that use them."""

import numpy as np
import pytest
from astropy.table import Table

import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.math.outputPlanes import OutputPlanes
from lsst.ip.diffim.psfMatch import NoKernelCandidatesError
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair
from lsst.ip.diffim.tests import maskedImage


def test_planes_are_zeroed_and_handed_out_once(monkeypatch):
    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "2")
    planes = OutputPlanes.start({"a": ((300, 200), np.float32), "b": ((300, 200, 1), np.int32)})
    assert planes is not None
    planes.begin()
    a = planes.take("a", (300, 200), np.float32)
    b = planes.take("b", (300, 200, 1), np.int32)
    assert a.shape == (300, 200) and a.dtype == np.float32 and not a.any()
    assert b.shape == (300, 200, 1) and b.dtype == np.int32 and not b.any()
    assert planes.take("a", (300, 200), np.float32) is None  # only once
    assert planes.take("c", (300, 200), np.float32) is None  # never asked for
    planes.close()


def test_mismatched_request_and_unstarted_close(monkeypatch):
    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "2")
    planes = OutputPlanes.start({"a": ((64, 64), np.float32)})
    # take() starts the thread itself; a different shape or type is refused.
    assert planes.take("a", (64, 65), np.float32) is None
    planes.close()
    unstarted = OutputPlanes.start({"a": ((64, 64), np.float32)})
    unstarted.close()  # never started: nothing to join
    assert unstarted.take("a", (64, 64), np.float32) is None


def test_one_thread_means_no_background_thread(monkeypatch):
    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "1")
    assert OutputPlanes.start({"a": ((8, 8), np.float32)}) is None


def _keepsNoPlanes(task: ipDiffim.ImagePsfMatchTask) -> bool:
    """Whether the task holds no prepared planes (they are never task state)."""
    return not any(isinstance(value, OutputPlanes) for value in vars(task).values())


def _task() -> ipDiffim.ImagePsfMatchTask:
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.fitForBackground = True
    config.kernel.active.spatialBgOrder = 1
    return ipDiffim.ImagePsfMatchTask(config=config)


def test_prepared_planes_give_the_same_subtraction(monkeypatch):
    """Results are identical whether the planes were prepared or allocated on the spot."""
    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "2")
    pair = makeSyntheticPair(size=256, nStars=80, seed=5)
    template = maskedImage(pair.template, pair.templateVariance)
    science = maskedImage(pair.science, pair.scienceVariance)
    taken = []
    original = OutputPlanes.take

    def recordingTake(self, name, shape, dtype):
        array = original(self, name, shape, dtype)
        taken.append((name, array is not None))
        return array

    monkeypatch.setattr(OutputPlanes, "take", recordingTake)
    task = _task()
    prepared = task.subtractMaskedImages(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    assert _keepsNoPlanes(task)
    planes = ("image", "variance", "mask")
    expected = [(f"{kind}.{plane}", True) for kind in ("matched", "difference") for plane in planes]
    assert sorted(taken) == sorted(expected)
    monkeypatch.setattr(OutputPlanes, "start", classmethod(lambda cls, specs: None))
    plain = _task().subtractMaskedImages(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    for attr in ("subtractedMaskedImage", "matchedImage"):
        for plane in ("image", "variance", "mask"):
            np.testing.assert_array_equal(
                getattr(getattr(prepared, attr), plane).array, getattr(getattr(plain, attr), plane).array
            )
    # The difference matches its truth: flux ratio 1.3 recovered by the kernel sum.
    assert prepared.psfMatchingKernel.getSum(128.0, 128.0) == pytest.approx(1.3, rel=0.02)


def test_callers_planes_are_filled_and_left_open(monkeypatch):
    """Planes passed as ``out=`` become the result's planes; the caller closes them, not the task."""
    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "2")
    pair = makeSyntheticPair(size=128, nStars=30, seed=3)
    template = maskedImage(pair.template, pair.templateVariance)
    science = maskedImage(pair.science, pair.scienceVariance)
    handedOut = {}
    original = OutputPlanes.take

    def recordingTake(self, name, shape, dtype):
        array = original(self, name, shape, dtype)
        handedOut[name] = array
        return array

    monkeypatch.setattr(OutputPlanes, "take", recordingTake)
    planes = OutputPlanes.forMatch(template, science)
    closed = []
    monkeypatch.setattr(planes, "close", lambda: closed.append(True))
    task = _task()
    result = task.subtractMaskedImages(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5, out=planes)
    assert not closed and _keepsNoPlanes(task)
    for kind, image in (("matched", result.matchedImage), ("difference", result.subtractedMaskedImage)):
        for plane in ("image", "variance", "mask"):
            assert getattr(image, plane).array is handedOut[f"{kind}.{plane}"]
    OutputPlanes.close(planes)
    assert result.psfMatchingKernel.getSum(64.0, 64.0) == pytest.approx(1.3, rel=0.03)


def test_planes_are_released_after_a_failure(monkeypatch):
    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "2")
    pair = makeSyntheticPair(size=128, nStars=20, seed=2)
    template = maskedImage(pair.template, pair.templateVariance)
    science = maskedImage(pair.science, pair.scienceVariance)
    empty = Table(names=["x", "y", "stampXmin", "stampXmax", "stampYmin", "stampYmax"])
    task = _task()
    with pytest.raises(NoKernelCandidatesError):
        task.subtractMaskedImages(
            template, science, candidateList=empty, templateFwhmPix=3.0, scienceFwhmPix=4.5
        )
    assert _keepsNoPlanes(task)


def test_take_does_not_wait_for_a_starved_background_thread(monkeypatch):
    """A block held by a background thread that gets no time is waited for briefly, then given up."""
    import time

    monkeypatch.setenv("IPDIFFIM_NUM_THREADS", "2")
    planes = OutputPlanes.start({"a": ((256, 32), np.float32), "b": ((256, 32), np.float32)})
    monkeypatch.setattr(planes, "_prepare", lambda: None)  # the thread never zeroes anything
    planes._thread = __import__("threading").Thread(target=planes._prepare, daemon=True)
    held = planes._claim("a")  # as if the background thread had claimed a block and stalled
    assert held is not None
    t0 = time.perf_counter()
    assert planes.take("a", (256, 32), np.float32) is None
    assert time.perf_counter() - t0 < 5.0
    # A plane nobody holds is zeroed by the caller and handed out.
    b = planes.take("b", (256, 32), np.float32)
    assert b is not None and b.shape == (256, 32) and not b.any()
    planes.close()
