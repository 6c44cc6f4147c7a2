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
Without a variance plane, ``--gain`` and ``--read-noise`` build one.  Config
overrides use pex_config syntax, with the same keys as ``pipetask -c``:
``-c kernel.active.spatialKernelOrder=1``.
"""

from __future__ import annotations

__all__ = ["InputError", "main", "readInput"]

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..adapters.exposures import makeVisitImage
from ..adapters.psf import estimateFwhmFromImage
from .configOverrides import applyConfigOverrides
from .errors import EXIT_REFUSED, InputError, OutputExistsError


def _findHdu(hdul: fits.HDUList, names: tuple[str, ...]) -> int | None:
    for i, hdu in enumerate(hdul):
        if hdu.name.upper() in names and hdu.data is not None:
            return i
    return None


def readInput(
    path: str, *, hdu: int | None = None, gain: float | None = None, readNoise: float | None = None
) -> tuple[Any, float | None]:
    """Read one input image as an `lsst.images.VisitImage`.

    Returns
    -------
    image : `lsst.images.VisitImage`
        The image (with a default Gaussian PSF; see the FWHM).
    fwhm : `float` or `None`
        The FWHM recorded in the header (``FWHM``, ``PFWHM``, ``SEEING``) if any.

    Raises
    ------
    InputError
        For a missing or unreadable file, or when no variance can be built.
    """
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

            try:
                return VisitImage.read(path), None
            except Exception as exc:  # lsst.images raises many types for foreign files
                raise InputError(f"{path}: lsst-images file could not be read ({exc})") from exc
        if hdu is None:
            hdu = next((i for i, h in enumerate(hdul) if h.data is not None and h.data.ndim == 2), None)
        if hdu is None or hdu >= len(hdul) or hdul[hdu].data is None or hdul[hdu].data.ndim != 2:
            raise InputError(f"{path}: no 2-d image HDU")
        image = np.asarray(hdul[hdu].data, dtype=np.float32)
        header = hdul[hdu].header
        varIndex = _findHdu(hdul, ("VARIANCE", "VAR"))
        errIndex = _findHdu(hdul, ("ERR", "ERROR", "SIGMA", "NOISE"))
        maskIndex = _findHdu(hdul, ("MASK", "DQ", "BPM"))
        if varIndex is not None and varIndex != hdu:
            variance = np.asarray(hdul[varIndex].data, dtype=np.float32)
        elif errIndex is not None and errIndex != hdu:
            variance = np.asarray(hdul[errIndex].data, dtype=np.float32) ** 2
        else:
            g = gain if gain is not None else header.get("GAIN")
            rn = readNoise if readNoise is not None else header.get("RDNOISE", header.get("READNOIS"))
            if g is None or rn is None:
                raise InputError(
                    f"{path}: no variance or error extension; give --gain and --read-noise "
                    "(or GAIN/RDNOISE header keywords)"
                )
            variance = (np.maximum(image, 0.0) / float(g) + (float(rn) / float(g)) ** 2).astype(np.float32)
        badPixels = None
        if maskIndex is not None and maskIndex != hdu:
            badPixels = np.asarray(hdul[maskIndex].data) != 0
        try:
            wcs = WCS(header, naxis=2) if header.get("CTYPE1", "").startswith("RA") else None
        except Exception:  # astropy raises several types for broken WCS headers
            wcs = None
        fwhm = next((float(header[k]) for k in ("FWHM", "PFWHM", "SEEING") if k in header), None)
    if image.shape != variance.shape:
        raise InputError(f"{path}: image {image.shape} and variance {variance.shape} differ in shape")
    from lsst.images import Mask

    from ..math.masks import makeDifferenceMaskSchema

    schema = makeDifferenceMaskSchema()
    maskArray = np.zeros(image.shape + (1,), dtype=np.int32)
    if badPixels is not None:
        maskArray[badPixels, 0] |= int(schema.bitmask("BAD")[0])
    nonFinite = ~np.isfinite(image)
    maskArray[nonFinite, 0] |= int(schema.bitmask("NO_DATA")[0])
    from lsst.images import Box

    bbox = Box.from_shape(image.shape)
    return makeVisitImage(image, variance, Mask(maskArray, schema=schema, bbox=bbox), wcs=wcs), fwhm


def _checkOptions(args: argparse.Namespace) -> None:
    """Refuse option values no image could use (before any work)."""
    import math

    for option in ("gain", "read_noise", "template_fwhm", "science_fwhm"):
        value = getattr(args, option, None)
        if value is None:
            continue
        flag = "--" + option.replace("_", "-")
        if not math.isfinite(value) or value < 0 or (value == 0 and option != "read_noise"):
            allowed = "finite and >= 0" if option == "read_noise" else "finite and > 0"
            raise InputError(f"{flag} {value}: must be {allowed}")


def _subtractOne(args: argparse.Namespace, config: Any, template: Any, tFwhm: float, sciencePath: str) -> Any:
    """Read, check and subtract one science image; return what the run loop writes and prints."""
    from ..imagePsfMatch import ImagePsfMatchTask
    from .inputPairs import checkPair, readOrFail
    from .outputs import summarize

    science, sFwhm = readOrFail(
        readInput, sciencePath, hdu=args.hdu, gain=args.gain, readNoise=args.read_noise
    )
    checkPair(args.template, template, sciencePath, science, hdu=args.hdu)
    sFwhm = args.science_fwhm or sFwhm or estimateFwhmFromImage(science)
    convolveTemplate = args.convolve == "template" or (args.convolve == "auto" and tFwhm <= sFwhm)
    task = ImagePsfMatchTask(config=config)
    start = time.perf_counter()
    result = task.run(
        template,
        science,
        templateFwhmPix=tFwhm,
        scienceFwhmPix=sFwhm,
        convolveTemplate=convolveTemplate,
    )
    summary = summarize(task, result, time.perf_counter() - start)
    return task, result, summary, science, sFwhm, convolveTemplate


def _run(args: argparse.Namespace, progressStream: Any = None) -> int:
    from lsst.pipe.base import NoWorkFound

    from ..imagePsfMatch import ImagePsfMatchTask
    from .errors import EXIT_FAILED_IMAGES, EXIT_OK, CliError, formatError
    from .inputPairs import checkMemory, readOrFail
    from .outputNames import outputNames
    from .outputs import writeOutputs
    from .progress import RunProgress
    from .runLock import RunLock
    from .staging import removeStaleStaging, stagedFolder

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
        applyConfigOverrides(config, args.config_file, args.config)
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
                readInput, args.template, hdu=args.hdu, gain=args.gain, readNoise=args.read_noise
            )
            checkMemory(config, template, args.template)
            tFwhm = args.template_fwhm or tFwhm or estimateFwhmFromImage(template)
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
                        task, result, summary, science, sFwhm, convolveTemplate = _subtractOne(
                            args, config, template, tFwhm, sciencePath
                        )
                        written = writeOutputs(
                            staging,
                            task,
                            result,
                            summary,
                            template=template,
                            science=science,
                            sheetTitle=f"{label} - {Path(args.template).name}",
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


def main(argv: list[str] | None = None) -> int:
    """Subtract a template from one or more science images; return the exit code.

    See `lsst.ip.diffim.cli.errors` (and the README) for the exit codes.
    """
    parser = argparse.ArgumentParser(
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
    parser.add_argument("--template-fwhm", type=float, help="template PSF FWHM (pixels); estimated if absent")
    parser.add_argument("--science-fwhm", type=float, help="science PSF FWHM (pixels); estimated if absent")
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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s %(levelname)s: %(message)s"
    )
    from .errors import InterruptedRun
    from .interrupts import signalsRaise

    try:
        with signalsRaise():
            return _run(args)
    except (KeyboardInterrupt, InterruptedRun) as exc:
        signum = exc.signum if isinstance(exc, InterruptedRun) else signal.SIGINT
        print(
            f"ipdiffim-subtract: interrupted ({signal.Signals(signum).name}): unfinished outputs removed, "
            "finished images kept",
            file=sys.stderr,
        )
        return 128 + int(signum)


if __name__ == "__main__":
    sys.exit(main())
