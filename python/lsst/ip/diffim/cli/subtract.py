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
"""``ipdiffim-subtract``: PSF-match and subtract FITS images, like HOTPANTS.

Usage::

    ipdiffim-subtract TEMPLATE SCIENCE [SCIENCE ...] -o OUT [options]

Inputs may be `lsst.images` FITS files (``VisitImage``/``MaskedImage``), afw
``MaskedImage`` files, or plain FITS images (uint16 with BZERO or float),
optionally with a celestial WCS (the template is then warped onto each
science grid), a variance (or error) extension and a mask extension.
Without a variance plane, ``--gain`` and ``--read-noise`` build one.
Saturated pixels (``--saturation`` or the ``SATURATE``/``SATLEVEL``/``DATAMAX``
card), mask-extension pixels and NaN/inf pixels are kept out of the fit.  Config
overrides use pex_config syntax, with the same keys as ``pipetask -c``:
``-c kernel.active.spatialKernelOrder=1``.

With ``--detect``, DIA sources are detected and measured on each difference
(`lsst.ip.diffim.detectAndMeasure.DetectAndMeasureTask`) and written as
``dia_sources.fits``; their counts (``NFalsePositives*``) are printed and
they are drawn on the summary sheet.  Overrides of that task's config start
with ``detectAndMeasure.``: ``-c detectAndMeasure.thresholdValue=4``.
"""

from __future__ import annotations

__all__ = ["InputError", "main", "readInput"]

import argparse
import gc
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# Nothing heavy is imported here: ``--help`` and argument errors must answer at
# once; numpy, astropy, lsst.images and the task are imported when needed.
from .configOverrides import applyConfigOverrides
from .errors import EXIT_REFUSED, InputError, OutputExistsError
from .noiseOptions import addNoiseArguments, noiseReadOptions, recordVarianceFactors, scaleInputVariance
from .psfOptions import addPsfArguments, fwhmArgument, resolveFwhm

if TYPE_CHECKING:
    from typing import TextIO

    from astropy.io import fits

    from lsst.images import MaskedImage

    from ..detectAndMeasure import DetectAndMeasureConfig
    from ..imagePsfMatch import ImagePsfMatchConfig
    from .sheetWorker import SheetWorker


def _findHdu(hdul: fits.HDUList, names: tuple[str, ...]) -> int | None:
    for i, hdu in enumerate(hdul):
        if hdu.name.upper() in names and hdu.data is not None:
            return i
    return None


