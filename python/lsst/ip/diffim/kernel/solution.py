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
"""Least-squares kernel solutions: per candidate, regularized and spatial.

Per candidate (`StaticKernelSolution`): with ``C_k = B_k ⋆ T`` on the
kernel-shrunk stamp (plus a column of ones when fitting a background),
weights ``W = 1 / var`` and data ``y = S``, the normal equations are
``M = C^T W C`` and ``b = C^T W y``.  `RegularizedKernelSolution` solves
``(M + λ H) a = b``.  `SpatialKernelSolution` assembles the candidates'
``(M, b)`` into one system for the spatially varying coefficients.
"""

from __future__ import annotations

__all__ = [
    "KernelSolution",
    "RegularizedKernelSolution",
    "RegularizedKernelSolutionF",
    "SpatialKernelSolution",
    "StaticKernelSolution",
    "StaticKernelSolutionF",
    "solveSymmetricSystem",
    "solveSymmetricSystems",
]

import enum
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from ..math.exceptions import InvalidParameterError, KernelSolutionError
from ..math.functions import Function2, PolynomialFunction2
from ..math.kernels import Kernel, LinearCombinationKernel, basisInfo
from .settings import KernelFitSettings, asSettings
from .stamps import basisDesignMatrix, goodSlices

if TYPE_CHECKING:
    from lsst.images import Image

_solutionIds = itertools.count(1)


class KernelSolvedBy(enum.IntEnum):
    """How a system was solved."""

    NONE = 0
    CHOLESKY_LDLT = 1
    CHOLESKY_LLT = 2
    LU = 3
    EIGENVECTOR = 4


class ConditionNumberType(enum.IntEnum):
    """How condition numbers are computed."""

    EIGENVALUE = 0
    SVD = 1


def _conditionType(value: ConditionNumberType | str | int) -> ConditionNumberType:
    if isinstance(value, str):
        try:
            return ConditionNumberType[value]
        except KeyError:
            raise InvalidParameterError(f"Unknown condition number type {value!r}.") from None
    try:
        return ConditionNumberType(value)
    except ValueError:
        raise InvalidParameterError(f"Unknown condition number type {value!r}.") from None


def conditionNumber(mMat: np.ndarray, conditionType: ConditionNumberType | str | int) -> float:
    """Return the condition number of a symmetric matrix.

    ``EIGENVALUE``: ratio of the largest to the smallest eigenvalue (may be
    negative or infinite for a singular matrix); ``SVD``: ratio of the
    extreme singular values.
    """
    ctype = _conditionType(conditionType)
    with np.errstate(divide="ignore", invalid="ignore"):
        if ctype == ConditionNumberType.EIGENVALUE:
            values = np.linalg.eigvalsh(mMat)
            return float(values.max() / values.min())
        values = np.linalg.svd(mMat, compute_uv=False)
        return float(values.max() / values.min())


def solveSymmetricSystem(mMat: np.ndarray, bVec: np.ndarray) -> tuple[np.ndarray, KernelSolvedBy]:
    """Solve ``M a = b`` without failing on singular systems.

    An LU factorization is used when it shows full rank (every pivot larger
    than ``eps * n`` times the largest); otherwise a pseudo-inverse from the
    symmetric eigen-decomposition, in which eigenvalues that are zero to
    working precision (``|e| <= eps * n * max|e|``) are not inverted.

    Returns
    -------
    solution : `numpy.ndarray`
        The solution vector.
    solvedBy : `KernelSolvedBy`
        ``LU`` or ``EIGENVECTOR``.

    Notes
    -----
    Upstream's fallback inverts every eigenvalue that is not exactly 0.0,
    which for a numerically singular matrix multiplies round-off by ~1e16;
    dropping the round-off eigenvalues gives the minimum-norm solution and
    agrees with upstream whenever its answer is meaningful.
    """
    n = mMat.shape[0]
    eps = np.finfo(float).eps
    if np.all(np.isfinite(mMat)) and np.all(np.isfinite(bVec)):
        lu, piv = scipy.linalg.lu_factor(mMat, check_finite=False)
        pivots = np.abs(np.diag(lu))
        if pivots.size and pivots.min() > eps * n * pivots.max():
            return scipy.linalg.lu_solve((lu, piv), bVec, check_finite=False), KernelSolvedBy.LU
        values, vectors = np.linalg.eigh(mMat)
        tol = eps * n * np.abs(values).max() if values.size else 0.0
        inverse = np.zeros_like(values)
        keep = np.abs(values) > tol
        inverse[keep] = 1.0 / values[keep]
        return vectors @ (inverse * (vectors.T @ bVec)), KernelSolvedBy.EIGENVECTOR
    # Non-finite systems give non-finite solutions; callers turn those into errors.
    return np.full(n, np.nan), KernelSolvedBy.NONE


