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
"""An upper estimate of the memory a kernel fit and subtraction will need.

`estimateMemory` models the big allocations from the image size and the
kernel configuration: the image planes (inputs, convolved and difference
images, masks), the per-candidate basis stacks and normal equations, and the
spatial system (unknowns = basis size x spatial terms + background terms).
Its constants were calibrated against the peak resident memory of
`lsst.ip.diffim.subtract` on synthetic pairs (measured / estimated: DF
21 px order 2 on 600 px 506/618 MB, DF 31 px order 3 on 600 px
1293/2176 MB, DF 41 px on 300 px 1223/2773 MB, AL on 1024 px 344/368 MB):
it errs high, by up to a factor 2.3, to refuse before any work the configurations
that cannot fit on the machine, not to predict the footprint to the
megabyte.
"""

from __future__ import annotations

__all__ = ["MemoryEstimate", "availableMemory", "estimateMemory"]

import math
import os
from dataclasses import dataclass, field
from typing import Any

_BASELINE = 300 * 2**20  # the interpreter, numpy/scipy/astropy and the stack's modules
_PLANE_BYTES = 4 * 14  # float32-equivalents per pixel: inputs, warped, convolved, difference, tiles


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


def estimateMemory(kConfig: Any, shape: tuple[int, int], nCandidates: int | None = None) -> MemoryEstimate:
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


def availableMemory() -> int | None:
    """Return the memory available to this process in bytes (`None` if unknown).

    The smaller of ``MemAvailable`` of ``/proc/meminfo`` and a cgroup limit,
    where present; otherwise the physical memory.
    """
    values = []
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    values.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            values.append(int(text))
    if not values:
        try:
            values.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(values)
