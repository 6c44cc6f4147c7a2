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
"""The one way a task turns a candidate table into a cell set of kernel candidates."""

from __future__ import annotations

__all__ = ["makeKernelCellSet"]

import numpy as np
from astropy.table import Table

from lsst.images import Box, MaskedImage

from ..math.spatialCell import SpatialCellCandidateStatus, SpatialCellSet
from .candidate import KernelCandidate
from .settings import KernelFitSettings
from .stampStack import StampStack


def makeKernelCellSet(
    templateMaskedImage: MaskedImage,
    scienceMaskedImage: MaskedImage,
    candidateList: Table,
    settings: KernelFitSettings,
    sizeCellX: int,
    sizeCellY: int,
) -> SpatialCellSet:
    """Return a `SpatialCellSet` over the template's box holding one candidate per row.

    Stamps of one size are cut from the two images and rated all at once,
    into one `StampStack` per size; each `KernelCandidate` is a row of its
    stack (its `lsst.images.MaskedImage` stamps are only cut if asked for).

    Parameters
    ----------
    templateMaskedImage, scienceMaskedImage : `lsst.images.MaskedImage`
        The image convolved and the other one, on the same pixel grid.
    candidateList : `astropy.table.Table`
        Columns ``x``, ``y`` (centres) and ``stampXmin``, ``stampXmax``,
        ``stampYmin``, ``stampYmax`` (stamp boxes, parent pixels, end
        exclusive); an optional boolean ``isolated`` column ranks the
        isolated candidates above every other one (each group by rating).
    settings : `KernelFitSettings`
        The kernel configuration, shared by the candidates.
    sizeCellX, sizeCellY : `int`
        Size of the spatial cells (pixels).

    Returns
    -------
    cellSet : `SpatialCellSet`
        The candidates, rated by the mean signal-to-noise of the science
        stamp's core; those whose rating is not finite start BAD.
    """
    bbox = templateMaskedImage.bbox
    cellSet = SpatialCellSet(bbox, sizeCellX, sizeCellY)
    y0 = np.asarray(candidateList["stampYmin"], dtype=int)
    y1 = np.asarray(candidateList["stampYmax"], dtype=int)
    x0 = np.asarray(candidateList["stampXmin"], dtype=int)
    x1 = np.asarray(candidateList["stampXmax"], dtype=int)
    xc = np.asarray(candidateList["x"], dtype=float)
    yc = np.asarray(candidateList["y"], dtype=float)
    shapes = np.stack([y1 - y0, x1 - x0], axis=1)
    placement: list[tuple[StampStack, int, float, bool]] = [None] * len(candidateList)  # type: ignore[list-item]
    for shape in np.unique(shapes, axis=0):
        which = np.flatnonzero((shapes == shape).all(axis=1))
        stack = StampStack.fromParents(
            templateMaskedImage,
            scienceMaskedImage,
            y0[which] - bbox.y.start,
            x0[which] - bbox.x.start,
            (int(shape[0]), int(shape[1])),
        )
        ratings, finite = stack.coreRatings(settings.candidateCoreRadius, list(settings.badMaskPlanes))
        for i, where in enumerate(which):
            placement[where] = (stack, i, float(ratings[i]) if finite[i] else 0.0, bool(finite[i]))
    if "isolated" in candidateList.colnames:
        _liftIsolated(placement, np.asarray(candidateList["isolated"], dtype=bool))
    for row, (stack, i, rating, ok) in enumerate(placement):
        box = Box.factory[int(y0[row]) : int(y1[row]), int(x0[row]) : int(x1[row])]
        cand = KernelCandidate.fromStack(
            float(xc[row]),
            float(yc[row]),
            stack,
            i,
            templateMaskedImage,
            scienceMaskedImage,
            box,
            settings,
            rating,
        )
        if not ok:
            cand.setStatus(SpatialCellCandidateStatus.BAD, "core rating not finite")
        cellSet.insertCandidate(cand)
    return cellSet


def _liftIsolated(placement: list[tuple[StampStack, int, float, bool]], isolated: np.ndarray) -> None:
    """Raise the ratings of the isolated candidates above every other one (in place)."""
    rated = np.array([p[2] for p in placement], dtype=float)
    finite = rated[np.isfinite(rated)]
    lift = float(np.abs(finite).max()) * 2 + 1.0 if finite.size else 1.0
    for row in np.flatnonzero(isolated):
        stack, i, rating, ok = placement[row]
        if ok and np.isfinite(rating):
            placement[row] = (stack, i, rating + lift, ok)
