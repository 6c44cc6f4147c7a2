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
"""Candidates by status on a map that stays readable at 10,000 candidates.

At most ``maxPoints`` symbols are drawn (a deterministic subsample, shared
between the statuses in proportion to their counts but at least a fair share
each); the legend gives, per status, how many candidates there are and how
many are drawn.  With an interactive backend the subsample is redrawn for the
part of the image in view whenever the view is zoomed or panned, so zooming in
shows every candidate of the zoomed region.
"""

from __future__ import annotations

__all__ = ["STATUS_STYLE", "CandidateStatusMap", "drawCellGrid", "subsample"]

from typing import TYPE_CHECKING, Any

import numpy as np

from ..math.spatialCell import SpatialCellCandidateStatus

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..math.spatialCell import SpatialCellSet

#: Colour, marker and label of each status (upstream: GOOD cyan, UNKNOWN yellow, BAD red).
STATUS_STYLE: dict[SpatialCellCandidateStatus, tuple[str, str, str]] = {
    SpatialCellCandidateStatus.GOOD: ("cyan", "o", "good"),
    SpatialCellCandidateStatus.UNKNOWN: ("yellow", "s", "unknown"),
    SpatialCellCandidateStatus.BAD: ("red", "X", "bad"),
}


def subsample(counts: dict[Any, int], maxPoints: int) -> dict[Any, int]:
    """Share ``maxPoints`` between groups of ``counts`` (all of a group if it fits).

    Groups smaller than an equal share keep all their members; the rest of
    the budget is shared in proportion to the larger groups' counts.
    """
    remaining = {k: n for k, n in counts.items() if n > 0}
    out = {k: 0 for k in counts}
    budget = max(0, int(maxPoints))
    while remaining:
        share = budget / len(remaining)
        small = {k: n for k, n in remaining.items() if n <= share}
        if not small:
            total = sum(remaining.values())
            for k, n in remaining.items():
                out[k] = int(budget * n / total)
            break
        for k, n in small.items():
            out[k] = n
            budget -= n
            del remaining[k]
    return out


def drawCellGrid(ax: Axes, cellSet: SpatialCellSet, colour: str = "white", alpha: float = 0.5) -> None:
    """Draw the cell boundaries of a `SpatialCellSet` as one line collection."""
    from matplotlib.collections import LineCollection

    segments = []
    for cell in cellSet.getCellList():
        b = cell.getBBox()
        x0, x1, y0, y1 = b.x.min - 0.5, b.x.max + 0.5, b.y.min - 0.5, b.y.max + 0.5
        segments += [[(x0, y0), (x1, y0)], [(x1, y0), (x1, y1)], [(x1, y1), (x0, y1)], [(x0, y1), (x0, y0)]]
    ax.add_collection(LineCollection(segments, colors=colour, linewidths=0.5, alpha=alpha, zorder=2))


class CandidateStatusMap:
    """Draw candidate positions by status on ``ax``, at most ``maxPoints`` of them.

    Parameters
    ----------
    ax : `matplotlib.axes.Axes`
        Where to draw (its limits should already cover the image).
    xs, ys : `numpy.ndarray`
        Candidate positions.
    statuses : `list` of `SpatialCellCandidateStatus`
        Their statuses.
    maxPoints : `int`
        Most symbols drawn at once.
    interactive : `bool`
        Redraw the subsample for the view when it is zoomed or panned.
    """

    def __init__(
        self,
        ax: Axes,
        xs: np.ndarray,
        ys: np.ndarray,
        statuses: list[SpatialCellCandidateStatus],
        maxPoints: int = 1500,
        interactive: bool = False,
    ) -> None:
        self.ax = ax
        self.maxPoints = int(maxPoints)
        codes = np.array([int(s) for s in statuses], dtype=int)
        self._xs = np.asarray(xs, dtype=float)
        self._ys = np.asarray(ys, dtype=float)
        # One fixed random order: the subsample of a view is its first members in that order.
        self._order = np.random.default_rng(12345).permutation(len(self._xs))
        self._members = {s: self._order[codes[self._order] == int(s)] for s in STATUS_STYLE}
        size = float(np.clip(4000.0 / max(1, min(len(self._xs), self.maxPoints)), 6.0, 40.0))
        self._artists = {}
        for status, (colour, marker, _) in STATUS_STYLE.items():
            filled = marker == "X"
            self._artists[status] = ax.scatter(
                [],
                [],
                s=size,
                marker=marker,
                facecolors=colour if filled else "none",
                edgecolors=colour,
                linewidths=0.9,
                zorder=3,
            )
        self.update()
        if interactive:
            ax.callbacks.connect("xlim_changed", lambda _ax: self.update())
            ax.callbacks.connect("ylim_changed", lambda _ax: self.update())

    def update(self) -> dict[Any, tuple[int, int]]:
        """Redraw the subsample for the current view; return ``{status: (inView, drawn)}``."""
        x0, x1 = sorted(self.ax.get_xlim())
        y0, y1 = sorted(self.ax.get_ylim())
        inView = {}
        for status, members in self._members.items():
            mx, my = self._xs[members], self._ys[members]
            inView[status] = members[(mx >= x0) & (mx <= x1) & (my >= y0) & (my <= y1)]
        shares = subsample({s: len(m) for s, m in inView.items()}, self.maxPoints)
        counts = {}
        for status, members in inView.items():
            drawn = members[: shares[status]]
            self._artists[status].set_offsets(np.column_stack([self._xs[drawn], self._ys[drawn]]))
            counts[status] = (len(members), len(drawn))
        handles, labels = [], []
        for status, (n, drawn) in counts.items():
            if n == 0:
                continue
            label = STATUS_STYLE[status][2]
            handles.append(self._artists[status])
            labels.append(f"{label}: {n}" if drawn == n else f"{label}: {n} ({drawn} drawn)")
        if handles:
            self.ax.legend(handles, labels, loc="lower right", fontsize=8, framealpha=0.8)
        self.counts = counts
        return counts