def solvePositiveDefiniteSystem(mMat: np.ndarray, bVec: np.ndarray) -> tuple[np.ndarray, KernelSolvedBy]:
    """Solve ``M a = b`` for a symmetric positive definite ``M``; as `solveSymmetricSystem` otherwise.

    A Cholesky factorization is used when it exists and shows full rank
    (every pivot of ``L D L^T``, ``L_ii^2``, larger than ``eps * n`` times
    the largest, the test of the LU path); anything else goes to
    `solveSymmetricSystem` (LU, then the eigenvectors).

    Returns
    -------
    solution : `numpy.ndarray`
        The solution vector.
    solvedBy : `KernelSolvedBy`
        ``CHOLESKY_LLT``, or what `solveSymmetricSystem` used.

    Notes
    -----
    For the regularized systems ``(M + lambda H)`` of the delta-function
    basis, positive definite by construction.  Upstream's solver tried
    Cholesky first too (``CHOLESKY_LDLT``, ``CHOLESKY_LLT``, then LU and the
    eigenvectors).  For the 442 x 442 systems of the 441-term basis the LU
    took 5.4 ms, about as long as forming ``C^T C``; LAPACK's Cholesky
    factorization and substitution take 2.3 ms.
    """
    n = mMat.shape[0]
    if n == 0 or not (np.all(np.isfinite(mMat)) and np.all(np.isfinite(bVec))):
        return solveSymmetricSystem(mMat, bVec)
    # LAPACK directly, on the transpose (the same symmetric matrix, in Fortran order: no copy of
    # layout): scipy's cho_factor + cho_solve took 8 ms here, longer than its LU (5.4 ms); this 2.3 ms.
    potrf, potrs = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potrs"), (mMat,))
    factor, info = potrf(mMat.T, lower=True, clean=False)
    if info != 0:  # not positive definite
        return solveSymmetricSystem(mMat, bVec)
    pivots = np.square(np.diagonal(factor))
    if not pivots.min() > np.finfo(float).eps * n * pivots.max():
        return solveSymmetricSystem(mMat, bVec)
    solution, info = potrs(factor, bVec, lower=True)
    if info != 0:
        return solveSymmetricSystem(mMat, bVec)
    return solution, KernelSolvedBy.CHOLESKY_LLT


def _luPivots(mMats: np.ndarray) -> np.ndarray:
    """Return the absolute pivots of LAPACK's partial-pivoting LU of each matrix."""
    getrf = scipy.linalg.lapack.get_lapack_funcs("getrf", dtype=np.float64)
    pivots = np.empty(mMats.shape[:2])
    for i, m in enumerate(mMats):
        lu, _, _ = getrf(m)
        pivots[i] = np.abs(np.diagonal(lu))
    return pivots


