#!/usr/bin/env python
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
"""Run ``ipdiffim-subtract`` on the real pairs, as a user would, and score each difference.

Every run is a whole ``ipdiffim-subtract`` process (defaults, only the flags a
user must give: gain/read noise where the headers lack them, the error maps
of the JWST pair, the saturation level of the SAAO frames when the CLI takes
one), in each sensible convolution direction.  The exact command of each run
is in the ``--json`` rows.  For each run the
table gives:

``rc``
    The exit code.
``f>5``
    Fraction of the usable difference pixels (finite, not NO_DATA/EDGE/SAT/BAD/STREAK)
    with ``|D/sigma| > 5``, sources included (it measures star residuals).
``std``
    Robust std (IQR / 1.349) of ``D/sigma`` on star-free usable pixels.  The
    source mask comes from a `sep` detection (3 sigma, segmentation grown by
    ``--grow`` px) on *both* input images, so it does not depend on what the
    program under test masks.
``med``
    Median ``D/sigma`` on the same star-free pixels (a background-sign or
    background-level error shows here).
``ksum``
    The kernel sum (``summary.kernelSum`` of ``metadata.json``).
``use%``
    Percentage of the image left usable by the difference mask.

The data are in ``/work/shared/data/real`` (``--data`` to change).  The JWST
pair has its error maps in separate files; they are joined with the images
into temporary multi-extension files (``SCI`` + ``ERR``), which every version
of the CLI reads.  Use ``--cli`` to run another installation (e.g. a
worktree of an older commit) and ``--only`` to select pairs by substring::

    python bench/bench_realFrames.py                         # this checkout
    python bench/bench_realFrames.py --cli /tmp/base/.venv/bin/ipdiffim-subtract
    python bench/bench_realFrames.py --only saao --keep /tmp/out

The scoring reads the outputs with astropy only, so it works on the outputs
of any version.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

DEFAULT_DATA = "/work/shared/data/real"
#: STREAK: trails the program found and masked (Rubin's users leave them out of such statistics too).
BAD_PLANES = ("NO_DATA", "EDGE", "DETECTION_EDGE", "SAT", "SATURATED", "BAD", "STREAK")


@dataclass
class Pair:
    """One CLI run: template, science, and the extra flags a user must give."""

    name: str
    template: str
    science: str
    args: list[str] = field(default_factory=list)
    #: Flags given only if the CLI has them (``--help`` lists the first item), e.g. a
    #: saturation level the headers lack, which an older CLI cannot take.
    ifSupported: list[str] = field(default_factory=list)


#: The four ZTF triplets of the earlier tables.
ZTF_SUBSET = ("396522680015020000", "472263571115115000", "739260766315010006", "1661382530015060001")


def _pairs(data: str, tmp: Path, ztfSubset: bool = False) -> list[Pair]:
    saao = f"{data}/pydia_saao_bulge_crowded/aligned/AKB13475I{{}}_aligned.fits"
    decam = f"{data}/sfft_decam_i_stamps/DEC-OBS{{}}.mini.fits"
    ztf = f"{data}/ztf_alert_triplets/{{}}_{{}}.fits"
    pairs: list[Pair] = []
    # SAAO bulge (header GAIN/RDNOISE): template 0100 (best seeing).  0015 is much
    # broader, so only the template is convolved; 0028 and 0091 have similar
    # seeing, so both directions make sense.
    # The frames clip at 65300 ADU with no SATURATE card: the level is given, as HOTPANTS users do.
    sat = ["--saturation", "60000"]
    for frame in ("0001", "0015", "0037"):
        pairs.append(Pair(f"saao {frame}-0100 T", saao.format("0100"), saao.format(frame),
                          ["--convolve", "template"], sat))
    for frame in ("0028", "0091"):
        for d in ("template", "science"):
            pairs.append(Pair(f"saao {frame}-0100 {d[0].upper()}", saao.format("0100"), saao.format(frame),
                              ["--convolve", d], sat))
    # DECam stamps (header GAIN/RDNOISE/SATURATE): template OBS18a (sharper), science OBS04b..e.
    for s in "abcde":
        pairs.append(Pair(f"decam 04{s}-18a T", decam.format("18a"), decam.format(f"04{s}"),
                          ["--convolve", "template"]))
    pairs.append(Pair("decam 04e-18a S", decam.format("18a"), decam.format("04e"), ["--convolve", "science"]))
    # SOURCE.md's extremes: the smallest (04e vs 18b) and the largest (04c vs 18c) seeing difference.
    for s, t in (("e", "b"), ("c", "c")):
        pairs.append(Pair(f"decam 04{s}-18{t} T", decam.format(f"18{t}"), decam.format(f"04{s}"),
                          ["--convolve", "template"]))
    # JWST NIRCam F200W with its error maps; similar widths: both directions.
    jw = f"{data}/sfft_jwst_nircam_a2744"
    ref = _withErr(f"{jw}/jw01324001001-01324-o001_t001_nircam_clear-f200w_i2d_stamp", tmp)
    sci = _withErr(f"{jw}/jw02561001002-02561-o001_t003_nircam_clear-f200w_i2d_stamp", tmp)
    for d in ("template", "science"):
        pairs.append(Pair(f"jwst f200w {d[0].upper()}", ref, sci, ["--convolve", d]))
    # ZTF cutouts (DN, no noise keywords): ZTF gain 6.2 e-/DN, read noise 8 e-.
    # Every triplet of the folder (``--ztf-subset`` keeps the four of the first tables).
    candids = sorted(Path(p).name.split("_")[0] for p in glob.glob(ztf.format("*", "ref")))
    if ztfSubset:
        candids = [c for c in candids if c in ZTF_SUBSET]
    for candid in candids:
        for d in ("template", "science"):
            pairs.append(Pair(f"ztf {candid} {d[0].upper()}", ztf.format(candid, "ref"),
                              ztf.format(candid, "sci"),
                              ["--convolve", d, "--gain", "6.2", "--read-noise", "8"]))
    return pairs


def _withErr(stem: str, tmp: Path) -> str:
    """Join an image and its error map (``stem.fits``, ``stem.noise.fits``) into one MEF file."""
    out = tmp / (Path(stem).name + ".mef.fits")
    if not out.exists():
        with fits.open(f"{stem}.fits") as image, fits.open(f"{stem}.noise.fits") as noise:
            imageHdu = next(h for h in image if h.data is not None)
            noiseHdu = next(h for h in noise if h.data is not None)
            fits.HDUList([
                fits.PrimaryHDU(),
                fits.ImageHDU(imageHdu.data, imageHdu.header, name="SCI"),
                fits.ImageHDU(noiseHdu.data, noiseHdu.header, name="ERR"),
            ]).writeto(out)
    return str(out)


def _readPlain(path: str) -> np.ndarray:
    with fits.open(path) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
        return np.asarray(hdu.data, dtype=np.float64)


def sourceMask(images: list[np.ndarray], grow: int, thresh: float = 3.0) -> np.ndarray:
    """Pixels covered by a `sep` detection on any of ``images`` (grown by ``grow`` px)."""
    import sep

    mask = np.zeros(images[0].shape, dtype=bool)
    for image in images:
        data = np.ascontiguousarray(np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0))
        bkg = sep.Background(data, bw=32, bh=32)
        sub = data - bkg.back()
        sep.set_extract_pixstack(5_000_000)
        sep.set_sub_object_limit(4096)
        _, seg = sep.extract(sub, thresh, err=bkg.globalrms, segmentation_map=True, minarea=5)
        mask |= seg > 0
    if grow > 0:
        mask = ndimage.binary_dilation(mask, iterations=grow)
    return mask


def _readDifference(outDir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Return image, variance and the unusable-pixel mask of the difference in ``outDir``."""
    paths = sorted(p for p in glob.glob(str(outDir / "**" / "*difference*.fits*"), recursive=True))
    if not paths:
        return None
    with fits.open(paths[0]) as hdul:
        byName = {h.name.upper(): h for h in hdul}
        image = np.asarray(byName["IMAGE"].data, dtype=np.float64)
        variance = np.asarray(byName["VARIANCE"].data, dtype=np.float64)
        maskHdu = byName.get("MASK")
        bad = np.zeros(image.shape, dtype=bool)
        if maskHdu is not None:
            bits = np.asarray(maskHdu.data).astype(np.int64)
            bits = bits.reshape(-1, *image.shape)  # lsst.images: one 2-d word per 32 planes
            nbits = 8 * maskHdu.data.dtype.itemsize
            for key, value in maskHdu.header.items():
                if key.startswith("MSKN") and str(value).strip().upper() in BAD_PLANES:
                    word, bit = divmod(int(key[4:]), nbits)  # lsst.images: MSKNnnnn names plane n
                elif key.startswith("MP_") and key[3:].upper() in BAD_PLANES:
                    word, bit = divmod(int(value), nbits)  # afw: MP_<NAME> = bit
                else:
                    continue
                bad |= ((bits[min(word, bits.shape[0] - 1)] >> bit) & 1).astype(bool)
    return image, variance, bad


