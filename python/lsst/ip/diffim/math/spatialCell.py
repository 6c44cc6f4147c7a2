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
"""Spatial cells of kernel candidates, with afw's visiting rules.

A `SpatialCellSet` tiles a region with `SpatialCell` objects; each cell keeps
its candidates sorted by decreasing rating.  Visitors walk the best
``nMaxPerCell`` non-BAD candidates of every cell.
"""

from __future__ import annotations

__all__ = [
    "CandidateVisitor",
    "SpatialCell",
    "SpatialCellCandidate",
    "SpatialCellCandidateStatus",
    "SpatialCellImageCandidate",
    "SpatialCellSet",
]

import enum
import itertools
import math
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from lsst.images import Box


class SpatialCellCandidateStatus(enum.IntEnum):
    """Status of a candidate (afw's numbering)."""

    BAD = 0
    GOOD = 1
    UNKNOWN = 2


_candidateIds = itertools.count(1)


class SpatialCellCandidate:
    """Base class of the objects stored in spatial cells.

    Parameters
    ----------
    xCenter, yCenter : `float`
        Position in parent pixel coordinates (stored as float32, as afw).
    """

    BAD = SpatialCellCandidateStatus.BAD
    GOOD = SpatialCellCandidateStatus.GOOD
    UNKNOWN = SpatialCellCandidateStatus.UNKNOWN

    def __init__(self, xCenter: float, yCenter: float) -> None:
        self._xCenter = float(np.float32(xCenter))
        self._yCenter = float(np.float32(yCenter))
        self._id = next(_candidateIds)
        self._status = SpatialCellCandidateStatus.UNKNOWN

    def getXCenter(self) -> float:
        """Return the column of the candidate's centre (parent pixels)."""
        return self._xCenter

    def getYCenter(self) -> float:
        """Return the row of the candidate's centre (parent pixels)."""
        return self._yCenter

    def getId(self) -> int:
        """Return the candidate's unique id (a process-wide counter from 1)."""
        return self._id

    def getStatus(self) -> SpatialCellCandidateStatus:
        """Return the candidate's status (good, bad or unknown)."""
        return self._status

    def setStatus(self, status: SpatialCellCandidateStatus | int) -> None:
        """Set the candidate's status; an `int` is converted to the enum."""
        self._status = SpatialCellCandidateStatus(status)

    def isBad(self) -> bool:
        """Return whether the candidate's status is ``BAD``."""
        return self._status == SpatialCellCandidateStatus.BAD

    def getCandidateRating(self) -> float:
        """Return the rating used to order candidates within a cell."""
        raise NotImplementedError()

    def setCandidateRating(self, rating: float) -> None:
        """Set the rating; subclasses that support it override this.

        Raises
        ------
        NotImplementedError
            Always, in this base class (the rating is computed, as in afw).
        """
        raise NotImplementedError()


class SpatialCellImageCandidate(SpatialCellCandidate):
    """A candidate that carries a chi^2 (initially the largest double)."""

    def __init__(self, xCenter: float, yCenter: float) -> None:
        super().__init__(xCenter, yCenter)
        self._chi2 = sys.float_info.max

    def getChi2(self) -> float:
        """Return the candidate's chi^2 as last set by a visitor."""
        return self._chi2

    def setChi2(self, chi2: float) -> None:
        """Set the candidate's chi^2."""
        self._chi2 = float(chi2)


class CandidateVisitor:
    """Base class of candidate visitors; subclasses override `processCandidate`.

    Notes
    -----
    The cells hand a visitor all the candidates of one visit at once,
    through `processCandidates`, whose default processes them one at a
    time.  A visitor may override it with a faster (batched) way of doing
    the same, provided the result is that of the one-at-a-time loop.
    """

    def reset(self) -> None:
        """Prepare for a pass: called once at the start of each `SpatialCellSet.visitCandidates`."""

    def processCandidate(self, candidate: SpatialCellCandidate) -> None:
        """Process one candidate; subclasses override this.

        Parameters
        ----------
        candidate : `SpatialCellCandidate`
            The candidate being visited.

        Raises
        ------
        NotImplementedError
            Always, in this base class.
        """
        raise NotImplementedError()

    def processCandidates(
        self, candidates: Sequence[SpatialCellCandidate], ignoreExceptions: bool = False
    ) -> list[SpatialCellCandidate]:
        """Process ``candidates`` in order; return those whose processing raised.

        Parameters
        ----------
        candidates : sequence of `SpatialCellCandidate`
            The candidates of one visit, cell by cell.
        ignoreExceptions : `bool`, optional
            Collect the candidates whose processing raises instead of
            letting the exception through.

        Returns
        -------
        failed : `list` of `SpatialCellCandidate`
            The candidates whose processing raised (empty unless
            ``ignoreExceptions``).
        """
        failed = []
        for candidate in candidates:
            try:
                self.processCandidate(candidate)
            except Exception:
                if not ignoreExceptions:
                    raise
                failed.append(candidate)
        return failed