def solveSymmetricSystems(mMats: np.ndarray, bVecs: np.ndarray) -> tuple[np.ndarray, list[KernelSolvedBy]]:
    """Solve a stack of systems ``M_i a_i = b_i`` as `solveSymmetricSystem` would.

    The LU pivot test calls LAPACK ``getrf`` directly (no per-call wrapper
    overhead) and the systems that pass it are solved with one batched
    LAPACK ``gesv`` (the same factorization and substitution as one at a
    time); systems that fail the test, or are not finite, take
    `solveSymmetricSystem` one by one.

    Parameters
    ----------
    mMats : `numpy.ndarray`
        ``(n, k, k)`` matrices.
    bVecs : `numpy.ndarray`
        ``(n, k)`` right-hand sides.

    Returns
    -------
    solutions : `numpy.ndarray`
        ``(n, k)``.
    solvedBy : `list` [`KernelSolvedBy`]
    """
    n, k = bVecs.shape
    out = np.full((n, k), np.nan)
    solvedBy = [KernelSolvedBy.NONE] * n
    if n == 0:
        return out, solvedBy
    finite = np.isfinite(mMats).reshape(n, -1).all(axis=1) & np.isfinite(bVecs).all(axis=1)
    good = np.zeros(0, dtype=int)
    if finite.any() and k > 0:
        idx = np.flatnonzero(finite)
        pivots = _luPivots(mMats[idx])
        eps = np.finfo(float).eps
        good = idx[pivots.min(axis=1) > eps * k * pivots.max(axis=1)]
        if good.size:
            try:
                out[good] = np.linalg.solve(mMats[good], bVecs[good][:, :, np.newaxis])[:, :, 0]
            except np.linalg.LinAlgError:
                good = np.zeros(0, dtype=int)
            for i in good:
                solvedBy[i] = KernelSolvedBy.LU
    for i in np.setdiff1d(np.arange(n), good):
        out[i], solvedBy[i] = solveSymmetricSystem(mMats[i], bVecs[i])
    return out, solvedBy


class KernelSolution:
    """Base class: holds ``M``, ``b``, the solution and its bookkeeping.

    Parameters
    ----------
    fitForBackground : `bool`
        Whether the last unknown is a background term.
    """

    KernelSolvedBy: TypeAlias = KernelSolvedBy  # noqa: UP040 (a class attribute, as upstream nests it)
    ConditionNumberType: TypeAlias = ConditionNumberType  # noqa: UP040 (a class attribute)

    NONE = KernelSolvedBy.NONE
    CHOLESKY_LDLT = KernelSolvedBy.CHOLESKY_LDLT
    CHOLESKY_LLT = KernelSolvedBy.CHOLESKY_LLT
    LU = KernelSolvedBy.LU
    EIGENVECTOR = KernelSolvedBy.EIGENVECTOR
    EIGENVALUE = ConditionNumberType.EIGENVALUE
    SVD = ConditionNumberType.SVD

    def __init__(self, fitForBackground: bool = True) -> None:
        self._id = next(_solutionIds)
        self._fitForBackground = bool(fitForBackground)
        self._mMat: np.ndarray | None = None
        self._bVec: np.ndarray | None = None
        #: ``(npix, nloc)`` of the last design matrix built (`None` if set from elsewhere).
        self.designShape: tuple[int, int] | None = None
        self._aVec: np.ndarray | None = None
        self._solvedBy = KernelSolvedBy.NONE

    def getId(self) -> int:
        """Return the unique, increasing id of this solution."""
        return self._id

    def getSolvedBy(self) -> KernelSolvedBy:
        """Return how the system was solved (`KernelSolvedBy`)."""
        return self._solvedBy

    def getM(self) -> np.ndarray:
        """Return the normal-equation matrix ``M``.

        Raises
        ------
        KernelSolutionError
            If the system has not been built.
        """
        if self._mMat is None:
            raise KernelSolutionError("Kernel solution has not been built.")
        return self._mMat

    def getB(self) -> np.ndarray:
        """Return the normal-equation vector ``b``.

        Raises
        ------
        KernelSolutionError
            If the system has not been built.
        """
        if self._bVec is None:
            raise KernelSolutionError("Kernel solution has not been built.")
        return self._bVec

    def getSolution(self) -> np.ndarray:
        """Return the raw solution vector."""
        if self._aVec is None:
            raise KernelSolutionError("Kernel not solved.")
        return self._aVec

    def releaseNormalEquations(self) -> None:
        """Drop ``M`` and ``b`` (the solution is kept); `getM` then raises.

        For rejected candidates, which are never fitted again: ``M`` is
        ``nloc^2`` doubles, 1.6 MB for the 441-term delta-function basis.
        """
        self._mMat = None
        self._bVec = None

    def getConditionNumber(self, conditionType: ConditionNumberType | str | int = "EIGENVALUE") -> float:
        """Return the condition number of ``M``."""
        return conditionNumber(self.getM(), conditionType)

    def solve(self, mMat: np.ndarray | None = None, bVec: np.ndarray | None = None) -> None:
        """Solve ``M a = b`` (the stored system unless both are given)."""
        if mMat is None or bVec is None:
            mMat, bVec = self.getM(), self.getB()
        self._aVec, self._solvedBy = solveSymmetricSystem(mMat, bVec)