def score(template: str, science: str, outDir: Path, grow: int) -> dict[str, float]:
    """Score the difference written in ``outDir`` (see the module docstring)."""
    read = _readDifference(outDir)
    if read is None:
        return {}
    image, variance, bad = read
    with np.errstate(divide="ignore", invalid="ignore"):
        z = image / np.sqrt(variance)
    usable = np.isfinite(z) & ~bad
    stars = sourceMask([_readPlain(template), _readPlain(science)], grow)
    free = usable & ~stars
    out: dict[str, float] = {"usable": float(usable.mean())}
    if usable.any():
        out["frac5"] = float(np.mean(np.abs(z[usable]) > 5))
    if free.sum() > 100:
        q25, q50, q75 = np.percentile(z[free], [25, 50, 75])
        out["std"] = float((q75 - q25) / 1.349)
        out["median"] = float(q50)
        out["freeFrac"] = float(free.mean())
    meta = next(iter(glob.glob(str(outDir / "**" / "*metadata.json"), recursive=True)), None)
    if meta:
        summary = json.loads(Path(meta).read_text()).get("summary", {})
        if "kernelSum" in summary:
            out["kernelSum"] = float(summary["kernelSum"])
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cli", default=None, help="ipdiffim-subtract executable (default: next to python)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of the real data (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], help="run pairs whose name contains this")
    parser.add_argument("--grow", type=int, default=4, help="source-mask growth in pixels (default: 4)")
    parser.add_argument("--keep", default=None, help="keep the outputs in this folder")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run (default: 600)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument(
        "--ztf-subset", action="store_true", help="only the four ZTF triplets of the first tables"
    )
    args = parser.parse_args(argv)
    cli = args.cli or str(Path(sys.executable).parent / "ipdiffim-subtract")
    if not os.path.exists(cli):
        parser.error(f"{cli}: no such executable (give --cli)")

    helpText = subprocess.run([cli, "--help"], capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp(prefix="bench-real-"))
    rows = []
    try:
        pairs = [
            p for p in _pairs(args.data, tmp, args.ztf_subset)
            if not args.only or any(s in p.name for s in args.only)
        ]
        print(
            f"{'pair':30s} {'rc':>3s} {'f>5':>8s} {'std':>6s} {'med':>7s} {'ksum':>8s} {'use%':>6s} {'s':>6s}"
        )
        for pair in pairs:
            outDir = (Path(args.keep) if args.keep else tmp) / pair.name.replace(" ", "_").replace(".", "")
            shutil.rmtree(outDir, ignore_errors=True)
            cmd = [cli, pair.template, pair.science, "-o", str(outDir), "-q", *pair.args]
            if pair.ifSupported and pair.ifSupported[0] in helpText:
                cmd += pair.ifSupported
            start = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                rc, err = proc.returncode, proc.stderr
            except subprocess.TimeoutExpired:
                rc, err = -1, "timeout"
            seconds = time.perf_counter() - start
            s = score(pair.template, pair.science, outDir, args.grow) if rc == 0 else {}
            row = {"pair": pair.name, "rc": rc, "seconds": seconds, **s, "command": " ".join(cmd)}
            if rc != 0:
                row["error"] = err.strip().splitlines()[-1] if err.strip() else ""
            rows.append(row)
            print(
                f"{pair.name:30s} {rc:3d} {_fmt(s.get('frac5'), '8.5f')} {_fmt(s.get('std'), '6.3f')} "
                f"{_fmt(s.get('median'), '+7.3f')} {_fmt(s.get('kernelSum'), '8.4f')} "
                f"{_fmt(100 * s['usable'] if 'usable' in s else None, '6.1f')} {seconds:6.1f}"
                + (f"  {row.get('error', '')[:90]}" if rc != 0 else ""),
                flush=True,
            )
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
