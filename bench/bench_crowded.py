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
"""Measure the difference images of crowded real pairs: ours against HOTPANTS.

Usage::

    python bench/bench_crowded.py [--data DIR] [--pairs 0015:0028 0015:0091 ...]
        [-c KEY=VALUE ...] [--hotpants {none,default,grid}] [--json OUT]

For each ``TEMPLATE:SCIENCE`` pair of the SAAO bulge frames (``aligned/``
folder of ``pydia_saao_bulge_crowded``) it runs our defaults the way
``ipdiffim-subtract`` does (inputs read by the CLI's reader, the header FWHM,
``fitForBackground`` on, the narrower PSF convolved; ``-c`` adds config
overrides) and, when ``hotpants`` is on PATH, HOTPANTS (one documented
command line, or the best of a grid over ``-r``, ``-rss``, ``-nsx/-nsy``,
``-ko``).  Measures, on the same pixels and with the same variance (ours)
for both:

- ``brightChi2``: median over the brightest quartile of the unsaturated
  reference stars of the mean ``(D / sigma)^2`` in an aperture of radius
  one science FWHM;
- ``frac5``: fraction of valid pixels with ``|D / sigma| > 5``;
- for our kernel candidates (those the spatial fit used): count, median
  brightness rank of the nearest reference star among the unsaturated ones
  (1 = brightest), how many of the 20 brightest unsaturated stars are used,
  how many sit on a saturated star, and the median offset (pixels) between
  the stamp centre and that star, with the number above 3 px.

Reference stars are `sep` detections (deblended) on the science image,
background subtracted; "saturated" stars have a pixel above
``--saturation`` within 2 FWHM in either image.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import sep
from astropy.io import fits

DEFAULT_DATA = "/work/shared/data/real/pydia_saao_bulge_crowded/aligned"
DEFAULT_PAIRS = ["0015:0028", "0015:0091", "0015:0100", "0001:0037"]


def framePath(data: str, frame: str) -> str:
    return str(Path(data) / f"AKB13475I{frame}_aligned.fits")


def referenceStars(science: np.ndarray, template: np.ndarray, fwhm: float, saturation: float) -> dict:
    """Deblended detections on the science image, with a saturation flag."""
    data = np.ascontiguousarray(science, dtype=np.float64)
    bkg = sep.Background(data, bw=32, bh=32)
    sub = data - bkg.back()
    sep.set_extract_pixstack(2_000_000)
    objects = sep.extract(sub, 5.0, err=bkg.globalrms, minarea=5, deblend_cont=0.001)
    ny, nx = data.shape
    x, y = objects["x"], objects["y"]
    flux, _, _ = sep.sum_circle(sub, x, y, fwhm * 1.5, bkgann=None)
    order = np.argsort(-flux)
    x, y, flux = x[order], y[order], flux[order]
    both = np.maximum(science, template)
    r = int(np.ceil(2 * fwhm))
    sat = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        xi, yi = int(round(x[i])), int(round(y[i]))
        box = both[max(yi - r, 0) : yi + r + 1, max(xi - r, 0) : xi + r + 1]
        sat[i] = box.size == 0 or bool(np.nanmax(box) >= saturation)
    # Brightness rank among the unsaturated stars (1 = brightest); saturated stars rank 0.
    rank = np.zeros(len(x), dtype=np.int64)
    rank[~sat] = np.arange(1, int((~sat).sum()) + 1)
    return {"x": x, "y": y, "flux": flux, "saturated": sat, "rank": rank}


def measureDifference(
    diff: np.ndarray, sigma: np.ndarray, valid: np.ndarray, stars: dict, fwhm: float, border: int
) -> dict:
    """Bright-quartile aperture chi^2 and |D/sigma| > 5 fraction."""
    ny, nx = diff.shape
    inner = np.zeros_like(valid)
    inner[border : ny - border, border : nx - border] = True
    use = valid & inner & np.isfinite(diff) & (sigma > 0)
    z = np.where(use, diff / np.where(sigma > 0, sigma, 1.0), 0.0)
    frac5 = float(np.count_nonzero(np.abs(z[use]) > 5) / max(np.count_nonzero(use), 1))
    radius = fwhm
    yy, xx = np.mgrid[0:ny, 0:nx]
    good = ~stars["saturated"]
    xs, ys = stars["x"], stars["y"]
    inside = (xs > border + radius) & (xs < nx - border - radius) & (ys > border + radius)
    inside &= ys < ny - border - radius
    cand = np.flatnonzero(good & inside)
    bright = cand[: max(len(cand) // 4, 1)]
    chi2 = []
    r = int(np.ceil(radius))
    for i in bright:
        xi, yi = int(round(xs[i])), int(round(ys[i]))
        sl = (slice(yi - r, yi + r + 1), slice(xi - r, xi + r + 1))
        ap = ((xx[sl] - xs[i]) ** 2 + (yy[sl] - ys[i]) ** 2 <= radius**2) & use[sl]
        if ap.sum() < 0.5 * np.pi * radius**2:
            continue
        chi2.append(float(np.mean(z[sl][ap] ** 2)))
    return {
        "brightChi2": float(np.median(chi2)) if chi2 else float("nan"),
        "nBright": len(chi2),
        "frac5": frac5,
        "nPix": int(np.count_nonzero(use)),
    }


def _setSaturated(image: object, level: float) -> None:
    """Flag pixels at or above ``level`` in the SAT plane (what ``--saturation`` does)."""
    from lsst.ip.diffim.math.masks import maskPlaneBitmask

    mask = image.mask  # type: ignore[attr-defined]
    bits = maskPlaneBitmask(mask.schema, ["SAT"]).astype(mask.array.dtype)
    mask.array[np.asarray(image.image.array) >= level] |= bits  # type: ignore[attr-defined]


def runOurs(
    templatePath: str, sciencePath: str, overrides: list[str], saturation: float | None = None
) -> dict:
    """Run the task as ipdiffim-subtract does; return arrays and candidates."""
    from lsst.ip.diffim import ImagePsfMatchTask
    from lsst.ip.diffim.adapters.psf import estimateFwhmFromImage
    from lsst.ip.diffim.cli.configOverrides import applyConfigOverrides as _applyOverrides
    from lsst.ip.diffim.cli.subtract import readInput
    from lsst.ip.diffim.math.masks import anyMaskPlaneSet
    from lsst.ip.diffim.math.spatialCell import SpatialCellCandidateStatus

    config = ImagePsfMatchTask.ConfigClass()
    for item in overrides:
        if item.replace(" ", "").startswith("kernel.name="):
            config.kernel.name = item.split("=", 1)[1].strip().strip("'\"")
    config.kernel.active.fitForBackground = True
    _applyOverrides(config, [], [o for o in overrides if not o.replace(" ", "").startswith("kernel.name=")])
    template, tFwhm = readInput(templatePath)
    science, sFwhm = readInput(sciencePath)
    if saturation:
        _setSaturated(template, saturation)
        _setSaturated(science, saturation)
    tFwhm = tFwhm or estimateFwhmFromImage(template)
    sFwhm = sFwhm or estimateFwhmFromImage(science)
    convolveTemplate = tFwhm <= sFwhm
    task = ImagePsfMatchTask(config=config)
    result = task.run(
        template, science, templateFwhmPix=tFwhm, scienceFwhmPix=sFwhm, convolveTemplate=convolveTemplate
    )
    diff = result.subtractedMaskedImage
    bbox = diff.bbox
    cands = []
    for cand in result.kernelCellSet.allCandidates():
        if cand.getStatus() != SpatialCellCandidateStatus.GOOD:
            continue
        source = getattr(cand, "_stampSource", None)
        box = source[2] if source is not None else None
        if box is not None:
            cx = 0.5 * (box.x.start + box.x.stop - 1) - bbox.x.start
            cy = 0.5 * (box.y.start + box.y.stop - 1) - bbox.y.start
        else:
            cx, cy = cand.getXCenter() - bbox.x.start, cand.getYCenter() - bbox.y.start
        cands.append((cx, cy))
    meta = task.getFullMetadata().to_dict()
    flat = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = value

    walk("", meta)
    ksum = next((v for k, v in flat.items() if k.endswith("spatialKernelSum")), float("nan"))
    return {
        "diff": np.asarray(diff.image.array, dtype=float),
        "sigma": np.sqrt(np.asarray(diff.variance.array, dtype=float)),
        "valid": ~anyMaskPlaneSet(diff.mask, ["NO_DATA", "EDGE"]),
        "candidates": np.array(cands).reshape(-1, 2),
        "kernelSum": float(np.ravel([ksum])[0]),
        "kernelSize": int(result.psfMatchingKernel.getWidth()),
        "convolveTemplate": convolveTemplate,
        "fwhm": (tFwhm, sFwhm),
        "metadata": flat,
    }


def runCli(
    templatePath: str, sciencePath: str, cliArgs: list[str], outDir: str, cli: str | None = None
) -> dict:
    """Run ``ipdiffim-subtract`` as a whole process; return what `runOurs` returns, from its outputs.

    The difference, variance and unusable pixels (NO_DATA, EDGE, SAT, BAD) are read back from the
    written FITS file with astropy (``bench_realFrames``' reader); the kernel sum and FWHMs from
    ``metadata.json``.
    """
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_realFrames import _readDifference

    cli = cli or str(Path(sys.executable).parent / "ipdiffim-subtract")
    shutil.rmtree(outDir, ignore_errors=True)
    cmd = [cli, templatePath, sciencePath, "-o", outDir, "-q", *cliArgs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    image, variance, bad = _readDifference(Path(outDir))
    meta = json.loads(next(Path(outDir).rglob("*metadata.json")).read_text())
    summary = meta.get("summary", {})
    flat = {k: v for k, v in meta.get("metadata", {}).items()}
    kernelSize = next((v for k, v in flat.items() if k.endswith(("ALKernelSize", "kernelSize"))), 0)
    kernelFiles = list(Path(outDir).rglob("kernel.fits"))
    if not kernelSize and kernelFiles:  # a delta-function basis has no ALKernelSize: the basis' width
        with fits.open(kernelFiles[0]) as hdul:
            kernelSize = int(hdul["BASIS"].header["NAXIS1"])
    convolveTemplate = "--convolve" not in cliArgs or cliArgs[cliArgs.index("--convolve") + 1] != "science"
    return {
        "diff": image,
        "sigma": np.sqrt(variance),
        "valid": ~bad & np.isfinite(image),
        "candidates": np.zeros((0, 2)),
        "kernelSum": float(summary.get("kernelSum", float("nan"))),
        "kernelSize": int(np.ravel([kernelSize])[0] or 0),
        "convolveTemplate": convolveTemplate,
        "metadata": flat,
        "command": " ".join(cmd),
    }


def starFreeStats(
    diff: np.ndarray, sigma: np.ndarray, valid: np.ndarray, template: str, science: str
) -> dict:
    """Robust std and median of ``D / sigma`` off the sources (``bench_realFrames``' source mask)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_realFrames import _readPlain, sourceMask

    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / sigma
    free = valid & np.isfinite(z) & ~sourceMask([_readPlain(template), _readPlain(science)], 4)
    q25, q50, q75 = np.percentile(z[free], [25, 50, 75])
    return {"std": float((q75 - q25) / 1.349), "median": float(q50)}


def candidateStats(cands: np.ndarray, stars: dict) -> dict:
    if len(cands) == 0:
        return {"nCandidates": 0}
    d = np.hypot(cands[:, :1] - stars["x"][None, :], cands[:, 1:] - stars["y"][None, :])
    nearest = np.argmin(d, axis=1)
    offsets = d[np.arange(len(cands)), nearest]
    ranks = stars["rank"][nearest]
    unsat = ranks > 0
    return {
        "nCandidates": len(cands),
        "nStars": int(np.count_nonzero(stars["rank"] > 0)),
        "nOnSaturated": int(np.count_nonzero(~unsat)),
        "medianRank": float(np.median(ranks[unsat])) if unsat.any() else float("nan"),
        "nTop20": int(len(set(ranks[unsat & (ranks <= 20)]))),
        "medianOffset": float(np.median(offsets)),
        "nOffsetOver3": int(np.count_nonzero(offsets > 3)),
    }


def hotpantsArgs(r: int, rss: int, ns: int, ko: int, saturation: float, gain: float, rn: float) -> list[str]:
    return [
        "-r", str(r), "-rss", str(rss), "-nsx", str(ns), "-nsy", str(ns), "-ko", str(ko), "-bgo", "1",
        "-tu", str(saturation), "-iu", str(saturation), "-tuk", str(saturation), "-iuk", str(saturation),
        "-tl", "-1000", "-il", "-1000", "-tg", str(gain), "-ig", str(gain), "-tr", str(rn), "-ir", str(rn),
        "-n", "i", "-v", "0",
    ]  # fmt: skip


def runHotpants(templatePath: str, sciencePath: str, args: list[str], workdir: str) -> np.ndarray | None:
    out = os.path.join(workdir, "hp_diff.fits")
    cmd = ["hotpants", "-inim", sciencePath, "-tmplim", templatePath, "-outim", out, *args]
    if os.path.exists(out):
        os.remove(out)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not os.path.exists(out):
        return None
    diff = fits.getdata(out).astype(float)
    os.remove(out)
    diff[np.abs(diff) < 1e-20] = np.nan  # HOTPANTS' fill value of invalid pixels
    return diff


def hotpantsGrid(mode: str, fwhmMax: float) -> list[tuple[int, int, int, int]]:
    sigma = fwhmMax / 2.3548
    r0 = int(round(3 * sigma))
    if mode == "default":
        return [(r0, int(round(1.5 * r0)), 10, 2)]
    rs = sorted({max(r0 - 2, 4), r0, r0 + 3})
    return [
        (r, rss, ns, ko)
        for r, rssScale, ns, ko in itertools.product(rs, (1.0, 1.5), (10, 16, 24), (1, 2))
        for rss in [int(round(rssScale * r))]
    ]


ZTF_DATA = "/work/shared/data/real/ztf_alert_triplets"


def ztfCentreFlux(candid: str, data: str = ZTF_DATA, fwhm: float = 2.5, radius: float = 4.0) -> dict:
    """Centre aperture flux of a ZTF cutout's difference: ours (centre excluded or not), ZTF, HOTPANTS.

    Ours: ``subtract()`` with a constant kernel and background (the cutouts
    are 63 x 63), gain 6.2, read noise 8 e-, both FWHMs ``fwhm``, detection
    at 5 sigma.  HOTPANTS: ``-ssf`` with the reference's stars away from the
    centre (``-afssc 0``), the centre excluded alike, ``-r 3 -rss 6 -ko 0
    -bgo 0``.
    """
    import lsst.ip.diffim as ipDiffim

    base = Path(data) / candid
    sci = fits.getdata(f"{base}_sci.fits").astype(np.float32)
    ref = fits.getdata(f"{base}_ref.fits").astype(np.float32)
    ny, nx = sci.shape
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    yy, xx = np.mgrid[0:ny, 0:nx]
    aperture = np.hypot(xx - cx, yy - cy) <= radius
    out = {"candid": candid, "ztf": float(np.nansum(fits.getdata(f"{base}_diff.fits")[aperture]))}
    for label, exclude in (("ours", None), ("oursExcluded", [(cx, cy)])):
        config = ipDiffim.ImagePsfMatchTask.ConfigClass()
        config.kernel.active.fitForBackground = True
        config.kernel.active.spatialKernelOrder = 0
        config.kernel.active.spatialBgOrder = 0
        config.selectDetection.thresholdValue = 5.0
        try:
            result = ipDiffim.subtract(
                ref, sci, gain=6.2, readNoise=8.0, templateFwhm=fwhm, scienceFwhm=fwhm, config=config,
                exclude=exclude,
            )  # fmt: skip
            out[label] = float(np.nansum(result.difference[aperture]))
        except Exception as exc:  # report and go on
            out[label] = f"{type(exc).__name__}: {exc}"[:80]
    if shutil.which("hotpants"):
        data64 = np.ascontiguousarray(ref, dtype=np.float64)
        bkg = sep.Background(data64, bw=16, bh=16)
        objects = sep.extract(data64 - bkg.back(), 5.0, err=bkg.globalrms, minarea=5)
        far = np.hypot(objects["x"] - cx, objects["y"] - cy) > 9
        with tempfile.TemporaryDirectory(prefix="bench_ztf_") as work:
            ssf = os.path.join(work, "stamps.txt")
            lines = [f"{x + 1:.2f} {y + 1:.2f}\n" for x, y in zip(objects["x"][far], objects["y"][far])]
            Path(ssf).write_text("".join(lines))
            hpArgs = [
                "-r", "3", "-rss", "6", "-ssf", ssf, "-afssc", "0", "-nsx", "1", "-nsy", "1", "-ko", "0",
                "-bgo", "0", "-tu", "60000", "-iu", "60000", "-tl", "-1000", "-il", "-1000", "-tg", "6.2",
                "-ig", "6.2", "-tr", "8", "-ir", "8", "-n", "i", "-c", "t", "-v", "0",
            ]  # fmt: skip
            diff = runHotpants(f"{base}_ref.fits", f"{base}_sci.fits", hpArgs, work)
            out["hotpantsExcluded"] = float(np.nansum(diff[aperture])) if diff is not None else "failed"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS, help="TEMPLATE:SCIENCE frame numbers")
    parser.add_argument("-c", "--config", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--hotpants", choices=("none", "default", "grid"), default="grid")
    parser.add_argument("--saturation", type=float, default=60000.0)
    parser.add_argument(
        "--ours-saturation",
        type=float,
        default=0.0,
        help="flag pixels >= this in the SAT plane of our inputs (as --saturation would); 0: none",
    )
    parser.add_argument(
        "--ztf",
        nargs="*",
        metavar="CANDID",
        help="instead: centre fluxes of these ZTF cutouts (see ztfCentreFlux)",
    )
    parser.add_argument(
        "--cli",
        action="store_true",
        help="run ipdiffim-subtract as a whole process (--saturation given, each of --directions) "
        "and score its written outputs; -c is then ignored (give flags with --cli-args)",
    )
    parser.add_argument(
        "--cli-exe", default=None, help="ipdiffim-subtract executable (default: next to python)"
    )
    parser.add_argument("--directions", nargs="+", default=["template", "science"], help="--convolve values")
    parser.add_argument("--cli-args", nargs=argparse.REMAINDER, default=[], help="extra CLI flags (last)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.ztf is not None:
        for candid in args.ztf or ["472263571115095000", "472263571115115000"]:
            print(json.dumps(ztfCentreFlux(candid)), flush=True)
        return 0
    haveHotpants = args.hotpants != "none" and shutil.which("hotpants") is not None
    results = []
    runs = [(p, d) for p in args.pairs for d in (args.directions if args.cli else ["auto"])]
    work = tempfile.mkdtemp(prefix="bench_crowded_cli_")
    for pair, direction in runs:
        tFrame, sFrame = pair.split(":")
        tPath, sPath = framePath(args.data, tFrame), framePath(args.data, sFrame)
        tImg = fits.getdata(tPath).astype(float)
        sImg = fits.getdata(sPath).astype(float)
        tFwhm, sFwhm = (float(fits.getheader(p).get("PFWHM", 5.0)) for p in (tPath, sPath))
        if args.cli:
            cliArgs = ["--saturation", str(args.saturation), "--convolve", direction, *args.cli_args]
            ours = runCli(tPath, sPath, cliArgs, os.path.join(work, "out"), args.cli_exe)
            ours["fwhm"] = (tFwhm, sFwhm)
            if not ours["kernelSize"]:
                ours["kernelSize"] = 35
        else:
            ours = runOurs(tPath, sPath, args.config, args.ours_saturation)
        fwhm = max(ours["fwhm"])
        stars = referenceStars(sImg, tImg, ours["fwhm"][1], args.saturation)
        gain = float(fits.getheader(sPath).get("GAIN", 1.9))
        rn = float(fits.getheader(sPath).get("RDNOISE", 5.0))
        border = ours["kernelSize"] // 2 + 2
        label = pair if not args.cli else f"{pair} {direction[0].upper()}"
        row = {"pair": label, "kernelSum": ours["kernelSum"], "kernelSize": ours["kernelSize"]}
        if "command" in ours:
            row["command"] = ours["command"]
        row["ours"] = measureDifference(ours["diff"], ours["sigma"], ours["valid"], stars, fwhm, border)
        if args.cli:
            row["ours"].update(starFreeStats(ours["diff"], ours["sigma"], ours["valid"], tPath, sPath))
        else:
            row["ours"].update(candidateStats(ours["candidates"], stars))
        for key in ("spatialKernelOrderUsed", "spatialBgOrderUsed"):
            hit = [v for k, v in ours["metadata"].items() if k.endswith(key)]
            if hit:
                row["ours"][key] = hit[0]
        if haveHotpants:
            best = None
            for r, rss, ns, ko in hotpantsGrid(args.hotpants, fwhm):
                hpBorder = max(border, r + 2)
                hpArgs = hotpantsArgs(r, rss, ns, ko, args.saturation, gain, rn)
                if args.cli:
                    hpArgs += ["-c", "i" if direction == "science" else "t"]
                diff = runHotpants(tPath, sPath, hpArgs, work)
                if diff is None:
                    continue
                valid = ours["valid"] & np.isfinite(diff)
                m = measureDifference(diff, ours["sigma"], valid, stars, fwhm, hpBorder)
                m["flags"] = f"-r {r} -rss {rss} -nsx {ns} -nsy {ns} -ko {ko}" + (
                    f" {hpArgs[-2]} {hpArgs[-1]}" if args.cli else ""
                )
                if args.cli:
                    m.update(starFreeStats(diff, ours["sigma"], valid, tPath, sPath))
                if best is None or m["brightChi2"] < best["brightChi2"]:
                    best = m
                if "bestFrac5" not in row or m["frac5"] < row["bestFrac5"]["frac5"]:
                    row["bestFrac5"] = {"frac5": m["frac5"], "flags": m["flags"]}
            row["hotpants"] = best
        results.append(row)
        o = row["ours"]
        extra = f"std {o['std']:.3f} med {o['median']:+.3f} " if "std" in o else ""
        print(
            f"{label}: ours brightChi2 {o['brightChi2']:.2f} frac5 {o['frac5']:.5f} {extra}"
            f"ksum {row['kernelSum']:.4f} "
            f"kernel {row['kernelSize']} | candidates {o.get('nCandidates', 0)} medianRank "
            f"{o.get('medianRank', float('nan')):.0f}/{o.get('nStars', 0)} top20 {o.get('nTop20', 0)} "
            f"onSaturated {o.get('nOnSaturated', 0)} "
            f"medianOffset {o.get('medianOffset', float('nan')):.2f} px (>3 px: {o.get('nOffsetOver3', 0)})",
            flush=True,
        )
        if row.get("hotpants"):
            h = row["hotpants"]
            hx = f"std {h['std']:.3f} med {h['median']:+.3f} " if "std" in h else ""
            print(
                f"{'':{len(label)}}  HOTPANTS best brightChi2 {h['brightChi2']:.2f} frac5 {h['frac5']:.5f} "
                f"{hx}({h['flags']}); "
                f"best frac5 {row['bestFrac5']['frac5']:.5f} ({row['bestFrac5']['flags']})",
                flush=True,
            )
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
