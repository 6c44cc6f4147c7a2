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
"""Memory estimates, checked against the machine before the work they describe.

Two estimates at two moments:

- `estimateMemory`, before any work (the CLI's check): an upper estimate of
  one whole subtraction from the image size and the kernel configuration:
  the image planes, the per-candidate basis stacks and normal equations
  (``nStarPerCell`` per cell) and the spatial system.  Its constants were
  calibrated against the peak resident memory of `lsst.ip.diffim.subtract`
  on synthetic pairs (measured / estimated: DF 21 px order 2 on 600 px
  506/618 MB, DF 31 px order 3 on 600 px 1293/2176 MB, DF 41 px on 300 px
  1223/2773 MB, AL on 1024 px 344/368 MB): it errs high, by up to a factor
  2.3, to refuse the configurations that cannot fit, not to predict the
  footprint to the megabyte.
- `estimateKernelFitBytes`, once the candidates are known (`PsfMatchTask`
  checks it before the per-candidate fits): the per-candidate normal
  equations dominate for large bases (``M``, ``nloc^2`` doubles, and ``b``
  per kept candidate: 1.6 MB for the 441-term delta-function basis), plus
  the regularization matrix and the spatial system.  Rejected candidates
  drop theirs (`KernelCandidate.setStatus`).

A configuration whose estimate exceeds the memory available
(`availableMemoryBytes`) is refused with `MemoryEstimateError`.
"""

from __future__ import annotations

__all__ = [
    "MemoryEstimate",
    "MemoryEstimateError",
    "availableMemory",
    "availableMemoryBytes",
    "checkMemoryEstimate",
    "estimateKernelFitBytes",
    "estimateMemory",
]

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

_DOUBLE = 8

_BASELINE = 300 * 2**20  # the interpreter, numpy/scipy/astropy and the stack's modules
_PLANE_BYTES = 4 * 14  # float32-equivalents per pixel: inputs, warped, convolved, difference, tiles


class _DetectionConfig(Protocol):
    """The fields of a ``DetectionConfig`` that `estimateMemory` reads (the stamp size)."""

    @property
    def scaleByFwhm(self) -> bool: ...
    @property
    def fpGrowKernelScaling(self) -> float: ...
    @property
    def fpGrowPix(self) -> int: ...


class _KernelConfig(Protocol):
    """The fields of a ``PsfMatchConfig`` that `estimateMemory` reads."""

    @property
    def kernelBasisSet(self) -> str: ...
    @property
    def kernelSize(self) -> int: ...
    @property
    def kernelSizeMax(self) -> int: ...
    @property
    def alardDegGauss(self) -> Sequence[int]: ...
    @property
    def spatialKernelOrder(self) -> int: ...
    @property
    def spatialBgOrder(self) -> int: ...
    @property
    def fitForBackground(self) -> bool: ...
    @property
    def sizeCellX(self) -> int: ...
    @property
    def sizeCellY(self) -> int: ...
    @property
    def nStarPerCell(self) -> int: ...
    @property
    def detectionConfig(self) -> _DetectionConfig: ...


@dataclass
class MemoryEstimate:
    """The estimate and the numbers it was made from."""

    total: int
    """Bytes."""
    kernelSize: int
    nBasis: int
    nSpatialTerms: int
    nCandidates: int
    shape: tuple[int, int]
    parts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: the estimate and what drives it."""
        ny, nx = self.shape
        return (
            f"about {self.total / 2**30:.1f} GiB (image {nx}x{ny} px, kernel {self.kernelSize} px, "
            f"{self.nBasis} basis functions x {self.nSpatialTerms} spatial terms, "
            f"about {self.nCandidates} candidates)"
        )


def _nSpatial(order: int) -> int:
    return (order + 1) * (order + 2) // 2


def estimateMemory(
    kConfig: _KernelConfig, shape: tuple[int, int], nCandidates: int | None = None
) -> MemoryEstimate:
    """Estimate the peak memory of one subtraction.

    Parameters
    ----------
    kConfig : `lsst.ip.diffim.PsfMatchConfig`
        The active kernel config (``config.kernel.active``).
    shape : `tuple` [`int`, `int`]
        Image shape ``(ny, nx)``.
    nCandidates : `int`, optional
        Kernel candidates fitted; by default ``nStarPerCell`` per cell.

    Returns
    -------
    estimate : `MemoryEstimate`
    """
    ny, nx = int(shape[0]), int(shape[1])
    delta = kConfig.kernelBasisSet == "delta-function"
    kernelSize = int(kConfig.kernelSize)
    if not delta and getattr(kConfig, "scaleByFwhm", False):
        kernelSize = max(kernelSize, int(kConfig.kernelSizeMax))
    if delta:
        nBasis = kernelSize * kernelSize
    else:
        nBasis = sum(_nSpatial(int(d)) for d in kConfig.alardDegGauss)
    nSpatial = _nSpatial(int(kConfig.spatialKernelOrder))
    nBg = _nSpatial(int(kConfig.spatialBgOrder)) if kConfig.fitForBackground else 0
    nCells = math.ceil(nx / max(1, kConfig.sizeCellX)) * math.ceil(ny / max(1, kConfig.sizeCellY))
    if nCandidates is None:
        nCandidates = nCells * max(1, int(kConfig.nStarPerCell))
    detection = kConfig.detectionConfig
    if detection.scaleByFwhm:
        half = int(math.ceil(detection.fpGrowKernelScaling * kernelSize))
    else:
        half = int(detection.fpGrowPix)
    stampPixels = (2 * half + 1) ** 2
    # One chunk of candidates is fitted at a time: its convolved basis stacks (float64).
    chunk = min(nCandidates, 8)
    parts = {
        "image planes": nx * ny * _PLANE_BYTES,
        "candidate basis stacks": chunk * nBasis * stampPixels * 8,
        "candidate normal equations": nCandidates * (nBasis + 1) ** 2 * 8,
        "spatial system": (nBasis * nSpatial + nBg) ** 2 * 8,
        "spatial constraints": nCandidates * (nBasis * nSpatial + nBg) * 8 * 4,
        "baseline": _BASELINE,
    }
    return MemoryEstimate(
        total=int(sum(parts.values())),
        kernelSize=kernelSize,
        nBasis=nBasis,
        nSpatialTerms=nSpatial,
        nCandidates=int(nCandidates),
        shape=(ny, nx),
        parts=parts,
    )


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


def availableMemory() -> int | None:
    """Return the memory available to this process in bytes, `None` if it cannot be told."""
    available = availableMemoryBytes()
    return None if available >= 2**63 - 1 else available
