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
"""Benchmark ImagePsfMatchTask end to end on realistic synthetic pairs.

Usage::

    python bench/bench_imagePsfMatch.py [--sizes 1024 2048 4096] [--threads N]

Each size runs in its own subprocess so that its peak resident memory is
its own; the pair is made by yet another process and cached (under
``bench/.cache`` or ``$IPDIFFIM_BENCH_CACHE``), so the timed process starts
as a real job does, by loading its images.  Pairs are deterministic
(seeded): template FWHM 3 px, science
FWHM 4-5 px varying across the field and slightly elliptical, flux ratio
1.3, a background gradient, Poisson-like noise, power-law star fluxes and
~4000 stars per 4096^2.  Configuration: default Alard-Lupton basis with
spatial kernel order 2, background order 1 (fitForBackground on).

End to end is one ``ImagePsfMatchTask.subtractMaskedImages`` call, the
call users make (candidate selection, fit, convolution, subtraction); its
stages are read from the task's own timers (metadata).  The convolution's
image, variance and mask planes are then timed again one by one.

Every time is also printed as a multiple of the machine's yardstick: one
``scipy.fft.rfft2`` + ``irfft2`` round trip of a 4096 x 4096 float32 image.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import resource
import subprocess
import sys
import time


def yardstick(workers: int) -> float:
    """Median of 3 ``rfft2`` + ``irfft2`` round trips of a 4096^2 float32 image."""
    import numpy as np
    import scipy.fft

    a = np.random.default_rng(0).normal(size=(4096, 4096)).astype(np.float32)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        scipy.fft.irfft2(scipy.fft.rfft2(a, workers=workers), s=a.shape, workers=workers)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def coldYardstick() -> float:
    """One ``rfft2`` + ``irfft2`` round trip in a fresh process: its first, cold call."""
    code = (
        "import time, numpy as np, scipy.fft\n"
        "a = np.random.default_rng(0).normal(size=(4096, 4096)).astype(np.float32)\n"
        "t0 = time.perf_counter()\n"
        "scipy.fft.irfft2(scipy.fft.rfft2(a, workers=1), s=a.shape, workers=1)\n"
        "print(time.perf_counter() - t0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def pairPath(size: int) -> pathlib.Path:
    """Where the pair of a size is cached (``$IPDIFFIM_BENCH_CACHE``, default ``bench/.cache``)."""
    import hashlib

    import lsst.ip.diffim.syntheticPairs as generator

    # The generator's source is part of the name: a changed generator makes new pairs.
    version = hashlib.sha256(pathlib.Path(generator.__file__).read_bytes()).hexdigest()[:12]
    root = pathlib.Path(os.environ.get("IPDIFFIM_BENCH_CACHE", pathlib.Path(__file__).parent / ".cache"))
    return root / f"pair{size}_seed42_{version}.npz"


def generate(size: int) -> None:
    """Make the deterministic pair of a size and cache it."""
    import numpy as np

    from lsst.ip.diffim.syntheticPairs import makeSyntheticPair

    nStars = int(4000 * (size / 4096) ** 2)
    pair = makeSyntheticPair(size=size, nStars=nStars, seed=42, transients=[])
    path = pairPath(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        template=pair.template,
        templateVariance=pair.templateVariance,
        science=pair.science,
        scienceVariance=pair.scienceVariance,
        xs=pair.xs,
        ys=pair.ys,
        fluxes=pair.fluxes,
    )
    tmp.replace(path)


def runOne(size: int) -> dict:
    import logging

    import numpy as np

    from lsst.images import Box, Image, MaskedImage
    from lsst.ip.diffim.imagePsfMatch import ImagePsfMatchTask
    from lsst.ip.diffim.math import anyMaskPlaneSet, makeDifferenceMaskSchema
    from lsst.ip.diffim.math.convolve import kernelTermArrays
    from lsst.ip.diffim.math.convolveImage import convolveSpatiallyVarying

    logging.basicConfig(level=logging.WARNING)
    nStars = int(4000 * (size / 4096) ** 2)
    # The pair is made by another process (and cached): generating it here
    # would leave this process's heap in a state no real job starts from.
    path = pairPath(size)
    if not path.exists():
        subprocess.run([sys.executable, __file__, "--generate", str(size)], check=True)
    t0 = time.perf_counter()
    pair = dict(np.load(path))
    tGen = time.perf_counter() - t0

    def mi(a: np.ndarray, v: np.ndarray) -> MaskedImage:
        b = Box.from_shape(a.shape)
        return MaskedImage(
            Image(a, bbox=b), variance=Image(v, bbox=b), mask_schema=makeDifferenceMaskSchema()
        )

    template = mi(pair["template"], pair["templateVariance"])
    science = mi(pair["science"], pair["scienceVariance"])
    xs, ys, fluxes = pair["xs"], pair["ys"], pair["fluxes"]
    del pair
    config = ImagePsfMatchTask.ConfigClass()
    config.kernel.active.fitForBackground = True
    config.kernel.active.spatialKernelOrder = 2
    config.kernel.active.spatialBgOrder = 1
    task = ImagePsfMatchTask(config=config)
    # End to end: the call users make.
    t0 = time.perf_counter()
    result = task.subtractMaskedImages(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    total = time.perf_counter() - t0
    maxrssMB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    diff = result.subtractedMaskedImage
    md = task.metadata

    def utc(key: str) -> float:
        return datetime.datetime.fromisoformat(md[key]).timestamp()

    # Stages of that same call, from the task's own timers (metadata).
    stages: dict[str, float] = {
        "candidate selection": utc("matchMaskedImagesStartUtc") - utc("subtractMaskedImagesStartUtc"),
        "cell set": utc("_solveStartUtc") - utc("matchMaskedImagesStartUtc"),
        "kernel fit (_solve)": utc("_solveEndUtc") - utc("_solveStartUtc"),
    }
    for key in ("timing_singleKernelFit", "timing_spatialFit", "timing_assessment", "timing_diagnostic"):
        if key in md:
            stages["  " + key.removeprefix("timing_")] = float(md[key])
    stages["convolution"] = utc("convolveEndUtc") - utc("convolveStartUtc")
    stages["subtraction"] = utc("subtractEndUtc") - utc("subtractStartUtc")
    # The convolution's three planes, timed again one by one after the run.
    kernel = result.psfMatchingKernel
    termKernels, termX, termY = kernelTermArrays(kernel, template.bbox)
    t1 = time.perf_counter()
    img = convolveSpatiallyVarying(template.image.array, None, None, termKernels, termX, termY)
    split = {"image": time.perf_counter() - t1}
    del img
    t1 = time.perf_counter()
    planes = convolveSpatiallyVarying(
        template.image.array, template.variance.array, None, termKernels, termX, termY
    )
    split["variance"] = time.perf_counter() - t1 - split["image"]
    del planes
    t1 = time.perf_counter()
    planes = convolveSpatiallyVarying(
        template.image.array,
        template.variance.array,
        template.mask.array,
        termKernels,
        termX,
        termY,
    )
    split["mask"] = max(time.perf_counter() - t1 - split["image"] - split["variance"], 0.0)
    del planes
    for name, t in split.items():
        stages[f"  convolve {name} (separately)"] = t
    # The decorrelation afterburner (AlardLuptonSubtractTask's default), on a copy of the difference.
    stages["decorrelation (separately)"] = timeDecorrelation(template, science, diff, kernel)
    candidates = result.kernelCellSet.allCandidates()
    # Quality: normalized difference away from sources.
    norm = diff.image.array / np.sqrt(diff.variance.array)
    ok = np.isfinite(norm) & ~anyMaskPlaneSet(diff.mask, ["NO_DATA"])
    yy, xx = np.ogrid[0:size, 0:size]
    srcMask = np.zeros((size, size), dtype=bool)
    for x, y, f in zip(xs, ys, fluxes, strict=True):
        r = 8 if f < 2e4 else 14
        x0, x1, y0, y1 = (
            int(max(x - r, 0)),
            int(min(x + r + 1, size)),
            int(max(y - r, 0)),
            int(min(y + r + 1, size)),
        )
        srcMask[y0:y1, x0:x1] = True
    values = norm[ok & ~srcMask]
    return {
        "size": size,
        "nStars": nStars,
        "nCandidates": len(candidates),
        "generate": tGen,
        "stages": stages,
        "total": total,
        "kernelSum": float(task.metadata["spatialKernelSum"]),
        "normStd": float(np.std(values)),
        "normPixels": int(values.size),
        "maxrssMB": maxrssMB,
    }


def timeDecorrelation(template: object, science: object, diff: object, kernel: object) -> float:
    """Time `DecorrelateALKernelTask.run` on a copy of the difference (PSFs: the pair's FWHMs 3 and 4.5)."""
    from lsst.images import MaskedImage
    from lsst.images.psfs import GaussianPointSpreadFunction
    from lsst.ip.diffim.imageDecorrelation import DecorrelateALKernelTask

    class WithPsf:
        def __init__(self, mi: object, fwhm: float) -> None:
            self._mi = mi
            self.psf = GaussianPointSpreadFunction(fwhm / 2.3548, bounds=mi.bbox, stamp_size=31)

        def __getattr__(self, name: str) -> object:
            return getattr(self._mi, name)

    copy = MaskedImage(diff.image.copy(), mask=diff.mask.copy(), variance=diff.variance.copy())
    task = DecorrelateALKernelTask()
    t0 = time.perf_counter()
    task.run(WithPsf(science, 4.5), WithPsf(template, 3.0), copy, kernel)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--threads", type=int, default=None, help="IPDIFFIM_NUM_THREADS for the FFTs")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate)
        return 0
    if args.one:
        print(json.dumps(runOne(args.one)))
        return 0
    env = dict(os.environ)
    if args.threads:
        env["IPDIFFIM_NUM_THREADS"] = str(args.threads)
    workers = int(env.get("IPDIFFIM_NUM_THREADS", os.cpu_count() or 1))
    ys = yardstick(1)
    cold = coldYardstick()
    print(
        f"yardstick (rfft2 + irfft2 of 4096^2 float32, 1 thread, median of 3): {ys:.3f} s; "
        f"with {workers} threads: {yardstick(workers):.3f} s; first call in a fresh process: {cold:.3f} s"
    )
    print("all multiples below use the warm single-thread median (the stricter yardstick)")
    results = {}
    for size in args.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[size] = r
        print(
            f"\n{size} x {size}: {r['nStars']} stars, {r['nCandidates']} candidates "
            f"(cached pair loaded in {r['generate']:.2f} s)"
        )
        for name, t in r["stages"].items():
            print(f"  {name:36s} {t:7.3f} s  {t / ys:6.2f} yardsticks")
        print(
            f"  {'end to end':36s} {r['total']:7.3f} s  {r['total'] / ys:6.2f} yardsticks "
            f"({r['total'] / cold:.2f} cold yardsticks)"
        )
        dec = r["stages"]["decorrelation (separately)"]
        print(f"  decorrelation adds {100 * dec / r['total']:.1f}% to end to end")
        print(
            f"  peak RSS {r['maxrssMB']:.0f} MB; kernel sum {r['kernelSum']:.4f} (truth 1.3); "
            f"normalized difference std away from sources {r['normStd']:.4f} ({r['normPixels']} px)"
        )
    if 2048 in results and 4096 in results:
        print(f"\n4096 / 2048 time ratio: {results[4096]['total'] / results[2048]['total']:.2f} (pixels x4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