class StaticKernelSolution(KernelSolution):
    """Solution for one candidate with a fixed basis.

    Parameters
    ----------
    basisList : sequence of `Kernel`
        Basis kernels.
    fitForBackground : `bool`
        Fit a constant differential background.
    """

    def __init__(self, basisList: Sequence[Kernel], fitForBackground: bool) -> None:
        super().__init__(fitForBackground)
        info = basisInfo(basisList)
        self._basisList = info.kernels
        self._basis = info.array
        self._isDelta = info.isDelta
        self._kernel: LinearCombinationKernel | None = None
        self._background = 0.0
        self._kSum = 0.0

    def getBasisList(self) -> list[Kernel]:
        """Return a new list of the basis kernels of the fit."""
        return list(self._basisList)

    def build(
        self,
        templateImage: np.ndarray | Image,
        scienceImage: np.ndarray | Image,
        varianceEstimate: np.ndarray | Image,
    ) -> None:
        """Fill ``M`` and ``b`` from the stamps.

        Parameters
        ----------
        templateImage, scienceImage, varianceEstimate : `numpy.ndarray` or `lsst.images.Image`
            Stamps of identical shape; the variance gives the weights.

        Raises
        ------
        KernelSolutionError
            If the variance has a negative or zero (non-NaN) minimum.
        """
        template = _asArray(templateImage)
        science = _asArray(scienceImage)
        variance = _asArray(varianceEstimate)
        if template.shape != science.shape or template.shape != variance.shape:
            raise InvalidParameterError(
                f"Stamps differ in shape: template {template.shape}, science {science.shape}, "
                f"variance {variance.shape}."
            )
        finiteVar = variance[np.isfinite(variance)]
        vmin = float(finiteVar.min()) if finiteVar.size else math.nan
        if vmin < 0.0:
            raise KernelSolutionError("Error: variance less than 0.0")
        if vmin == 0.0:
            raise KernelSolutionError("Error: variance equals 0.0, cannot inverse variance weight")
        nb, kh, kw = self._basis.shape
        ys, xs = goodSlices(template.shape, (kh, kw))
        design = basisDesignMatrix(
            template, self._basis, self._isDelta, constantColumn=self._fitForBackground
        )
        self.designShape = (int(design.shape[0]), int(design.shape[1]))
        weights = 1.0 / variance[ys, xs].astype(float).ravel()
        data = science[ys, xs].astype(float).ravel()
        if np.all(weights == weights[0]):
            w0 = weights[0]
            self._mMat = w0 * (design.T @ design)
            self._bVec = w0 * (design.T @ data)
        else:
            weighted = design * weights[:, np.newaxis]
            self._mMat = weighted.T @ design
            self._bVec = weighted.T @ data
        self._aVec = None
        self._kernel = None

    def setNormalEquations(self, mMat: np.ndarray, bVec: np.ndarray) -> None:
        """Set ``M`` and ``b`` computed elsewhere (e.g. for a batch of candidates)."""
        self._mMat = np.asarray(mMat, dtype=float)
        self._bVec = np.asarray(bVec, dtype=float)
        self._aVec = None
        self._kernel = None

    def setSolvedSystem(
        self, mMat: np.ndarray, bVec: np.ndarray, aVec: np.ndarray, solvedBy: KernelSolvedBy
    ) -> None:
        """Set ``M``, ``b`` and a solution computed elsewhere, then the kernel.

        Equivalent to `setNormalEquations` then `solve` when ``aVec`` is what
        `solveSymmetricSystem` returns (see `solveSymmetricSystems`).

        Raises
        ------
        KernelSolutionError
            If any coefficient or the background is NaN.
        """
        self._mMat = mMat
        self._bVec = bVec
        self._aVec = aVec
        self._solvedBy = solvedBy
        self._kernel = None
        self._setKernel()

    def solve(self, mMat: np.ndarray | None = None, bVec: np.ndarray | None = None) -> None:
        """Solve the system and set the kernel, background and kernel sum.

        Raises
        ------
        KernelSolutionError
            If any coefficient or the background is NaN.
        """
        super().solve(mMat, bVec)
        self._setKernel()

    def _setKernel(self) -> None:
        a = self.getSolution()
        nb = len(self._basisList)
        coeffs = a[:nb]
        bad = np.flatnonzero(~np.isfinite(coeffs))
        if bad.size:
            raise KernelSolutionError(f"Unable to determine kernel solution {int(bad[0])} (nan)")
        self._kernel = LinearCombinationKernel(self._basisList, coeffs)
        self._kSum = self._kernel.getSum()
        if self._fitForBackground:
            bg = float(a[nb])
            if not math.isfinite(bg):
                raise KernelSolutionError("Unable to determine background solution (nan)")
            self._background = bg
        else:
            self._background = 0.0

    def _checkSolved(self) -> LinearCombinationKernel:
        if self._kernel is None:
            raise KernelSolutionError("Kernel not solved; cannot return solution")
        return self._kernel

    def getKernel(self) -> LinearCombinationKernel:
        """Return the fitted kernel.

        Raises
        ------
        KernelSolutionError
            If the system has not been solved.
        """
        return self._checkSolved()

    def makeKernelImage(self) -> np.ndarray:
        """Return the (unnormalized) kernel image."""
        return self._checkSolved().getArray()

    def getBackground(self) -> float:
        """Return the fitted differential background (counts).

        Raises
        ------
        KernelSolutionError
            If the system has not been solved.
        """
        self._checkSolved()
        return self._background

    def getKsum(self) -> float:
        """Return the sum of the fitted kernel.

        Raises
        ------
        KernelSolutionError
            If the system has not been solved.
        """
        self._checkSolved()
        return self._kSum

    def getSolutionPair(self) -> tuple[LinearCombinationKernel, float]:
        """Return the fitted kernel and background together.

        Returns
        -------
        kernel : `LinearCombinationKernel`
            The fitted kernel.
        background : `float`
            The fitted differential background.

        Raises
        ------
        KernelSolutionError
            If the system has not been solved.
        """
        return self._checkSolved(), self._background


