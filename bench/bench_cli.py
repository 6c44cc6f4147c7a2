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
"""Benchmark the whole job as users run it: ``ipdiffim-subtract`` against HOTPANTS.

Usage::

    python bench/bench_cli.py [--sizes 1024 2048 4096] [--runs 3] [--what cli subtract pipetask]
                              [--profile SIZE]

Every measurement is a whole process, started fresh: wall time, CPU time
(user + system of the process and its threads) and peak resident memory
(``wait4``'s ``ru_maxrss``), over ``--runs`` runs, printed as the median and
the range.  The pairs are simulated (`lsst.ip.diffim.syntheticPairs`, seed
42): 1000 stars per 1024^2, template FWHM 3 px, science FWHM 4-5 px varying
across the field, flux ratio 1.3, a background gradient; each image is a
multi-extension FITS file (primary HDU the image, a ``VARIANCE``
extension), cached under ``bench/.cache`` (or ``$IPDIFFIM_BENCH_CACHE``).

What is timed, on the same pair, one after the other in each round (so that
load from the other sessions on the machine falls on both alike):

``cli``
    ``ipdiffim-subtract TEMPLATE SCIENCE -o OUT`` with spatial kernel order 2
    and background order 1; the FWHMs are estimated, all products and the
    summary sheet are written.
``hotpants``
    HOTPANTS with the command line of the published comparisons (when a
    ``hotpants`` executable is on ``PATH``).  It is not a dependency; build it
    outside the project from https://github.com/acbecker/hotpants with
    ``make CFITSIOINCDIR=/usr/include LIBDIR=/usr/lib/x86_64-linux-gnu
    COPTS="-funroll-loops -O3 -std=c99 -Wall -D_GNU_SOURCE -fcommon" hotpants``
    (needs libcfitsio-dev) and put the binary on ``PATH``.
``subtract``
    A Python process that imports the package, reads the two files with
    astropy and calls ``ipDiffim.subtract`` on the arrays (nothing written).
``pipetask``
    One ``SubtractImagesTask`` quantum under ``pipetask run`` on a Butler
    repository holding the pair (made once per size); the whole command is
    timed (graph building included) and the quantum's own time is read from
    the task's metadata.

``cli-baseline``
    The ``cli`` command run with the sources of another checkout first on
    ``PYTHONPATH`` (``$IPDIFFIM_BENCH_BASELINE``, e.g. the ``python`` folder
    of ``git archive`` of an earlier commit), for before/after figures
    measured alternately.

``--profile SIZE`` runs the CLI once under cProfile and prints the top of
the cumulative profile, and the import time of the package and of
``ipdiffim-subtract --help``.

The package's sources are byte-compiled first (`compileSources`), as an
installed wheel has them.

Every time is also printed in units of the machine's yardstick: one
``scipy.fft.rfft2`` + ``irfft2`` round trip of a 4096 x 4096 float32 image
(single thread, median of 3).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = pathlib.Path(sys.executable).parent
CONFIG = ["kernel.active.spatialKernelOrder=2", "kernel.active.spatialBgOrder=1"]


def yardstick() -> float:
    """Median of 3 ``rfft2`` + ``irfft2`` round trips of a 4096^2 float32 image (1 thread)."""
    import numpy as np
    import scipy.fft

    a = np.random.default_rng(0).normal(size=(4096, 4096)).astype(np.float32)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        scipy.fft.irfft2(scipy.fft.rfft2(a, workers=1), s=a.shape, workers=1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compileSources() -> int:
    """Byte-compile the package's sources, as installing a wheel does; return the modules compiled.

    An editable install run with ``PYTHONDONTWRITEBYTECODE`` set (as on this
    project's machines) never writes ``.pyc`` files, so every timed process
    would compile the package's modules from source again (0.1-0.3 s);
    Python reads existing ``.pyc`` files whatever that variable says.
    """
    import compileall

    import lsst.ip.diffim

    root = pathlib.Path(lsst.ip.diffim.__file__).parent
    compileall.compile_dir(str(root), quiet=1)
    return sum(1 for _ in root.rglob("__pycache__/*.pyc"))


def cacheDir() -> pathlib.Path:
    import lsst.ip.diffim.syntheticPairs as generator

    version = hashlib.sha256(pathlib.Path(generator.__file__).read_bytes()).hexdigest()[:12]
    root = pathlib.Path(os.environ.get("IPDIFFIM_BENCH_CACHE", HERE / ".cache"))
    return root / f"cli_seed42_{version}"


def pairFiles(size: int) -> tuple[pathlib.Path, pathlib.Path]:
    d = cacheDir()
    return d / f"template{size}.fits", d / f"science{size}.fits"


def generate(size: int) -> None:
    """Write the MEF pair of a size (image in the primary HDU, a VARIANCE extension)."""
    import numpy as np
    from astropy.io import fits

    from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

    nStars = int(round(1000 * (size / 1024) ** 2))
    pair = makeSyntheticPair(size=size, nStars=nStars, seed=42, transients=[])
    tPath, sPath = pairFiles(size)
    tPath.parent.mkdir(parents=True, exist_ok=True)
    for path, image, variance, fwhm in (
        (tPath, pair.template, pair.templateVariance, 3.0),
        (sPath, pair.science, pair.scienceVariance, 4.5),
    ):
        primary = fits.PrimaryHDU(np.asarray(image, dtype=np.float32))
        primary.header["NSTARS"] = (nStars, "simulated stars")
        primary.header["TRUEFWHM"] = (fwhm, "simulated PSF FWHM (px), centre of the field")
        hdul = fits.HDUList([primary, fits.ImageHDU(np.asarray(variance, dtype=np.float32), name="VARIANCE")])
        tmp = path.with_suffix(".tmp.fits")
        hdul.writeto(tmp, overwrite=True)
        tmp.replace(path)


def ensurePair(size: int) -> tuple[pathlib.Path, pathlib.Path]:
    tPath, sPath = pairFiles(size)
    if not (tPath.exists() and sPath.exists()):
        subprocess.run([sys.executable, __file__, "--generate", str(size)], check=True)
    return tPath, sPath


def timed(cmd: list[str], cwd: pathlib.Path | None = None, env: dict | None = None) -> dict:
    """Run a command as its own process; return wall, CPU and peak RSS (from ``wait4``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out.decode(errors='replace')}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rssGB": usage.ru_maxrss / 1024.0**2,
        "output": out.decode(errors="replace"),
    }