def readInput(
    path: str,
    *,
    hdu: int | None = None,
    gain: float | None = None,
    readNoise: float | None = None,
    saturation: float | None = None,
    variancePath: str | None = None,
    varianceKind: str = "auto",
    measureSky: bool = True,
) -> tuple[Any, float | None]:
    """Read one input image as an `lsst.images.VisitImage`.

    Pixels at or above ``saturation`` (default: the ``SATURATE``,
    ``SATLEVEL`` or ``DATAMAX`` card) are SAT, non-zero pixels of a
    MASK/DQ/BPM extension BAD and non-finite pixels NO_DATA (see
    `lsst.ip.diffim.adapters.inputMasks`); the unit is ``BUNIT`` (ADU if
    absent) and the WCS the header's celestial one, if any.

    Returns
    -------
    image : `lsst.images.VisitImage` or `lsst.images.MaskedImage`
        The image: a `~lsst.images.VisitImage` (with a default Gaussian PSF;
        see the FWHM) when the file has a celestial WCS, else a
        `~lsst.images.MaskedImage` without a sky projection.
    fwhm : `float` or `None`
        The FWHM recorded in the header (``FWHM``, ``PFWHM``, ``SEEING``) if any.

    Raises
    ------
    InputError
        For a missing or unreadable file, or when no variance can be built.
    """
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS

    from ..adapters.inputMasks import (
        headerSaturation,
        makeInputImage,
        makeInputMask,
        parseUnit,
        saturatedPixels,
    )
    from ..adapters.noiseModel import modelVariance, readVarianceFile
    from ..math.masks import resolveMaskPlane

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        hdul = fits.open(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable FITS file ({exc})") from exc
    with hdul:
        names = [h.name.upper() for h in hdul]
        if "IMAGE" in names and "VARIANCE" in names and "JSON" in names:
            from lsst.images import VisitImage

            from ..adapters.maskReading import fastMaskReads

            try:
                with fastMaskReads():
                    visitImage = VisitImage.read(path)
            except Exception as exc:  # lsst.images raises many types for foreign files
                raise InputError(f"{path}: lsst-images file could not be read ({exc})") from exc
            sat = saturatedPixels(visitImage.image.array, saturation)
            if sat is not None:
                visitImage.mask.set(resolveMaskPlane(visitImage.mask.schema, "SAT") or "SATURATED", sat)
            return visitImage, None
        if hdu is None:
            hdu = next((i for i, h in enumerate(hdul) if h.data is not None and h.data.ndim == 2), None)
        if hdu is None or hdu >= len(hdul) or hdul[hdu].data is None or hdul[hdu].data.ndim != 2:
            raise InputError(f"{path}: no 2-d image HDU")
        image = np.asarray(hdul[hdu].data, dtype=np.float32)
        header = hdul[hdu].header
        varIndex = _findHdu(hdul, ("VARIANCE", "VAR"))
        errIndex = _findHdu(hdul, ("ERR", "ERROR", "SIGMA", "NOISE"))
        maskIndex = _findHdu(hdul, ("MASK", "DQ", "BPM"))
        if variancePath is not None:
            variance = readVarianceFile(variancePath, image.shape, varianceKind, image)
        elif varIndex is not None and varIndex != hdu:
            variance = np.asarray(hdul[varIndex].data, dtype=np.float32)
        elif errIndex is not None and errIndex != hdu:
            variance = np.asarray(hdul[errIndex].data, dtype=np.float32) ** 2
        else:
            g = gain if gain is not None else header.get("GAIN")
            rn = readNoise if readNoise is not None else header.get("RDNOISE", header.get("READNOIS"))
            if g is None or rn is None:
                raise InputError(
                    f"{path}: no variance or error extension; give --gain and --read-noise "
                    "(or the per-image --template-/--science- ones, GAIN/RDNOISE header keywords, "
                    "or a --template-/--science-variance file)"
                )
            variance = modelVariance(image, float(g), float(rn), measureSky=measureSky)
        badPixels = None
        if maskIndex is not None and maskIndex != hdu:
            badPixels = np.asarray(hdul[maskIndex].data)
        try:
            wcs = WCS(header, naxis=2) if header.get("CTYPE1", "").startswith("RA") else None
        except Exception:  # astropy raises several types for broken WCS headers
            wcs = None
        fwhm = next((float(header[k]) for k in ("FWHM", "PFWHM", "SEEING") if k in header), None)
        level = saturation if saturation is not None else headerSaturation(header)
        unit = parseUnit(header.get("BUNIT"))
    if image.shape != variance.shape:
        raise InputError(f"{path}: image {image.shape} and variance {variance.shape} differ in shape")
    try:
        mask = makeInputMask(image, variance=variance, badPixels=badPixels, saturation=level)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return makeInputImage(image, variance, mask, wcs=wcs, unit=unit), fwhm


def _pick(specific: float | None, common: float | None) -> float | None:
    """Return the image's own option if given, else the common one."""
    return specific if specific is not None else common


def _checkOptions(args: argparse.Namespace) -> None:
    """Refuse noise option values no image could use (before any work).

    The FWHM options are checked as they are parsed (`fwhmArgument`).
    """
    import math

    perImage = [f"{which}_{name}" for which in ("template", "science") for name in ("gain", "read_noise")]
    for option in ("gain", "read_noise", *perImage):
        value = getattr(args, option, None)
        if value is None:
            continue
        flag = "--" + option.replace("_", "-")
        isReadNoise = option.endswith("read_noise")
        if not math.isfinite(value) or value < 0 or (value == 0 and not isReadNoise):
            allowed = "finite and >= 0" if isReadNoise else "finite and > 0"
            raise InputError(f"{flag} {value}: must be {allowed}")


def _subtractOne(
    args: argparse.Namespace,
    config: ImagePsfMatchConfig,
    template: MaskedImage,
    tFwhm: float,
    tFactor: float | None,
    sciencePath: str,
    index: int,
    detectConfig: DetectAndMeasureConfig | None = None,
) -> Any:
    """Read, check and subtract the ``index``-th science image; return what the run loop writes and prints."""
    from ..exclusions import candidateArguments
    from ..imagePsfMatch import ImagePsfMatchTask
    from .inputPairs import checkPair, readOrFail
    from .outputs import summarize

    science, sFwhm = readOrFail(
        readInput,
        sciencePath,
        hdu=args.hdu,
        saturation=_pick(args.science_saturation, args.saturation),
        **noiseReadOptions(args, "science", index),
    )
    checkPair(args.template, template, sciencePath, science, hdu=args.hdu)
    sFactor = scaleInputVariance(science, args, "science")
    from ..adapters.sourceFootprints import pairFootprints, sharedSourceMask

    # One 3-sigma detection per image for the streak search and the off-source background.
    footprints = pairFootprints(template, science, args.mask_streaks or config.doRefineBackgroundOffSources)
    if args.mask_streaks:
        from ..adapters.streakMask import maskStreaks

        maskStreaks(template, science, footprints=footprints)
    if args.mask_bad_lines:
        from ..adapters.badLines import maskBadLines

        maskBadLines(template, science)
    sFwhm = resolveFwhm(science, args.science_fwhm, sFwhm, args.science_psf)
    # Only the union of the footprints is used from here: their label images (128 MB at 4096^2) go.
    sourceMask = sharedSourceMask(footprints, template, science)
    del footprints
    convolveTemplate = args.convolve == "template" or (args.convolve == "auto" and tFwhm <= sFwhm)
    task = ImagePsfMatchTask(config=config)
    recordVarianceFactors(task, tFactor, sFactor)
    stamps, exclude = candidateArguments(args, sciencePath, science)
    start = time.perf_counter()
    result = task.run(
        template,
        science,
        templateFwhmPix=tFwhm,
        scienceFwhmPix=sFwhm,
        convolveTemplate=convolveTemplate,
        candidateList=stamps,
        exclude=exclude,
        sourceMask=sourceMask,
    )
    del sourceMask
    from ..kernelSumCheck import checkFitKernelSum

    checkFitKernelSum(task, result, template, science, convolveTemplate, max(tFwhm, sFwhm))
    if args.decorrelate or args.score:
        from ..imageDecorrelation import decorrelateDifference

        decorrelateDifference(result, template, science, score=args.score, sciencePsfFwhm=sFwhm)
    summary = summarize(task, result, time.perf_counter() - start)
    detection = None
    if args.detect:
        from ..detectAndMeasure import detectOnSubtraction

        detection = detectOnSubtraction(
            result,
            science,
            psfFwhm=sFwhm if convolveTemplate else tFwhm,
            convolveTemplate=convolveTemplate,
            config=detectConfig,
        )
    return task, result, summary, science, sFwhm, convolveTemplate, detection


def _run(
    args: argparse.Namespace, progressStream: TextIO | None = None, sheetWorker: SheetWorker | None = None
) -> int:
    # The stack's modules (pydantic models, SQLAlchemy tables, astropy units: over a million objects)
    # live as long as the process.  They are imported with the cyclic garbage collector off (its walks
    # over them during the imports cost 0.3-0.5 s) and then frozen: it stops walking them on each full
    # collection of the run and at exit, which at 1024^2 was over a second of the whole command's time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from lsst.pipe.base import NoWorkFound

        from ..imagePsfMatch import ImagePsfMatchTask
        from .errors import EXIT_FAILED_IMAGES, EXIT_OK, CliError, formatError
        from .inputPairs import checkMemory, readOrFail
        from .outputNames import outputNames
        from .outputs import writeOutputs
        from .progress import RunProgress
        from .runLock import RunLock
        from .staging import removeStaleStaging, stagedFolder

        gc.freeze()
    finally:
        if collecting:
            gc.enable()

    def report(exc: BaseException, where: str | None = None) -> None:
        text = formatError(exc)
        if where and where not in text:
            text = f"{where}: {text}"
        print(f"ipdiffim-subtract: error: {text}", file=sys.stderr, flush=True)
        if args.debug_errors:
            traceback.print_exception(exc, file=sys.stderr)

    outDir = Path(args.output)
    try:
        _checkOptions(args)
        config = ImagePsfMatchTask.ConfigClass()
        for name in ("AL", "DF"):
            config.kernel[name].fitForBackground = True
        if args.preset:
            from ..presets import applyPreset

            applyPreset(config, args.preset)
        # ``detectAndMeasure.`` keys go to the DIA-source task's config, the rest to the kernel fit's.
        detectKeys = [c for c in args.config if c.strip().startswith("detectAndMeasure.")]
        applyConfigOverrides(config, args.config_file, [c for c in args.config if c not in detectKeys])
        detectConfig = None
        if args.detect or detectKeys:
            from ..detectAndMeasure import DetectAndMeasureConfig

            detectConfig = DetectAndMeasureConfig()
            detectOverrides = [c.strip().removeprefix("detectAndMeasure.") for c in detectKeys]
            applyConfigOverrides(detectConfig, [], detectOverrides)
        names = outputNames(args.science)
        if outDir.exists() and not outDir.is_dir():
            raise InputError(f"{outDir}: exists and is not a folder")
        lock = RunLock(outDir)
        lock.__enter__()  # the lock is taken with signals held back; released in the finally below
    except CliError as exc:
        report(exc)
        return exc.exitCode
    try:
        removed = removeStaleStaging(outDir)
        if removed:
            logging.getLogger("ipdiffim-subtract").warning(
                "Removed %d staging folder(s) a killed run left in %s", len(removed), outDir
            )
        try:
            existing = [outDir / n for n in names if (outDir / n).exists()]
            if args.overwrite and args.skip_existing:
                raise InputError("--overwrite and --skip-existing exclude each other")
            if existing and not (args.overwrite or args.skip_existing):
                raise OutputExistsError(
                    f"{existing[0]} exists (an earlier run)"
                    + (f", and {len(existing) - 1} more" if len(existing) > 1 else "")
                    + "; nothing is overwritten unless --overwrite is given (or --skip-existing)"
                )
            template, tFwhm = readOrFail(
                readInput,
                args.template,
                hdu=args.hdu,
                saturation=_pick(args.template_saturation, args.saturation),
                **noiseReadOptions(args, "template"),
            )
            checkMemory(config, template, args.template)
            tFactor = scaleInputVariance(template, args, "template")
            tFwhm = resolveFwhm(template, args.template_fwhm, tFwhm, args.template_psf)
        except CliError as exc:
            report(exc)
            return exc.exitCode
        except (Exception, NoWorkFound) as exc:  # a library error on the template
            report(exc, args.template)
            return EXIT_REFUSED
        total = len(args.science)
        progress = RunProgress(total, stream=progressStream, quiet=args.quiet)
        failures: list[tuple[str, str]] = []
        written_total = skipped = 0
        try:
            for i, (sciencePath, name) in enumerate(zip(args.science, names, strict=True), start=1):
                label = Path(sciencePath).name
                progress.start(i, label)
                if args.skip_existing and (outDir / name).exists():
                    progress.write(f"  skipped: {outDir / name} exists")
                    progress.finish()
                    skipped += 1
                    continue
                try:
                    with stagedFolder(outDir, name, overwrite=args.overwrite) as staging:
                        task, result, summary, science, sFwhm, convolveTemplate, detection = _subtractOne(
                            args, config, template, tFwhm, tFactor, sciencePath, i - 1, detectConfig
                        )
                        written = writeOutputs(
                            staging,
                            task,
                            result,
                            summary,
                            template=template,
                            science=science,
                            sheetTitle=f"{label} - {Path(args.template).name}",
                            plots=not args.no_plots,
                            compression=args.compress,
                            detection=detection,
                            sheetWorker=sheetWorker,
                        )
                except (Exception, NoWorkFound) as exc:  # NoWorkFound is a BaseException
                    report(exc, sciencePath)
                    failures.append((sciencePath, formatError(exc)))
                    progress.finish()
                    continue
                progress.finish()
                written_total += 1
                if not args.quiet:
                    lines = [
                        f"  convolved: {'template' if convolveTemplate else 'science'} "
                        f"(FWHM template {tFwhm:.2f} px, science {sFwhm:.2f} px)"
                    ]
                    lines += [f"  {line}" for line in summary.format().splitlines()]
                    if detection is not None:
                        from .outputs import formatDiaSummary

                        lines.append(f"  {formatDiaSummary(detection)}")
                    lines.append(f"  wrote {len(written)} files to {outDir / name}")
                    progress.write("\n".join(lines))
        finally:
            progress.close()
        if total > 1 or failures:
            extra = f" ({skipped} skipped: outputs exist)" if skipped else ""
            print(
                f"done: {written_total} of {total} science images subtracted into {outDir}{extra}", flush=True
            )
        if failures:
            if total > 1:
                print(f"failed ({len(failures)} of {total}):", file=sys.stderr)
                for path, cause in failures:
                    print(f"  {cause if path in cause else f'{path}: {cause}'}", file=sys.stderr)
            return EXIT_FAILED_IMAGES
        return EXIT_OK
    finally:
        lock.release()


class _UsageError(Exception):
    """A command line `argparse` refused (already reported on one line)."""


class _OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other failure (`main` returns 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr, flush=True)
        raise _UsageError(message)


def main(argv: list[str] | None = None) -> int:
    """Subtract a template from one or more science images; return the exit code.

    See `lsst.ip.diffim.cli.errors` (and the README) for the exit codes.
    """
    parser = _OneLineErrorParser(
        prog="ipdiffim-subtract", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("template", help="template FITS file")
    parser.add_argument("science", nargs="+", help="science FITS file(s)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. kernel.active.spatialKernelOrder=1 (repeatable)",
    )
    parser.add_argument("-C", "--config-file", action="append", default=[], help="config override file")
    from ..presets import PRESETS

    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a named set of config settings, applied before -C/-c (crowded: pixel-level kernel for "
        "crowded fields of similar seeing; crowded-al: higher-degree Alard-Lupton basis); see "
        "lsst.ip.diffim.presets",
    )
    parser.add_argument(
        "--convolve",
        choices=("template", "science", "auto"),
        default="auto",
        help="which image to convolve (auto: the one with the narrower PSF)",
    )
    parser.add_argument("--gain", type=float, help="gain (e-/ADU) for images without a variance plane")
    parser.add_argument(
        "--read-noise", type=float, help="read noise (e-) for images without a variance plane"
    )
    parser.add_argument("--hdu", type=int, help="image HDU index of plain FITS inputs")
    parser.add_argument(
        "--saturation",
        type=float,
        help="saturation level of both images (default: SATURATE/SATLEVEL/DATAMAX header card)",
    )
    parser.add_argument("--template-saturation", type=float, help="saturation level of the template")
    parser.add_argument(
        "--mask-streaks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mask long thin features found in one image only (satellite and cosmic-ray trails) as STREAK, "
        "kept out of the kernel fit (default on)",
    )
    parser.add_argument(
        "--mask-bad-lines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mask rows and columns offset from their neighbours in one image only (bad detector lines, "
        "amplifier undershoot beside saturated stars) as BAD, kept out of the kernel fit (default on)",
    )
    parser.add_argument("--science-saturation", type=float, help="saturation level of the science image(s)")
    parser.add_argument(
        "--template-fwhm", type=fwhmArgument, help="template PSF FWHM (pixels); estimated if absent"
    )
    parser.add_argument(
        "--science-fwhm", type=fwhmArgument, help="science PSF FWHM (pixels); estimated if absent"
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        action="append",
        default=[],
        metavar="X Y | FILE",
        help="keep a position out of the kernel fit: X Y (FITS 1-based pixels of the science image), or "
        "a file of 'x y [radius]' lines or a ds9 region file (circles/points, image or sky coordinates); "
        "repeatable",
    )
    parser.add_argument(
        "--exclude-radius", type=float, default=0.0, help="smallest radius (pixels) of excluded positions"
    )
    parser.add_argument(
        "--stamps",
        metavar="FILE",
        help="kernel candidates to use: 'x y' lines or a ds9 file (like HOTPANTS -ssf)",
    )
    parser.add_argument(
        "--decorrelate",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="decorrelate the difference's noise (DecorrelateALKernelTask), as AlardLuptonSubtractTask does",
    )
    parser.add_argument(
        "--score",
        action="store_true",
        help="write the decorrelated score image (difference correlated with the science PSF; "
        "pixel / sqrt(variance) = detection S/N) in place of the difference; needs the template convolved",
    )
    parser.add_argument(
        "--detect",
        action="store_true",
        help="detect and measure DIA sources on the difference (writes dia_sources.fits; the counts go to "
        "the summary and metadata.json, the sources on the summary sheet)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the outputs of images an earlier run wrote"
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave images whose output folder exists alone (resume a killed run)",
    )
    parser.add_argument(
        "--debug-errors", action="store_true", help="print the traceback after each error line"
    )
    from .fitsWriting import COMPRESSION_CHOICES

    parser.add_argument("--no-plots", action="store_true", help="do not draw the summary sheet (summary.png)")
    parser.add_argument(
        "--compress",
        choices=COMPRESSION_CHOICES,
        default="mask",
        help="lossless (GZIP_2) tile compression of the FITS planes: the mask only (default; float noise "
        "hardly compresses and costs the most time), all planes, or none",
    )
    addNoiseArguments(parser)
    addPsfArguments(parser)
    try:
        args = parser.parse_args(argv)
    except _UsageError:
        return EXIT_REFUSED
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s %(levelname)s: %(message)s"
    )
    from .errors import InterruptedRun
    from .interrupts import signalsRaise

    sheetWorker = None
    if not args.no_plots:
        # matplotlib imported and the sheet's figure built in a child process, on the other core,
        # while this one imports the stack and subtracts.
        from .sheetWorker import SheetWorker

        sheetWorker = SheetWorker.start()
    try:
        with signalsRaise():
            return _run(args, sheetWorker=sheetWorker)
    except (KeyboardInterrupt, InterruptedRun) as exc:
        signum = exc.signum if isinstance(exc, InterruptedRun) else signal.SIGINT
        print(
            f"ipdiffim-subtract: interrupted ({signal.Signals(signum).name}): unfinished outputs removed, "
            "finished images kept",
            file=sys.stderr,
        )
        return 128 + int(signum)
    finally:
        if sheetWorker is not None:
            sheetWorker.close()


if __name__ == "__main__":
    sys.exit(main())
