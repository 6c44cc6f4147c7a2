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
"""Alert flux at the centre of each ZTF cutout: ``ipdiffim-subtract --exclude`` against HOTPANTS and ZTF.

For every triplet of ``ztf_alert_triplets`` the alert position is found (the
centre of a 63x63 cutout; on the cutouts truncated by a CCD edge, the peak
of ZTF's own difference within 6 px of where the geometry puts it), then:

``ours``
    ``ipdiffim-subtract REF SCI --exclude X Y --gain 6.2 --read-noise 8`` as
    a whole process (the alert excluded from the fit, defaults otherwise:
    ``--convolve auto``, which convolves the science image of most triplets,
    the ZTF reference coadds being the broader).
``hotpants``
    HOTPANTS (on PATH) convolving the image ours convolved (``-c t`` or
    ``-c i``; ``-c t`` when ours failed), a stamp list (``-ssf``)
    of the reference's stars more than 9 px from the alert (the alert
    excluded alike), ``-afssc 0 -r 3 -rss 6 -ko 0 -bgo 0 -nsx 1 -nsy 1
    -n i``, gain 6.2 and read noise 8 e- for both images.
``ztf``
    ZTF's own (ZOGY) difference cutout, signed science minus reference (the
    cutouts of ``isdiffpos`` f alerts hold reference minus science).

Each is the sum of the difference within ``--radius`` (4) px of the alert.
``ours/hp`` is the ratio of the first two (the issue asks for 10%), ``ours/ztf``
that of ours to ZTF's.  ``res`` columns judge each difference away from the
alert: the median, over the reference's stars more than 9 px from the alert
(5 sigma, at least 10 S/N, apertures inside the cutout), of ``|sum of the
difference| / star flux`` within the same radius, in percent (a constant star
well subtracted leaves about 0; HOTPANTS fitted on one substamp of a 63x63
cutout can leave several percent)::

    PATH=/tmp/hp:$PATH python bench/bench_ztfCentre.py [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

DEFAULT_DATA = "/work/shared/data/real/ztf_alert_triplets"
HOTPANTS_FLAGS = [
    "-r", "3", "-rss", "6", "-afssc", "0", "-nsx", "1", "-nsy", "1", "-ko", "0", "-bgo", "0",
    "-tu", "60000", "-iu", "60000", "-tl", "-1000", "-il", "-1000", "-tg", "6.2", "-ig", "6.2",
    "-tr", "8", "-ir", "8", "-n", "i", "-v", "0",
]  # fmt: skip


def alertPosition(diff: np.ndarray, xpos: float, ypos: float, full: int = 63) -> tuple[float, float]:
    """Return the alert's 0-based (x, y) in a cutout (centre, or the ZTF-difference peak near it)."""
    ny, nx = diff.shape
    half = (full - 1) / 2

    def guess(n: int, pos: float) -> float:
        if n == full:
            return half
        # Truncated at the low CCD edge when the alert is near 0, else at the high edge.
        return pos - 1 if pos < full else n - 1 - half + 0.0

    gx, gy = guess(nx, xpos), guess(ny, ypos)
    if nx == full and ny == full:
        return gx, gy
    smooth = np.abs(ndimage.gaussian_filter(np.nan_to_num(diff), 1.0))
    yy, xx = np.mgrid[0:ny, 0:nx]
    smooth[np.hypot(xx - gx, yy - gy) > 6] = 0
    y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return float(x), float(y)


def apertureSum(image: np.ndarray, x: float, y: float, radius: float) -> float | None:
    """Sum within ``radius`` of (x, y); `None` if no pixel there is valid."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    values = image[np.hypot(xx - x, yy - y) <= radius]
    return float(np.nansum(values)) if np.isfinite(values).any() else None


def runOurs(
    cli: str, ref: str, sci: str, x: float, y: float, work: Path
) -> tuple[int, np.ndarray | None, str, str]:
    """Return the exit code, the difference, the error line and the image convolved."""
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [cli, ref, sci, "-o", str(out), "--no-plots",
           "--exclude", f"{x + 1:.2f}", f"{y + 1:.2f}", "--gain", "6.2", "--read-noise", "8"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    paths = glob.glob(str(out / "*" / "*difference*.fits"))
    error = proc.stderr.strip().splitlines()[-1] if proc.returncode and proc.stderr.strip() else ""
    convolved = "science" if "convolved: science" in proc.stdout else "template"
    if proc.returncode != 0 or not paths:
        return proc.returncode, None, error, convolved
    return 0, np.asarray(fits.getdata(paths[0], "IMAGE"), dtype=float), "", convolved


def runHotpants(ref: str, sci: str, x: float, y: float, work: Path, convolved: str) -> np.ndarray | None:
    import sep

    data = np.ascontiguousarray(fits.getdata(ref), dtype=np.float64)
    bkg = sep.Background(data, bw=16, bh=16)
    objects = sep.extract(data - bkg.back(), 5.0, err=bkg.globalrms, minarea=5)
    far = np.hypot(objects["x"] - x, objects["y"] - y) > 9
    ssf = work / "stamps.txt"
    lines = [f"{a + 1:.2f} {b + 1:.2f}\n" for a, b in zip(objects["x"][far], objects["y"][far])]
    ssf.write_text("".join(lines))
    out = work / "hp_diff.fits"
    if out.exists():
        out.unlink()
    cmd = ["hotpants", "-inim", sci, "-tmplim", ref, "-outim", str(out), "-ssf", str(ssf), *HOTPANTS_FLAGS,
           "-c", "i" if convolved == "science" else "t"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not out.exists():
        return None
    diff = fits.getdata(out).astype(float)
    diff[np.abs(diff) < 1e-20] = np.nan  # HOTPANTS' fill value of invalid pixels
    return diff


def referenceStars(ref: str, x: float, y: float, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the positions and ``radius`` aperture fluxes of the reference's stars away from the alert."""
    import sep

    data = np.ascontiguousarray(fits.getdata(ref), dtype=np.float64)
    bkg = sep.Background(data, bw=16, bh=16)
    sub = data - bkg.back()
    objects = sep.extract(sub, 5.0, err=bkg.globalrms, minarea=5)
    sx, sy = np.asarray(objects["x"], dtype=float), np.asarray(objects["y"], dtype=float)
    ny, nx = data.shape
    keep = (np.hypot(sx - x, sy - y) > 9) & (sx > radius) & (sx < nx - 1 - radius)
    keep &= (sy > radius) & (sy < ny - 1 - radius)
    sx, sy = sx[keep], sy[keep]
    flux, err, _ = sep.sum_circle(sub, sx, sy, radius, err=bkg.globalrms)
    bright = flux > 10 * err
    return sx[bright], sy[bright], flux[bright]


