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
"""The noise-model options of ``ipdiffim-subtract`` (per-image gain, read noise, variance files, scaling)."""

from __future__ import annotations

__all__ = ["addNoiseArguments", "noiseReadOptions", "recordVarianceFactors", "scaleInputVariance"]

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lsst.images import MaskedImage
    from lsst.pipe.base import Task


def addNoiseArguments(parser: argparse.ArgumentParser) -> None:
    """Register the per-image noise options (``--gain``/``--read-noise`` stay in the main parser)."""
    group = parser.add_argument_group(
        "noise model",
        "Without a variance plane the variance is the sky variance measured from the image plus the "
        "Poisson noise of the sources, max(image - sky, 0)/gain, so sky-subtracted frames work. "
        "Per-image values override --gain/--read-noise, which override GAIN/RDNOISE header cards.",
    )
    for which in ("template", "science"):
        group.add_argument(f"--{which}-gain", type=float, help=f"gain (e-/ADU) of the {which} image(s)")
        group.add_argument(
            f"--{which}-read-noise", type=float, help=f"read noise (e-) of the {which} image(s)"
        )
    group.add_argument(
        "--template-variance", help="FITS file with the template's variance (or 1-sigma errors)"
    )
    group.add_argument(
        "--science-variance",
        action="append",
        default=[],
        help="FITS file with a science image's variance (or 1-sigma errors); repeat once per science "
        "image, in the same order",
    )
    group.add_argument(
        "--variance-kind",
        choices=("auto", "variance", "sigma"),
        default="auto",
        help="what the variance files hold: variance, sigma (1-sigma errors, squared on reading) or auto "
        "(default): EXTNAME/HDUNAME/BUNIT (ERR, SIGMA, NOISE, RMS = errors; VARIANCE, VAR = variance), "
        "else whichever of the two matches the image's pixel noise",
    )
    group.add_argument(
        "--sky-noise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the sky noise measured from the image in a gain/read-noise variance (default on; "
        "--no-sky-noise gives the plain max(image,0)/gain + (read noise/gain)^2 model)",
    )
    group.add_argument(
        "--scale-variance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rescale each input's variance to its measured noise (ScaleVarianceTask; default on, a "
        "deviation from the stack, where doScaleVariance is a task option)",
    )


def noiseReadOptions(args: argparse.Namespace, which: str, index: int = 0) -> dict[str, Any]:
    """Return the `readInput` keywords for the template or the ``index``-th science image.

    Raises
    ------
    ValueError
        If ``--science-variance`` is given but not once per science image.
    """
    gain = getattr(args, f"{which}_gain")
    readNoise = getattr(args, f"{which}_read_noise")
    paths = args.science_variance
    # Checked with the template too, so that a bad count stops the run before any output.
    if paths and len(paths) != len(args.science):
        raise ValueError(
            f"--science-variance given {len(paths)} times for {len(args.science)} science images; "
            "give it once per science image"
        )
    if which == "template":
        variancePath = args.template_variance
    else:
        variancePath = paths[index] if paths else None
    return {
        "gain": gain if gain is not None else args.gain,
        "readNoise": readNoise if readNoise is not None else args.read_noise,
        "variancePath": variancePath,
        "varianceKind": args.variance_kind,
        "measureSky": args.sky_noise,
    }


def scaleInputVariance(image: MaskedImage, args: argparse.Namespace, which: str) -> float | None:
    """Rescale ``image``'s variance in place if ``--scale-variance`` (the default); return the factor."""
    if not args.scale_variance:
        return None
    from ..adapters.noiseModel import applyVarianceScaling
    from ..scaleVariance import ExceedsMaxVarianceScaleError

    try:
        return applyVarianceScaling(image, name=f"scale{which.capitalize()}Variance")
    except ExceedsMaxVarianceScaleError as exc:
        raise ValueError(
            f"{which} variance: {exc} (check the gain/variance inputs, or give --no-scale-variance)"
        ) from exc


def recordVarianceFactors(task: Task, templateFactor: float | None, scienceFactor: float | None) -> None:
    """Record the factors in the task metadata as upstream's subtraction task does."""
    if templateFactor is not None:
        task.metadata["scaleTemplateVarianceFactor"] = float(templateFactor)
    if scienceFactor is not None:
        task.metadata["scaleScienceVarianceFactor"] = float(scienceFactor)
