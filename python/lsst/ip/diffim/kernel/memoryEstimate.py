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
"""Memory a kernel fit will need, checked against the machine before it starts.

The per-candidate normal equations dominate for large bases: each kept
candidate holds ``M`` (``nloc^2`` doubles) and ``b``, 1.6 MB for the
441-term delta-function basis, and a regularized fit adds the ``nloc^2``
regularization matrix once.  Rejected candidates drop theirs
(`KernelCandidate.setStatus`), so at most the candidates the cells keep
(``nStarPerCell`` per cell, or all of them) hold one at a time; the
spatial fit adds its own ``(nBasis nSpatialTerms + nBgTerms)^2`` system.
A configuration whose estimate exceeds the memory the machine has
available is refused with `MemoryEstimateError` before any work is done.
"""

from __future__ import annotations

__all__ = [
    "MemoryEstimateError",
    "availableMemoryBytes",
    "checkMemoryEstimate",
    "estimateKernelFitBytes",
]

import os

_DOUBLE = 8


class MemoryEstimateError(MemoryError):
    """A configuration would need more memory than the machine has available.

    Attributes
    ----------
    estimateBytes : `int`
        The estimated need.
    availableBytes : `int`
        The memory available when checked.
    """

    def __init__(self, message: str, estimateBytes: int, availableBytes: int) -> None:
        super().__init__(message)
        self.estimateBytes = int(estimateBytes)
        self.availableBytes = int(availableBytes)


def estimateKernelFitBytes(
    nBasis: int,
    nCandidates: int,
    nCells: int,
    nStarPerCell: int,
    nSpatialKernelTerms: int,
    nSpatialBgTerms: int,
    fitForBackground: bool,
    useRegularization: bool,
    stampPixels: int,
    keepsSystems: bool = True,
    nSpatialBasis: int | None = None,
) -> int:
    """Return the bytes the per-candidate and spatial systems of a fit need at once.

    Parameters
    ----------
    nBasis : `int`
        Basis kernels of the per-candidate fits.
    nCandidates, nCells, nStarPerCell : `int`
        Candidates, spatial cells and candidates kept per cell (``<= 0``: all).
    nSpatialKernelTerms, nSpatialBgTerms : `int`
        Terms of the spatial kernel and background functions.
    fitForBackground, useRegularization : `bool`
        As configured.
    stampPixels : `int`
        Pixels of a candidate's good region (the rows of its design matrix).
    keepsSystems : `bool`, optional
        `False` when the candidates drop their systems once solved (the PCA
        basis replaces them): one at a time is held.
    nSpatialBasis : `int`, optional
        Basis of the spatial fit (default ``nBasis``; the PCA components).

    Returns
    -------
    nbytes : `int`
    """
    nloc = nBasis + (1 if fitForBackground else 0)
    kept = nCandidates if nStarPerCell <= 0 else min(nCandidates, nCells * nStarPerCell)
    perCandidate = (nloc * nloc + 2 * nloc) * _DOUBLE
    nSpatialBasis = nBasis if nSpatialBasis is None else nSpatialBasis
    if not keepsSystems:
        nlocSpatial = nSpatialBasis + (1 if fitForBackground else 0)
        perCandidate = (nlocSpatial * nlocSpatial + 2 * nlocSpatial) * _DOUBLE
        kept += 1  # plus the one being built
    # Building one system: its design matrix, a weighted copy and the solver's factorization.
    working = (2 * stampPixels * nloc + 2 * nloc * nloc) * _DOUBLE
    regularization = nloc * nloc * _DOUBLE if useRegularization else 0
    nSpatial = nSpatialBasis * nSpatialKernelTerms + (nSpatialBgTerms if fitForBackground else 0)
    spatial = 2 * nSpatial * nSpatial * _DOUBLE
    return int(kept * perCandidate + working + regularization + spatial)


def availableMemoryBytes() -> int:
    """Return the memory available to this process now (bytes).

    ``MemAvailable`` of ``/proc/meminfo``, capped by a cgroup limit if one
    is set; elsewhere the physical memory.
    """
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 2**63 - 1
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            available = min(available, int(text))
    return int(available)


def checkMemoryEstimate(estimateBytes: int, what: str, availableBytes: int | None = None) -> None:
    """Raise `MemoryEstimateError` if ``estimateBytes`` exceeds the memory available.

    Parameters
    ----------
    estimateBytes : `int`
        The estimate.
    what : `str`
        What needs it, for the message (e.g. the configuration).
    availableBytes : `int`, optional
        The memory available (default `availableMemoryBytes`).
    """
    available = availableMemoryBytes() if availableBytes is None else int(availableBytes)
    if estimateBytes > available:
        raise MemoryEstimateError(
            f"{what} needs an estimated {estimateBytes / 2**30:.2f} GiB, more than the "
            f"{available / 2**30:.2f} GiB available; use a smaller basis (kernelSize), fewer "
            "candidates per cell (nStarPerCell) or larger cells (sizeCellX/Y).",
            estimateBytes,
            available,
        )