def starResidual(diff: np.ndarray | None, stars: tuple[np.ndarray, np.ndarray, np.ndarray],
                 radius: float, sign: float = 1.0) -> float | None:
    """Median ``|difference| / flux`` (percent) in apertures on the constant stars (`None` if none)."""
    if diff is None or stars[0].size == 0:
        return None
    values = [apertureSum(sign * diff, x, y, radius) for x, y in zip(stars[0], stars[1])]
    ratios = [abs(v) / f for v, f in zip(values, stars[2]) if v is not None]
    return 100.0 * float(np.median(ratios)) if ratios else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--cli", default=None, help="ipdiffim-subtract executable (default: next to python)")
    parser.add_argument("--radius", type=float, default=4.0)
    parser.add_argument("--only", action="append", default=[], help="candids containing this")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cli = args.cli or str(Path(sys.executable).parent / "ipdiffim-subtract")
    haveHotpants = shutil.which("hotpants") is not None
    with open(os.path.join(args.data, "alerts.csv")) as f:
        alerts = {row["candid"]: row for row in csv.DictReader(f)}
    rows = []
    print(
        f"{'candid':20s} {'shape':>6s} {'x':>5s} {'y':>5s} {'conv':>4s} {'ztf':>9s} {'hotpants':>9s} "
        f"{'ours':>9s} {'ours/hp':>7s} {'ours/ztf':>8s} {'res%ours':>8s} {'res%hp':>6s} {'res%ztf':>7s}"
    )
    for candid in sorted(alerts):
        if args.only and not any(s in candid for s in args.only):
            continue
        alert = alerts[candid]
        base = os.path.join(args.data, candid)
        ref, sci = f"{base}_ref.fits", f"{base}_sci.fits"
        ztfDiff = np.asarray(fits.getdata(f"{base}_diff.fits"), dtype=float)
        sign = 1.0 if alert["isdiffpos"].strip().lower() in ("t", "1") else -1.0
        x, y = alertPosition(ztfDiff, float(alert["xpos"]), float(alert["ypos"]))
        row: dict = {"candid": candid, "shape": list(ztfDiff.shape), "x": x, "y": y}
        row["ztf"] = sign * apertureSum(ztfDiff, x, y, args.radius)
        stars = referenceStars(ref, x, y, args.radius)
        row["nStars"] = int(stars[0].size)
        row["residualZtf"] = starResidual(ztfDiff, stars, args.radius, sign)
        with tempfile.TemporaryDirectory(prefix="bench_ztfCentre_") as tmp:
            work = Path(tmp)
            rc, ours, error, convolved = runOurs(cli, ref, sci, x, y, work)
            row["rc"], row["convolved"] = rc, convolved
            row["ours"] = apertureSum(ours, x, y, args.radius) if ours is not None else None
            row["residualOurs"] = starResidual(ours, stars, args.radius)
            if error:
                row["error"] = error
            hp = runHotpants(ref, sci, x, y, work, convolved) if haveHotpants else None
            row["hotpants"] = apertureSum(hp, x, y, args.radius) if hp is not None else None
            row["residualHotpants"] = starResidual(hp, stars, args.radius)
        ratio = row["ours"] / row["hotpants"] if row["ours"] is not None and row["hotpants"] else None
        row["oursOverHotpants"] = ratio
        row["oursOverZtf"] = row["ours"] / row["ztf"] if row["ours"] is not None and row["ztf"] else None

        def fmt(v: float | None, spec: str = "9.0f") -> str:
            return "-" if v is None else format(v, spec)

        print(
            f"{candid:20s} {ztfDiff.shape[1]:>2d}x{ztfDiff.shape[0]:<3d} {x:5.1f} {y:5.1f} "
            f"{row['convolved'][0].upper():>4s} {fmt(row['ztf'])} "
            f"{fmt(row['hotpants'])} {fmt(row['ours'])} {fmt(ratio, '7.3f')} "
            f"{fmt(row['oursOverZtf'], '8.3f')} "
            f"{fmt(row['residualOurs'], '8.2f')} {fmt(row['residualHotpants'], '6.2f')} "
            f"{fmt(row['residualZtf'], '7.2f')}  {error[-160:]}",
            flush=True,
        )
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
