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
"""Convolution of whole masked images with (spatially varying) kernels.

``convolve`` is afw's ``afw.math.convolve`` for `lsst.images.MaskedImage`
inputs: a cross-correlation with the kernel image, variance convolved with
the squared kernel, mask bits OR-ed over the kernel's non-zero footprint,
and the border either marked NO_DATA (NaN image, infinite variance) or
copied from the input with the EDGE bit set.  The numerical engine is
`lsst.ip.diffim.math.convolveImage.convolveSpatiallyVarying`, which needs
one convolution per spatial term of the kernel, exactly at every pixel.
"""

from __future__ import annotations

__all__ = ["ConvolutionControl", "convolve", "kernelTermArrays"]

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lsst.images import Box, Image, Mask, MaskedImage

from .convolveImage import ConvolutionResult, OutputArrays, convolveSpatiallyVarying
from .kernels import Kernel, LinearCombinationKernel
from .masks import maskPlaneBitmask


@dataclass
class ConvolutionControl:
    """Options of `convolve` (afw's ``ConvolutionControl``).

    Attributes
    ----------
    doNormalize : `bool`
        Divide each output pixel by the local kernel sum.
    doCopyEdge : `bool`
        Copy the input into the border and OR the EDGE bit; otherwise the
        border is NaN with variance +inf and the NO_DATA bit only.
    preserveMaskPlanes : `tuple` [`str`, ...]
        Mask planes copied unchanged instead of being dilated by the kernel.
    """

    doNormalize: bool = False
    doCopyEdge: bool = False
    preserveMaskPlanes: tuple[str, ...] = ()


def kernelTermArrays(kernel: Kernel, bbox: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the term kernels and separable spatial terms over ``bbox``.

    Returns
    -------
    termKernels : `numpy.ndarray`
        ``(nTerms, kh, kw)`` images ``K_j``.
    termX, termY : `numpy.ndarray`
        ``(nTerms, nx)`` and ``(nTerms, ny)`` factors such that the kernel
        at parent pixel ``(x, y)`` is ``sum_j termY[j, y] termX[j, x] K_j``.
    """
    xs = bbox.x.arange.astype(float)
    ys = bbox.y.arange.astype(float)
    if isinstance(kernel, LinearCombinationKernel):
        termKernels, function = kernel.getTermKernels()
        if function is not None:
            termX, termY = function.termsXY(xs, ys)
            return termKernels, termX, termY
    else:
        termKernels = kernel.getArray()[np.newaxis]
    return termKernels, np.ones((1, xs.size)), np.ones((1, ys.size))


def convolve(
    maskedImage: MaskedImage,
    kernel: Kernel,
    control: ConvolutionControl | None = None,
    *,
    extraPreserve: Iterable[str] = (),
    out: ConvolutionResult | OutputArrays | None = None,
) -> MaskedImage:
    """Convolve a masked image with a kernel, in afw's orientation.

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage`
        Input; spatial kernels are evaluated at its parent pixel positions.
    kernel : `lsst.ip.diffim.math.Kernel`
        Fixed or spatially varying kernel.
    control : `ConvolutionControl`, optional
        Normalization, edge handling and planes kept undilated.
    extraPreserve : iterable of `str`, optional
        More mask planes to keep undilated.
    out : `~lsst.ip.diffim.math.convolveImage.OutputArrays`, optional
        Arrays to write the planes into (see `convolveSpatiallyVarying`).

    Returns
    -------
    convolved : `lsst.images.MaskedImage`
        Same bbox, mask schema and units as the input; float32 planes.

    Raises
    ------
    ValueError
        If the image is smaller than the kernel.
    """
    control = control or ConvolutionControl()
    bbox = maskedImage.bbox
    if bbox.x.size < kernel.getWidth() or bbox.y.size < kernel.getHeight():
        raise ValueError(
            f"Image {bbox} is smaller than the {kernel.getWidth()}x{kernel.getHeight()} kernel; "
            "use a smaller kernelSize."
        )
    termKernels, termX, termY = kernelTermArrays(kernel, bbox)
    schema = maskedImage.mask.schema
    preserve = list(control.preserveMaskPlanes) + list(extraPreserve)
    result = convolveSpatiallyVarying(
        maskedImage.image.array,
        maskedImage.variance.array,
        maskedImage.mask.array,
        termKernels,
        termX,
        termY,
        edgeMode="copy" if control.doCopyEdge else "nodata",
        noDataBitmask=maskPlaneBitmask(schema, ["NO_DATA"]),
        edgeBitmask=maskPlaneBitmask(schema, ["EDGE"]),
        preserveBitmask=maskPlaneBitmask(schema, preserve) if preserve else None,
        doNormalize=control.doNormalize,
        out=out,
    )
    assert result.mask is not None and result.variance is not None  # all three planes were given
    unit = maskedImage.unit
    return MaskedImage(
        Image(result.image, bbox=bbox, unit=unit),
        mask=Mask(result.mask, schema=schema, bbox=bbox),
        variance=Image(result.variance, bbox=bbox, unit=None if unit is None else unit**2),
        sky_projection=maskedImage.sky_projection,
    )
