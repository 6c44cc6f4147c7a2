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
"""Exceptions standing in for the afw/pex ones of the C++ code.

Upstream raises ``lsst.pex.exceptions`` classes from C++; these builtin-derived
classes play that role here.  All derive from `DiffimComputationError` or a
builtin, so callers can catch them precisely.
"""

from __future__ import annotations

__all__ = [
    "DiffimComputationError",
    "InvalidParameterError",
    "KernelSolutionError",
]


class DiffimComputationError(ArithmeticError):
    """A numerical step of the kernel fit failed (upstream: a pex exception)."""


class KernelSolutionError(DiffimComputationError):
    """A kernel solution could not be built or solved (NaN, bad variance, unsolved)."""


class InvalidParameterError(ValueError):
    """An argument is invalid (upstream: ``pex.exceptions.InvalidParameterError``).

    Notes
    -----
    The afw original is a ``LogicError``; here it is a `ValueError`.
    """
