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
"""Resampling of a template onto the science image's pixel grid.

The template is resampled with a Lanczos kernel (``warpingKernelName``) at
the template pixel positions of the science pixels, found through the two
images' sky projections.  The transform is evaluated exactly on a grid every
``interpLength`` pixels and bilinearly interpolated in between, as afw's
warper does.  When the mapping is a pure translation the separable 1-d
Lanczos filter is applied instead (identical result, much faster).
"""

from __future__ import annotations

__all__ = [
    "lanczosWeights",
    "pixelMapping",
    "sameGrid",
    "skyOverlap",
    "warpArrays",
    "warpExposure",
]

from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import correlate1d, map_coordinates

from lsst.images import Box

from .warper import WarperConfig

if TYPE_CHECKING:
    from lsst.images import MaskedImage, SkyProjection

_ORDERS = {"lanczos3": 3, "lanczos4": 4, "lanczos5": 5, "bilinear": 1}


def _projection(image: MaskedImage) -> SkyProjection:
    """Return the sky projection of an image to warp or compare.

    Raises
    ------
    ValueError
        If the image has none.
    """
    if image.sky_projection is None:
        raise ValueError(f"{type(image).__name__} has no sky projection to map its pixels with.")
    return image.sky_projection


def lanczosWeights(frac: np.ndarray, order: int) -> np.ndarray:
    """Return normalized Lanczos (or bilinear, ``order=1``) tap weights.

    Parameters
    ----------
    frac : `numpy.ndarray`
        Fractional offsets in ``[0, 1)``.
    order : `int`
        Lanczos order ``a``; taps run from ``1 - a`` to ``a``.

    Returns
    -------
    weights : `numpy.ndarray`
        Array ``frac.shape + (2 a,)``, each row summing to 1.
    """
    taps = np.arange(1 - order, order + 1)
    d = frac[..., np.newaxis] - taps
    if order == 1:
        w = np.clip(1.0 - np.abs(d), 0.0, None)
    else:
        w = np.sinc(d) * np.sinc(d / order)
        w[np.abs(d) >= order] = 0.0
    return w / w.sum(axis=-1, keepdims=True)


