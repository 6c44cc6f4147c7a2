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
"""Two-dimensional spatial functions with afw's parameter layout.

Both function types order their parameters by total degree, and within a
degree from the highest power of ``x`` to the highest power of ``y``:
order 0 ``c0``; order 1 ``c1 x, c2 y``; order 2 ``c3 x^2, c4 x y, c5 y^2``;
and so on, ``(order + 1)(order + 2)/2`` parameters in all.
"""

from __future__ import annotations

__all__ = [
    "Box2D",
    "Chebyshev1Function2",
    "Function2",
    "PolynomialFunction2",
    "makeSpatialFunction",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from lsst.images import Box


@dataclass(frozen=True)
class Box2D:
    """A floating-point box, ``[minX, maxX] x [minY, maxY]``.

    Parameters
    ----------
    minX, minY, maxX, maxY : `float`
        The box limits.

    Notes
    -----
    `fromBox` follows afw's ``Box2D(Box2I)`` convention: the integer box
    is grown by half a pixel on each side, so pixel centres of the edge
    pixels lie half a pixel inside the floating-point box.
    """

    minX: float
    minY: float
    maxX: float
    maxY: float

    @classmethod
    def fromBox(cls, box: Box | Box2D) -> Box2D:
        """Return the floating-point box covering an integer `lsst.images.Box`."""
        if isinstance(box, Box2D):
            return box
        return cls(box.x.min - 0.5, box.y.min - 0.5, box.x.max + 0.5, box.y.max + 0.5)

    def getCenter(self) -> tuple[float, float]:
        """Return the centre ``(x, y)``."""
        return 0.5 * (self.minX + self.maxX), 0.5 * (self.minY + self.maxY)

    def getWidth(self) -> float:
        """Return the width of the box, ``maxX - minX``."""
        return self.maxX - self.minX

    def getHeight(self) -> float:
        """Return the height of the box, ``maxY - minY``."""
        return self.maxY - self.minY


def _termExponents(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the x and y degrees of each parameter, in afw order."""
    xs: list[int] = []
    ys: list[int] = []
    for n in range(order + 1):
        for k in range(n + 1):
            xs.append(n - k)
            ys.append(k)
    return np.array(xs, dtype=int), np.array(ys, dtype=int)


class Function2:
    """Base class of the spatial functions: a linear combination of terms.

    Parameters
    ----------
    order : `int`
        Total order (``>= 0``).
    params : sequence of `float`, optional
        Initial parameters; zeros by default (as afw).
    """

    def __init__(self, order: int, params: Sequence[float] | np.ndarray | None = None) -> None:
        if order < 0:
            raise ValueError(f"Function order must be >= 0; got {order}.")
        self._order = int(order)
        self._xExp, self._yExp = _termExponents(self._order)
        n = len(self._xExp)
        if params is None:
            self._params = np.zeros(n, dtype=float)
        else:
            self.setParameters(params)

    # afw-style accessors
    def getOrder(self) -> int:
        """Return the total order."""
        return self._order

    def getNParameters(self) -> int:
        """Return the number of parameters, ``(order+1)(order+2)/2``."""
        return len(self._xExp)

    def getParameters(self) -> list[float]:
        """Return the parameters as a list."""
        return [float(p) for p in self._params]

    def setParameters(self, params: Sequence[float] | np.ndarray) -> None:
        """Set all parameters; the length must match `getNParameters`."""
        arr = np.asarray(params, dtype=float).ravel()
        if arr.size != len(self._xExp):
            raise ValueError(
                f"Function of order {self._order} takes {len(self._xExp)} parameters; got {arr.size}."
            )
        self._params = arr.copy()

    def getParameter(self, i: int) -> float:
        """Return parameter ``i``."""
        return float(self._params[i])

    def setParameter(self, i: int, value: float) -> None:
        """Set parameter ``i`` to ``value``."""
        self._params[i] = value

    @property
    def parameters(self) -> np.ndarray:
        """The parameter vector (read-only view)."""
        view = self._params.view()
        view.flags.writeable = False
        return view

    def clone(self) -> Function2:
        """Return an independent copy."""
        raise NotImplementedError()

    # Evaluation
    def _normalize(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x, y

    def _powers1d(self, u: np.ndarray, order: int) -> np.ndarray:
        """Return the 1-d basis values ``[P_0(u), ..., P_order(u)]``."""
        raise NotImplementedError()

    def termsXY(self, x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Return the separable factors of every term.

        Parameters
        ----------
        x, y : array-like
            Independent 1-d coordinate arrays (not necessarily of equal
            length).

        Returns
        -------
        termX : `numpy.ndarray`
            Array ``(nParameters, len(x))``: the x factor of each term.
        termY : `numpy.ndarray`
            Array ``(nParameters, len(y))``: the y factor of each term, so
            that term ``j`` at ``(x[a], y[b])`` is ``termX[j, a] * termY[j, b]``.
        """
        xa = np.atleast_1d(np.asarray(x, dtype=float))
        ya = np.atleast_1d(np.asarray(y, dtype=float))
        xn, yn = self._normalize(xa, ya)
        px = self._powers1d(xn, self._order)
        py = self._powers1d(yn, self._order)
        return px[self._xExp], py[self._yExp]

    def terms(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Return the value of every term (parameter set to 1) at points.

        Parameters
        ----------
        x, y : array-like
            Coordinates of the same shape.

        Returns
        -------
        values : `numpy.ndarray`
            Array of shape ``(nParameters,) + shape``.
        """
        xa = np.asarray(x, dtype=float)
        ya = np.asarray(y, dtype=float)
        shape = np.broadcast_shapes(xa.shape, ya.shape)
        xa = np.broadcast_to(xa, shape).ravel()
        ya = np.broadcast_to(ya, shape).ravel()
        xn, yn = self._normalize(xa, ya)
        px = self._powers1d(xn, self._order)
        py = self._powers1d(yn, self._order)
        return (px[self._xExp] * py[self._yExp]).reshape((-1,) + shape)

    def render(self, bbox: Box, dtype: DTypeLike = np.float64) -> np.ndarray:
        """Evaluate the function at every pixel of ``bbox`` (parent coordinates).

        Returns
        -------
        values : `numpy.ndarray`
            Array of shape ``(ny, nx)``.
        """
        out = np.zeros((bbox.y.size, bbox.x.size), dtype=dtype)
        self.addTo(out, bbox)
        return out

    def addTo(self, array: np.ndarray, bbox: Box, scale: float = 1.0, rowsPerBlock: int = 256) -> None:
        """Add ``scale`` times the function to ``array`` (pixels of ``bbox``), in place.

        Works a band of rows at a time (one multiply-add per term), so no
        image-sized temporary is made.
        """
        termX, termY = self.termsXY(bbox.x.arange, bbox.y.arange)
        left = np.ascontiguousarray((scale * self._params[:, np.newaxis] * termY).T, dtype=array.dtype)
        right = np.ascontiguousarray(termX, dtype=array.dtype)
        for y0 in range(0, array.shape[0], rowsPerBlock):
            block = array[y0 : y0 + rowsPerBlock]
            for j in range(right.shape[0]):
                block += left[y0 : y0 + rowsPerBlock, j : j + 1] * right[j]

    def __call__(self, x: ArrayLike, y: ArrayLike) -> Any:
        """Evaluate the function at ``(x, y)``.

        Parameters
        ----------
        x, y : `float` or `numpy.ndarray`
            Positions; arrays are broadcast together.

        Returns
        -------
        value : `float` or `numpy.ndarray`
            A `float` for scalar positions, else an array of their shape.
        """
        values = np.tensordot(self._params, self.terms(x, y), axes=1)
        if np.ndim(values) == 0:
            return float(values)
        return values


class PolynomialFunction2(Function2):
    """Polynomial in the raw ``(x, y)`` coordinates (no rescaling).

    Parameters
    ----------
    order : `int`
        Total order.
    params : sequence of `float`, optional
        Initial parameters (zeros by default).
    """

    def clone(self) -> PolynomialFunction2:
        """Return an independent copy with the same order and parameters."""
        return PolynomialFunction2(self._order, self._params)

    def _powers1d(self, u: np.ndarray, order: int) -> np.ndarray:
        out = np.empty((order + 1, u.size), dtype=float)
        out[0] = 1.0
        for n in range(1, order + 1):
            out[n] = out[n - 1] * u
        return out

    def __repr__(self) -> str:
        return f"PolynomialFunction2(order={self._order}, params={self.getParameters()})"


class Chebyshev1Function2(Function2):
    """Chebyshev polynomials of the first kind over a rectangle.

    Parameters
    ----------
    order : `int`
        Total order.
    xyRange : `Box2D` or `lsst.images.Box`
        The rectangle mapped to ``[-1, 1]`` in both axes.  An integer box is
        converted with `Box2D.fromBox` (grown by half a pixel), which is
        what ip_diffim always does.
    params : sequence of `float`, optional
        Initial parameters (zeros by default).
    """

    def __init__(
        self, order: int, xyRange: Box2D | Box, params: Sequence[float] | np.ndarray | None = None
    ) -> None:
        super().__init__(order, params)
        self._range = Box2D.fromBox(xyRange)
        if self._range.getWidth() <= 0 or self._range.getHeight() <= 0:
            raise ValueError(f"Chebyshev range must have a positive size; got {self._range}.")

    def getXYRange(self) -> Box2D:
        """Return the floating-point range box."""
        return self._range

    def clone(self) -> Chebyshev1Function2:
        """Return an independent copy with the same order, range and parameters."""
        return Chebyshev1Function2(self._order, self._range, self._params)

    def _normalize(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self._range
        xn = (x - 0.5 * (r.minX + r.maxX)) * (2.0 / (r.maxX - r.minX))
        yn = (y - 0.5 * (r.minY + r.maxY)) * (2.0 / (r.maxY - r.minY))
        return xn, yn

    def _powers1d(self, u: np.ndarray, order: int) -> np.ndarray:
        out = np.empty((order + 1, u.size), dtype=float)
        out[0] = 1.0
        if order >= 1:
            out[1] = u
        for n in range(2, order + 1):
            out[n] = 2.0 * u * out[n - 1] - out[n - 2]
        return out

    def __repr__(self) -> str:
        return (
            f"Chebyshev1Function2(order={self._order}, xyRange={self._range}, params={self.getParameters()})"
        )


def makeSpatialFunction(modelType: str, order: int, bbox: Box | Box2D) -> Function2:
    """Return a spatial function of the configured type.

    Parameters
    ----------
    modelType : `str`
        ``"chebyshev1"`` or ``"polynomial"`` (``spatialModelType`` config).
    order : `int`
        Total order.
    bbox : `lsst.images.Box` or `Box2D`
        Region; used as the Chebyshev range (grown by half a pixel).

    Raises
    ------
    ValueError
        If ``modelType`` is not recognized.
    """
    if modelType == "chebyshev1":
        return Chebyshev1Function2(order, Box2D.fromBox(bbox))
    if modelType == "polynomial":
        return PolynomialFunction2(order)
    raise ValueError(f"Unknown spatialModelType {modelType!r}; allowed: 'chebyshev1', 'polynomial'.")
