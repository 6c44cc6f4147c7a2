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
"""Convolution kernels with afw's names and semantics.

A kernel of width ``w`` and height ``h`` has its centre at
``(w // 2, h // 2)``; kernel image pixel ``[row, col]`` (numpy order) sits
at offset ``(col - ctrX, row - ctrY)`` from the centre.  Kernels are applied
in afw's orientation, as a cross-correlation (see `lsst.ip.diffim.math.convolve`).
"""

from __future__ import annotations

__all__ = [
    "AnalyticKernel",
    "DeltaFunctionKernel",
    "FixedKernel",
    "GaussianFunction2",
    "Kernel",
    "LinearCombinationKernel",
    "PerBasisCache",
    "BasisInfo",
    "SeparableTerms",
    "basisInfo",
    "kernelListToArray",
]

import dataclasses
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lsst.images import XY, Box, Image

from .functions import Function2

_kernelSerials = itertools.count(1)


class Kernel:
    """Base class of all kernels.

    Parameters
    ----------
    width, height : `int`
        Kernel dimensions (both ``>= 1``).
    """

    def __init__(self, width: int, height: int) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"Kernel dimensions must be >= 1; got {width}x{height}.")
        self._width = int(width)
        self._height = int(height)
        self._serial = next(_kernelSerials)

    # --- geometry -----------------------------------------------------------
    def getSerial(self) -> int:
        """Return a number unique to this kernel object within the process."""
        return self._serial

    def getWidth(self) -> int:
        """Return the kernel width (columns)."""
        return self._width

    def getHeight(self) -> int:
        """Return the kernel height (rows)."""
        return self._height

    def getDimensions(self) -> XY[int]:
        """Return ``XY(x=width, y=height)``."""
        return XY(x=self._width, y=self._height)

    def getCtr(self) -> XY[int]:
        """Return the centre pixel ``XY(x=width//2, y=height//2)``."""
        return XY(x=self._width // 2, y=self._height // 2)

    def getCtrX(self) -> int:
        """Return the column of the kernel's centre pixel (``width // 2``)."""
        return self._width // 2

    def getCtrY(self) -> int:
        """Return the row of the kernel's centre pixel (``height // 2``)."""
        return self._height // 2

    def getBBox(self) -> Box:
        """Return the kernel box in offset coordinates (centre at 0)."""
        return Box.factory[
            -self.getCtrY() : self._height - self.getCtrY(), -self.getCtrX() : self._width - self.getCtrX()
        ]

    def shrinkBBox(self, bbox: Box) -> Box:
        """Return the part of ``bbox`` that convolution can compute.

        Raises
        ------
        ValueError
            If ``bbox`` is smaller than the kernel.
        """
        if bbox.x.size < self._width or bbox.y.size < self._height:
            raise ValueError(f"Box {bbox} is smaller than the {self._width}x{self._height} kernel.")
        x0 = bbox.x.start + self.getCtrX()
        y0 = bbox.y.start + self.getCtrY()
        return Box.factory[
            y0 : y0 + bbox.y.size - (self._height - 1), x0 : x0 + bbox.x.size - (self._width - 1)
        ]

    def growBBox(self, bbox: Box) -> Box:
        """Return the input box needed to compute ``bbox`` (inverse of `shrinkBBox`)."""
        x0 = bbox.x.start - self.getCtrX()
        y0 = bbox.y.start - self.getCtrY()
        return Box.factory[y0 : y0 + bbox.y.size + self._height - 1, x0 : x0 + bbox.x.size + self._width - 1]

    # --- spatial variation ----------------------------------------------------
    def isSpatiallyVarying(self) -> bool:
        """Return `True` if the kernel varies across the image."""
        return False

    def getNSpatialParameters(self) -> int:
        """Return the number of parameters of each spatial function (0 if fixed)."""
        return 0

    def getNKernelParameters(self) -> int:
        """Return the number of kernel parameters (0 for kernels without any)."""
        return 0

    def getKernelParameters(self) -> list[float]:
        """Return the kernel parameters (empty for kernels without any)."""
        return []

    # --- images -------------------------------------------------------------
    def getArray(self, x: float = 0.0, y: float = 0.0, doNormalize: bool = False) -> np.ndarray:
        """Return the kernel image at ``(x, y)`` as a new float64 array.

        Parameters
        ----------
        x, y : `float`, optional
            Position (parent coordinates) for spatially varying kernels.
        doNormalize : `bool`, optional
            Divide by the kernel sum.

        Raises
        ------
        OverflowError
            If ``doNormalize`` and the kernel sum is exactly zero.
        """
        array = self._computeArray(float(x), float(y))
        if doNormalize:
            total = float(array.sum())
            if total == 0.0:
                raise OverflowError("Cannot normalize a kernel whose sum is 0.")
            array = array / total
        return array

    def getArrays(self, xs: ArrayLike, ys: ArrayLike) -> np.ndarray:
        """Return the (unnormalized) kernel images at many points, ``(n, height, width)``."""
        xs, ys = np.atleast_1d(np.asarray(xs, dtype=float)), np.atleast_1d(np.asarray(ys, dtype=float))
        if xs.size == 0:
            return np.empty((0, self.getHeight(), self.getWidth()))
        return np.stack([self._computeArray(float(x), float(y)) for x, y in zip(xs, ys, strict=True)])

    def _computeArray(self, x: float, y: float) -> np.ndarray:
        raise NotImplementedError()

    def computeImage(
        self, image: Image | np.ndarray, doNormalize: bool, x: float = 0.0, y: float = 0.0
    ) -> float:
        """Fill ``image`` with the kernel image and return the kernel sum.

        Parameters
        ----------
        image : `lsst.images.Image` or `numpy.ndarray`
            Destination with exactly the kernel's dimensions; written in
            place.
        doNormalize : `bool`
            Normalize the image to unit sum (the returned sum is the
            unnormalized one).
        x, y : `float`, optional
            Position for spatially varying kernels.

        Returns
        -------
        kSum : `float`
            The kernel sum (before normalization).

        Raises
        ------
        ValueError
            If the destination has the wrong dimensions.
        """
        array = image.array if isinstance(image, Image) else image
        if array.shape != (self._height, self._width):
            raise ValueError(
                f"Image has shape {array.shape}; the kernel needs {(self._height, self._width)}."
            )
        raw = self._computeArray(float(x), float(y))
        total = float(raw.sum())
        if doNormalize:
            if total == 0.0:
                raise OverflowError("Cannot normalize a kernel whose sum is 0.")
            raw = raw / total
        array[...] = raw
        return total

    def getSum(self, x: float = 0.0, y: float = 0.0) -> float:
        """Return the kernel sum at ``(x, y)``."""
        return float(self._computeArray(float(x), float(y)).sum())


@dataclasses.dataclass(frozen=True)
class SeparableTerms:
    """A kernel image written as ``sum_i weights[i] * outer(columns[i], rows[i])``.

    Attributes
    ----------
    weights : `numpy.ndarray`
        ``(m,)`` weight of each term.
    columns : `numpy.ndarray`
        ``(m, height)`` vertical (y) factor of each term.
    rows : `numpy.ndarray`
        ``(m, width)`` horizontal (x) factor of each term.
    """

    weights: np.ndarray
    columns: np.ndarray
    rows: np.ndarray

    @classmethod
    def outer(cls, column: np.ndarray, row: np.ndarray) -> SeparableTerms:
        """Return the single term ``outer(column, row)``."""
        return cls(
            np.ones(1), np.asarray(column, dtype=float)[np.newaxis], np.asarray(row, dtype=float)[np.newaxis]
        )

    def scaled(self, factor: float) -> SeparableTerms:
        """Return these terms times ``factor``."""
        return SeparableTerms(self.weights * factor, self.columns, self.rows)

    def __add__(self, other: SeparableTerms) -> SeparableTerms:
        return SeparableTerms(
            np.concatenate([self.weights, other.weights]),
            np.concatenate([self.columns, other.columns]),
            np.concatenate([self.rows, other.rows]),
        )


class FixedKernel(Kernel):
    """A kernel defined by a fixed image.

    Parameters
    ----------
    image : `lsst.images.Image` or `numpy.ndarray`
        The kernel image (copied).
    separableTerms : `SeparableTerms`, optional
        The image written as a sum of outer products of 1-d vectors, when
        the caller knows it (the Alard-Lupton basis does); fast fitting code
        uses it to correlate with two 1-d passes instead of one 2-d one.
    """

    def __init__(self, image: Image | np.ndarray, separableTerms: SeparableTerms | None = None) -> None:
        array = np.array(image.array if isinstance(image, Image) else image, dtype=float, copy=True)
        if array.ndim != 2:
            raise ValueError(f"FixedKernel needs a 2-d image; got shape {array.shape}.")
        super().__init__(array.shape[1], array.shape[0])
        array.flags.writeable = False
        self._array = array
        self._sum = float(array.sum())
        if separableTerms is not None and (
            separableTerms.columns.shape[1] != array.shape[0]
            or separableTerms.rows.shape[1] != array.shape[1]
        ):
            raise ValueError(
                f"Separable terms of length {separableTerms.columns.shape[1]}x{separableTerms.rows.shape[1]} "
                f"do not match the {array.shape} image."
            )
        self._separableTerms = separableTerms

    @property
    def separableTerms(self) -> SeparableTerms | None:
        """The image as a sum of outer products, if known (`SeparableTerms` or `None`)."""
        return self._separableTerms

    def _computeArray(self, x: float, y: float) -> np.ndarray:
        return self._array.copy()

    @property
    def array(self) -> np.ndarray:
        """The kernel image (read-only)."""
        return self._array

    def getSum(self, x: float = 0.0, y: float = 0.0) -> float:
        """Return the sum of the kernel's pixels (the same at every position)."""
        return self._sum

    def __repr__(self) -> str:
        return f"FixedKernel({self._width}x{self._height}, sum={self._sum:.6g})"


class DeltaFunctionKernel(Kernel):
    """A kernel that is 1 at one pixel and 0 elsewhere.

    Parameters
    ----------
    width, height : `int`
        Dimensions.
    point : `tuple` [`int`, `int`]
        ``(col, row)`` of the non-zero pixel.
    """

    def __init__(self, width: int, height: int, point: Sequence[int]) -> None:
        super().__init__(width, height)
        col, row = int(point[0]), int(point[1])
        if not (0 <= col < width and 0 <= row < height):
            raise ValueError(f"Delta-function pixel {(col, row)} outside a {width}x{height} kernel.")
        self._pixel = (col, row)

    def getPixel(self) -> XY[int]:
        """Return the ``(col, row)`` of the non-zero pixel."""
        return XY(x=self._pixel[0], y=self._pixel[1])

    def _computeArray(self, x: float, y: float) -> np.ndarray:
        out = np.zeros((self._height, self._width), dtype=float)
        out[self._pixel[1], self._pixel[0]] = 1.0
        return out

    def getSum(self, x: float = 0.0, y: float = 0.0) -> float:
        """Return the sum of the kernel, 1 at every position."""
        return 1.0

    def __repr__(self) -> str:
        return f"DeltaFunctionKernel({self._width}x{self._height}, pixel={self._pixel})"


class GaussianFunction2:
    """Normalized elliptical Gaussian ``f(u, v)``.

    Parameters
    ----------
    sigma1, sigma2 : `float`
        Widths along the rotated axes.
    angle : `float`, optional
        Rotation (radians) of the first axis from the x axis.
    """

    def __init__(self, sigma1: float, sigma2: float, angle: float = 0.0) -> None:
        self.sigma1 = float(sigma1)
        self.sigma2 = float(sigma2)
        self.angle = float(angle)

    def __call__(self, u: ArrayLike, v: ArrayLike) -> Any:
        """Evaluate the Gaussian at offsets ``(u, v)`` from its centre.

        Parameters
        ----------
        u, v : `float` or `numpy.ndarray`
            Offsets along x and y (pixels); arrays are broadcast together.

        Returns
        -------
        value : `float` or `numpy.ndarray`
            The normalized Gaussian's value at each offset.
        """
        cosA, sinA = math.cos(self.angle), math.sin(self.angle)
        p1 = cosA * np.asarray(u) + sinA * np.asarray(v)
        p2 = -sinA * np.asarray(u) + cosA * np.asarray(v)
        norm = 1.0 / (2.0 * math.pi * self.sigma1 * self.sigma2)
        return norm * np.exp(-(p1**2) / (2 * self.sigma1**2) - (p2**2) / (2 * self.sigma2**2))


class AnalyticKernel(Kernel):
    """A kernel whose pixel ``(i, j)`` is ``func(i - ctrX, j - ctrY)``.

    Parameters
    ----------
    width, height : `int`
        Dimensions.
    func : callable
        Vectorized function of the offsets ``(u, v)``.
    """

    def __init__(self, width: int, height: int, func: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        super().__init__(width, height)
        self._func = func

    def getFunction(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """Return the function that the kernel image samples."""
        return self._func

    def _computeArray(self, x: float, y: float) -> np.ndarray:
        v, u = np.mgrid[0 : self._height, 0 : self._width].astype(float)
        return np.asarray(self._func(u - self.getCtrX(), v - self.getCtrY()), dtype=float)


class PerBasisCache[T]:
    """Values computed once per list of kernel objects, for the latest ``size`` lists.

    A basis list is built once and then used by thousands of candidates;
    what is derived from it (its stacked images, its separable plan) is
    computed on first use and looked up by the identities of its kernels.
    Entries keep the kernels, so those identities cannot be reused while
    cached.

    Parameters
    ----------
    build : callable
        Computes the value of a kernel list.
    size : `int`, optional
        Number of lists remembered (the oldest is forgotten first).
    """

    def __init__(self, build: Callable[[Sequence[Kernel]], T], size: int = 16) -> None:
        self._build = build
        self._size = size
        self._entries: OrderedDict[tuple[int, ...], tuple[tuple[Kernel, ...], T]] = OrderedDict()

    def __call__(self, kernelList: Sequence[Kernel]) -> T:
        """Return the value built for this basis list, building it on a miss.

        Parameters
        ----------
        kernelList : `~collections.abc.Sequence` [`Kernel`]
            The basis; entries are keyed by the identity of its kernels.

        Returns
        -------
        value
            The cached (or newly built) value.
        """
        key = tuple(map(id, kernelList))
        hit = self._entries.get(key)
        if hit is not None:
            return hit[1]
        value = self._build(kernelList)
        self._entries[key] = (tuple(kernelList), value)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value


@dataclasses.dataclass(frozen=True)
class BasisInfo:
    """What every user of a basis list needs, computed once per list.

    Attributes
    ----------
    kernels : `tuple` [`Kernel`, ...]
        The kernels.
    array : `numpy.ndarray`
        Their images ``(n, height, width)`` (read-only).
    sums : `numpy.ndarray`
        Their sums ``(n,)`` (read-only).
    isDelta : `bool`
        Whether every kernel is a `DeltaFunctionKernel`.
    """

    kernels: tuple[Kernel, ...]
    array: np.ndarray
    sums: np.ndarray
    isDelta: bool


def basisInfo(kernelList: Sequence[Kernel]) -> BasisInfo:
    """Return the (cached) `BasisInfo` of a list of kernels.

    Raises
    ------
    ValueError
        If the list is empty or the kernels differ in size.
    """
    if len(kernelList) == 0:
        raise ValueError("Empty kernel list.")
    return _BASIS_INFO(kernelList)


def _makeBasisInfo(kernelList: Sequence[Kernel]) -> BasisInfo:
    dims = {(k.getWidth(), k.getHeight()) for k in kernelList}
    if len(dims) != 1:
        raise ValueError(f"All kernels of a list must have the same dimensions; got {sorted(dims)}.")
    arrays = []
    for k in kernelList:
        arrays.append(k.array if isinstance(k, FixedKernel) else k.getArray())
    stack = np.stack(arrays).astype(float, copy=False)
    stack.flags.writeable = False
    sums = stack.sum(axis=(1, 2))
    sums.flags.writeable = False
    return BasisInfo(
        kernels=tuple(kernelList),
        array=stack,
        sums=sums,
        isDelta=all(isinstance(k, DeltaFunctionKernel) for k in kernelList),
    )


_BASIS_INFO: PerBasisCache[BasisInfo] = PerBasisCache(_makeBasisInfo)


def kernelListToArray(kernelList: Sequence[Kernel]) -> np.ndarray:
    """Stack the (unnormalized, position 0) images of kernels into ``(n, h, w)``.

    The result is read-only and cached per list of kernel objects (a basis
    is stacked once, however many candidates use it).

    Raises
    ------
    ValueError
        If the list is empty or the kernels differ in size.
    """
    return basisInfo(kernelList).array


class LinearCombinationKernel(Kernel):
    """A linear combination of basis kernels, fixed or spatially varying.

    Parameters
    ----------
    basisList : sequence of `Kernel`
        Basis kernels (all of the same size).
    kernelParams : array-like of `float`, or `Function2`
        Either one coefficient per basis (a fixed kernel), or a spatial
        function that is cloned for every basis (a spatially varying
        kernel whose spatial parameters start at zero).
    """

    def __init__(self, basisList: Sequence[Kernel], kernelParams: ArrayLike | Function2) -> None:
        info = basisInfo(basisList)
        super().__init__(info.array.shape[2], info.array.shape[1])
        self._basisList = info.kernels
        self._basis = info.array
        self._basisSums = info.sums
        self._isDelta = info.isDelta
        nb = len(self._basisList)
        if isinstance(kernelParams, Function2):
            self._spatialFunctions: list[Function2] | None = [kernelParams.clone() for _ in range(nb)]
            for f in self._spatialFunctions:
                f.setParameters(np.zeros(f.getNParameters()))
            self._kernelParams = np.zeros(nb, dtype=float)
        else:
            params = np.asarray(kernelParams, dtype=float).ravel()
            if params.size != nb:
                raise ValueError(f"Need {nb} kernel parameters; got {params.size}.")
            self._spatialFunctions = None
            self._kernelParams = params.copy()

    # --- basis ----------------------------------------------------------------
    def getKernelList(self) -> list[Kernel]:
        """Return the basis kernels."""
        return list(self._basisList)

    getBasisList = getKernelList

    @property
    def basisArray(self) -> np.ndarray:
        """The basis images, shape ``(nBasis, height, width)`` (read-only)."""
        return self._basis

    def isDeltaFunctionBasis(self) -> bool:
        """Return `True` if every basis kernel is a `DeltaFunctionKernel`."""
        return self._isDelta

    # --- parameters ---------------------------------------------------------
    def isSpatiallyVarying(self) -> bool:
        """Return whether the coefficients vary with position."""
        return self._spatialFunctions is not None

    def getNKernelParameters(self) -> int:
        """Return the number of basis kernels."""
        return len(self._basisList)

    def getNSpatialParameters(self) -> int:
        """Return the number of parameters of each spatial function (0 if fixed)."""
        if self._spatialFunctions is None:
            return 0
        return self._spatialFunctions[0].getNParameters()

    def getKernelParameters(self) -> list[float]:
        """Return the coefficients (last evaluated ones if spatially varying)."""
        return [float(p) for p in self._kernelParams]

    def setKernelParameters(self, params: ArrayLike) -> None:
        """Set the fixed coefficients of the basis kernels.

        Parameters
        ----------
        params : array-like of `float`
            One coefficient per basis kernel.

        Raises
        ------
        ValueError
            If the number of coefficients differs from the number of basis kernels.
        """
        arr = np.asarray(params, dtype=float).ravel()
        if arr.size != len(self._basisList):
            raise ValueError(f"Need {len(self._basisList)} kernel parameters; got {arr.size}.")
        self._kernelParams = arr.copy()

    def getSpatialFunction(self, index: int) -> Function2:
        """Return the spatial function of one basis kernel's coefficient.

        Parameters
        ----------
        index : `int`
            Index of the basis kernel.

        Returns
        -------
        function : `Function2`
            Its spatial function.

        Raises
        ------
        ValueError
            If the kernel is not spatially varying.
        """
        if self._spatialFunctions is None:
            raise ValueError("Kernel is not spatially varying.")
        return self._spatialFunctions[index]

    def getSpatialFunctionList(self) -> list[Function2]:
        """Return a new list of the spatial functions, one per basis kernel.

        Raises
        ------
        ValueError
            If the kernel is not spatially varying.
        """
        if self._spatialFunctions is None:
            raise ValueError("Kernel is not spatially varying.")
        return list(self._spatialFunctions)

    def getSpatialParameters(self) -> list[list[float]]:
        """Return the spatial parameters, ``[nBasis][nSpatialParameters]``."""
        if self._spatialFunctions is None:
            return []
        return [f.getParameters() for f in self._spatialFunctions]

    def setSpatialParameters(self, params: ArrayLike) -> None:
        """Set the spatial parameters from an ``[nBasis][nSpatialParameters]`` array."""
        if self._spatialFunctions is None:
            raise ValueError("Kernel is not spatially varying.")
        arr = np.asarray(params, dtype=float)
        expected = (len(self._basisList), self.getNSpatialParameters())
        if arr.shape != expected:
            raise ValueError(f"Spatial parameters must have shape {expected}; got {arr.shape}.")
        for f, row in zip(self._spatialFunctions, arr, strict=True):
            f.setParameters(row)

    def getSpatialCoefficients(self) -> np.ndarray:
        """Return the spatial parameters as an array ``(nBasis, nSpatialParameters)``."""
        if self._spatialFunctions is None:
            return self._kernelParams[:, np.newaxis].copy()
        return np.array([f.parameters for f in self._spatialFunctions])

    def coefficientsAt(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Return the basis coefficients at points (no side effects).

        Returns
        -------
        coeffs : `numpy.ndarray`
            Array ``(nBasis,) + shape``.
        """
        if self._spatialFunctions is None:
            shape = np.broadcast_shapes(np.shape(x), np.shape(y))
            return np.broadcast_to(
                self._kernelParams.reshape((-1,) + (1,) * len(shape)), (len(self._kernelParams),) + shape
            ).copy()
        terms = self._spatialFunctions[0].terms(x, y)
        return np.tensordot(self.getSpatialCoefficients(), terms, axes=1)

    def getArrays(self, xs: ArrayLike, ys: ArrayLike) -> np.ndarray:
        """Return the kernel images at many points, ``(n, height, width)``, from one product."""
        xs, ys = np.atleast_1d(np.asarray(xs, dtype=float)), np.atleast_1d(np.asarray(ys, dtype=float))
        return np.tensordot(self.coefficientsAt(xs, ys).T, self._basis, axes=1)

    def getTermKernels(self) -> tuple[np.ndarray, Function2 | None]:
        """Return the kernel images of each spatial term.

        Returns
        -------
        termKernels : `numpy.ndarray`
            Array ``(nTerms, height, width)`` with ``K_j = sum_i A_ij B_i``, so
            that the kernel at ``(x, y)`` is ``sum_j f_j(x, y) K_j``.
        function : `Function2` or `None`
            The spatial function whose terms ``f_j`` apply (`None` for a fixed
            kernel, where ``nTerms == 1`` and ``f_0 = 1``).
        """
        coeffs = self.getSpatialCoefficients()
        termKernels = np.tensordot(coeffs.T, self._basis, axes=1)
        function = None if self._spatialFunctions is None else self._spatialFunctions[0]
        return termKernels, function

    # --- images ---------------------------------------------------------------
    def _computeArray(self, x: float, y: float) -> np.ndarray:
        if self._spatialFunctions is not None:
            self._kernelParams = self.coefficientsAt(x, y).ravel()
        nb, h, w = self._basis.shape
        return (self._kernelParams @ self._basis.reshape(nb, h * w)).reshape(h, w)

    def getSum(self, x: float = 0.0, y: float = 0.0) -> float:
        """Return the kernel sum, computed from the cached basis sums."""
        if self._spatialFunctions is not None:
            coeffs = self.coefficientsAt(x, y).ravel()
        else:
            coeffs = self._kernelParams
        return float(np.dot(coeffs, self._basisSums))

    def computeImage(
        self, image: Image | np.ndarray, doNormalize: bool, x: float = 0.0, y: float = 0.0
    ) -> float:
        # The returned sum is the analytic one, sum_i a_i sum(B_i), as afw.
        """Fill ``image`` with the kernel at ``(x, y)`` and return its sum.

        Parameters
        ----------
        image : `lsst.images.Image` or `numpy.ndarray`
            Output, of the kernel's shape.
        doNormalize : `bool`
            Scale the image to unit sum.
        x, y : `float`, optional
            Position (parent pixels) at which the kernel is evaluated.

        Returns
        -------
        kernelSum : `float`
            The analytic sum of the kernel, ``sum_i a_i sum(B_i)`` as afw returns,
            before any normalization.
        """
        super().computeImage(image, doNormalize, x, y)
        return float(np.dot(self._kernelParams, self._basisSums))

    def __repr__(self) -> str:
        kind = "spatially varying" if self.isSpatiallyVarying() else "fixed"
        return f"LinearCombinationKernel({len(self._basisList)} bases, {self._width}x{self._height}, {kind})"
