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
"""Kernel basis lists and regularization matrices (upstream's BasisLists)."""

from __future__ import annotations

__all__ = [
    "makeAlardLuptonBasisList",
    "makeCentralDifferenceMatrix",
    "makeDeltaFunctionBasisList",
    "makeForwardDifferenceMatrix",
    "makeRegularizationMatrix",
    "renormalizeKernelList",
]

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..math.kernels import DeltaFunctionKernel, FixedKernel, Kernel, SeparableTerms, kernelListToArray
from .settings import KernelFitSettings, asSettings

#: float32 machine epsilon, the threshold below which a basis sum counts as 0.
_FLOAT32_EPS = float(np.finfo(np.float32).eps)


def makeDeltaFunctionBasisList(width: int, height: int) -> list[Kernel]:
    """Return ``width * height`` delta-function kernels in row-major order.

    Kernel ``n = row * width + col`` is 1 at ``(col, row)``.

    Raises
    ------
    ValueError
        If a dimension is smaller than 1.
    """
    if width < 1 or height < 1:
        raise ValueError(f"Delta-function basis dimensions must be >= 1; got {width}x{height}.")
    return [DeltaFunctionKernel(width, height, (col, row)) for row in range(height) for col in range(width)]


def renormalizeKernelList(kernelList: Sequence[Kernel]) -> list[Kernel]:
    """Renormalize a basis so that only its first kernel carries flux.

    The first kernel is normalized to unit sum.  Every other kernel with a
    non-negligible sum ``s`` becomes ``K / s - K0`` (zero sum); all other
    kernels are then scaled to unit L2 norm.

    Parameters
    ----------
    kernelList : sequence of `Kernel`
        Input kernels (same size).

    Returns
    -------
    renormalized : `list` of `FixedKernel`
    """
    if len(kernelList) == 0:
        return []
    stack = kernelListToArray(kernelList).copy()
    # Separable factors are carried along when every input has them.
    terms = [k.separableTerms if isinstance(k, FixedKernel) else None for k in kernelList]
    if not all(t is not None for t in terms):
        terms = [None] * len(terms)
    firstSum = stack[0].sum()
    first = stack[0] / firstSum
    firstTerms = terms[0].scaled(1.0 / firstSum) if terms[0] is not None else None
    out: list[Kernel] = [FixedKernel(first, firstTerms)]
    for image, imageTerms in zip(stack[1:], terms[1:], strict=True):
        total = image.sum()
        if abs(total) > _FLOAT32_EPS:
            image = image / total - first
            if imageTerms is not None and firstTerms is not None:
                imageTerms = imageTerms.scaled(1.0 / total) + firstTerms.scaled(-1.0)
        norm = np.sqrt((image**2).sum())
        image = image / norm
        out.append(FixedKernel(image, imageTerms.scaled(1.0 / norm) if imageTerms is not None else None))
    return out


def makeAlardLuptonBasisList(
    halfWidth: int, nGauss: int, sigGauss: Sequence[float], degGauss: Sequence[int]
) -> list[Kernel]:
    """Return the renormalized Alard-Lupton basis.

    For each Gaussian (width ``sigGauss[g]``, normalized to unit sum on the
    ``(2 halfWidth + 1)^2`` stamp) the basis holds the Gaussian times every
    monomial of total degree ``<= degGauss[g]`` in ``u / halfWidth`` and
    ``v / halfWidth`` (``1, x, y, x^2, x y, y^2, ...``); the whole list is then
    passed through `renormalizeKernelList`.

    Raises
    ------
    ValueError
        If ``halfWidth < 1`` or the lists do not have ``nGauss`` entries.
    """
    if halfWidth < 1:
        raise ValueError(f"halfWidth must be >= 1; got {halfWidth}.")
    if len(sigGauss) != nGauss:
        raise ValueError(f"sigGauss has {len(sigGauss)} entries for nGauss={nGauss}.")
    if len(degGauss) != nGauss:
        raise ValueError(f"degGauss has {len(degGauss)} entries for nGauss={nGauss}.")
    offsets = np.arange(-halfWidth, halfWidth + 1, dtype=float)
    v, u = np.meshgrid(offsets, offsets, indexing="ij")
    un, vn = u / halfWidth, v / halfWidth
    scaled = offsets / halfWidth
    raw: list[Kernel] = []
    for sigma, degree in zip(sigGauss, degGauss, strict=True):
        profile = np.exp(-(offsets**2) / (2.0 * float(sigma) ** 2))
        gauss = np.exp(-(u**2 + v**2) / (2.0 * float(sigma) ** 2))
        gaussSum = gauss.sum()
        gauss /= gaussSum
        for n in range(int(degree) + 1):
            for k in range(n + 1):
                # The image is exactly profile(v) v^k  x  profile(u) u^(n-k) / sum.
                terms = SeparableTerms.outer(profile * scaled**k, profile * scaled ** (n - k))
                raw.append(FixedKernel(gauss * un ** (n - k) * vn**k, terms.scaled(1.0 / gaussSum)))
    return renormalizeKernelList(raw)


