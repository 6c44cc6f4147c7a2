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
"""Stamp-level convolution (afw orientation) and difference images.

These operate on the small postage stamps of kernel candidates.  Every
convolution here is afw's: a cross-correlation of the input with the kernel
image, ``out(x, y) = sum_ij in(x + i - ctrX, y + j - ctrY) K[j, i]``; border
pixels that cannot be computed become NaN, with variance +inf and the
NO_DATA mask bit only.
"""

from __future__ import annotations

__all__ = [
    "basisDesignMatrix",
    "correlateValid",
    "convolveAndSubtract",
    "convolveMaskedStamp",
    "goodSlices",
]

from collections import OrderedDict
from typing import overload

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from lsst.images import Box, Image, Mask, MaskedImage

from ..math.functions import Function2
from ..math.kernels import Kernel
from ..math.maskMerge import mergeMaskPlanes
from ..math.masks import maskPlaneBitmask
from ..math.overlapSave import goodRegion


def goodSlices(shape: tuple[int, int], kernelShape: tuple[int, int]) -> tuple[slice, slice]:
    """Return the ``(rows, cols)`` slices of the pixels convolution computes.

    Raises
    ------
    ValueError
        If the image is smaller than the kernel.
    """
    return goodRegion(shape, kernelShape)


def _windows(array: np.ndarray, kernelShape: tuple[int, int]) -> np.ndarray:
    return sliding_window_view(array, kernelShape)