def pixelMapping(
    source: MaskedImage, target: MaskedImage, interpLength: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Return the source pixel coordinates of every target pixel.

    Parameters
    ----------
    source, target : `lsst.images.MaskedImage`
        Images with a ``sky_projection`` (e.g. `lsst.images.VisitImage`).
    interpLength : `int`, optional
        Grid spacing of exact evaluations (0: every pixel).

    Returns
    -------
    xs, ys : `numpy.ndarray`
        Source parent coordinates, arrays of the target's shape.
    """
    bbox: Box = target.bbox
    xAll = bbox.x.arange.astype(float)
    yAll = bbox.y.arange.astype(float)
    if interpLength > 0:
        xg = np.unique(np.append(xAll[::interpLength], xAll[-1]))
        yg = np.unique(np.append(yAll[::interpLength], yAll[-1]))
    else:
        xg, yg = xAll, yAll
    yy, xx = np.meshgrid(yg, xg, indexing="ij")
    sky = _projection(target).pixel_to_sky(x=xx, y=yy)
    mapped = _projection(source).sky_to_pixel(sky)
    sx = np.asarray(mapped.x, dtype=float)
    sy = np.asarray(mapped.y, dtype=float)
    if interpLength > 0 and (len(xg) < len(xAll) or len(yg) < len(yAll)):
        iy = np.interp(yAll, yg, np.arange(len(yg)))
        ix = np.interp(xAll, xg, np.arange(len(xg)))
        gy, gx = np.meshgrid(iy, ix, indexing="ij")
        sx = map_coordinates(sx, [gy, gx], order=1, mode="nearest")
        sy = map_coordinates(sy, [gy, gx], order=1, mode="nearest")
    return sx, sy


def skyOverlap(source: MaskedImage, target: MaskedImage) -> bool:
    """Return `True` if the two images overlap on the sky."""
    bbox: Box = target.bbox
    xs = np.linspace(bbox.x.min, bbox.x.max, 9)
    ys = np.linspace(bbox.y.min, bbox.y.max, 9)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    sky = _projection(target).pixel_to_sky(x=xx, y=yy)
    mapped = _projection(source).sky_to_pixel(sky)
    sx, sy = np.asarray(mapped.x), np.asarray(mapped.y)
    sb: Box = source.bbox
    if not (np.all(np.isfinite(sx)) and np.all(np.isfinite(sy))):
        return False
    return not (
        sx.max() < sb.x.min - 0.5
        or sx.min() > sb.x.max + 0.5
        or sy.max() < sb.y.min - 0.5
        or sy.min() > sb.y.max + 0.5
    )


def sameGrid(source: MaskedImage, target: MaskedImage, tolerance: float = 1e-3) -> bool:
    """Return `True` if the target pixels map onto the same source pixel positions."""
    if source.bbox != target.bbox:
        return False
    # Exact evaluations on a 9 x 9 grid (corners included) decide it: the
    # identity is linear, so the bilinear interpolation of those nodes onto
    # every pixel (what `pixelMapping` would add) cannot exceed their largest
    # offset, and building it costs seconds at 4k x 4k.
    bbox: Box = target.bbox
    step = max(bbox.x.size // 8, 1)
    xg = np.unique(np.append(bbox.x.arange[::step], bbox.x.max)).astype(float)
    yg = np.unique(np.append(bbox.y.arange[:: max(bbox.y.size // 8, 1)], bbox.y.max)).astype(float)
    yy, xx = np.meshgrid(yg, xg, indexing="ij")
    mapped = _projection(source).sky_to_pixel(_projection(target).pixel_to_sky(x=xx, y=yy))
    sx = np.asarray(mapped.x, dtype=float)
    sy = np.asarray(mapped.y, dtype=float)
    return bool(np.max(np.abs(sx - xx)) < tolerance and np.max(np.abs(sy - yy)) < tolerance)


def warpArrays(
    image: np.ndarray,
    variance: np.ndarray,
    maskArray: np.ndarray,
    sourceBBox: Box,
    sx: np.ndarray,
    sy: np.ndarray,
    order: int,
    noDataBitmask: np.ndarray,
    rowBlock: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample image, variance and mask planes at source positions.

    Parameters
    ----------
    image, variance, maskArray : `numpy.ndarray`
        Source planes (the mask in `lsst.images` 3-d layout).
    sourceBBox : `lsst.images.Box`
        Parent box of the source planes.
    sx, sy : `numpy.ndarray`
        Source parent coordinates of each output pixel.
    order : `int`
        Lanczos order (1: bilinear).
    noDataBitmask : `numpy.ndarray`
        Bits set where the source does not cover the kernel footprint.

    Returns
    -------
    image, variance, mask : `numpy.ndarray`
        Output planes; the variance is resampled with the squared weights
        (propagation for independent pixels), the mask OR-ed over the
        bilinear footprint.
    """
    ny, nx = sx.shape
    outImage = np.full((ny, nx), np.nan, dtype=np.float32)
    outVar = np.full((ny, nx), np.inf, dtype=np.float32)
    outMask = np.zeros((ny, nx, maskArray.shape[2]), dtype=maskArray.dtype)
    u = sx - sourceBBox.x.start
    v = sy - sourceBBox.y.start
    H, W = image.shape
    taps = np.arange(1 - order, order + 1)
    for r0 in range(0, ny, rowBlock):
        r1 = min(r0 + rowBlock, ny)
        ub, vb = u[r0:r1], v[r0:r1]
        iu = np.floor(ub).astype(np.int64)
        iv = np.floor(vb).astype(np.int64)
        ok = (iu + taps[0] >= 0) & (iu + taps[-1] < W) & (iv + taps[0] >= 0) & (iv + taps[-1] < H)
        wx = lanczosWeights(ub - iu, order)
        wy = lanczosWeights(vb - iv, order)
        iuc = np.clip(iu, -taps[0], W - 1 - taps[-1])
        ivc = np.clip(iv, -taps[0], H - 1 - taps[-1])
        accI = np.zeros(ub.shape)
        accV = np.zeros(ub.shape)
        for a, ty in enumerate(taps):
            rows = ivc + ty
            for b, tx in enumerate(taps):
                w = wy[..., a] * wx[..., b]
                cols = iuc + tx
                accI += w * image[rows, cols]
                accV += (w * w) * variance[rows, cols]
        m = np.zeros(ub.shape + (maskArray.shape[2],), dtype=maskArray.dtype)
        iu0 = np.clip(iu, 0, W - 2)
        iv0 = np.clip(iv, 0, H - 2)
        for dy in (0, 1):
            for dx in (0, 1):
                m |= maskArray[iv0 + dy, iu0 + dx]
        outImage[r0:r1][ok] = accI[ok]
        outVar[r0:r1][ok] = accV[ok]
        block = outMask[r0:r1]
        block[ok] = m[ok]
        block[~ok] = noDataBitmask
    return outImage, outVar, outMask


def _isTranslation(sx: np.ndarray, sy: np.ndarray, bbox: Box, tol: float = 1e-4) -> tuple[bool, float, float]:
    dx = sx - bbox.x.arange[np.newaxis, :]
    dy = sy - bbox.y.arange[:, np.newaxis]
    if np.ptp(dx) < tol and np.ptp(dy) < tol:
        return True, float(dx.mean()), float(dy.mean())
    return False, 0.0, 0.0


def _shiftArrays(
    image: np.ndarray,
    variance: np.ndarray,
    maskArray: np.ndarray,
    sourceBBox: Box,
    targetBBox: Box,
    dx: float,
    dy: float,
    order: int,
    noDataBitmask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Separable resampling for a pure translation ``source = target + (dx, dy)``."""
    ix, fx = int(np.floor(dx)), dx - np.floor(dx)
    iy, fy = int(np.floor(dy)), dy - np.floor(dy)
    wx = lanczosWeights(np.array([fx]), order)[0]
    wy = lanczosWeights(np.array([fy]), order)[0]

    # correlate1d with an even-length kernel: origin -1 aligns tap t=1-order..order.
    def filt(a: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
        return correlate1d(a, w, axis=axis, mode="constant", cval=np.nan, origin=-1 if order > 0 else 0)

    img = filt(filt(image.astype(float), wx, 1), wy, 0)
    var = filt(filt(variance.astype(float), wx**2, 1), wy**2, 0)
    H, W = image.shape
    ny, nx = targetBBox.y.size, targetBBox.x.size
    outImage = np.full((ny, nx), np.nan, dtype=np.float32)
    outVar = np.full((ny, nx), np.inf, dtype=np.float32)
    outMask = np.zeros((ny, nx, maskArray.shape[2]), dtype=maskArray.dtype)
    outMask[...] = noDataBitmask
    # target pixel (x, y) reads source index (x + dx - sourceX0) ~ base index x + ix - sourceX0.
    cols = targetBBox.x.arange + ix - sourceBBox.x.start
    rows = targetBBox.y.arange + iy - sourceBBox.y.start
    okc = (cols + 1 - order >= 0) & (cols + order < W)
    okr = (rows + 1 - order >= 0) & (rows + order < H)
    rr, cc = np.ix_(rows[okr], cols[okc])
    sub = np.ix_(np.flatnonzero(okr), np.flatnonzero(okc))
    outImage[sub] = img[rr, cc]
    outVar[sub] = var[rr, cc]
    mask = maskArray[rr, cc]
    c1 = np.clip(cols[okc] + 1, 0, W - 1)
    r1 = np.clip(rows[okr] + 1, 0, H - 1)
    mask = (
        mask | maskArray[np.ix_(rows[okr], c1)] | maskArray[np.ix_(r1, cols[okc])] | maskArray[np.ix_(r1, c1)]
    )
    outMask[sub] = mask
    return outImage, outVar, outMask


def warpExposure(
    template: MaskedImage, science: MaskedImage, config: WarperConfig | None = None
) -> MaskedImage:
    """Resample ``template`` onto the pixel grid of ``science``.

    Returns
    -------
    warped : `lsst.images.VisitImage`
        The template on the science bbox and projection, with the template's
        PSF (see Notes), units, band and observation metadata.

    Notes
    -----
    The PSF attached is the template's own model, which is exact for the
    pure translations and small rotations of registered exposures; large
    rotations or scale changes would need a warped PSF model.
    """
    from .masks import maskPlaneBitmask

    config = config or WarperConfig()
    order = _ORDERS[config.warpingKernelName]
    sx, sy = pixelMapping(template, science, config.interpLength)
    schema = template.mask.schema
    noData = maskPlaneBitmask(schema, ["NO_DATA"])
    isShift, dx, dy = _isTranslation(sx, sy, science.bbox)
    if isShift:
        image, variance, mask = _shiftArrays(
            template.image.array,
            template.variance.array,
            template.mask.array,
            template.bbox,
            science.bbox,
            dx,
            dy,
            order,
            noData,
        )
    else:
        image, variance, mask = warpArrays(
            template.image.array,
            template.variance.array,
            template.mask.array,
            template.bbox,
            sx,
            sy,
            order,
            noData,
        )
    return _makeWarped(template, science, image, variance, mask)


def _makeWarped(
    template: MaskedImage, science: MaskedImage, image: np.ndarray, variance: np.ndarray, mask: np.ndarray
) -> MaskedImage:
    """Wrap warped planes as an image of the template's kind on the science grid."""
    from lsst.images import Image, Mask, MaskedImage, VisitImage

    bbox = science.bbox
    unit = template.unit
    imageObj = Image(image, bbox=bbox, unit=unit)
    maskObj = Mask(mask, schema=template.mask.schema, bbox=bbox)
    varianceObj = Image(variance, bbox=bbox, unit=None if unit is None else unit**2)
    if isinstance(template, VisitImage) and isinstance(science, VisitImage):
        return VisitImage(
            imageObj,
            mask=maskObj,
            variance=varianceObj,
            sky_projection=science.sky_projection,
            obs_info=template.obs_info,
            psf=template.psf,
            detector=science.detector,
            band=template.band,
        )
    return MaskedImage(imageObj, mask=maskObj, variance=varianceObj, sky_projection=science.sky_projection)
