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
"""Keep the first of each group of positions closer than a radius (a k-d tree, not all pairs).

The merge of two catalogues of the same field (the stars found on either
image of a pair) keeps one entry per star: walking the list in order, an
entry that is still kept removes every later entry closer than the radius.
Comparing each entry with all others costs ``N^2`` distances (some 10^9
for the 30,000 detections of a 4096^2 pair, half a minute); a k-d tree
finds the close pairs directly, and the walk visits only the entries that
have a neighbour.  The result is the same as the all-pairs walk (the
distances are compared as ``numpy.hypot`` computes them).
"""

from __future__ import annotations

__all__ = ["firstOfCloseGroups"]

import numpy as np


def firstOfCloseGroups(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Return which positions are kept when each kept one removes the later ones within ``radius``.

    Parameters
    ----------
    x, y : `numpy.ndarray`
        Positions (finite), in list order.
    radius : `float`
        Positions closer than this (strictly) to a kept earlier one are
        removed.

    Returns
    -------
    keep : `numpy.ndarray`
        Boolean array of the positions' length.
    """
    from scipy.spatial import cKDTree

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.ones(x.size, dtype=bool)
    if x.size < 2 or not radius > 0:
        return keep
    tree = cKDTree(np.column_stack([x, y]))
    # A slightly larger search radius, then the exact test: no pair is lost to the tree's rounding.
    pairs = tree.query_pairs(radius * (1.0 + 1e-9), output_type="ndarray")
    if pairs.size == 0:
        return keep
    first, second = pairs[:, 0], pairs[:, 1]
    close = np.hypot(x[second] - x[first], y[second] - y[first]) < radius
    first, second = first[close], second[close]
    order = np.lexsort((second, first))
    first, second = first[order], second[order]
    starts = np.flatnonzero(np.r_[True, first[1:] != first[:-1]])
    ends = np.r_[starts[1:], first.size]
    for start, end in zip(starts.tolist(), ends.tolist()):
        if keep[first[start]]:
            keep[second[start:end]] = False
    return keep