def _visitCells(
    cells: Sequence[SpatialCell],
    visitor: CandidateVisitor,
    nMaxPerCell: int,
    ignoreExceptions: bool,
    ignoreBad: bool,
) -> None:
    """Hand ``visitor`` the best ``nMaxPerCell`` candidates of every cell (all if <= 0).

    The candidates are chosen at the start of the visit (the visitors only
    change the candidate they process, so this is the lazy walk of one at
    a time).  With ``ignoreExceptions``, a candidate whose processing raised
    does not count: its cell's next candidates are visited in its place.
    """
    walks = [cell.begin(ignoreBad) for cell in cells]
    wanted = [nMaxPerCell] * len(cells)
    while True:
        batch: list[SpatialCellCandidate] = []
        owner: dict[int, int] = {}
        for i, walk in enumerate(walks):
            taken = list(itertools.islice(walk, wanted[i])) if nMaxPerCell > 0 else list(walk)
            for candidate in taken:
                owner[id(candidate)] = i
            batch.extend(taken)
        if not batch:
            return
        failed = visitor.processCandidates(batch, ignoreExceptions)
        if not failed or nMaxPerCell <= 0:
            return
        wanted = [0] * len(cells)
        for candidate in failed:
            wanted[owner[id(candidate)]] += 1


class SpatialCell:
    """A rectangular cell holding candidates sorted by decreasing rating.

    Parameters
    ----------
    label : `str`
        Cell label, e.g. ``"Cell 0x1"``.
    bbox : `lsst.images.Box`
        The cell's pixels.
    """

    def __init__(self, label: str, bbox: Box) -> None:
        self._label = label
        self._bbox = bbox
        self._candidates: list[SpatialCellCandidate] = []

    def getLabel(self) -> str:
        """Return the cell's label (used in logs and displays)."""
        return self._label

    def getBBox(self) -> Box:
        """Return the cell's bounding box in parent pixels."""
        return self._bbox

    def insertCandidate(self, candidate: SpatialCellCandidate) -> None:
        """Insert keeping decreasing rating; before existing equal ratings."""
        rating = candidate.getCandidateRating()
        lo, hi = 0, len(self._candidates)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._candidates[mid].getCandidateRating() > rating:
                lo = mid + 1
            else:
                hi = mid
        self._candidates.insert(lo, candidate)

    def removeCandidate(self, candidate: SpatialCellCandidate) -> None:
        """Remove a candidate from the cell.

        Raises
        ------
        ValueError
            If the candidate is not in the cell.
        """
        self._candidates.remove(candidate)

    def sortCandidates(self) -> None:
        """Re-sort by decreasing rating (stable)."""
        self._candidates.sort(key=lambda c: -c.getCandidateRating())

    def begin(self, ignoreBad: bool = True) -> Iterator[SpatialCellCandidate]:
        """Iterate over candidates, lazily skipping BAD ones if ``ignoreBad``."""
        for candidate in list(self._candidates):
            if ignoreBad and candidate.isBad():
                continue
            yield candidate

    def __iter__(self) -> Iterator[SpatialCellCandidate]:
        return self.begin(True)

    def empty(self) -> bool:
        """Return `True` if no non-BAD candidate remains."""
        return not any(not c.isBad() for c in self._candidates)

    def size(self) -> int:
        """Return the number of non-BAD candidates."""
        return sum(1 for c in self._candidates if not c.isBad())

    def __len__(self) -> int:
        return self.size()

    def getCandidates(self, ignoreBad: bool = False) -> list[SpatialCellCandidate]:
        """Return the candidates in rating order."""
        return list(self.begin(ignoreBad))

    def getCandidateById(self, candidateId: int, noThrow: bool = False) -> SpatialCellCandidate | None:
        """Return the candidate of this cell with the given id.

        Parameters
        ----------
        candidateId : `int`
            The id (`SpatialCellCandidate.getId`).
        noThrow : `bool`, optional
            Return `None` instead of raising when no candidate has that id.

        Returns
        -------
        candidate : `SpatialCellCandidate` or `None`
            The candidate, or `None` if absent and ``noThrow``.

        Raises
        ------
        LookupError
            If no candidate has that id and ``noThrow`` is false.
        """
        for c in self._candidates:
            if c.getId() == candidateId:
                return c
        if noThrow:
            return None
        raise LookupError(f"No candidate with id {candidateId} in {self._label}.")

    def visitCandidates(
        self, visitor: CandidateVisitor, nMaxPerCell: int = -1, ignoreExceptions: bool = False
    ) -> None:
        """Visit the best ``nMaxPerCell`` non-BAD candidates (all if <= 0).

        Notes
        -----
        The BAD test is made lazily: a candidate that turns BAD while it is
        processed still counts toward ``nMaxPerCell``.  With
        ``ignoreExceptions``, a candidate whose processing raises is not
        counted and the walk goes on.
        """
        self._visit(visitor, nMaxPerCell, ignoreExceptions, ignoreBad=True)

    def visitAllCandidates(
        self, visitor: CandidateVisitor, nMaxPerCell: int = -1, ignoreExceptions: bool = False
    ) -> None:
        """Visit candidates including BAD ones."""
        self._visit(visitor, nMaxPerCell, ignoreExceptions, ignoreBad=False)

    def _visit(
        self, visitor: CandidateVisitor, nMaxPerCell: int, ignoreExceptions: bool, ignoreBad: bool
    ) -> None:
        _visitCells([self], visitor, nMaxPerCell, ignoreExceptions, ignoreBad)

    def __repr__(self) -> str:
        return f"SpatialCell({self._label!r}, {self._bbox}, {len(self._candidates)} candidates)"


