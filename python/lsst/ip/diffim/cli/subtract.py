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

With ``--detect``, DIA sources are detected and measured on each difference
(`lsst.ip.diffim.detectAndMeasure.DetectAndMeasureTask`) and written as
``dia_sources.fits``; their counts (``NFalsePositives*``) are printed and
they are drawn on the summary sheet.  Overrides of that task's config start
with ``detectAndMeasure.``: ``-c detectAndMeasure.thresholdValue=4``.
"""

from __future__ import annotations

__all__ = ["InputError", "main", "readInput"]

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..adapters.exposures import makeVisitImage
from ..adapters.psf import estimateFwhmFromImage


class InputError(ValueError):
    """An input file cannot be used (missing, unreadable, no image, bad options)."""


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


def _applyOverrides(config: Any, configFiles: list[str], overrides: list[str]) -> None:
    for path in configFiles:
        if not os.path.exists(path):
            raise InputError(f"{path}: no such config file")
        config.load(path)
    for item in overrides:
        if "=" not in item:
            raise InputError(f"config override {item!r} is not key=value")
        key, value = item.split("=", 1)
        target = config
        parts = key.strip().split(".")
        for part in parts[:-1]:
            target = getattr(target, part)
        try:
            field = type(target)._fields[parts[-1]]
        except (AttributeError, KeyError):
            raise InputError(f"unknown config field {key!r}") from None
        from ast import literal_eval

        try:
            parsed = literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        if field.dtype is float and isinstance(parsed, int):
            parsed = float(parsed)
        try:
            setattr(target, parts[-1], parsed)
        except Exception as exc:  # pex_config raises FieldValidationError/TypeError
            raise InputError(f"invalid value for {key!r}: {exc}") from exc
    config.validate()


def main(argv: list[str] | None = None) -> int:
    """Subtract a template from one or more science images."""
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
    parser.add_argument(
        "--detect",
        action="store_true",
        help="detect and measure DIA sources on the difference (writes dia_sources.fits; the counts go to "
        "the summary and metadata.json, the sources on the summary sheet)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s %(levelname)s: %(message)s"
    )

    from ..imagePsfMatch import ImagePsfMatchTask
    from ..psfMatch import NoKernelCandidatesError
    from .outputs import summarize, writeOutputs

    try:
        config = ImagePsfMatchTask.ConfigClass()
        config.kernel.active.fitForBackground = True
        detectKeys = [c for c in args.config if c.strip().startswith("detectAndMeasure.")]
        _applyOverrides(config, args.config_file, [c for c in args.config if c not in detectKeys])
        detectConfig = None
        if args.detect or detectKeys:
            from ..detectAndMeasure import DetectAndMeasureConfig

            detectConfig = DetectAndMeasureConfig()
            detectOverrides = [c.strip().removeprefix("detectAndMeasure.") for c in detectKeys]
            _applyOverrides(detectConfig, [], detectOverrides)
        template, tFwhm = readInput(args.template, hdu=args.hdu, gain=args.gain, readNoise=args.read_noise)
        tFwhm = args.template_fwhm or tFwhm or estimateFwhmFromImage(template)
    except (InputError, ValueError) as exc:
        print(f"ipdiffim-subtract: error: {exc}", file=sys.stderr)
        return 2
    status = 0
    total = len(args.science)
    for i, sciencePath in enumerate(args.science, start=1):
        label = Path(sciencePath).name
        print(f"[{i}/{total}] {label}", flush=True)
        try:
            science, sFwhm = readInput(sciencePath, hdu=args.hdu, gain=args.gain, readNoise=args.read_noise)
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
            prefix = f"{Path(sciencePath).stem.removesuffix('.fits')}_" if total > 1 else ""
            written = writeOutputs(
                args.output,
                task,
                result,
                summary,
                prefix=prefix,
                template=template,
                science=science,
                sheetTitle=f"{label} - {Path(args.template).name}",
                detection=detection,
            )
        except (InputError, NoKernelCandidatesError, ValueError, ArithmeticError) as exc:
            print(f"ipdiffim-subtract: error: {label}: {exc}", file=sys.stderr)
            status = 1
            continue
        except Exception as exc:  # NoWorkFound and other pipeline errors: report and go on
            print(f"ipdiffim-subtract: error: {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(
            f"  convolved: {'template' if convolveTemplate else 'science'} "
            f"(FWHM template {tFwhm:.2f} px, science {sFwhm:.2f} px)"
        )
        for line in summary.format().splitlines():
            print(f"  {line}")
        if detection is not None:
            from .outputs import formatDiaSummary

            print(f"  {formatDiaSummary(detection)}")
        print(f"  wrote {len(written)} files to {args.output}")
    return status


if __name__ == "__main__":
    sys.exit(main())
