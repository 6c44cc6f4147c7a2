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
"""Remake the README's example pictures in doc/_static from the built-in pair.

Run from the repository root: ``python doc/makeReadmePictures.py``.  Writes
``summary_sheet.png`` (the ``ipdiffim-subtract`` sheet), ``kernel_mosaic.png``
(``displayKernelMosaic``) and ``candidates_page.png`` (the first page of
``displayCandidates``), each reduced to a 256-colour PNG of at most
``MAX_BYTES``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "doc" / "_static"
DATA = ROOT / "python" / "lsst" / "ip" / "diffim" / "data"
MAX_BYTES = 200_000


def shrink(source: Path, target: Path, width: int) -> None:
    """Save ``source`` as a 256-colour PNG ``width`` pixels wide (narrower until under MAX_BYTES)."""
    image = Image.open(source).convert("RGB")
    while True:
        height = round(image.height * width / image.width)
        small = image.resize((width, height), Image.LANCZOS) if width < image.width else image
        small.quantize(256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
        if target.stat().st_size <= MAX_BYTES or width < 300:
            break
        width = int(width * 0.85)
    print(f"{target.relative_to(ROOT)}: {small.width}x{small.height}, {target.stat().st_size} bytes")


def main() -> int:
    STATIC.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MPLBACKEND="Agg", IPDIFFIM_DEBUG_DIR=str(Path(tmp) / "debug"))
        bin = Path(sys.executable).parent
        subprocess.run(
            [
                str(bin / "ipdiffim-subtract"),
                str(DATA / "AKB13475I0100_aligned.fits.gz"),
                str(DATA / "AKB13475I0015_aligned.fits.gz"),
                "-o",
                str(Path(tmp) / "out"),
                "--gain",
                "1.9",
                "--read-noise",
                "5",
                "--saturation",
                "60000",
                "-c",
                "kernel.active.spatialKernelOrder=1",
            ],
            check=True,
            env=env,
        )
        shrink(Path(tmp) / "out" / "AKB13475I0015_aligned" / "summary.png", STATIC / "summary_sheet.png", 760)
        code = """
import lsstDebug
import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.cli.builtinData import loadBuiltinPair

def DebugInfo(name):
    di = lsstDebug.getInfo(name)
    if name == "lsst.ip.diffim.psfMatch":
        di.display = True
        di.displayKernelMosaic = True
        di.displayCandidates = True
        di.showBadCandidates = True
        di.candidatesPerPage = 6
        di.maxCandidatePages = 1
    return di

lsstDebug.Info = DebugInfo
config = ipDiffim.ImagePsfMatchTask.ConfigClass()
config.kernel.active.spatialKernelOrder = 1
ipDiffim.ImagePsfMatchTask(config=config).run(*loadBuiltinPair())
"""
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        debug = Path(tmp) / "debug"
        (mosaic,) = debug.glob("*_kernelMosaic.png")
        (page,) = debug.glob("*_candidates_p001.png")
        shrink(mosaic, STATIC / "kernel_mosaic.png", 860)
        shrink(page, STATIC / "candidates_page.png", 900)
    return 0


if __name__ == "__main__":
    sys.exit(main())
