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
"""Bad rows and columns of an input image (the ``BAD`` mask plane).

A CCD row or column can be offset from its neighbours along its whole
length: a bad line of the detector, or the amplifier's undershoot after a
heavily saturated star read out in that row (SAAO frame 0100: rows 198-199
lie 1.5 sigma per pixel low, which leaves a line of ``+2 sigma`` residuals,
and up to ``-7 sigma`` beside the star, across the difference).  The camera's
ISR masks such lines as ``BAD``; inputs of the command line and of
`lsst.ip.diffim.subtract` arrive without them.

`badLinePixels` measures, for every row (and column), the median over the
line of its offset from the lines two pixels away on either side, in units
of the pixel noise.  Stars average out of that median; a line whose offset
is far out of the distribution of all lines' offsets (``threshold`` robust
standard deviations, and at least ``minOffset`` sigma per pixel) is bad.
Given the other image of the pair (`maskBadLines`), a line is kept only if
the other image shows less than ``maxReferenceRatio`` of that offset on the
same pixels (so that a feature of the sky, in both images, is never masked).
"""

from __future__ import annotations

__all__ = ["LINE_SAMPLES", "badLinePixels", "lineOffsets", "maskBadLines"]

import logging
from typing import TYPE_CHECKING

import numpy as np

from ..math.rowMedians import rowMedians

if TYPE_CHECKING:
    from lsst.images import MaskedImage

_LOG = logging.getLogger(__name__)


#: Pixels of a line its median offset is measured on: lines of ``k`` times as many pixels use every k-th
#: one (at 4096 pixels a side every 8th: the spread of all lines' offsets, 0.058 sigma instead of 0.024
#: on the 4096^2 bench pair, stays far below ``minOffset``, which then sets the threshold).
LINE_SAMPLES = 512


