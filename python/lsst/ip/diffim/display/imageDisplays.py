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
"""Debug displays of the image tasks (``lsst.ip.diffim.imagePsfMatch``)."""

from __future__ import annotations

__all__ = ["displayDifference", "displayInputImages", "displaySpatialCells"]

from typing import Any

from ..math.spatialCell import SpatialCellCandidateStatus
from .core import finishFigure, pyplot, showMaskedImage

_STATUS_STYLE = {
    SpatialCellCandidateStatus.GOOD: ("cyan", "good"),
    SpatialCellCandidateStatus.UNKNOWN: ("yellow", "unknown"),
    SpatialCellCandidateStatus.BAD: ("red", "bad"),
}


def _single(name: str, title: str, maskedImage: Any, info: Any, log: Any, symmetric: bool = False) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    showMaskedImage(ax, maskedImage, title, info, fig, symmetric=symmetric)
    fig.tight_layout()
    finishFigure(fig, name, info, log)


def displayInputImages(
    moduleName: str, log: Any, info: Any, templateMaskedImage: Any, scienceMaskedImage: Any
) -> None:
    """Draw the image to convolve (``displayTemplate``) and the other (``displaySciIm``)."""
    if info.displayTemplate:
        _single("template", "Image to convolve", templateMaskedImage, info, log)
    if info.displaySciIm:
        _single("science", "Image to not convolve", scienceMaskedImage, info, log)


def displaySpatialCells(
    moduleName: str,
    log: Any,
    info: Any,
    maskedImage: Any,
    cellSet: Any,
    title: str = "Spatial cells and candidates",
) -> None:
    """Draw the image with the cell boundaries and the candidates by status."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    showMaskedImage(ax, maskedImage, title, info, fig)
    for cell in cellSet.getCellList():
        b = cell.getBBox()
        ax.add_patch(
            plt.Rectangle(
                (b.x.min - 0.5, b.y.min - 0.5),
                b.x.size,
                b.y.size,
                fill=False,
                edgecolor="white",
                linewidth=0.6,
                alpha=0.6,
            )
        )
    for status, (colour, label) in _STATUS_STYLE.items():
        pts = [(c.getXCenter(), c.getYCenter()) for c in cellSet.allCandidates() if c.getStatus() == status]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(
                xs,
                ys,
                s=40,
                facecolors="none",
                edgecolors=colour,
                linewidths=1.2,
                label=f"{label} ({len(pts)})",
            )
    ax.legend(loc="lower right", fontsize=8, framealpha=0.7)
    fig.tight_layout()
    finishFigure(fig, "spatialCells", info, log)


def displayDifference(moduleName: str, log: Any, info: Any, maskedImage: Any, title: str) -> None:
    """Draw a difference image with a symmetric colour scale and its masks."""
    _single("difference", title, maskedImage, info, log, symmetric=True)
