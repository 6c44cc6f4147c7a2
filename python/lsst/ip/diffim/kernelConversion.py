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
"""Conversion of fitted kernels and backgrounds to `lsst.images` objects.

The PSF-matching kernel becomes an
`lsst.images.convolution_kernels.ImageBasisConvolutionKernel` (the basis
images with one `lsst.images.fields.ChebyshevField` per basis) and the
differential background a `~lsst.images.fields.ChebyshevField`, so both can
be written to FITS and stored by a Butler.  Kernel images keep afw's
orientation: they are applied as a cross-correlation.
"""

from __future__ import annotations

__all__ = ["fromImagesKernel", "toImagesBackground", "toImagesField", "toImagesKernel"]

import numpy as np

from lsst.images import Box
from lsst.images.convolution_kernels import ImageBasisConvolutionKernel
from lsst.images.fields import ChebyshevField

from .math.functions import Box2D, Chebyshev1Function2, Function2
from .math.kernels import FixedKernel, Kernel, LinearCombinationKernel


def toImagesField(function: Function2 | float, bbox: Box) -> ChebyshevField:
    """Return a `ChebyshevField` over ``bbox`` equal to a spatial function.

    Parameters
    ----------
    function : `Function2` or `float`
        The function (a constant is an order-0 field).
    bbox : `lsst.images.Box`
        The field's bounds.

    Notes
    -----
    A `Chebyshev1Function2` whose range is ``Box2D.fromBox(bbox)`` maps
    coefficient by coefficient; any other function (polynomials, other
    ranges) is re-expanded exactly by a least-squares fit on a grid of
    ``(2 order + 2)^2`` points, which is exact for polynomials of that order.
    """
    if not isinstance(function, Function2):
        return ChebyshevField(bbox, np.array([[float(function)]]))
    order = function.getOrder()
    params = np.asarray(function.getParameters(), dtype=float)
    if isinstance(function, Chebyshev1Function2) and function.getXYRange() == Box2D.fromBox(bbox):
        coeffs = np.zeros((order + 1, order + 1))
        i = 0
        for n in range(order + 1):
            for k in range(n + 1):
                coeffs[k, n - k] = params[i]
                i += 1
        return ChebyshevField(bbox, coeffs)
    if order == 0:
        return ChebyshevField(bbox, np.array([[params[0]]]))
    npts = 2 * order + 2
    xs = np.linspace(bbox.x.min, bbox.x.max, npts)
    ys = np.linspace(bbox.y.min, bbox.y.max, npts)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    data = function(xx, yy)
    return ChebyshevField.fit(bbox, data, order, y=ys, x=xs)


def toImagesKernel(kernel: Kernel, bbox: Box) -> ImageBasisConvolutionKernel:
    """Return the `lsst.images` form of a PSF-matching kernel.

    Parameters
    ----------
    kernel : `LinearCombinationKernel` or `Kernel`
        Fixed or spatially varying kernel.
    bbox : `lsst.images.Box`
        Region over which the spatial variation is valid.
    """
    if isinstance(kernel, LinearCombinationKernel):
        basis = np.array(kernel.basisArray, dtype=np.float64)
        if kernel.isSpatiallyVarying():
            fields = [toImagesField(f, bbox) for f in kernel.getSpatialFunctionList()]
        else:
            fields = [toImagesField(p, bbox) for p in kernel.getKernelParameters()]
    else:
        basis = kernel.getArray()[np.newaxis].astype(np.float64)
        fields = [toImagesField(1.0, bbox)]
    return ImageBasisConvolutionKernel(basis, fields, center_y=kernel.getCtrY(), center_x=kernel.getCtrX())


def toImagesBackground(background: Function2 | float, bbox: Box) -> ChebyshevField:
    """Return the differential background as a `ChebyshevField`."""
    return toImagesField(background, bbox)


def fromImagesKernel(imagesKernel: ImageBasisConvolutionKernel) -> LinearCombinationKernel:
    """Return a kernel that evaluates an `ImageBasisConvolutionKernel`.

    The spatial fields become `Chebyshev1Function2` objects over their
    bounds (all fields must be `ChebyshevField` objects of one bbox).

    Raises
    ------
    TypeError
        If a spatial field is not a `ChebyshevField`.
    """
    fields: list[ChebyshevField] = []
    for f in imagesKernel.spatial:
        if not isinstance(f, ChebyshevField):
            raise TypeError(f"Only Chebyshev spatial fields can be converted; got {type(f).__name__}.")
        fields.append(f)
    basisList = [FixedKernel(b) for b in imagesKernel.basis]
    order = max(max(f.x_order, f.y_order) for f in fields)
    bbox = fields[0].bounds.bbox
    if order == 0:
        return LinearCombinationKernel(basisList, [float(f.coefficients[0, 0]) for f in fields])
    function = Chebyshev1Function2(order, Box2D.fromBox(bbox))
    kernel = LinearCombinationKernel(basisList, function)
    params = []
    for f in fields:
        c = f.coefficients
        row = []
        for n in range(order + 1):
            for k in range(n + 1):
                row.append(float(c[k, n - k]) if k < c.shape[0] and n - k < c.shape[1] else 0.0)
        params.append(row)
    kernel.setSpatialParameters(params)
    return kernel
