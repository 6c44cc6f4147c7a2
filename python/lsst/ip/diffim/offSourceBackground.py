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
"""The differential background re-measured on the sky of the difference image.

The kernel fit solves for the kernel and the differential background together
on stamps centred on bright stars.  Whatever of a bright star the kernel cannot
represent (the far wing of a broad science PSF, a shape the spatial model
misses) is partly absorbed by the constant background term of its stamp: on
the crowded SAAO bulge pair of the demo the stamps' backgrounds rise with the
stars' brightness (brightest quartile +25 ADU above the spatial model, faintest
+5) and the sky between the stars comes out 0.19 sigma low.  With the kernel
fixed, the pixels away from every source measure the differential background
directly; `refineBackgroundOffSources` fits a correction of the background's
own spatial form to them (block medians, least squares) and applies it to both
the difference image and the background model.
"""

from __future__ import annotations

__all__ = [
    "OffSourceBackgroundResult",
    "blockMedians",
    "detectedSourceMask",
    "growMask",
    "refineBackgroundOffSources",
]

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .math.functions import Function2
from .math.masks import anyMaskPlaneSet
from .math.objectExtraction import detectedPixels
from .math.rowMedians import rowMedians
from .math.skySubtraction import skySubtractedPlanes

if TYPE_CHECKING:
    from lsst.images import MaskedImage

#: Mask planes of the difference whose pixels never measure the sky.
_UNUSABLE_PLANES = ("NO_DATA", "EDGE", "SAT", "BAD")


@dataclass(frozen=True)
class OffSourceBackgroundResult:
    """What `refineBackgroundOffSources` measured and applied."""

    #: Correction added to the difference image's background, per parameter of the model.
    delta: np.ndarray
    #: Median of the correction over the image (difference units).
    median: float
    #: Spatial order of the fitted correction (lowered when few blocks have sky).
    order: int
    #: Number of blocks with enough off-source pixels.
    nBlocks: int
    #: Number of off-source pixels used.
    nPixels: int


def detectedSourceMask(images: Iterable[MaskedImage], nSigma: float = 3.0, grow: int = 2) -> np.ndarray:
    """Return `True` on the pixels of sources detected on any of ``images``.

    Each image is background-subtracted (`sep.Background`) and thresholded at
    ``nSigma`` times the square root of its variance plane; the connected
    (8-neighbour) groups of at least 5 pixels above it are sources, as
    `sep.extract` without filtering finds them.  The union over the images
    is grown by ``grow`` pixels (4-neighbour steps, a diamond), so that the
    faint wings of the sources are excluded too.

    Parameters
    ----------
    images : iterable of `lsst.images.MaskedImage`
        Images on one pixel grid (e.g. the template and the science image).
    nSigma : `float`, optional
        Detection threshold in units of the pixel noise.
    grow : `int`, optional
        Growth of the footprints in pixels.

    Returns
    -------
    mask : `numpy.ndarray`
        Boolean array of the images' shape.
    """
    result = None
    for maskedImage in images:
        found = _sourcePixels(maskedImage, nSigma)
        result = found if result is None else result | found
    if result is None:
        raise ValueError("No images to detect sources on.")
    return growMask(result, grow)


def _sourcePixels(maskedImage: MaskedImage, nSigma: float, minArea: int = 5) -> np.ndarray:
    """Return the pixels of the sources of one image (`detectedSourceMask`)."""
    planes = skySubtractedPlanes(maskedImage)
    if planes is None:
        return np.zeros(maskedImage.image.array.shape, dtype=bool)
    data = planes.data
    labels, rows, cols, pixelLabels = detectedPixels(data, nSigma, planes.variance, planes.bad)
    found = np.zeros(data.shape, dtype=bool)
    if len(labels):
        area = np.bincount(pixelLabels, minlength=int(labels.max()) + 1)
        keep = area[pixelLabels] >= minArea
        found[rows[keep], cols[keep]] = True
    return found


def growMask(mask: np.ndarray, grow: int) -> np.ndarray:
    """Grow a boolean mask by ``grow`` 4-neighbour steps (`lsst.ip.diffim.math.crossDilation.dilateCross`).

    The same pixels as ``scipy.ndimage.binary_dilation(mask, iterations=grow)``;
    ``mask`` is not modified and 0 steps return a copy.
    """
    from .math.crossDilation import dilateCross

    return dilateCross(mask, grow)


