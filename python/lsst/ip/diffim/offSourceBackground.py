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

__all__ = ["OffSourceBackgroundResult", "detectedSourceMask", "refineBackgroundOffSources"]

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .math.functions import Function2
from .math.masks import anyMaskPlaneSet

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


def detectedSourceMask(images: Iterable[Any], nSigma: float = 3.0, grow: int = 2) -> np.ndarray:
    """Return `True` on the pixels of sources detected on any of ``images``.

    Each image is background-subtracted and thresholded at ``nSigma`` times
    the square root of its variance plane (`sep`, minimum area 5 pixels, no
    smoothing); the union of the segmentation maps is grown by ``grow``
    pixels, so that the faint wings of the sources are excluded too.

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
    import sep

    result = None
    for maskedImage in images:
        image = np.asarray(maskedImage.image.array, dtype=np.float32)
        variance = np.asarray(maskedImage.variance.array, dtype=np.float32)
        bad = ~(np.isfinite(image) & np.isfinite(variance) & (variance > 0))
        noData = anyMaskPlaneSet(maskedImage.mask, ["NO_DATA"])
        if noData is not None:
            bad |= noData
        fill = float(np.median(image[~bad])) if (~bad).any() else 0.0
        data = np.ascontiguousarray(np.where(bad, fill, image), dtype=np.float32)
        var = np.ascontiguousarray(np.where(bad, np.float32(np.median(variance[~bad])) if (~bad).any()
                                            else np.float32(1.0), variance), dtype=np.float32)
        size = max(8, min(64, min(data.shape) // 4))
        background = sep.Background(data, mask=bad, bw=size, bh=size)
        background.subfrom(data)
        previous = sep.get_extract_pixstack()
        sep.set_extract_pixstack(max(previous, 2 * data.size))
        try:
            _, segmentation = sep.extract(
                data, nSigma, var=var, mask=bad, minarea=5, filter_kernel=None, segmentation_map=True
            )
        finally:
            sep.set_extract_pixstack(previous)
        found = segmentation > 0
        result = found if result is None else result | found
    if result is None:
        raise ValueError("No images to detect sources on.")
    if grow > 0 and result.any():
        result = ndimage.binary_dilation(result, iterations=grow)
    return result


def refineBackgroundOffSources(
    difference: Any,
    inputs: Iterable[Any],
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
    if sourceMask is not None and sourceMask.shape == usable.shape:
        grown = ndimage.binary_dilation(sourceMask, iterations=grow) if grow > 0 else sourceMask
        usable &= ~grown
    else:
        usable &= ~detectedSourceMask(inputs, grow=grow)
    ny, nx = image.shape
    bbox = difference.bbox
    xs, ys, values, weights = [], [], [], []
    for y0 in range(0, ny, blockSize):
        for x0 in range(0, nx, blockSize):
            sl = (slice(y0, y0 + blockSize), slice(x0, x0 + blockSize))
            ok = usable[sl]
            n = int(np.count_nonzero(ok))
            if n < minPixelsPerBlock:
                continue
            yy, xx = np.nonzero(ok)
            xs.append(bbox.x.start + x0 + float(xx.mean()))
            ys.append(bbox.y.start + y0 + float(yy.mean()))
            values.append(float(np.median(image[sl][ok])))
            weights.append(float(n))
    nBlocks = len(values)
    order = background.getOrder()
    while order > 0 and nBlocks < minBlocksPerTerm * (order + 1) * (order + 2) // 2:
        order -= 1
    if nBlocks < minBlocksPerTerm:
        return None
    nTerms = (order + 1) * (order + 2) // 2
    design = background.terms(np.array(xs), np.array(ys))[:nTerms].T
    w = np.sqrt(np.array(weights))
    coeffs, *_ = np.linalg.lstsq(design * w[:, None], np.array(values) * w, rcond=None)
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