class RegularizedKernelSolution(StaticKernelSolution):
    """Per-candidate solution of ``(M + λ H) a = b``.

    Parameters
    ----------
    basisList : sequence of `Kernel`
        Basis kernels (normally the delta-function basis).
    fitForBackground : `bool`
        Fit a constant differential background.
    hMat : `numpy.ndarray`
        Regularization matrix (with a zero background row/column when
        fitting the background).
    ps : `KernelFitSettings`, `lsst.pex.config.Config` or mapping
        Provides ``lambdaType``, ``lambdaValue`` and ``lambdaScaling``.
    """

    def __init__(
        self,
        basisList: Sequence[Kernel],
        fitForBackground: bool,
        hMat: np.ndarray,
        ps: KernelFitSettings | Mapping[str, Any] | Any,
    ) -> None:
        super().__init__(basisList, fitForBackground)
        self._hMat = np.asarray(hMat, dtype=float)
        self._settings = asSettings(ps)
        self._lambda = 0.0

    def getLambda(self) -> float:
        """Return the regularization strength chosen by the last `solve`."""
        return self._lambda

    def getM(self, includeHmat: bool = True) -> np.ndarray:
        """Return ``M + λ H`` (``includeHmat``) or the plain ``M``."""
        mMat = super().getM()
        return mMat + self._lambda * self._hMat if includeHmat else mMat

    def _chooseLambda(self, mMat: np.ndarray) -> float:
        lambdaType = self._settings.lambdaType
        if lambdaType == "absolute":
            return self._settings.lambdaValue
        if lambdaType == "relative":
            return float(np.trace(mMat) / np.trace(self._hMat) * self._settings.lambdaScaling)
        if lambdaType in ("minimizeBiasedRisk", "minimizeUnbiasedRisk"):
            raise InvalidParameterError(
                f"lambdaType {lambdaType!r} is not supported (upstream's implementation cannot run); "
                "use 'absolute' or 'relative'."
            )
        raise InvalidParameterError(f"Unknown lambdaType {lambdaType!r}.")

    def solve(self, mMat: np.ndarray | None = None, bVec: np.ndarray | None = None) -> None:
        """Solve ``(M + lambda H) a = b`` with the strength chosen by ``lambdaType``.

        The arguments are ignored: the system is the one built from the
        candidate's stamps (upstream's signature is kept).

        Parameters
        ----------
        mMat, bVec : `numpy.ndarray`, optional
            Ignored.

        Raises
        ------
        InvalidParameterError
            If the regularization matrix does not match the system's shape.
        """
        plain = super(StaticKernelSolution, self).getM()
        if self._hMat.shape != plain.shape:
            raise InvalidParameterError(
                f"Regularization matrix has shape {self._hMat.shape}; the system has {plain.shape}. "
                "Check kernelSize and fitForBackground."
            )
        self._lambda = self._chooseLambda(plain)
        # Positive definite by construction: Cholesky first (upstream's order), LU and eigenvectors after.
        system = plain + self._lambda * self._hMat
        self._aVec, self._solvedBy = solvePositiveDefiniteSystem(system, self.getB())
        self._setKernel()


