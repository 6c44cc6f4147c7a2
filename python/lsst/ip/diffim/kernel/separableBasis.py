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
"""Correlation with a basis whose kernels are sums of separable terms.

Every Alard-Lupton basis kernel is a Gaussian times a monomial, i.e. an
outer product ``c(y) r(x)`` of two 1-d vectors, or (after renormalization)
a combination of two such products.  All of them are built from a handful
of distinct 1-d vectors (11 for the default basis), so the correlations
of a stamp with the whole basis need one 1-d pass per distinct row vector
and one per distinct (column, row) pair, instead of one 2-d correlation
per basis kernel.  Both passes are dense matrix products (Toeplitz
matrices), which BLAS does far faster than many small FFTs.

`SeparableBasis.forBasis` finds the plan for a basis list (or `None` when
a kernel has no separable terms or they do not reproduce its image), and
`SeparableBasis.correlate` evaluates the correlations of a stack of stamps
with the distinct products; the basis correlations are ``mixing`` times
those.
"""

from __future__ import annotations

__all__ = ["SeparableBasis"]

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from ..math.kernels import FixedKernel, Kernel, PerBasisCache, kernelListToArray

#: Largest reconstruction error, relative to the basis' largest pixel, accepted.
_RECONSTRUCTION_TOLERANCE = 1e-12


def _toeplitz(filters: np.ndarray, n: int) -> np.ndarray:
    """Return ``(n, nFilters * m)`` matrices of valid correlation, ``m = n - len + 1``.

    ``(x @ T)[..., f * m + p] = sum_j x[..., p + j] * filters[f, j]``.
    """
    nf, k = filters.shape
    m = n - k + 1
    out = np.zeros((n, nf, m))
    p = np.arange(m)
    for j in range(k):
        out[p + j, :, p] = filters[:, j]
    return out.reshape(n, nf * m)


