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
"""Figures of merit of DetectAndMeasureTask on synthetic differences of known truth.

Usage: ``python bench/bench_diaSources.py [--quick]``.  Prints

* recovery of injected transients per expected-S/N bin and PSF-flux
  ratios / pulls (white-noise differences: noise-free template);
* false detections on noise-only differences against the Gaussian
  (Euler-characteristic) expectation, at several thresholds, for white noise
  and for non-decorrelated differences (template noise convolved by the
  matching kernel, at two template noise levels), and on full synthetic
  pairs run through ImagePsfMatchTask (no transients);
* the dipole classification rate of 0.3-0.5 px misregistrations of bright
  stars, with and without the pre-subtraction constraint, and of variable
  stars (should be 0);
* the same through the whole subtraction (``ipDiffim.subtract`` on
  `makeMisregisteredPair` pairs: kernel fit, convolution, detection,
  measurement), the false-dipole rate of the transients in those pairs, why
  the misses are missed (is the star a kernel candidate the spatial kernel
  kept?), and the rate with the shifted stars excluded from the kernel fit;
* the measurement time per DIA source (CPU) on a crowded difference.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy import ndimage

from lsst.images import Box
from lsst.images.psfs import GaussianPointSpreadFunction
from lsst.ip.diffim.adapters.exposures import makeDifferenceImage, makeVisitImage
from lsst.ip.diffim.detectAndMeasure import DetectAndMeasureTask
from lsst.ip.diffim.diaDetection import detectDiaFootprints
from lsst.ip.diffim.syntheticPairs import PsfModel, makeSyntheticPair, renderStars

FWHM = 4.0
SIGMA = FWHM / 2.35482
SIGMA_MODEL = math.sqrt(SIGMA**2 + 1 / 12)
SKY = 200.0


def _psf(bbox: Box) -> GaussianPointSpreadFunction:
    return GaussianPointSpreadFunction(SIGMA_MODEL, bounds=bbox, stamp_size=25)


def _images(science, sVar, template, tVar):
    bbox = Box.from_shape(science.shape)
    s = makeVisitImage(science, sVar, psf=_psf(bbox))
    t = makeVisitImage(template, tVar, psf=_psf(bbox))
    return s, t, makeDifferenceImage(s, science - template, sVar + tVar, None)


def _ec(threshold: float, area: float, sigma: float) -> float:
    return 2 * area / (2 * sigma**2) * threshold * math.exp(-0.5 * threshold**2) / (2 * math.pi) ** 1.5


def recoveryAndFlux(nImages: int, rng: np.random.Generator) -> None:
    size, n = 512, 80
    psf = PsfModel(FWHM, FWHM, 0.0, (size, size))
    noise = math.sqrt((SKY + 25.0) * 4 * math.pi * SIGMA_MODEL**2)
    snrs, found, ratios, pulls, apRatios = [], [], [], [], []
    seconds, nSources = 0.0, 0
    for _ in range(nImages):
        grid = np.stack(np.meshgrid(np.arange(30, size - 30, 50.0), np.arange(30, size - 30, 50.0)), -1)
        pos = grid.reshape(-1, 2)[:n] + rng.uniform(-10, 10, (n, 2))
        snr = np.exp(rng.uniform(math.log(5.0), math.log(100.0), n))
        flux = snr * noise
        model = renderStars((size, size), pos[:, 0], pos[:, 1], flux, psf) + SKY
        var = (model + 25.0).astype(np.float32)
        sci = (model + rng.normal(size=model.shape) * np.sqrt(var)).astype(np.float32)
        s, t, d = _images(sci, var, np.full_like(sci, SKY), np.full_like(sci, 1e-6))
        start = time.perf_counter()
        table = DetectAndMeasureTask().run(s, t, d).diaSources
        seconds += time.perf_counter() - start
        nSources += len(table)
        for k in range(n):
            dist = np.hypot(table["x"] - pos[k, 0], table["y"] - pos[k, 1])
            j = int(np.argmin(dist))
            snrs.append(snr[k])
            found.append(dist[j] < 1.5)
            if dist[j] < 1.0 and snr[k] >= 20:
                ratios.append(table["psfFlux"][j] / flux[k])
                pulls.append((table["psfFlux"][j] - flux[k]) / table["psfFluxErr"][j])
                apRatios.append(table["apFlux"][j] / flux[k])
    snrs, found = np.array(snrs), np.array(found)
    print(f"Recovery (5 sigma threshold), {len(snrs)} transients:")
    for lo, hi in ((5, 6), (6, 7), (7, 8), (8, 10), (10, 20), (20, 100)):
        sel = (snrs >= lo) & (snrs < hi)
        print(f"  expected S/N {lo:3d}-{hi:3d}: {found[sel].mean():.3f} of {sel.sum()}")
    sel = snrs >= 7
    print(f"  expected S/N >= 7: {found[sel].mean():.4f} of {sel.sum()}")
    ratios, pulls = np.array(ratios), np.array(pulls)
    print(
        f"PSF flux at S/N >= 20 ({len(ratios)}): median ratio {np.median(ratios):.4f}, mean ratio "
        f"{ratios.mean():.4f} +- {ratios.std() / math.sqrt(len(ratios)):.4f}; "
        f"pulls mean {pulls.mean():+.3f} "
        f"(+- {1 / math.sqrt(len(pulls)):.3f}), std {pulls.std():.3f}; aperture flux median ratio "
        f"{np.median(apRatios):.4f}"
    )
    perSource = 1000 * seconds / max(nSources, 1)
    print(f"Time: {seconds:.2f} s for {nSources} DIA sources ({perSource:.1f} ms each)")


def falsePositives(nImages: int, rng: np.random.Generator) -> None:
    size = 512
    area = nImages * size * size
    thresholds = (3.5, 4.0, 4.5, 5.0)
    sigmaT = 3.0 / 2.35482
    sigmaK = math.sqrt(SIGMA**2 - sigmaT**2)
    kernelSumSq = 1.0 / (4 * math.pi * sigmaK**2)
    cases = {
        "white": 0.0,
        "template noise 0.5x, not decorrelated": 0.5,
        "template noise 1x, not decorrelated": 1.0,
    }
    print(f"False detections on noise-only 512^2 differences ({nImages} images; expectation: EC density):")
    for label, tFactor in cases.items():
        counts = {t: np.zeros(len(thresholds)) for t in ("pixel_stdev", "stdev")}
        for _ in range(nImages):
            vs = 50.0
            image = rng.normal(size=(size, size)) * math.sqrt(vs)
            var = np.full((size, size), vs)
            if tFactor > 0:
                vt = vs * tFactor**2
                tNoise = ndimage.gaussian_filter(rng.normal(size=(size, size)) * math.sqrt(vt), sigmaK)
                image -= tNoise
                var = var + vt * kernelSumSq  # the correct per-pixel variance of the difference
            for thresholdType, c in counts.items():
                for i, u in enumerate(thresholds):
                    fp = detectDiaFootprints(
                        image, var, None, SIGMA_MODEL, threshold=u, grow=0, thresholdType=thresholdType
                    )
                    c[i] += fp.nPositive + fp.nNegative
        for thresholdType, c in counts.items():
            cells = ", ".join(
                f"{u}: {int(n)}/{_ec(u, area, SIGMA_MODEL):.1f} = {n / _ec(u, area, SIGMA_MODEL):.2f}"
                for u, n in zip(thresholds, c, strict=True)
            )
            print(f"  {label}, thresholdType={thresholdType}: measured/expected at {cells}")


def pairFalsePositives(nPairs: int) -> None:
    from lsst.ip.diffim import ImagePsfMatchTask
    from lsst.ip.diffim.adapters.exposures import makeMatchedVisitImage

    print("Full synthetic pairs (512^2, 250 stars, no transients), ImagePsfMatchTask + DetectAndMeasureTask:")
    for tFactor in (0.1, 0.5):
        total = away = 0
        expected = 0.0
        for seed in range(nPairs):
            p = makeSyntheticPair(size=512, seed=100 + seed, scienceFwhm=(4.0, 4.0), scienceEllipticity=0.0,
                                  transients=[], templateNoiseFactor=tFactor)  # fmt: skip
            bbox = Box.from_shape((512, 512))
            tSigma = math.sqrt((3 / 2.35482) ** 2 + 1 / 12)
            tPsf = GaussianPointSpreadFunction(tSigma, bounds=bbox, stamp_size=25)
            t = makeVisitImage(p.template, p.templateVariance, psf=tPsf)
            s = makeVisitImage(p.science, p.scienceVariance, psf=_psf(bbox))
            cfg = ImagePsfMatchTask.ConfigClass()
            cfg.kernel.active.fitForBackground = True
            res = ImagePsfMatchTask(config=cfg).run(t, s)
            table = DetectAndMeasureTask().run(s, makeMatchedVisitImage(s, res.matchedImage),
                                               res.subtractedExposure).diaSources  # fmt: skip
            total += len(table)
            d = np.hypot(table["x"][:, None] - p.xs[None, :], table["y"][:, None] - p.ys[None, :]).min(axis=1)
            away += int((d > 10).sum())
            expected += _ec(5.0, 492 * 492, SIGMA_MODEL)
        print(f"  template noise {tFactor}x: {total} DIA sources, {away} > 10 px from any star "
              f"(white-noise expectation {expected:.2f})")  # fmt: skip


def dipoles(nStars: int, rng: np.random.Generator) -> None:
    size = 512
    psf = PsfModel(FWHM, FWHM, 0.0, (size, size))
    axis = np.arange(40, size - 40, 72.0)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    results = {0.5: [], 0.0: []}
    variable = []
    seps = []
    for _ in range(max(1, nStars // (len(grid) - 7))):
        pos = grid + rng.uniform(-5, 5, grid.shape)
        sp, vp = pos[:-7], pos[-7:]
        flux = np.exp(rng.uniform(math.log(5e4), math.log(2e5), len(sp)))
        dist, angle = rng.uniform(0.3, 0.5, len(sp)), rng.uniform(-math.pi, math.pi, len(sp))
        dx, dy = dist * np.cos(angle), dist * np.sin(angle)
        tm = renderStars((size, size), sp[:, 0], sp[:, 1], flux, psf)
        tm += renderStars((size, size), vp[:, 0], vp[:, 1], np.full(len(vp), 5e4), psf) + SKY
        sm = renderStars((size, size), sp[:, 0] + dx, sp[:, 1] + dy, flux, psf)
        sm += renderStars((size, size), vp[:, 0], vp[:, 1], np.full(len(vp), 6e4), psf) + SKY
        sv, tv = sm + 25, 0.25 * (tm + 25)
        sci = (sm + rng.normal(size=sm.shape) * np.sqrt(sv)).astype(np.float32)
        tpl = (tm + rng.normal(size=tm.shape) * np.sqrt(tv)).astype(np.float32)
        for relWeight in results:
            s, t, d = _images(sci, sv.astype(np.float32), tpl, tv.astype(np.float32))
            task = DetectAndMeasureTask()
            task.measurement.config.relWeight = relWeight
            table = task.run(s, t, d).diaSources
            for k in range(len(sp)):
                cx, cy = sp[k, 0] + dx[k] / 2, sp[k, 1] + dy[k] / 2
                dd = np.minimum(np.hypot(table["dipole_x"] - cx, table["dipole_y"] - cy),
                                np.hypot(table["x"] - cx, table["y"] - cy))  # fmt: skip
                j = int(np.nanargmin(dd))
                results[relWeight].append(bool(table["isDipole"][j]) and dd[j] < 2)
                if relWeight > 0:
                    seps.append(table["dipole_separation"][j] - dist[k])
            if relWeight > 0:
                for x, y in vp:
                    j = int(np.argmin(np.hypot(table["x"] - x, table["y"] - y)))
                    variable.append(bool(table["isDipole"][j]))
    for relWeight, flags in results.items():
        print(f"Dipoles (0.3-0.5 px shifts, flux 5e4-2e5), relWeight {relWeight}: "
              f"{np.mean(flags):.3f} of {len(flags)}")  # fmt: skip
    print(f"  separation error (relWeight 0.5): median {np.median(seps):+.3f} px, "
          f"median |error| {np.median(np.abs(seps)):.3f}")  # fmt: skip
    print(f"Variable stars (+20%) classified as dipoles: {np.mean(variable):.3f} of {len(variable)}")


def _nearestDia(table, x: float, y: float) -> tuple[int, float]:
    d = np.fmin(np.hypot(np.asarray(table["x"]) - x, np.asarray(table["y"]) - y),
                np.hypot(np.asarray(table["dipole_x"]) - x, np.asarray(table["dipole_y"]) - y))  # fmt: skip
    d = np.where(np.isfinite(d), d, np.inf)
    k = int(np.argmin(d))
    return k, float(d[k])


def endToEndDipoles(seeds: range) -> None:
    from lsst.ip.diffim import notebook
    from lsst.ip.diffim.syntheticPairs import makeMisregisteredPair

    print(f"Dipoles through ipDiffim.subtract ({len(seeds)} pairs of 512^2: 8 stars shifted 0.3-0.5 px, "
          "8 transients, 250 field stars, science FWHM 4-5 px elliptical):")  # fmt: skip
    cases = (("kernel fit on all stars", False), ("shifted stars excluded from the kernel fit", True))
    for label, exclude in cases:
        ok, missed, notDipole, keptCandidate, sepErr, angErr = 0, 0, 0, 0, [], []
        nTransients = falseDipoles = found = 0
        seconds = 0.0
        for seed in seeds:
            pair = makeMisregisteredPair(seed)
            shifts = pair.extra["shifts"]
            kwargs = {"exclude": [(x, y, 8.0) for x, y, *_ in shifts]} if exclude else {}
            start = time.process_time()
            result = notebook.subtract(
                pair.template, pair.science, templateVariance=pair.templateVariance,
                scienceVariance=pair.scienceVariance, templateFwhm=3.0, scienceFwhm=4.5, detect=True,
                **kwargs,
            )  # fmt: skip
            seconds += time.process_time() - start
            table = result.diaSources
            candidates = result._detectionInputs[0].kernelCellSet.allCandidates()
            for x, y, _, dx, dy in shifts:
                k, dist = _nearestDia(table, x + 0.5 * dx, y + 0.5 * dy)
                if dist < 2 and table["isDipole"][k]:
                    ok += 1
                    sepErr.append(table["dipole_separation"][k] - math.hypot(dx, dy))
                    delta = table["dipole_orientation"][k] - math.degrees(math.atan2(dy, dx))
                    angErr.append((delta + 180.0) % 360.0 - 180.0)
                    continue
                missed += dist >= 2
                notDipole += dist < 2
                keptCandidate += any(c.getStatus().name == "GOOD" and math.hypot(c.getXCenter() - x,
                                     c.getYCenter() - y) < 3 for c in candidates)  # fmt: skip
            for x, y, _ in pair.transients:
                k, dist = _nearestDia(table, x, y)
                nTransients += 1
                found += dist < 1.5
                falseDipoles += dist < 1.5 and bool(table["isDipole"][k])
        n = 8 * len(seeds)
        print(f"  {label}: {ok}/{n} = {ok / n:.3f} dipoles ({missed} not detected, {notDipole} detected but "
              f"not dipoles; {keptCandidate} of the failures kept as kernel candidates); separation error "
              f"median |{np.median(np.abs(sepErr)):.3f}| px, orientation median "
              f"|{np.median(np.abs(angErr)):.1f}| deg; transients: {found}/{nTransients} found, "
              f"{falseDipoles} classified dipoles; "
              f"{seconds / len(seeds):.1f} s CPU per pair")  # fmt: skip


def crowdedTiming(rng: np.random.Generator) -> None:
    """CPU time of DipoleFitTask per DIA source on a crowded difference."""
    size, nTransients, nShifted = 512, 400, 40
    psf = PsfModel(FWHM, FWHM, 0.0, (size, size))
    pos = rng.uniform(15, size - 15, (nTransients, 2))
    flux = np.exp(rng.uniform(math.log(2e3), math.log(5e4), nTransients))
    spos = rng.uniform(15, size - 15, (nShifted, 2))
    sflux = np.exp(rng.uniform(math.log(5e4), math.log(2e5), nShifted))
    dist, angle = rng.uniform(0.3, 0.5, nShifted), rng.uniform(-math.pi, math.pi, nShifted)
    tm = renderStars((size, size), spos[:, 0], spos[:, 1], sflux, psf) + SKY
    sm = renderStars((size, size), spos[:, 0] + dist * np.cos(angle), spos[:, 1] + dist * np.sin(angle),
                     sflux, psf) + SKY  # fmt: skip
    sm += renderStars((size, size), pos[:, 0], pos[:, 1], flux, psf)
    sv, tv = sm + 25, 0.25 * (tm + 25)
    sci = (sm + rng.normal(size=sm.shape) * np.sqrt(sv)).astype(np.float32)
    tpl = (tm + rng.normal(size=tm.shape) * np.sqrt(tv)).astype(np.float32)
    s, t, d = _images(sci, sv.astype(np.float32), tpl, tv.astype(np.float32))
    task = DetectAndMeasureTask()
    task.run(s, t, d)
    md = task.measurement.metadata
    cpu = md["runEndCpuTime"] - md["runStartCpuTime"]
    n = task.metadata["nMergedDiaSources"]
    print(f"Crowded difference (512^2, {nTransients} transients, {nShifted} shifted stars): {n} DIA sources, "
          f"{md['nDipoleFits']} dipole fits; measurement {1000 * cpu / n:.1f} ms CPU per source")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller samples")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(2026)
    k = 1 if args.quick else 3
    recoveryAndFlux(3 * k, rng)
    falsePositives(4 * k, rng)
    dipoles(40 * k, rng)
    endToEndDipoles(range(4 * k))
    crowdedTiming(rng)
    pairFalsePositives(k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
