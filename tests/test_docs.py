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
"""The documentation in doc/ builds with Sphinx without a single warning.

The build reads every page and every API docstring (the ``dummy`` builder:
all of Sphinx's reading, parsing and cross-reference resolution, without
writing HTML) from a copy of doc/, offline, with warnings as errors.
``sphinx -W -b html doc doc/_build/html`` builds the pages themselves.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "doc"

pytest.importorskip("documenteer", reason="the doc extra is not installed")


def test_docsBuildWithoutWarnings(tmp_path: Path) -> None:
    """Sphinx -W on a copy of doc/ exits 0 and reports no warning."""
    source = tmp_path / "doc"
    shutil.copytree(DOC, source, ignore=shutil.ignore_patterns("_build", "api"))
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-E",
            "-q",
            "-b",
            "dummy",
            str(source),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-5000:]
    # automodapi generated the API pages (the task pages' config tables need the classes too).
    assert (source / "api" / "lsst.ip.diffim.ImagePsfMatchTask.rst").exists()
