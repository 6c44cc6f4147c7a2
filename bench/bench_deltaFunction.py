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
"""Benchmark the delta-function basis (regularized, upstream's DF default) as users run it.

Usage::

    python bench/bench_deltaFunction.py [--size 2048]

Runs ``ipdiffim-subtract -c kernel.name=DF`` (spatial kernel order 2,
background order 1) as a whole process on the simulated pair of
``bench/bench_cli.py`` (made and cached by it), and prints the wall and CPU
time, the peak resident memory and the progress lines of the candidate
builds, whose last lines give the GFLOP/s reached building and solving the
per-candidate systems.  Beside them: a numpy matrix multiply of the same
shapes (``M = C^T C`` with ``C`` the ``npix x nloc`` design matrix) and a
LAPACK LU factorization of ``M``, on one thread as the fit runs them.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_cli  # noqa: E402


def matmulRate(nloc: int, npix: int) -> tuple[float, float, float]:
    """GFLOP/s of ``C^T C`` and of ``C^T C`` + LU of it, and the LU time (one thread)."""
    import numpy as np
    import scipy.linalg
    from threadpoolctl import threadpool_limits

    design = np.random.default_rng(0).normal(size=(npix, nloc))
    with threadpool_limits(1):
        m = design.T @ design + np.eye(nloc)
        scipy.linalg.lu_factor(m, check_finite=False)
        n = 20
        # CPU time of this thread, as the fit's progress lines count it (steadier on a loaded machine).
        t0 = time.thread_time()
        for _ in range(n):
            design.T @ design
        tMul = (time.thread_time() - t0) / n
        t0 = time.thread_time()
        for _ in range(n):
            scipy.linalg.lu_factor(m, check_finite=False)
        tLu = (time.thread_time() - t0) / n
    flopsMul = 2.0 * nloc * nloc * npix
    return flopsMul / tMul / 1e9, (flopsMul + 2.0 / 3.0 * nloc**3) / (tMul + tLu) / 1e9, tLu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    ys = bench_cli.yardstick()
    print(f"yardstick (rfft2 + irfft2 of 4096^2 float32, 1 thread, median of 3): {ys:.3f} s")
    bench_cli.ensurePair(args.size)
    with tempfile.TemporaryDirectory(prefix="bench-df-") as tmp:
        cmd = bench_cli.cliCommand(
            args.size, pathlib.Path(tmp) / "out", ["--no-plots", "-c", "kernel.name=DF"]
        )
        cmd.remove("-q")  # the progress lines are INFO
        r = bench_cli.timed(cmd)
    print(
        f"DF basis (441 terms, regularized, PCA spatial basis) at {args.size}^2, whole process: "
        f"wall {r['wall']:.1f} s ({r['wall'] / ys:.0f} yardsticks), CPU {r['cpu']:.1f} s, "
        f"peak RSS {r['rssGB']:.2f} GB"
    )
    totals = []
    for line in r["output"].splitlines():
        if "candidate systems" in line or "kernel sum" in line or "candidates:" in line:
            print("  " + line.strip())
        m = re.search(
            r"built (\d+) candidate systems in .*: ([\d.]+) GFLOP in ([\d.]+) s .* ([\d.]+) GFLOP/s", line
        )
        if m:
            totals.append((int(m[1]), float(m[2]), float(m[3])))
    if totals:
        n = sum(t[0] for t in totals)
        gflop = sum(t[1] for t in totals)
        seconds = sum(t[2] for t in totals)
        perSystem = gflop * 1e9 / n
        nloc = 442
        npix = int(round((perSystem - 2.0 / 3.0 * nloc**3) / (2.0 * nloc * nloc + 2.0 * nloc)))
        mul, mulLu, tLu = matmulRate(nloc, npix)
        print(
            f"per-candidate build + solve: {n} systems ({nloc} x {nloc}, {npix} pixels), "
            f"{gflop / seconds:.1f} GFLOP/s (CPU time); ratio to numpy's C^T C {gflop / seconds / mul:.2f}"
        )
        print(
            f"numpy on one thread, same shapes: C^T C {mul:.1f} GFLOP/s; C^T C + LU {mulLu:.1f} GFLOP/s "
            f"(LU {tLu * 1e3:.1f} ms); ratio ours / (C^T C + LU) {gflop / seconds / mulLu:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