def cliCommand(size: int, outDir: pathlib.Path, extra: list[str] | None = None) -> list[str]:
    tPath, sPath = pairFiles(size)
    cmd = [str(BIN / "ipdiffim-subtract"), str(tPath), str(sPath), "-o", str(outDir), "-q"]
    for item in CONFIG:
        cmd += ["-c", item]
    return cmd + (extra or [])


def hotpantsCommand(size: int, outDir: pathlib.Path) -> list[str]:
    tPath, sPath = pairFiles(size)
    stamps = str(20 * size // 1024)
    return (
        ["hotpants", "-inim", str(sPath), "-tmplim", str(tPath)]
        + ["-outim", str(outDir / "diff.fits"), "-oni", str(outDir / "noise.fits")]
        + "-tu 1e6 -iu 1e6 -tuk 1e6 -iuk 1e6 -tl -1000 -il -1000 -tg 4 -tr 5 -ig 1 -ir 5".split()
        + "-r 12 -rss 18 -ko 2 -bgo 1 -ng 3 6 0.7 4 1.5 2 3.0 -c t -n i -v 0".split()
        + ["-nsx", stamps, "-nsy", stamps]
    )


SUBTRACT_SCRIPT = """
import sys, time, json
t0 = time.perf_counter()
import lsst.ip.diffim as ipDiffim
from astropy.io import fits
tImport = time.perf_counter() - t0
def load(path):
    with fits.open(path) as hdul:
        return hdul[0].data.astype("float32"), hdul["VARIANCE"].data.astype("float32")
t, tv = load(sys.argv[1])
s, sv = load(sys.argv[2])
config = ipDiffim.ImagePsfMatchTask.ConfigClass()
config.kernel.active.fitForBackground = True
config.kernel.active.spatialKernelOrder = 2
config.kernel.active.spatialBgOrder = 1
t1 = time.perf_counter()
r = ipDiffim.subtract(t, s, templateVariance=tv, scienceVariance=sv, config=config)
print(json.dumps({"import": tImport, "call": time.perf_counter() - t1, "kernelSum": r.kernelSum}))
"""


def subtractCommand(size: int) -> list[str]:
    tPath, sPath = pairFiles(size)
    return [sys.executable, "-c", SUBTRACT_SCRIPT, str(tPath), str(sPath)]


REPO_SCRIPT = """
import sys
from astropy.io import fits
import numpy as np
from lsst.images.psfs import GaussianPointSpreadFunction
from lsst.images import Box
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.cli.makeDemoRepo import DEMO_INSTRUMENT, makeDemoRepo
images = []
for path in sys.argv[2:4]:
    with fits.open(path) as hdul:
        image = hdul[0].data.astype("float32")
        variance = hdul["VARIANCE"].data.astype("float32")
        fwhm = float(hdul[0].header["TRUEFWHM"])
    psf = GaussianPointSpreadFunction(fwhm / 2.3548, bounds=Box.from_shape(image.shape), stamp_size=25)
    images.append(makeVisitImage(image, variance, psf=psf, band="r", instrument=DEMO_INSTRUMENT,
                                 visit=1, detectorId=0, physicalFilter="demo_r"))
makeDemoRepo(sys.argv[1], pairs=[(1, 0, images[0], images[1])])
"""

QUANTUM_SCRIPT = """
import sys, json, datetime
from lsst.daf.butler import Butler
butler = Butler.from_config(sys.argv[1], collections=[sys.argv[2]])
md = butler.get("subtractImages_metadata", instrument="DemoCam", visit=1, detector=0)
q = md["quantum"]
start = datetime.datetime.fromisoformat(q["prepUtc"]).timestamp()
end = datetime.datetime.fromisoformat(q["endUtc"]).timestamp()
print(json.dumps({"quantum": end - start, "rssGB": q.get("endMaxResidentSetSize", 0) / 1024.0**3}))
"""


def ensureRepo(size: int) -> pathlib.Path:
    # "-plain": made by makeDemoRepo with the CLI's plane compression (float planes uncompressed,
    # mask RICE_1) for the inputs and the outputs; repositories of earlier runs stored GZIP_2 planes.
    repo = cacheDir() / f"repo{size}-plain"
    if not (repo / "butler.yaml").exists():
        shutil.rmtree(repo, ignore_errors=True)
        tPath, sPath = ensurePair(size)
        subprocess.run([sys.executable, "-c", REPO_SCRIPT, str(repo), str(tPath), str(sPath)], check=True)
    return repo


def pipetaskRun(size: int, run: int) -> dict:
    repo = ensureRepo(size)
    collection = f"bench/diff_{os.getpid()}_{run}_{time.time_ns()}"
    cmd = [str(BIN / "pipetask"), "run", "-b", str(repo), "-i", "demo/inputs", "-o", collection]
    cmd += ["-p", str(ROOT / "pipelines" / "DifferenceImaging.yaml"), "--register-dataset-types"]
    for item in CONFIG:
        cmd += ["-c", f"subtractImages:psfMatch.{item}"]
    r = timed(cmd)
    q = subprocess.run(
        [sys.executable, "-c", QUANTUM_SCRIPT, str(repo), collection], capture_output=True, text=True
    )
    if q.returncode == 0:
        r.update({f"quantum_{k}": v for k, v in json.loads(q.stdout.strip().splitlines()[-1]).items()})
    return r


def runOnce(what: str, size: int, run: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-cli-{what}-") as tmp:
        out = pathlib.Path(tmp)
        if what == "cli":
            return timed(cliCommand(size, out / "out"))
        if what == "cli-no-plots":
            return timed(cliCommand(size, out / "out", ["--no-plots"]))
        if what == "cli-baseline":
            # The same command with another checkout's sources first on the path (before/after figures).
            env = dict(os.environ, PYTHONPATH=os.environ["IPDIFFIM_BENCH_BASELINE"])
            cmd = cliCommand(size, out / "out")
            return timed([sys.executable, "-m", "lsst.ip.diffim.cli.subtract"] + cmd[1:], env=env)
        if what == "hotpants":
            return timed(hotpantsCommand(size, out), cwd=out)
        if what == "subtract":
            r = timed(subtractCommand(size))
            r.update(json.loads(r["output"].strip().splitlines()[-1]))
            return r
        if what == "pipetask":
            return pipetaskRun(size, run)
    raise ValueError(what)


def fmt(values: list[float], unit: str = "s", digits: int = 2) -> str:
    med = statistics.median(values)
    return f"{med:7.{digits}f} {unit} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def profile(size: int, ys: float) -> None:
    """Profile one CLI run (cProfile, main thread) and the imports."""
    ensurePair(size)
    with tempfile.TemporaryDirectory(prefix="bench-cli-prof-") as tmp:
        prof = cacheDir() / f"cli{size}.prof"
        cmd = cliCommand(size, pathlib.Path(tmp) / "out")
        cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "lsst.ip.diffim.cli.subtract"] + cmd[
            1:
        ]
        r = timed(cmd)
        print(
            f"\nprofile of one CLI run at {size}^2: wall {r['wall']:.2f} s ({r['wall'] / ys:.1f} yardsticks)"
        )
        import pstats

        stats = pstats.Stats(str(prof))
        stats.sort_stats("cumulative").print_stats(40)
        print("the package's own functions (cumulative):")
        stats.sort_stats("cumulative").print_stats(r"ip/diffim/", 30)
        print(f"(profile kept in {prof})")
    for label, cmd in (
        ("import lsst.ip.diffim", [sys.executable, "-c", "import lsst.ip.diffim"]),
        ("ipdiffim-subtract --help", [str(BIN / "ipdiffim-subtract"), "--help"]),
        ("ipdiffim-subtract (argument error)", [str(BIN / "ipdiffim-subtract")]),
    ):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True)
        print(f"{label:40s} {time.perf_counter() - t0:6.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--what",
        nargs="+",
        default=["cli", "subtract", "pipetask"],
        choices=["cli", "cli-no-plots", "cli-baseline", "subtract", "pipetask"],
        help="what to time beside HOTPANTS (HOTPANTS runs whenever it is on PATH); cli-baseline: the CLI "
        "with the sources of another checkout (the 'python' folder named by $IPDIFFIM_BENCH_BASELINE, "
        "e.g. a `git archive` of an earlier commit) first on the path",
    )
    parser.add_argument("--no-hotpants", action="store_true", help="do not run HOTPANTS even if on PATH")
    parser.add_argument("--profile", type=int, metavar="SIZE", help="profile one CLI run at SIZE and stop")
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate)
        return 0
    print(f"package sources byte-compiled ({compileSources()} .pyc files), as a wheel install has them")
    ys = yardstick()
    print(f"yardstick (rfft2 + irfft2 of 4096^2 float32, 1 thread, median of 3): {ys:.3f} s")
    if args.profile:
        profile(args.profile, ys)
        return 0
    what = list(args.what)
    if shutil.which("hotpants") and not args.no_hotpants:
        what.insert(1 if "cli" in what else 0, "hotpants")
    else:
        print("hotpants not on PATH: no side-by-side figures (see this script's docstring to build it)")
    results: dict[int, dict[str, list[dict]]] = {}
    for size in args.sizes:
        ensurePair(size)
        if "pipetask" in what:
            ensureRepo(size)
        results[size] = {w: [] for w in what}
        for run in range(args.runs):  # interleaved: one of each per round
            for w in what:
                r = runOnce(w, size, run)
                results[size][w].append(r)
                print(
                    f"  [{size} run {run + 1}] {w:12s} wall {r['wall']:7.2f} s "
                    f"({r['wall'] / ys:5.1f} yardsticks) CPU {r['cpu']:7.2f} s, peak RSS {r['rssGB']:.2f} GB",
                    flush=True,
                )
        print(
            f"\n{size} x {size} ({int(round(1000 * (size / 1024) ** 2))} stars), {args.runs} runs: "
            "median [min-max]"
        )
        print(f"  {'':12s} {'wall':>22s} {'yardsticks':>10s} {'CPU':>22s} {'peak RSS':>24s}")
        for w in what:
            rs = results[size][w]
            walls = [r["wall"] for r in rs]
            print(
                f"  {w:12s} {fmt(walls)} {statistics.median(walls) / ys:10.1f} "
                f"{fmt([r['cpu'] for r in rs])} {fmt([r['rssGB'] for r in rs], 'GB')}"
            )
            if w == "subtract":
                print(
                    f"  {'':12s}   (import {fmt([r['import'] for r in rs])}, "
                    f"subtract() call {fmt([r['call'] for r in rs])})"
                )
            if w == "pipetask" and "quantum_quantum" in rs[0]:
                # What ctrl_mpexec spends around the quantum (imports, the quantum graph, the packages
                # dataset, the Butler, exit): the floor of any one-quantum `pipetask run`.
                own = [r["wall"] - r["quantum_quantum"] for r in rs]
                print(
                    f"  {'':12s}   (quantum {fmt([r['quantum_quantum'] for r in rs])}, from its metadata; "
                    f"pipetask around it {fmt(own)})"
                )
        if "hotpants" in what:
            hp = statistics.median(r["wall"] for r in results[size]["hotpants"])
            for w in what:
                if w != "hotpants":
                    ours = statistics.median(r["wall"] for r in results[size][w])
                    # Issue 17's budgets: within 1.5x of HOTPANTS at 1024^2, 5x faster at 4096^2.
                    budget = 1.5 if size <= 1024 else (0.2 if size >= 4096 else None)
                    verdict = ""
                    if budget is not None:
                        verdict = f"; ours / HOTPANTS {ours / hp:.2f}, budget {budget:g}: " + (
                            "holds" if ours <= budget * hp else "not met"
                        )
                    print(f"  HOTPANTS / {w}: {hp / ours:.2f}x (median wall{verdict})")
                    if w == "pipetask" and "quantum_quantum" in results[size][w][0]:
                        quantum = statistics.median(r["quantum_quantum"] for r in results[size][w])
                        print(f"  HOTPANTS / pipetask quantum alone: {hp / quantum:.2f}x")
    if 1024 in results and 4096 in results:
        for w in what:
            ratio = statistics.median(r["wall"] for r in results[4096][w]) / statistics.median(
                r["wall"] for r in results[1024][w]
            )
            print(f"4096^2 / 1024^2 time ratio, {w}: {ratio:.1f} (pixels x16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
