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
"""Time ``PsfMatchTask._solve`` on 100 candidates, AL (27 bases) and DF (441, regularized).

Usage: ``python bench/bench_solve.py``.  Candidates are 100 star stamps of a
synthetic pair (template FWHM 3 px, science 4-5 px, flux ratio 1.3) in a
1024 x 1024 field, spatial kernel order 2, background order 1; each case is
run 3 times on fresh candidates and the median is printed.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import lsst.ip.diffim as ipDiffim
from lsst.images import Box, Image, MaskedImage
from lsst.ip.diffim.math import SpatialCellSet, makeDifferenceMaskSchema
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair


def _mi(a: np.ndarray, v: np.ndarray) -> MaskedImage:
    b = Box.from_shape(a.shape)
    return MaskedImage(Image(a, bbox=b), variance=Image(v, bbox=b), mask_schema=makeDifferenceMaskSchema())


def main() -> None:
    pair = makeSyntheticPair(size=1024, nStars=400, seed=5, transients=[])
    template, science = _mi(pair.template, pair.templateVariance), _mi(pair.science, pair.scienceVariance)
    order = np.argsort(pair.fluxes)[::-1]
    half = 21
    positions = [
        (pair.xs[k], pair.ys[k])
        for k in order
        if half < pair.xs[k] < 1024 - half - 1 and half < pair.ys[k] < 1024 - half - 1
    ][:100]

    for name, configClass in (
        ("AL (27 bases)", ipDiffim.PsfMatchConfigAL),
        ("DF (441 bases, regularized, PCA)", ipDiffim.PsfMatchConfigDF),
    ):
        config = configClass()
        config.fitForBackground = True
        config.spatialKernelOrder = 2
        config.spatialBgOrder = 1
        config.nStarPerCell = -1

        class Task(ipDiffim.PsfMatchTask):
            ConfigClass = configClass

            def _buildCellSet(self):  # not used: the benchmark builds cells itself
                raise NotImplementedError()

        task = Task(config=config)
        basis = ipDiffim.makeKernelBasisList(task.kConfig, 3.0, 4.5)
        times = []
        for _ in range(3):
            cellSet = SpatialCellSet(template.bbox, 128)
            ps = ipDiffim.makePropertySet(task.kConfig)
            for x, y in positions:
                box = Box.factory[int(y) - half : int(y) + half + 1, int(x) - half : int(x) + half + 1]
                cellSet.insertCandidate(ipDiffim.makeKernelCandidate(x, y, template[box], science[box], ps))
            t0 = time.perf_counter()
            task._solve(cellSet, basis)
            times.append(time.perf_counter() - t0)
        md = task.metadata
        print(
            f"{name}: _solve on {len(positions)} candidates: median {statistics.median(times):.3f} s "
            f"(runs {', '.join(f'{t:.3f}' for t in times)}); kernel sum {md['spatialKernelSum']:.4f}"
        )


if __name__ == "__main__":
    main()