_CENTRAL_STENCILS = {
    5: np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
    9: np.array([[1.0, 4.0, 1.0], [4.0, -20.0, 4.0], [1.0, 4.0, 1.0]]) / 6.0,
}

_FORWARD_COEFFS = {
    0: np.array([1.0]),
    1: np.array([-1.0, 1.0]),
    2: np.array([-1.0, 2.0, -1.0]),
    3: np.array([-1.0, 3.0, -3.0, 1.0]),
}


def _finishRegularization(b: np.ndarray, fitForBackground: bool) -> np.ndarray:
    h = b.T @ b
    if fitForBackground:
        n = h.shape[0] + 1
        out = np.zeros((n, n))
        out[:-1, :-1] = h
        return out
    return h


def makeCentralDifferenceMatrix(
    width: int, height: int, stencil: int, borderPenalty: float, fitForBackground: bool
) -> np.ndarray:
    """Return ``H = B^T B`` for a discrete Laplacian of the kernel image.

    Parameters
    ----------
    width, height : `int`
        Kernel dimensions (delta-function basis order: ``i = y * width + x``).
    stencil : `int`
        5 or 9 (points of the Laplacian stencil).
    borderPenalty : `float`
        Diagonal penalty on border pixels (``>= 0``).
    fitForBackground : `bool`
        Append a zero row and column for the background term.

    Raises
    ------
    ValueError
        For an unknown stencil or a negative penalty.
    """
    if stencil not in _CENTRAL_STENCILS:
        raise ValueError(f"centralRegularizationStencil must be 5 or 9; got {stencil}.")
    if borderPenalty < 0:
        raise ValueError(f"regularizationBorderPenalty must be >= 0; got {borderPenalty}.")
    coeffs = _CENTRAL_STENCILS[stencil]
    n = width * height
    b = np.zeros((n, n))
    for i in range(n):
        x0, y0 = i % width, i // width
        if 0 < x0 < width - 1 and 0 < y0 < height - 1:
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    b[i, i + dx + dy * width] += coeffs[dx + 1, dy + 1]
        else:
            b[i, i] = borderPenalty
    return _finishRegularization(b, fitForBackground)


def makeForwardDifferenceMatrix(
    width: int, height: int, orders: Sequence[int] | int, borderPenalty: float, fitForBackground: bool
) -> np.ndarray:
    """Return ``H = B^T B`` penalizing forward differences of the given orders.

    Parameters
    ----------
    width, height : `int`
        Kernel dimensions.
    orders : sequence of `int` or `int`
        Derivative orders, each in 1..3.
    borderPenalty : `float`
        Penalty (order-0 coefficient) at the last row/column (``>= 0``).
    fitForBackground : `bool`
        Append a zero row and column for the background term.

    Raises
    ------
    ValueError
        For an order outside 1..3 or a negative penalty.
    """
    orderList = [int(orders)] if np.isscalar(orders) else [int(o) for o in orders]
    for order in orderList:
        if not 0 < order < 4:
            raise ValueError(f"forwardRegularizationOrders must be in 1..3; got {order}.")
    if borderPenalty < 0:
        raise ValueError(f"regularizationBorderPenalty must be >= 0; got {borderPenalty}.")
    coeffTable = dict(_FORWARD_COEFFS)
    coeffTable[0] = np.array([borderPenalty])
    n = width * height
    b = np.zeros((n, n))
    for order in orderList:
        bx = np.zeros((n, n))
        by = np.zeros((n, n))
        for i in range(n):
            x0, y0 = i % width, i // width
            ox = min(width - 1 - x0, order)
            for j, c in enumerate(coeffTable[ox]):
                bx[i, i + j] = c
            oy = min(height - 1 - y0, order)
            for j, c in enumerate(coeffTable[oy]):
                by[i, i + j * width] = c
        b += bx + by
    return _finishRegularization(b, fitForBackground)


def makeRegularizationMatrix(ps: KernelFitSettings | Mapping[str, Any] | Any) -> np.ndarray:
    """Return the regularization matrix configured by ``ps``.

    Reads ``regularizationType``, ``kernelSize``,
    ``regularizationBorderPenalty``, ``fitForBackground`` and the
    type-specific ``centralRegularizationStencil`` or
    ``forwardRegularizationOrders``.

    Raises
    ------
    ValueError
        For an unknown regularization type or invalid parameters.
    """
    settings = asSettings(ps)
    regType = settings.regularizationType
    width = settings.kernelSize
    penalty = settings.regularizationBorderPenalty
    fitBg = settings.fitForBackground
    if regType == "centralDifference":
        stencil = settings.centralRegularizationStencil
        return makeCentralDifferenceMatrix(width, width, stencil, penalty, fitBg)
    if regType == "forwardDifference":
        return makeForwardDifferenceMatrix(
            width, width, list(settings.forwardRegularizationOrders), penalty, fitBg
        )
    raise ValueError(
        f"Unknown regularizationType {regType!r}; allowed: 'centralDifference', 'forwardDifference'."
    )