_FFT_CACHE: OrderedDict[tuple[int, tuple[int, int]], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_FFT_CACHE_SIZE = 16


def _kernelSpectra(kernels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return (cached) spectra of the flipped kernels, for correlation by FFT."""
    key = (id(kernels), shape)
    hit = _FFT_CACHE.get(key)
    if hit is not None and hit[0] is kernels:
        _FFT_CACHE.move_to_end(key)
        return hit[1]
    spectra = scipy.fft.rfft2(kernels[:, ::-1, ::-1], s=shape, axes=(-2, -1))
    _FFT_CACHE[key] = (kernels, spectra)
    while len(_FFT_CACHE) > _FFT_CACHE_SIZE:
        _FFT_CACHE.popitem(last=False)
    return spectra


def correlateValid(image: np.ndarray, kernels: np.ndarray, cache: bool = False) -> np.ndarray:
    """Correlate an image with several kernels, keeping the valid region.

    Parameters
    ----------
    image : `numpy.ndarray`
        Image ``(ny, nx)``; must be finite for exact results.
    kernels : `numpy.ndarray`
        Kernels ``(n, kh, kw)``.
    cache : `bool`, optional
        Cache the kernel spectra (for a basis reused on many stamps; the
        array must not be modified afterwards).

    Returns
    -------
    out : `numpy.ndarray`
        Array ``(n, ny - kh + 1, nx - kw + 1)``: ``out[k]`` is kernel ``k``
        correlated with ``image`` on the good region.

    Notes
    -----
    Uses one forward FFT of the image and a product per kernel; the
    circular wrap-around only reaches the discarded border.
    """
    n, kh, kw = kernels.shape
    ny, nx = image.shape
    shape = (scipy.fft.next_fast_len(ny, real=True), scipy.fft.next_fast_len(nx, real=True))
    if cache:
        spectra = _kernelSpectra(kernels, shape)
    else:
        spectra = scipy.fft.rfft2(kernels[:, ::-1, ::-1], s=shape, axes=(-2, -1))
    imageSpectrum = scipy.fft.rfft2(image, s=shape)
    full = scipy.fft.irfft2(spectra * imageSpectrum, s=shape, axes=(-2, -1))
    return full[:, kh - 1 : ny, kw - 1 : nx]


def basisDesignMatrix(
    template: np.ndarray, basis: np.ndarray, isDelta: bool = False, *, constantColumn: bool = False
) -> np.ndarray:
    """Return every basis kernel correlated with ``template`` on the good region.

    Parameters
    ----------
    template : `numpy.ndarray`
        Template stamp ``(ny, nx)``.
    basis : `numpy.ndarray`
        Basis images ``(nBasis, kh, kw)`` (its spectra are cached: do not
        modify it in place afterwards).
    isDelta : `bool`, optional
        The basis is the full delta-function basis in row-major order, so the
        design matrix is just the pixel windows (no products needed).
    constantColumn : `bool`, optional
        Append a column of ones (the background term).

    Returns
    -------
    design : `numpy.ndarray`
        Array ``(nGoodPixels, nBasis)`` (``nBasis + 1`` with
        ``constantColumn``), pixels in row-major order of the good region,
        columns in basis order.
    """
    nb, kh, kw = basis.shape
    template = np.asarray(template, dtype=float)
    if isDelta and nb == kh * kw and _isIdentity(basis.reshape(nb, kh * kw)):
        # Written straight into the design matrix (no stacked copy for the background column).
        win = _windows(template, (kh, kw))
        gy, gx = win.shape[:2]
        design = np.empty((gy * gx, nb + int(constantColumn)))
        windows = design[:, :nb].view()
        windows.shape = (gy, gx, kh, kw)  # a view of the design matrix (raises rather than copy)
        np.copyto(windows, win)
        if constantColumn:
            design[:, nb] = 1.0
        return design
    if constantColumn:
        design = basisDesignMatrix(template, basis, isDelta)
        return np.hstack([design, np.ones((design.shape[0], 1))])
    if not np.all(np.isfinite(template)):
        # FFTs would spread a NaN over the whole stamp; keep it local.
        win = _windows(template, (kh, kw))
        gy, gx = win.shape[:2]
        return win.reshape(gy * gx, kh * kw) @ basis.reshape(nb, kh * kw).T
    conv = correlateValid(template, basis, cache=True)
    return conv.reshape(nb, -1).T


def _isIdentity(flat: np.ndarray) -> bool:
    """Return `True` if the square matrix ``flat`` is the identity."""
    return bool(np.count_nonzero(flat) == flat.shape[0] and np.all(np.diagonal(flat) == 1.0))


@overload
def convolveMaskedStamp(
    image: np.ndarray, variance: np.ndarray, mask: Mask, kernelArray: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@overload
def convolveMaskedStamp(
    image: np.ndarray, variance: np.ndarray | None, mask: Mask | None, kernelArray: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]: ...


def convolveMaskedStamp(
    image: np.ndarray,
    variance: np.ndarray | None,
    mask: Mask | None,
    kernelArray: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Correlate a masked stamp with a fixed kernel image.

    Parameters
    ----------
    image : `numpy.ndarray`
        Input image.
    variance : `numpy.ndarray` or `None`
        Input variance; convolved with the squared kernel.
    mask : `lsst.images.Mask` or `None`
        Input mask; bits are OR-ed over every non-zero kernel pixel.
    kernelArray : `numpy.ndarray`
        Kernel image ``(kh, kw)``.

    Returns
    -------
    image, variance, maskArray : `numpy.ndarray`
        Full-size outputs; border pixels are NaN / +inf / NO_DATA only.
    """
    kh, kw = kernelArray.shape
    ys, xs = goodSlices(image.shape, (kh, kw))
    outImage = np.full(image.shape, np.nan, dtype=np.float32)
    planes = [np.asarray(image, dtype=float)]
    kernels = [kernelArray]
    if variance is not None:
        planes.append(np.asarray(variance, dtype=float))
        kernels.append(kernelArray**2)
    finite = all(np.all(np.isfinite(p)) for p in planes)
    results = []
    for plane, kern in zip(planes, kernels, strict=True):
        if finite:
            results.append(correlateValid(plane, kern[np.newaxis])[0])
        else:
            win = _windows(plane, (kh, kw))
            results.append(np.tensordot(win, kern, axes=([2, 3], [0, 1])))
    outImage[ys, xs] = results[0]
    outVar = None
    if variance is not None:
        outVar = np.full(image.shape, np.inf, dtype=np.float32)
        outVar[ys, xs] = results[1]
    outMask = None
    if mask is not None:
        marr = mask.array
        outMask = np.zeros_like(marr)
        rows, cols = np.nonzero(kernelArray)
        for e in range(marr.shape[2]):
            plane = marr[:, :, e]
            if not plane.any():
                continue
            mwin = _windows(plane, (kh, kw))
            outMask[ys, xs, e] = np.bitwise_or.reduce(mwin[:, :, rows, cols], axis=2)
        noData = maskPlaneBitmask(mask.schema, ["NO_DATA"])
        border = np.ones(image.shape, dtype=bool)
        border[ys, xs] = False
        outMask[border] = noData
    return outImage, outVar, outMask


def _backgroundArray(background: float | Function2, bbox: Box) -> np.ndarray | float:
    if isinstance(background, Function2):
        x = bbox.x.arange.astype(float)
        y = bbox.y.arange.astype(float)
        yy, xx = np.meshgrid(y, x, indexing="ij")
        return background(xx, yy)
    return float(background)


def convolveAndSubtract(
    templateImage: MaskedImage | Image,
    scienceMaskedImage: MaskedImage,
    convolutionKernel: Kernel,
    background: float | Function2,
    invert: bool = True,
) -> MaskedImage:
    """Return ``science - (K ⋆ template + background)`` on a stamp.

    Parameters
    ----------
    templateImage : `lsst.images.MaskedImage` or `lsst.images.Image`
        The image to convolve.  With a plain image only the image plane is
        convolved and the result's mask and variance are the science ones.
    scienceMaskedImage : `lsst.images.MaskedImage`
        The image to subtract from; same bbox as the template.
    convolutionKernel : `lsst.ip.diffim.math.Kernel`
        Kernel, evaluated at position (0, 0) if spatially varying.
    background : `float` or `lsst.ip.diffim.math.Function2`
        Differential background, evaluated at parent pixel positions.
    invert : `bool`, optional
        Return ``science - model`` (default) rather than ``model - science``.

    Returns
    -------
    difference : `lsst.images.MaskedImage`
        Difference with variance ``K^2 ⋆ varT + varS`` and mask
        ``dilate(maskT) | maskS``; border pixels are NaN with NO_DATA.

    Raises
    ------
    ValueError
        If the two images have different bounding boxes.
    """
    if templateImage.bbox != scienceMaskedImage.bbox:
        raise ValueError(
            f"Template {templateImage.bbox} and science {scienceMaskedImage.bbox} stamps differ in size."
        )
    kernelArray = convolutionKernel.getArray()
    bbox = scienceMaskedImage.bbox
    bg = _backgroundArray(background, bbox)
    sci = scienceMaskedImage.image.array.astype(float)
    if isinstance(templateImage, MaskedImage):
        conv, var, mask = convolveMaskedStamp(
            templateImage.image.array, templateImage.variance.array, templateImage.mask, kernelArray
        )
        model = conv + bg
        diff = sci - model if invert else model - sci
        outVar = var + scienceMaskedImage.variance.array
        maskObj = scienceMaskedImage.mask.copy()
        if templateImage.mask.schema == maskObj.schema:
            maskObj.array |= mask
        else:
            mergeMaskPlanes(maskObj, Mask(mask, schema=templateImage.mask.schema, bbox=bbox))
    else:
        conv, _, _ = convolveMaskedStamp(templateImage.array, None, None, kernelArray)
        model = conv + bg
        diff = sci - model if invert else model - sci
        outVar = scienceMaskedImage.variance.array.copy()
        maskObj = scienceMaskedImage.mask.copy()
    unit = scienceMaskedImage.unit
    return MaskedImage(
        Image(diff.astype(np.float32), bbox=bbox, unit=unit),
        mask=maskObj,
        variance=Image(outVar.astype(np.float32), bbox=bbox, unit=None if unit is None else unit**2),
    )
