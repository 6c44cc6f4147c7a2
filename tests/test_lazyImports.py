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
"""The package's lazy namespace: the table matches the modules, nothing heavy on import."""

import importlib
import subprocess
import sys
import types

import pytest

import lsst.ip.diffim as ipDiffim


@pytest.mark.parametrize("module", sorted(ipDiffim._LAZY))
def test_tableMatchesModule(module: str) -> None:
    mod = importlib.import_module(module, "lsst.ip.diffim")
    exported = getattr(mod, "__all__", None)
    if exported is None:  # a package re-exporting its modules with ``import *``
        exported = [
            n for n in dir(mod) if not n.startswith("_") and not isinstance(getattr(mod, n), types.ModuleType)
        ]
    assert sorted(ipDiffim._LAZY[module]) == sorted(exported)


def test_namesResolveToTheirModules() -> None:
    import lsst.ip.diffim.makeKernelBasisList  # noqa: F401  (a submodule named like a function)
    from lsst.ip.diffim.imagePsfMatch import ImagePsfMatchTask
    from lsst.ip.diffim.makeKernelBasisList import makeKernelBasisList
    from lsst.ip.diffim.notebook import subtract

    assert ipDiffim.makeKernelBasisList is makeKernelBasisList
    assert ipDiffim.ImagePsfMatchTask is ImagePsfMatchTask
    assert ipDiffim.subtract is subtract
    assert ipDiffim.math.__name__ == "lsst.ip.diffim.math"
    namespace: dict = {}
    exec("from lsst.ip.diffim import *", namespace)
    assert set(ipDiffim.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="noSuchName"):
        ipDiffim.noSuchName


def test_importIsLight() -> None:
    code = (
        "import sys, lsst.ip.diffim\n"
        "heavy = [m for m in ('lsst.pipe.base', 'lsst.images', 'scipy', 'matplotlib', 'astropy') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cliHelpIsLight() -> None:
    code = (
        "import sys\n"
        "from lsst.ip.diffim.cli import subtract\n"
        "try:\n"
        "    subtract.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('lsst.pipe.base', 'lsst.images', 'scipy', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--no-plots" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="
