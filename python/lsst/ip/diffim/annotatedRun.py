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
"""Run a pipeline task on the inputs of one quantum, annotating its algorithm errors.

The ``runQuantum`` methods of the subtraction tasks share this step: an
`lsst.pipe.base.AlgorithmError` raised by ``run`` is annotated on the
quantum's partial outputs (`lsst.pipe.base.AnnotatedPartialOutputsError`)
and raised again, so that the failure is recorded as upstream's tasks do.
"""

from __future__ import annotations

__all__ = ["runAnnotated"]

from collections.abc import Mapping

import lsst.pipe.base as pipeBase


def runAnnotated(task: pipeBase.PipelineTask, inputs: Mapping[str, object]) -> pipeBase.Struct:
    """Return ``task.run(**inputs)``.

    Parameters
    ----------
    task : `lsst.pipe.base.PipelineTask`
        The task to run.
    inputs : `~collections.abc.Mapping` [`str`, `object`]
        The inputs of the quantum, by connection name (``butlerQC.get(inputRefs)``).

    Returns
    -------
    results : `lsst.pipe.base.Struct`
        What ``task.run`` returns.

    Raises
    ------
    lsst.pipe.base.AnnotatedPartialOutputsError
        If ``run`` raises an `lsst.pipe.base.AlgorithmError` (chained to it),
        after annotating it on the task's partial outputs.
    """
    try:
        return task.run(**inputs)
    except pipeBase.AlgorithmError as e:
        error = pipeBase.AnnotatedPartialOutputsError.annotate(e, task, log=task.log)
        raise error from e