def _asArray(image: np.ndarray | Image) -> np.ndarray:
    return np.asarray(image.array if hasattr(image, "array") else image)


def _isDeltaList(basisList: Sequence[Kernel]) -> bool:
    from ..math.kernels import DeltaFunctionKernel

    return bool(basisList) and all(isinstance(k, DeltaFunctionKernel) for k in basisList)


class SpatialKernelSolution(KernelSolution):
    """The spatially varying kernel and background from many candidates.

    Parameters
    ----------
    basisList : sequence of `Kernel`
        Basis kernels.
    spatialKernelFunction : `Function2`
        Spatial function of the kernel coefficients.
    background : `Function2`
        Spatial function of the background (its order is ignored unless
        ``fitForBackground``).
    ps : `KernelFitSettings`, `lsst.pex.config.Config` or mapping
        Provides ``fitForBackground``, ``kernelBasisSet`` and
        ``usePcaForSpatialKernel``.

    Notes
    -----
    With an Alard-Lupton or PCA basis the first basis coefficient is a
    constant (the "constant first term"), so the kernel sum is the same
    everywhere.  Unknowns: ``a_0`` (or basis 0's spatial terms), then each
    further basis's spatial terms, then the background terms.
    """

    def __init__(
        self,
        basisList: Sequence[Kernel],
        spatialKernelFunction: Function2,
        background: Function2,
        ps: KernelFitSettings | Mapping[str, Any] | Any,
    ) -> None:
        settings = asSettings(ps)
        super().__init__(settings.fitForBackground)
        self._basisList = list(basisList)
        self._kFunction = spatialKernelFunction.clone()
        self._bgFunction = background.clone()
        self._constantFirstTerm = settings.kernelBasisSet == "alard-lupton" or settings.usePcaForSpatialKernel
        self._nbases = len(self._basisList)
        self._nkt = self._kFunction.getNParameters()
        self._nbt = self._bgFunction.getNParameters() if self._fitForBackground else 0
        if self._constantFirstTerm:
            self._nt = (self._nbases - 1) * self._nkt + 1 + self._nbt
        else:
            self._nt = self._nbases * self._nkt + self._nbt
        self._mMat = np.zeros((self._nt, self._nt))
        self._bVec = np.zeros(self._nt)
        self._kernel: LinearCombinationKernel | None = None
        self._backgroundFunction: Function2 | None = None
        self._kSum = 0.0
        self._nConstraints = 0

    def getNTerms(self) -> int:
        """Return the number of unknowns of the spatial system."""
        return self._nt

    def _designMatrix(self, xCenter: float, yCenter: float) -> np.ndarray:
        nb, nkt = self._nbases, self._nkt
        nloc = nb + (1 if self._fitForBackground else 0)
        pMat = np.zeros((nloc, self._nt))
        pK = self._kFunction.terms(xCenter, yCenter).ravel()
        if self._constantFirstTerm:
            pMat[0, 0] = 1.0
            for i in range(1, nb):
                start = 1 + (i - 1) * nkt
                pMat[i, start : start + nkt] = pK
            offset = 1 + (nb - 1) * nkt
        else:
            for i in range(nb):
                pMat[i, i * nkt : (i + 1) * nkt] = pK
            offset = nb * nkt
        if self._fitForBackground:
            pB = self._bgFunction.terms(xCenter, yCenter).ravel()
            pMat[nb, offset:] = pB
        return pMat

    def addConstraint(self, xCenter: float, yCenter: float, qMat: np.ndarray, wVec: np.ndarray) -> None:
        """Add one candidate's normal equations at its position.

        Raises
        ------
        InvalidParameterError
            If the candidate system does not match the basis and background
            settings.
        """
        pMat = self._designMatrix(xCenter, yCenter)
        if qMat.shape != (pMat.shape[0], pMat.shape[0]):
            raise InvalidParameterError(
                f"Candidate system of size {qMat.shape[0]} does not match {pMat.shape[0]} local unknowns "
                "(check fitForBackground of the candidates and of the spatial fit)."
            )
        self._mMat += pMat.T @ qMat @ pMat
        self._bVec += pMat.T @ wVec
        self._nConstraints += 1

    def addConstraints(
        self, xCenters: np.ndarray, yCenters: np.ndarray, qMats: np.ndarray, wVecs: np.ndarray
    ) -> None:
        """Add many candidates' normal equations at once (as repeated `addConstraint`).

        Every local unknown maps onto a block of spatial unknowns through
        one row of spatial terms (a constant, the kernel terms or the
        background terms), so ``sum_n P_n^T Q_n P_n`` is assembled block by
        block with one matrix product per pair of term kinds.

        Parameters
        ----------
        xCenters, yCenters : `numpy.ndarray`
            ``(n,)`` candidate positions.
        qMats : `numpy.ndarray`
            ``(n, nloc, nloc)`` candidate normal matrices.
        wVecs : `numpy.ndarray`
            ``(n, nloc)`` candidate right-hand sides.

        Raises
        ------
        InvalidParameterError
            If the candidate systems do not match the basis and background
            settings.
        """
        n = len(xCenters)
        if n == 0:
            return
        nb = self._nbases
        nloc = nb + (1 if self._fitForBackground else 0)
        if qMats.shape != (n, nloc, nloc) or wVecs.shape != (n, nloc):
            raise InvalidParameterError(
                f"Candidate systems of shape {qMats.shape[1:]} do not match {nloc} local unknowns "
                "(check fitForBackground of the candidates and of the spatial fit)."
            )
        # A few hundred candidates at a time keep the block temporaries small.
        for start in range(0, n, 512):
            chunk = slice(start, min(start + 512, n))
            self._addConstraintBlocks(xCenters[chunk], yCenters[chunk], qMats[chunk], wVecs[chunk])
        self._nConstraints += n

    def _addConstraintBlocks(
        self, xCenters: np.ndarray, yCenters: np.ndarray, qMats: np.ndarray, wVecs: np.ndarray
    ) -> None:
        """Add one chunk of checked candidate systems (the body of `addConstraints`)."""
        n = len(xCenters)
        nb, nkt = self._nbases, self._nkt
        xs = np.asarray(xCenters, dtype=float)
        ys = np.asarray(yCenters, dtype=float)
        kernelTerms = np.asarray(self._kFunction.terms(xs, ys), dtype=float).reshape(nkt, n).T
        # Groups of local unknowns: (local rows, per-candidate terms (n, t), first spatial column).
        groups: list[tuple[np.ndarray, np.ndarray, int]] = []
        if self._constantFirstTerm:
            groups.append((np.array([0]), np.ones((n, 1)), 0))
            groups.append((np.arange(1, nb), kernelTerms, 1))
            offset = 1 + (nb - 1) * nkt
        else:
            groups.append((np.arange(nb), kernelTerms, 0))
            offset = nb * nkt
        if self._fitForBackground:
            bgTerms = np.asarray(self._bgFunction.terms(xs, ys), dtype=float).reshape(self._nbt, n).T
            groups.append((np.array([nb]), bgTerms, offset))
        mMat, bVec = self._mMat, self._bVec
        assert mMat is not None and bVec is not None  # made by the constructor
        for rows1, terms1, start1 in groups:
            if rows1.size == 0:
                continue
            span1 = rows1.size * terms1.shape[1]
            bVec[start1 : start1 + span1] += np.einsum("ni,na->ia", wVecs[:, rows1], terms1).ravel()
            for rows2, terms2, start2 in groups:
                if rows2.size == 0:
                    continue
                span2 = rows2.size * terms2.shape[1]
                q = qMats[:, rows1][:, :, rows2].reshape(n, -1)
                outer = (terms1[:, :, np.newaxis] * terms2[:, np.newaxis, :]).reshape(n, -1)
                block = (q.T @ outer).reshape(rows1.size, rows2.size, terms1.shape[1], terms2.shape[1])
                mMat[start1 : start1 + span1, start2 : start2 + span2] += block.transpose(0, 2, 1, 3).reshape(
                    span1, span2
                )

    def getNConstraints(self) -> int:
        """Return the number of candidate systems added so far."""
        return self._nConstraints

    def solve(self, mMat: np.ndarray | None = None, bVec: np.ndarray | None = None) -> None:
        """Solve the spatial system and build the kernel and background."""
        super().solve(mMat, bVec)
        self._setKernel()

    def _setKernel(self) -> None:
        a = self.getSolution()
        nb, nkt = self._nbases, self._nkt
        if not np.all(np.isfinite(a)):
            cond = (
                conditionNumber(self.getM(), ConditionNumberType.EIGENVALUE)
                if self._mMat is not None
                else math.nan
            )
            raise KernelSolutionError(
                f"Unable to determine spatial kernel solution (nan); condition number = {cond:.3e}"
            )
        if nkt == 1:
            self._kernel = LinearCombinationKernel(self._basisList, a[:nb])
            offset = nb
        else:
            params = np.zeros((nb, nkt))
            if self._constantFirstTerm:
                params[0, 0] = a[0]
                params[1:] = a[1 : 1 + (nb - 1) * nkt].reshape(nb - 1, nkt)
                offset = 1 + (nb - 1) * nkt
            else:
                params[:] = a[: nb * nkt].reshape(nb, nkt)
                offset = nb * nkt
            self._kernel = LinearCombinationKernel(self._basisList, self._kFunction)
            self._kernel.setSpatialParameters(params)
        self._kSum = self._kernel.getSum(0.0, 0.0)
        if self._fitForBackground:
            bgFunc = self._bgFunction.clone()
            bgFunc.setParameters(a[offset : offset + self._nbt])
        else:
            bgFunc = PolynomialFunction2(0, [0.0])
        self._backgroundFunction = bgFunc

    def _checkSolved(self) -> tuple[LinearCombinationKernel, Function2]:
        if self._kernel is None or self._backgroundFunction is None:
            raise KernelSolutionError("Kernel not solved; cannot return solution")
        return self._kernel, self._backgroundFunction

    def getSolutionPair(self) -> tuple[LinearCombinationKernel, Function2]:
        """Return ``(spatialKernel, spatialBackground)``."""
        return self._checkSolved()

    def getKernel(self) -> LinearCombinationKernel:
        """Return the fitted spatial kernel.

        Raises
        ------
        KernelSolutionError
            If the system has not been solved.
        """
        return self._checkSolved()[0]

    def getBackground(self) -> Function2:
        """Return the fitted spatial background function.

        Raises
        ------
        KernelSolutionError
            If the system has not been solved.
        """
        return self._checkSolved()[1]

    def getKsum(self) -> float:
        """Return the sum of the fitted kernel evaluated at position ``(0, 0)``.

        Raises
        ------
        KernelSolutionError
            If the system has not been solved.
        """
        self._checkSolved()
        return self._kSum

    def makeKernelImage(self, x: float = 0.0, y: float = 0.0) -> np.ndarray:
        """Return the image of the fitted kernel at ``(x, y)``.

        Parameters
        ----------
        x, y : `float`, optional
            Position (parent pixels).

        Returns
        -------
        image : `numpy.ndarray`
            The kernel image.

        Raises
        ------
        KernelSolutionError
            If the system has not been solved.
        """
        return self._checkSolved()[0].getArray(x, y)


StaticKernelSolutionF = StaticKernelSolution
RegularizedKernelSolutionF = RegularizedKernelSolution
