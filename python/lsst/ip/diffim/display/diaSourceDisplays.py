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
"""Displays of DIA sources.

The lsstDebug display of `DetectAndMeasureTask`, and the overlay the summary
sheet draws on its difference panel.

Positive sources are marked by green circles, negative ones by red circles
and dipoles by magenta circles with a line from the negative to the
positive lobe.
"""

from __future__ import annotations

__all__ = ["displayDiaSources", "overlayDiaSources"]

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .core import finishFigure, pyplot, showMaskedImage

if TYPE_CHECKING:
    import lsstDebug
    from astropy.table import Table
    from matplotlib.axes import Axes

    from lsst.images import MaskedImage
    from lsst.utils.logging import LsstLoggers

_STYLE = {"positive": "lime", "negative": "red", "dipole": "magenta"}


def _classes(diaSources: Table) -> dict[str, np.ndarray]:
    n = len(diaSources)
    if n == 0:
        return {name: np.zeros(0, dtype=bool) for name in _STYLE}
    dipole = np.asarray(diaSources["isDipole"], dtype=bool)
    flux = np.asarray(diaSources["psfFlux"], dtype=float)
    negative = ~dipole & (np.asarray(diaSources["isNegative"], dtype=bool) | (flux < 0))
    return {"positive": ~dipole & ~negative, "negative": negative, "dipole": dipole}


def overlayDiaSources(
    ax: Axes,
    diaSources: Table | None,
    origin: tuple[float, float] = (0.0, 0.0),
    size: float = 40.0,
    stride: int = 1,
) -> None:
    """Mark DIA sources on an axis showing an image.

    Parameters
    ----------
    ax : `matplotlib.axes.Axes`
        The axis.
    diaSources : `astropy.table.Table`
        The DIA sources (``x``, ``y``, ``psfFlux``, ``isNegative``,
        ``isDipole`` and the dipole lobe positions).
    origin : `tuple` [`float`, `float`], optional
        Parent position of the image's first pixel when the axis shows
        array indices (``imshow`` without ``extent``); ``(0, 0)`` when it
        shows parent coordinates.
    size : `float`, optional
        Marker size.
    stride : `int`, optional
        Decimation of the image shown (every ``stride``-th pixel): axis
        pixel ``i`` is image pixel ``i * stride``.
    """
    if diaSources is None or len(diaSources) == 0:
        return
    x0, y0 = origin

    def px(values: ArrayLike, zero: float) -> np.ndarray:
        return (np.asarray(values, dtype=float) - zero) / stride

    xs = px(diaSources["x"], x0)
    ys = px(diaSources["y"], y0)
    for name, selected in _classes(diaSources).items():
        if not selected.any():
            continue
        colour = _STYLE[name]
        ax.scatter(
            xs[selected],
            ys[selected],
            s=size,
            facecolors="none",
            edgecolors=colour,
            linewidths=1.0,
            label=f"{name} ({int(selected.sum())})",
        )
        if name == "dipole":
            for k in np.flatnonzero(selected):
                row = diaSources[int(k)]
                ax.plot(
                    px([row["dipole_negX"], row["dipole_posX"]], x0),
                    px([row["dipole_negY"], row["dipole_posY"]], y0),
                    color=colour,
                    linewidth=1.0,
                )
    previous = ax.get_legend()
    if previous is not None:
        ax.add_artist(previous)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.7, title="DIA sources", title_fontsize=7)


def displayDiaSources(
    moduleName: str, log: LsstLoggers | None, info: lsstDebug.Info, difference: MaskedImage, diaSources: Table
) -> None:
    """Draw the difference image with its masks and the DIA sources marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    showMaskedImage(ax, difference, f"DIA sources ({len(diaSources)})", info, fig, symmetric=True)
    overlayDiaSources(ax, diaSources)
    fig.tight_layout()
    finishFigure(fig, "diaSources", info, log)