class SpatialCellSet:
    """A grid of `SpatialCell` objects covering a region.

    Parameters
    ----------
    region : `lsst.images.Box`
        Region to tile.
    xSize : `int`
        Cell width (pixels).
    ySize : `int`, optional
        Cell height; 0 means ``xSize``.

    Raises
    ------
    ValueError
        If a cell size is not positive.
    """

    def __init__(self, region: Box, xSize: int, ySize: int = 0) -> None:
        if ySize == 0:
            ySize = xSize
        if xSize <= 0 or ySize <= 0:
            raise ValueError(f"Cell sizes must be positive; got {xSize}x{ySize}.")
        self._region = region
        nx = math.ceil(region.x.size / xSize)
        ny = math.ceil(region.y.size / ySize)
        self._xSize, self._ySize, self._nx, self._ny = xSize, ySize, nx, ny
        self._cells: list[SpatialCell] = []
        y0 = region.y.start
        for iy in range(ny):
            y1 = region.y.stop if iy == ny - 1 else y0 + ySize
            x0 = region.x.start
            for ix in range(nx):
                x1 = region.x.stop if ix == nx - 1 else x0 + xSize
                self._cells.append(SpatialCell(f"Cell {ix}x{iy}", Box.factory[y0:y1, x0:x1]))
                x0 = x1
            y0 = y1

    def getBBox(self) -> Box:
        """Return the region covered by the cells."""
        return self._region

    def getCellList(self) -> list[SpatialCell]:
        """Return a new list of the set's cells."""
        return list(self._cells)

    def __iter__(self) -> Iterator[SpatialCell]:
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)

    def insertCandidate(self, candidate: SpatialCellCandidate) -> None:
        """Insert a candidate into the cell containing its (rounded) centre.

        Raises
        ------
        LookupError
            If no cell contains the candidate.
        """
        x = math.floor(candidate.getXCenter() + 0.5)
        y = math.floor(candidate.getYCenter() + 0.5)
        region = self._region
        if region.x.start <= x < region.x.stop and region.y.start <= y < region.y.stop:
            ix = min((x - region.x.start) // self._xSize, self._nx - 1)
            iy = min((y - region.y.start) // self._ySize, self._ny - 1)
            self._cells[iy * self._nx + ix].insertCandidate(candidate)
            return
        raise LookupError(
            f"Candidate at ({candidate.getXCenter()}, {candidate.getYCenter()}) is outside {self._region}."
        )

    def sortCandidates(self) -> None:
        """Re-sort the candidates of every cell by decreasing rating."""
        for cell in self._cells:
            cell.sortCandidates()

    def getCandidateById(self, candidateId: int, noThrow: bool = False) -> SpatialCellCandidate | None:
        """Return the candidate of any cell with the given id.

        Parameters
        ----------
        candidateId : `int`
            The id (`SpatialCellCandidate.getId`).
        noThrow : `bool`, optional
            Return `None` instead of raising when no candidate has that id.

        Returns
        -------
        candidate : `SpatialCellCandidate` or `None`
            The candidate, or `None` if absent and ``noThrow``.

        Raises
        ------
        LookupError
            If no candidate has that id and ``noThrow`` is false.
        """
        for cell in self._cells:
            found = cell.getCandidateById(candidateId, noThrow=True)
            if found is not None:
                return found
        if noThrow:
            return None
        raise LookupError(f"No candidate with id {candidateId}.")

    def visitCandidates(
        self, visitor: CandidateVisitor, nMaxPerCell: int = -1, ignoreExceptions: bool = False
    ) -> None:
        """Call ``visitor.reset()`` then visit each cell's best candidates.

        Notes
        -----
        The visitor receives the candidates of all cells in one
        `CandidateVisitor.processCandidates` call: the best ``nMaxPerCell``
        non-BAD ones of each cell at the start (plus, with
        ``ignoreExceptions``, replacements for those whose processing
        raised, in a further call).
        """
        visitor.reset()
        _visitCells(self._cells, visitor, nMaxPerCell, ignoreExceptions, ignoreBad=True)

    def visitAllCandidates(
        self, visitor: CandidateVisitor, nMaxPerCell: int = -1, ignoreExceptions: bool = False
    ) -> None:
        """Like `visitCandidates`, including BAD candidates."""
        visitor.reset()
        _visitCells(self._cells, visitor, nMaxPerCell, ignoreExceptions, ignoreBad=False)

    def allCandidates(self, ignoreBad: bool = False) -> list[SpatialCellCandidate]:
        """Return every candidate of every cell (cell order, then rating)."""
        return [c for cell in self._cells for c in cell.begin(ignoreBad)]

    def __repr__(self) -> str:
        return f"SpatialCellSet({self._region}, {len(self._cells)} cells)"