@dataclasses.dataclass(frozen=True)
class SeparableBasis:
    """A basis written over distinct separable products.

    Attributes
    ----------
    columns : `numpy.ndarray`
        ``(nColumns, height)`` distinct vertical vectors.
    rows : `numpy.ndarray`
        ``(nRows, width)`` distinct horizontal vectors.
    pairs : `numpy.ndarray`
        ``(nPairs, 2)`` indices ``(column, row)`` of the distinct products.
    mixing : `numpy.ndarray`
        ``(nBasis, nPairs)``: basis kernel ``k`` is
        ``sum_p mixing[k, p] * outer(columns[pairs[p, 0]], rows[pairs[p, 1]])``.
    """

    columns: np.ndarray
    rows: np.ndarray
    pairs: np.ndarray
    mixing: np.ndarray
    _toeplitzCache: dict[tuple[str, int, int], np.ndarray] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def kernelShape(self) -> tuple[int, int]:
        """Shape ``(width, height)`` of the basis kernels (`tuple` [`int`, `int`])."""
        return self.columns.shape[1], self.rows.shape[1]

    @classmethod
    def forBasis(cls, basisList: Sequence[Kernel]) -> SeparableBasis | None:
        """Return the plan of a basis list, or `None` if it is not separable.

        Plans are cached per list of kernel objects.
        """
        return _PLANS(basisList)

    @classmethod
    def _build(cls, basisList: Sequence[Kernel]) -> SeparableBasis | None:
        if len(basisList) == 0:
            return None
        given = (k.separableTerms if isinstance(k, FixedKernel) else None for k in basisList)
        terms = [t for t in given if t is not None]
        if len(terms) < len(basisList):
            return None
        columnIndex: dict[bytes, int] = {}
        rowIndex: dict[bytes, int] = {}
        pairIndex: dict[tuple[int, int], int] = {}
        entries: list[tuple[int, int, float]] = []
        for k, t in enumerate(terms):
            for w, c, r in zip(t.weights, t.columns, t.rows, strict=True):
                ci = columnIndex.setdefault(np.ascontiguousarray(c).tobytes(), len(columnIndex))
                ri = rowIndex.setdefault(np.ascontiguousarray(r).tobytes(), len(rowIndex))
                pi = pairIndex.setdefault((ci, ri), len(pairIndex))
                entries.append((k, pi, float(w)))
        height, width = terms[0].columns.shape[1], terms[0].rows.shape[1]
        columns = np.array([np.frombuffer(b) for b in columnIndex]).reshape(-1, height)
        rows = np.array([np.frombuffer(b) for b in rowIndex]).reshape(-1, width)
        pairs = np.array(list(pairIndex), dtype=int).reshape(-1, 2)
        mixing = np.zeros((len(basisList), len(pairs)))
        for k, p, w in entries:
            mixing[k, p] += w
        # Products sharing a row vector are kept together: the vertical pass
        # of each row vector then writes one contiguous block of products.
        order = np.argsort(pairs[:, 1], kind="stable")
        pairs, mixing = pairs[order], mixing[:, order]
        plan = cls(columns=columns, rows=rows, pairs=pairs, mixing=mixing)
        basis = kernelListToArray(basisList)
        if basis.shape[1:] != (height, width):
            return None
        error = np.abs(plan.images() - basis).max()
        if not error <= _RECONSTRUCTION_TOLERANCE * max(float(np.abs(basis).max()), 1e-300):
            return None
        return plan

    def images(self) -> np.ndarray:
        """Return the basis images ``(nBasis, height, width)`` the plan describes."""
        products = self.columns[self.pairs[:, 0], :, np.newaxis] * self.rows[self.pairs[:, 1], np.newaxis, :]
        return np.tensordot(self.mixing, products, axes=1)

    def isWorthwhile(self, stampShape: tuple[int, int]) -> bool:
        """Whether the separable passes cost less than FFT correlation of the stamp."""
        ny, nx = stampShape
        kh, kw = self.kernelShape
        gy, gx = ny - kh + 1, nx - kw + 1
        separableCost = len(self.rows) * ny * nx * gx + len(self.pairs) * gy * ny * gx
        fftCost = self.mixing.shape[0] * ny * nx * 40
        return separableCost < fftCost

    def _matrix(self, kind: str, row: int, n: int) -> np.ndarray:
        """Return cached Toeplitz matrices: all row vectors, or the column vectors paired with one row."""
        key = (kind, row, n)
        hit = self._toeplitzCache.get(key)
        if hit is None:
            if kind == "rows":
                hit = _toeplitz(self.rows, n)
            else:
                which = np.flatnonzero(self.pairs[:, 1] == row)
                hit = np.ascontiguousarray(_toeplitz(self.columns[self.pairs[which, 0]], n).T)
            self._toeplitzCache[key] = hit
        return hit

    @functools.cached_property
    def _rowBlocks(self) -> list[tuple[int, int, int]]:
        """``(row, start, stop)``: the contiguous block of products of each row vector."""
        blocks = []
        for r in range(len(self.rows)):
            which = np.flatnonzero(self.pairs[:, 1] == r)
            if which.size:
                if which[-1] - which[0] + 1 != which.size:
                    raise RuntimeError("Separable products are not grouped by row vector.")
                blocks.append((r, int(which[0]), int(which[-1]) + 1))
        return blocks

    def correlate(self, stamps: np.ndarray) -> np.ndarray:
        """Return the valid correlations of stamps with every distinct product.

        Parameters
        ----------
        stamps : `numpy.ndarray`
            ``(n, ny, nx)`` float64 stamps.

        Returns
        -------
        products : `numpy.ndarray`
            ``(n, nPairs, gy * gx)`` with ``gy = ny - height + 1`` and
            ``gx = nx - width + 1``, pixels in row-major order of the valid
            region.
        """
        n, ny, nx = stamps.shape
        kh, kw = self.kernelShape
        gy, gx = ny - kh + 1, nx - kw + 1
        nRows = len(self.rows)
        # Horizontal pass: one matrix product for all distinct row vectors.
        horizontal = stamps.reshape(n * ny, nx) @ self._matrix("rows", -1, nx)
        horizontal = horizontal.reshape(n, ny, nRows, gx)
        out = np.empty((n, len(self.pairs), gy, gx))
        for r, start, stop in self._rowBlocks:
            # Vertical pass for every column vector paired with row vector r,
            # written straight into that row vector's block of products.
            np.matmul(
                self._matrix("columns", r, ny),
                horizontal[:, :, r, :],
                out=np.reshape(out[:, start:stop], (n, (stop - start) * gy, gx), copy=False),
            )
        return out.reshape(n, len(self.pairs), gy * gx)


_PLANS: PerBasisCache[SeparableBasis | None] = PerBasisCache(SeparableBasis._build)
