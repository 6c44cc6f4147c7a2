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
"""Debug displays of the image tasks (``lsst.ip.diffim.imagePsfMatch``, ``modelPsfMatch``)."""

from __future__ import annotations

__all__ = ["displayDifference", "displayInputImages", "displaySpatialCells"]

from typing import TYPE_CHECKING

import numpy as np

from .candidateMaps import CandidateStatusMap, drawCellGrid
from .core import debugNumber, finishFigure, isInteractive, pyplot, showMaskedImage
from .switches import isEnabled

if TYPE_CHECKING:
    import lsstDebug

    from lsst.images import MaskedImage
    from lsst.utils.logging import LsstLoggers

    from ..math.spatialCell import SpatialCellSet


def _single(
    name: str,
    title: str,
    maskedImage: MaskedImage,
    info: lsstDebug.Info,
    log: LsstLoggers | None,
    symmetric: bool = False,
) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    showMaskedImage(ax, maskedImage, title, info, fig, symmetric=symmetric)
    fig.tight_layout()
    finishFigure(fig, name, info, log)


def displayInputImages(
    moduleName: str,
    log: LsstLoggers | None,
    info: lsstDebug.Info,
    templateMaskedImage: MaskedImage,
    scienceMaskedImage: MaskedImage,
) -> None:
    """Draw the image to convolve (``displayTemplate``) and the other (``displaySciIm``)."""
    if isEnabled(info, moduleName, "displayTemplate", log):
        _single("template", "Image to convolve [counts]", templateMaskedImage, info, log)
    if isEnabled(info, moduleName, "displaySciIm", log):
        _single("science", "Image to not convolve [counts]", scienceMaskedImage, info, log)


def displaySpatialCells(
    moduleName: str,
    log: LsstLoggers | None,
    info: lsstDebug.Info,
    maskedImage: MaskedImage,
    cellSet: SpatialCellSet,
    title: str = "Spatial cells and kernel candidates",
) -> None:
    """Draw the image with the cell grid and the candidates by status.

    At most ``maxMapPoints`` (debug variable, default 1500) candidate symbols
    are drawn; the legend counts every candidate of each status.  With an
    interactive backend, zooming redraws the candidates of the view.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 8))
    cands = cellSet.allCandidates()
    nCells = len(cellSet.getCellList())
    showMaskedImage(
        ax, maskedImage, f"{title}: {len(cands)} candidates in {nCells} cells [image in counts]", info, fig
    )
    drawCellGrid(ax, cellSet)
    xs = np.array([c.getXCenter() for c in cands], dtype=float)
    ys = np.array([c.getYCenter() for c in cands], dtype=float)
    statusMap = CandidateStatusMap(
        ax,
        xs,
        ys,
        [c.getStatus() for c in cands],
        maxPoints=int(debugNumber(info, "maxMapPoints", 1500)),
        interactive=isInteractive(),
    )
    fig._ipdiffimStatusMap = statusMap  # keeps the zoom callback's owner alive with the figure
    fig.tight_layout()
    finishFigure(fig, "spatialCells", info, log, dpi=100)


def displayDifference(
    moduleName: str, log: LsstLoggers | None, info: lsstDebug.Info, maskedImage: MaskedImage, title: str
) -> None:
    """Draw a difference image in counts and in units of its noise (sigma)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.8))
    showMaskedImage(
        axes[0], maskedImage, f"{title} [counts]", info, fig, symmetric=True, interpolation="nearest"
    )
    bbox = maskedImage.bbox
    extent = (bbox.x.min - 0.5, bbox.x.max + 0.5, bbox.y.min - 0.5, bbox.y.max + 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = maskedImage.image.array / np.sqrt(maskedImage.variance.array)
    im = axes[1].imshow(
        sigma, origin="lower", cmap="RdBu_r", vmin=-5, vmax=5, extent=extent, interpolation="nearest"
    )
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.03, label="difference / sigma")
    finite = sigma[np.isfinite(sigma)]
    rms = float(np.std(np.clip(finite, -10, 10))) if finite.size else float("nan")
    axes[1].set_title(f"{title} / sqrt(variance) [sigma], fixed scale +/-5; rms {rms:.2f}", fontsize=10)
    axes[1].set_xlabel("x [pix]")
    axes[1].set_ylabel("y [pix]")
    fig.tight_layout()
    finishFigure(fig, "difference", info, log)