def lineOffsets(
    image: np.ndarray, variance: np.ndarray | None = None, axis: int = 0, maxSamples: int = LINE_SAMPLES
) -> np.ndarray:
    """Return each line's median offset from the lines two pixels away, in units of the noise.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d image (NaN/inf pixels are ignored).
    variance : `numpy.ndarray`, optional
        Its variance (the noise of every pixel); the median absolute
        deviation of the line differences if not given.
    axis : `int`, optional
        0 for rows, 1 for columns.
    maxSamples : `int`, optional
        Lines of at least twice this many pixels are measured on every
        ``length // maxSamples``-th pixel.

    Returns
    -------
    offsets : `numpy.ndarray`
        One value per row (``axis=0``) or column (``axis=1``); NaN for the
        two lines at either edge and for lines without usable pixels.
    """
    data = np.asarray(image)
    dtype = np.result_type(data.dtype, np.float32)
    n = data.shape[axis]
    out = np.full(n, np.nan)
    if data.ndim != 2 or n < 5:
        return out
    step = max(1, data.shape[1 - axis] // max(1, maxSamples))
    # The lines as rows of the sampled pixels (a view for rows; columns differenced first, then transposed).
    sampled = data[:, ::step] if axis == 0 else data[::step]
    sampledVar = None if variance is None else np.asarray(variance)
    if sampledVar is not None:
        sampledVar = sampledVar[:, ::step] if axis == 0 else sampledVar[::step]
    lines = (slice(2, -2), slice(None)) if axis == 0 else (slice(None), slice(2, -2))
    before = (slice(None, -4), slice(None)) if axis == 0 else (slice(None), slice(None, -4))
    after = (slice(4, None), slice(None)) if axis == 0 else (slice(None), slice(4, None))
    diff = sampled[before].astype(dtype)
    diff += sampled[after]
    diff *= dtype.type(-0.5)
    diff += sampled[lines]
    with np.errstate(invalid="ignore", divide="ignore"):
        if sampledVar is not None:
            noise = np.asarray(sampledVar[lines], dtype=dtype) * dtype.type(1.5)
            noise[~(noise > 0)] = np.nan
            np.sqrt(noise, out=noise)
        else:
            finite = diff[np.isfinite(diff)]
            scale = 1.4826 * np.median(np.abs(finite - np.median(finite))) if finite.size else np.nan
            noise = np.asarray(scale if scale > 0 else np.nan, dtype=dtype)
        z = diff
        z /= noise
    z[~np.isfinite(z)] = np.nan
    if axis == 1:
        z = np.ascontiguousarray(z.T)
    usable = np.isfinite(z).sum(axis=1) >= max(16, z.shape[1] // 4)
    if usable.any():
        out[2:-2][usable] = rowMedians(z if usable.all() else z[usable], overwrite=True)
    return out


def _outliers(offsets: np.ndarray, threshold: float, minOffset: float) -> np.ndarray:
    """Lines whose offset is far out of the distribution of all lines' offsets."""
    good = np.isfinite(offsets)
    flagged = np.zeros(offsets.shape, dtype=bool)
    if good.sum() < 20:
        return flagged
    centre = np.median(offsets[good])
    scale = 1.4826 * np.median(np.abs(offsets[good] - centre))
    excess = np.abs(offsets - centre)
    flagged[good] = (excess[good] > threshold * scale) & (excess[good] > minOffset)
    return flagged


def badLinePixels(
    image: np.ndarray,
    variance: np.ndarray | None = None,
    *,
    threshold: float = 8.0,
    minOffset: float = 1.0,
    grow: int = 1,
    reference: np.ndarray | None = None,
    referenceVariance: np.ndarray | None = None,
    maxReferenceRatio: float = 0.25,
    maxSamples: int = LINE_SAMPLES,
) -> np.ndarray:
    """Return the pixels of the bad rows and columns of ``image``.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d image.
    variance : `numpy.ndarray`, optional
        Its variance.
    threshold : `float`, optional
        A line is bad when its offset (`lineOffsets`) is more than this
        many robust standard deviations of all lines' offsets from their
        median...
    minOffset : `float`, optional
        ...and more than this many sigma per pixel.
    grow : `int`, optional
        Lines on either side of a bad line also masked (its neighbours
        share its defect in part: SAAO 0100 rows 197 and 199 beside 198).
    reference, referenceVariance : `numpy.ndarray`, optional
        The other image of the pair (same grid) and its variance: a line
        whose offset there is at least ``maxReferenceRatio`` of its offset
        in ``image`` is a feature of the sky, not of the detector.
    maxReferenceRatio : `float`, optional
        See ``reference``.
    maxSamples : `int`, optional
        Pixels per line measured (`lineOffsets`).

    Returns
    -------
    bad : `numpy.ndarray`
        Boolean array of ``image``'s shape: the whole bad lines (grown).
    """
    out = np.zeros(np.shape(image), dtype=bool)
    for axis in (0, 1):
        offsets = lineOffsets(image, variance, axis, maxSamples)
        lines = _outliers(offsets, threshold, minOffset)
        if lines.any() and reference is not None:
            other = lineOffsets(reference, referenceVariance, axis, maxSamples)
            centre = np.nanmedian(offsets)
            otherCentre = np.nanmedian(other)
            inOther = np.abs(other - otherCentre) >= maxReferenceRatio * np.abs(offsets - centre)
            lines &= ~np.nan_to_num(inOther, nan=False).astype(bool)
        if grow > 0 and lines.any():
            index = np.flatnonzero(lines)
            grown = (index[:, None] + np.arange(-grow, grow + 1)[None, :]).ravel()
            lines[grown[(grown >= 0) & (grown < len(lines))]] = True
        if axis == 0:
            out[lines, :] = True
        else:
            out[:, lines] = True
    return out


def maskBadLines(template: MaskedImage, science: MaskedImage, planeName: str = "BAD") -> tuple[int, int]:
    """Set the bad rows and columns of each image of a pair (absent from the other) in its ``BAD`` plane.

    Parameters
    ----------
    template, science : `lsst.images.MaskedImage` or `lsst.images.VisitImage`
        The pair, on one grid; their masks are updated in place.
    planeName : `str`, optional
        The mask plane set.

    Returns
    -------
    nTemplate, nScience : `int`
        The number of pixels set in each mask.
    """
    from .pairMasks import maskPairPlanes

    def pixelsOf(which: int, image: MaskedImage, other: MaskedImage) -> np.ndarray:
        return badLinePixels(
            image.image.array,
            image.variance.array,
            reference=other.image.array,
            referenceVariance=other.variance.array,
        )

    counts = maskPairPlanes(template, science, planeName, pixelsOf)
    for which, count in enumerate(counts):
        if count:
            _LOG.info(
                "Masked %d bad row/column pixels of the %s image as %s.",
                count, ("template", "science")[which], planeName,
            )  # fmt: skip
    return counts
