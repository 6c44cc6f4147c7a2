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
"""runAnnotated: the subtraction tasks' runQuantum step that annotates algorithm errors."""

import pytest

import lsst.pipe.base as pipeBase
from lsst.ip.diffim.alardLuptonSubtract import InsufficientKernelSourcesError
from lsst.ip.diffim.annotatedRun import runAnnotated
from lsst.ip.diffim.subtractImages import SubtractImagesTask


class _Failing(SubtractImagesTask):
    def run(self, **kwargs: object) -> pipeBase.Struct:
        if kwargs.get("fail"):
            raise InsufficientKernelSourcesError(nSources=2, nRequired=5)
        if kwargs.get("crash"):
            raise ZeroDivisionError("not an algorithm error")
        return pipeBase.Struct(value=kwargs["value"])


def test_resultsPassThrough() -> None:
    assert runAnnotated(_Failing(), {"value": 3}).value == 3


def test_algorithmErrorIsAnnotatedAndChained() -> None:
    task = _Failing()
    with pytest.raises(pipeBase.AnnotatedPartialOutputsError) as info:
        runAnnotated(task, {"fail": True})
    assert isinstance(info.value.__cause__, InsufficientKernelSourcesError)
    failure = task.metadata["failure"]
    assert failure["type"].endswith("InsufficientKernelSourcesError")
    assert failure["metadata"]["nSources"] == 2 and failure["metadata"]["nRequired"] == 5


def test_otherErrorsAreNotWrapped() -> None:
    with pytest.raises(ZeroDivisionError):
        runAnnotated(_Failing(), {"crash": True})