def blockMedians(
    image: np.ndarray, usable: np.ndarray, blockSize: int, band: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median and mean position of the usable pixels of each block of an image.

    Blocks are ``blockSize`` square, in raster order from the array's
    origin (the last row and column of blocks may be smaller).  Each median
    is the one `numpy.median` gives for the block's usable pixels, in the
    image's precision: the unusable pixels are set half to ``-inf`` and half
    to ``+inf``, so that the middle elements of the whole block are the
    middle elements of its usable pixels, and one `numpy.partition` serves
    every block of a band of block rows.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d image.
    usable : `numpy.ndarray`
        Boolean array of the image's shape.
    blockSize : `int`
        Side of the blocks (pixels).
    band : `int`, optional
        Number of block rows handled at once (bounds the temporary memory).

    Returns
    -------
    count : `numpy.ndarray`
        Number of usable pixels per block, shape ``(nBlocksY, nBlocksX)``.
    median : `numpy.ndarray`
        Median of the usable pixels (NaN where there are none).
    xMean, yMean : `numpy.ndarray`
        Mean column and row (array indices) of the usable pixels.
    """
    ny, nx = image.shape
    b = int(blockSize)
    nby, nbx = -(-ny // b), -(-nx // b)
    k = b * b
    offsets = np.arange(b, dtype=np.float64)
    count = np.zeros((nby, nbx), dtype=np.int64)
    median = np.full((nby, nbx), np.nan)
    xMean = np.full((nby, nbx), np.nan)
    yMean = np.full((nby, nbx), np.nan)
    dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.dtype(np.float64)
    for by0 in range(0, nby, band):
        by1 = min(by0 + band, nby)
        y0, y1 = by0 * b, min(by1 * b, ny)
        values = np.zeros(((by1 - by0) * b, nbx * b), dtype=dtype)
        ok = np.zeros(values.shape, dtype=bool)
        values[: y1 - y0, :nx] = image[y0:y1]
        ok[: y1 - y0, :nx] = usable[y0:y1]
        # (block row, block column, row in block, column in block)
        okBlocks = ok.reshape(by1 - by0, b, nbx, b).transpose(0, 2, 1, 3)
        n = okBlocks.sum(axis=(2, 3))
        count[by0:by1] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            yMean[by0:by1] = (okBlocks.sum(axis=3) @ offsets) / n
            xMean[by0:by1] = (okBlocks.sum(axis=2) @ offsets) / n
        flat = np.ascontiguousarray(values.reshape(by1 - by0, b, nbx, b).transpose(0, 2, 1, 3)).reshape(-1, k)
        okFlat = np.ascontiguousarray(okBlocks).reshape(-1, k)
        median[by0:by1] = rowMedians(flat, okFlat, overwrite=True).reshape(by1 - by0, nbx)
    return count, median, xMean, yMean


def refineBackgroundOffSources(
    difference: MaskedImage,
    inputs: Iterable[MaskedImage],
    background: Function2,
    *,
    backgroundScale: float = 1.0,
    blockSize: int = 32,
    minPixelsPerBlock: int = 10,
    minBlocksPerTerm: float = 3.0,
    grow: int = 2,
    sourceMask: np.ndarray | None = None,
) -> OffSourceBackgroundResult | None:
    """Fit the residual sky of a difference image and remove it, in place.

    Parameters
    ----------
    difference : `lsst.images.MaskedImage`
        The difference image; its image plane is corrected in place.
    inputs : iterable of `lsst.images.MaskedImage`
        The images on the difference's grid whose sources are kept out
        (the science image and the template).
    background : `lsst.ip.diffim.math.Function2`
        The background model; its parameters are corrected in place.
    backgroundScale : `float`, optional
        Change of the model per unit change of the difference's sky: ``+1``
        when the difference is ``science - matched - background``,
        ``-kernelSum`` when it is ``(matchedScience + background - template)
        / kernelSum``.
    blockSize : `int`, optional
        Side (pixels) of the blocks whose median off-source values are fitted.
    minPixelsPerBlock : `int`, optional
        Blocks with fewer off-source pixels are left out.
    minBlocksPerTerm : `float`, optional
        The correction's order is lowered (down to a constant) until there
        are at least this many blocks per term.
    grow : `int`, optional
        Growth (pixels) of the source mask (`detectedSourceMask`).
    sourceMask : `numpy.ndarray`, optional
        The pixels of the inputs' sources (not grown) if already detected,
        as `detectedSourceMask` finds them
        (`lsst.ip.diffim.adapters.sourceFootprints.sharedSourceMask`):
        grown by ``grow`` and used instead of detecting again.

    Returns
    -------
    result : `OffSourceBackgroundResult` or `None`
        `None` (nothing changed) when fewer than ``minBlocksPerTerm`` blocks
        have sky.
    """
    image = difference.image.array
    variance = difference.variance.array
    usable = np.isfinite(image) & np.isfinite(variance) & (variance > 0)
    unusable = anyMaskPlaneSet(difference.mask, list(_UNUSABLE_PLANES))
    if unusable is not None:
        usable &= ~unusable
    if sourceMask is None or sourceMask.shape != usable.shape:
        sourceMask = detectedSourceMask(inputs, grow=0)
    usable &= ~growMask(sourceMask, grow)
    bbox = difference.bbox
    count, medians, xMean, yMean = blockMedians(image, usable, blockSize)
    use = count >= minPixelsPerBlock
    by, bx = np.nonzero(use)
    xs = bbox.x.start + bx * blockSize + xMean[use]
    ys = bbox.y.start + by * blockSize + yMean[use]
    values = medians[use]
    weights = count[use].astype(float)
    nBlocks = len(values)
    order = background.getOrder()
    while order > 0 and nBlocks < minBlocksPerTerm * (order + 1) * (order + 2) // 2:
        order -= 1
    if nBlocks < minBlocksPerTerm:
        return None
    nTerms = (order + 1) * (order + 2) // 2
    design = background.terms(xs, ys)[:nTerms].T
    w = np.sqrt(weights)
    coeffs, *_ = np.linalg.lstsq(design * w[:, None], values * w, rcond=None)
    correction = background.clone()
    params = np.zeros(background.getNParameters())
    params[:nTerms] = coeffs
    correction.setParameters(params)
    correction.addTo(image, bbox, scale=-1.0)
    background.setParameters(np.asarray(background.getParameters()) + backgroundScale * params)
    median = float(np.median(design @ coeffs))
    return OffSourceBackgroundResult(
        delta=backgroundScale * params,
        median=median,
        order=order,
        nBlocks=nBlocks,
        nPixels=int(np.count_nonzero(usable)),
    )
