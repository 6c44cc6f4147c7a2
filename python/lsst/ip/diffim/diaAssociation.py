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
"""Association of DIA sources with the template's and science image's sources.

Each DIA source is matched to the nearest source of a catalogue within a
radius; ``refMatchId`` holds the template (reference) source's id and
``srcMatchId`` the science source's, 0 when none is in reach.  The counts
under the names the PsfMatchTask documentation promised
(``NFalsePositivesTotal``, ``NFalsePositivesRefAssociated``,
``NFalsePositivesSrcAssociated``, ``NFalsePositivesUnassociated``) follow the
rule of upstream's removed ``KernelCandidateQa.aggregate``: every DIA source,
those with a template match, those with a science match (a source may count
in both), and those with neither.
"""

from __future__ import annotations

__all__ = ["FALSE_POSITIVE_KEYS", "associateDiaSources", "countFalsePositives", "matchToCatalog"]

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

#: The metadata keys of the counts, in order: total, template, science, neither.
FALSE_POSITIVE_KEYS = (
    "NFalsePositivesTotal",
    "NFalsePositivesRefAssociated",
    "NFalsePositivesSrcAssociated",
    "NFalsePositivesUnassociated",
)


def matchToCatalog(
    x: np.ndarray, y: np.ndarray, catalog: Table | None, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return the id of, and distance to, the nearest catalogue source within ``radius``.

    Parameters
    ----------
    x, y : `numpy.ndarray`
        Positions to match (pixels).
    catalog : `astropy.table.Table` or `None`
        Sources with ``x``, ``y`` and (optionally) ``id`` columns, ids > 0;
        row number + 1 if there is no ``id``.
    radius : `float`
        Match radius (pixels).

    Returns
    -------
    ids : `numpy.ndarray`
        The matched ids (int64), 0 where nothing is within ``radius``.
    distances : `numpy.ndarray`
        Distances (NaN where unmatched).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ids = np.zeros(len(x), dtype=np.int64)
    distances = np.full(len(x), np.nan)
    if catalog is None or len(catalog) == 0 or len(x) == 0:
        return ids, distances
    cx = np.asarray(catalog["x"], dtype=float)
    cy = np.asarray(catalog["y"], dtype=float)
    catIds = (
        np.asarray(catalog["id"], dtype=np.int64)
        if "id" in catalog.colnames
        else np.arange(1, len(catalog) + 1, dtype=np.int64)
    )
    finite = np.isfinite(cx) & np.isfinite(cy)
    if not finite.any():
        return ids, distances
    tree = cKDTree(np.stack([cx[finite], cy[finite]], axis=1))
    ok = np.isfinite(x) & np.isfinite(y)
    d, k = tree.query(np.stack([x[ok], y[ok]], axis=1), k=1, distance_upper_bound=radius)
    hit = np.isfinite(d)
    okIndex = np.flatnonzero(ok)
    ids[okIndex[hit]] = catIds[finite][k[hit]]
    distances[okIndex[hit]] = d[hit]
    return ids, distances


def associateDiaSources(
    diaSources: Table, templateSources: Table | None, scienceSources: Table | None, radius: float
) -> dict[str, int]:
    """Fill ``refMatchId``/``srcMatchId`` (and distances) and return the counts.

    Parameters
    ----------
    diaSources : `astropy.table.Table`
        DIA sources with ``x`` and ``y``; modified in place.  Sources
        classified as dipoles (``isDipole``) are matched at their dipole
        centre (``dipole_x``, ``dipole_y``): a misregistered star is where
        its two lobes meet.
    templateSources, scienceSources : `astropy.table.Table` or `None`
        The template's (reference) and the science image's sources, on the
        same pixel grid.
    radius : `float`
        Match radius (pixels).

    Returns
    -------
    counts : `dict` [`str`, `int`]
        The four ``NFalsePositives*`` counts (`countFalsePositives`).
    """
    x = np.asarray(diaSources["x"], dtype=float)
    y = np.asarray(diaSources["y"], dtype=float)
    if "isDipole" in diaSources.colnames:
        dipole = np.asarray(diaSources["isDipole"], dtype=bool)
        x = np.where(dipole, np.asarray(diaSources["dipole_x"], dtype=float), x)
        y = np.where(dipole, np.asarray(diaSources["dipole_y"], dtype=float), y)
    for column, catalog in (("refMatch", templateSources), ("srcMatch", scienceSources)):
        ids, distances = matchToCatalog(x, y, catalog, radius)
        diaSources[f"{column}Id"] = ids
        diaSources[f"{column}Distance"] = distances
    return countFalsePositives(diaSources)


def countFalsePositives(diaSources: Table) -> dict[str, int]:
    """Return the four ``NFalsePositives*`` counts of an associated DIA source table."""
    ref = np.asarray(diaSources["refMatchId"]) > 0
    src = np.asarray(diaSources["srcMatchId"]) > 0
    values = (len(diaSources), int(ref.sum()), int(src.sum()), int((~ref & ~src).sum()))
    return dict(zip(FALSE_POSITIVE_KEYS, values, strict=True))
