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
"""The Cholesky path of the regularized candidate systems, and the delta-function design matrix."""

from __future__ import annotations

import numpy as np
import pytest

from lsst.ip.diffim.kernel.solution import KernelSolvedBy, solvePositiveDefiniteSystem, solveSymmetricSystem
from lsst.ip.diffim.kernel.stamps import basisDesignMatrix


def test_a_positive_definite_system_is_solved_by_cholesky_with_the_lu_answer():
    rng = np.random.default_rng(1)
    design = rng.normal(size=(80, 30))
    m = design.T @ design + 0.1 * np.eye(30)
    truth = rng.normal(size=30)
    b = m @ truth
    a, solvedBy = solvePositiveDefiniteSystem(m, b)
    assert solvedBy == KernelSolvedBy.CHOLESKY_LLT
    assert a == pytest.approx(truth, rel=1e-8, abs=1e-10)
    lu, _ = solveSymmetricSystem(m, b)
    assert a == pytest.approx(lu, rel=1e-10, abs=1e-12)


def test_singular_and_indefinite_systems_take_the_lu_and_eigenvector_path():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(10, 3))
    singular = v @ v.T  # rank 3
    b = singular @ rng.normal(size=10)
    a, solvedBy = solvePositiveDefiniteSystem(singular, b)
    expected, expectedBy = solveSymmetricSystem(singular, b)
    assert solvedBy == expectedBy == KernelSolvedBy.EIGENVECTOR
    assert a == pytest.approx(expected)
    indefinite = np.diag([3.0, -1.0, 2.0])
    a, solvedBy = solvePositiveDefiniteSystem(indefinite, np.array([3.0, 1.0, 4.0]))
    assert solvedBy == KernelSolvedBy.LU
    assert a == pytest.approx([1.0, -1.0, 2.0])
    a, solvedBy = solvePositiveDefiniteSystem(np.full((2, 2), np.nan), np.ones(2))
    assert solvedBy == KernelSolvedBy.NONE and np.isnan(a).all()


def test_delta_function_design_matrix_with_its_background_column():
    rng = np.random.default_rng(3)
    stamp = rng.normal(size=(13, 15))
    basis = np.eye(25).reshape(25, 5, 5)
    plain = basisDesignMatrix(stamp, basis, isDelta=True)
    withBackground = basisDesignMatrix(stamp, basis, isDelta=True, constantColumn=True)
    assert plain.shape == (9 * 11, 25)
    # Column k is the stamp shifted by kernel pixel k over the good region.
    assert plain[:, 5 * 2 + 3] == pytest.approx(stamp[2 : 2 + 9, 3 : 3 + 11].ravel())
    assert np.array_equal(withBackground[:, :25], plain) and np.all(withBackground[:, 25] == 1.0)
    assert withBackground.flags.c_contiguous
    general = basisDesignMatrix(stamp, basis[::-1].copy(), constantColumn=True)
    assert np.allclose(general[:, :25], plain[:, ::-1]) and np.all(general[:, 25] == 1.0)
