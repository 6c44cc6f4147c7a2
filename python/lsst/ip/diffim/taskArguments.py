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
"""The keyword arguments the tasks' constructors pass on to `lsst.pipe.base`.

The tasks' ``__init__`` methods take the configuration and forward the rest
to `lsst.pipe.base.Task` (or `lsst.pipe.base.PipelineTask`); these typed
dictionaries say what "the rest" is, so that ``**kwargs`` is typed
(``**kwargs: Unpack[TaskArguments]``).
"""

from __future__ import annotations

__all__ = ["PipelineTaskArguments", "TaskArguments"]

import logging
from typing import Any, TypedDict

import lsst.pipe.base as pipeBase
from lsst.utils.logging import LsstLogAdapter


class TaskArguments(TypedDict, total=False):
    """Keyword arguments of `lsst.pipe.base.Task` after ``config``."""

    name: str | None
    parentTask: pipeBase.Task | None
    log: logging.Logger | LsstLogAdapter | None


class PipelineTaskArguments(TaskArguments, total=False):
    """Keyword arguments of `lsst.pipe.base.PipelineTask`."""

    config: pipeBase.PipelineTaskConfig | None
    initInputs: dict[str, Any] | None
