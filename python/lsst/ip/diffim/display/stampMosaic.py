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
"""A grid of stamps with colour bars, drawn as one RGB picture.

A figure with one matplotlib Axes per stamp and per colour bar costs tens of
milliseconds per Axes, which makes pages of many candidates slow.  Here the
stamps (nearest-neighbour enlarged to a cell of ``cell`` pixels), their
outlines and the colour-bar strips are painted into one array, shown by a
single ``imshow`` at one array pixel per output pixel, and only the texts
(titles, labels, colour-bar ticks) are matplotlib artists.
"""

from __future__ import annotations

__all__ = ["StampMosaic"]

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core import pyplot

_BACKGROUND = 1.0
_NAN_GREY = 0.85


@dataclass
class _Bar:
    cmap: str
    vmin: float
    vmax: float
    label: str


@dataclass
class _Row:
    stamps: dict[int, tuple[np.ndarray, str, float, float]] = field(default_factory=dict)
    texts: list[tuple[int, str, str, str]] = field(default_factory=list)
    bars: dict[int, _Bar] = field(default_factory=dict)
    label: str = ""
    colour: str | None = None


def _tick(value: float) -> str:
    """Short colour-bar tick label (no exponent for values of 1e-3 to 1e6)."""
    if value == 0:
        return "0"
    if 1e3 <= abs(value) < 1e6:
        return f"{value:.0f}"
    if 1e-3 <= abs(value) < 1e3:
        return f"{value:.3g}"
    return f"{value:.1e}"


def _fit(rgb: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of ``rgb`` to fit a ``size`` square (integer zoom when enlarging)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= size:
        f = size // max(h, w)
        return np.repeat(np.repeat(rgb, f, axis=0), f, axis=1)
    scale = size / max(h, w)
    ys = np.minimum((np.arange(max(1, int(h * scale))) / scale).astype(int), h - 1)
    xs = np.minimum((np.arange(max(1, int(w * scale))) / scale).astype(int), w - 1)
    return rgb[ys][:, xs]


class StampMosaic:
    """Rows of stamps (one row per object), with colour bars after chosen columns.

    Parameters
    ----------
    nRows : `int`
        Number of rows.
    columnTitles : `list` of `str`
        One title per column (``\\n`` allowed).
    barAfter : `set` of `int`
        Columns followed by a colour-bar strip (set per row with
        `setColourbar`).
    cell : `int`
        Size of a stamp cell in output pixels.
    """

    def __init__(self, nRows: int, columnTitles: list[str], barAfter: set[int], cell: int = 92) -> None:
        self.nRows = nRows
        self.nCols = len(columnTitles)
        self.columnTitles = columnTitles
        self.barAfter = set(barAfter)
        self.cell = int(cell)
        self.gap = 6
        self.barWidth = 9
        self.barSpace = 64  # strip plus its tick labels
        self.left = 118
        self.header = 74
        self.rowGap = 8
        self.rows = [_Row() for _ in range(nRows)]
        self.colX = []
        x = self.left
        for j in range(self.nCols):
            self.colX.append(x)
            x += self.cell + (self.barSpace if j in self.barAfter else self.gap)
        self.width = x + 4
        self.height = self.header + nRows * (self.cell + self.rowGap) + 4

    def rowY(self, i: int) -> int:
        return self.header + i * (self.cell + self.rowGap)

    def setStamp(self, row: int, col: int, array: np.ndarray, cmap: str, vmin: float, vmax: float) -> None:
        """Put ``array`` (origin lower left) in a cell, coloured on ``[vmin, vmax]``."""
        self.rows[row].stamps[col] = (np.asarray(array, dtype=float), cmap, float(vmin), float(vmax))

    def setText(self, row: int, col: int, text: str, where: str = "bottom", colour: str = "black") -> None:
        """Write ``text`` on a cell (``where``: "bottom", "top" or "centre")."""
        self.rows[row].texts.append((col, text, where, colour))

    def setColourbar(self, row: int, col: int, cmap: str, vmin: float, vmax: float, label: str) -> None:
        """Draw the colour bar of a row right of column ``col`` (one of ``barAfter``)."""
        self.rows[row].bars[col] = _Bar(cmap, float(vmin), float(vmax), label)

    def setRowLabel(self, row: int, text: str, colour: str | None = None) -> None:
        """Label a row on the left; ``colour`` outlines its stamps."""
        self.rows[row].label = text
        self.rows[row].colour = colour

    def _paint(self) -> np.ndarray:
        from matplotlib import colormaps
        from matplotlib.colors import to_rgb

        cmaps: dict[str, Any] = {}

        def lookup(name: str) -> Any:
            if name not in cmaps:
                cmaps[name] = colormaps[name]
            return cmaps[name]

        canvas = np.full((self.height, self.width, 3), _BACKGROUND)
        c = self.cell
        for i, row in enumerate(self.rows):
            y0 = self.rowY(i)
            for j in range(self.nCols):
                x0 = self.colX[j]
                if row.colour is not None:
                    canvas[y0 - 2 : y0 + c + 2, x0 - 2 : x0 + c + 2] = to_rgb(row.colour)
                canvas[y0 : y0 + c, x0 : x0 + c] = _NAN_GREY if j in row.stamps else 0.93
                if j not in row.stamps:
                    continue
                array, cmap, vmin, vmax = row.stamps[j]
                if array.size == 0:
                    continue
                span = vmax - vmin if vmax > vmin else 1.0
                rgb = lookup(cmap)(np.clip((array[::-1] - vmin) / span, 0.0, 1.0))[..., :3]
                rgb[~np.isfinite(array[::-1])] = _NAN_GREY
                big = _fit(rgb, c)
                oy, ox = (c - big.shape[0]) // 2, (c - big.shape[1]) // 2
                canvas[y0 + oy : y0 + oy + big.shape[0], x0 + ox : x0 + ox + big.shape[1]] = big
            for j, bar in row.bars.items():
                x0 = self.colX[j] + c + 5
                ramp = lookup(bar.cmap)(np.linspace(1.0, 0.0, c))[:, :3]
                canvas[y0 : y0 + c, x0 : x0 + self.barWidth] = ramp[:, np.newaxis, :]
        return np.round(canvas * 255).astype(np.uint8)

    def render(self, title: str, dpi: float = 100, interactive: bool = False) -> Any:
        """Return the matplotlib figure of the mosaic.

        Headless, the picture is placed with ``figimage`` (one output pixel
        per array pixel when saved at ``dpi``, no resampling); with
        ``interactive`` it is an ``imshow`` in an Axes, so it can be zoomed.
        """
        plt = pyplot()
        fig = plt.figure(figsize=(self.width / dpi, self.height / dpi), dpi=dpi)
        canvas = self._paint()
        if interactive:
            ax = fig.add_axes((0, 0, 1, 1))
            ax.imshow(canvas, interpolation="nearest", origin="upper", aspect="equal")
            ax.set_xlim(-0.5, self.width - 0.5)
            ax.set_ylim(self.height - 0.5, -0.5)
            ax.axis("off")

            def put(x: float, y: float, text: str, **kwargs: Any) -> None:
                ax.text(x, y, text, **kwargs)

        else:
            fig.figimage(canvas, xo=0, yo=0, origin="upper")

            def put(x: float, y: float, text: str, **kwargs: Any) -> None:
                fig.text(x / self.width, 1.0 - y / self.height, text, **kwargs)

        put(6, 6, title, fontsize=8.5, va="top", ha="left")
        c = self.cell
        for j, t in enumerate(self.columnTitles):
            put(self.colX[j] + c / 2, self.header - 6, t, fontsize=6.5, ha="center", va="bottom")
        for i, row in enumerate(self.rows):
            y0 = self.rowY(i)
            if row.label:
                put(
                    self.left - 8,
                    y0 + c / 2,
                    row.label,
                    fontsize=6,
                    ha="right",
                    va="center",
                    linespacing=1.15,
                )
            for col, text, where, colour in row.texts:
                y, va = {
                    "bottom": (y0 + c - 3, "bottom"),
                    "top": (y0 + 3, "top"),
                    "centre": (y0 + c / 2, "center"),
                }[where]
                put(
                    self.colX[col] + c / 2,
                    y,
                    text,
                    fontsize=5.5,
                    ha="center",
                    va=va,
                    color=colour,
                    linespacing=1.1,
                    bbox={"facecolor": "white", "alpha": 0.8, "pad": 1.0, "linewidth": 0},
                )
            for j, bar in row.bars.items():
                x0 = self.colX[j] + c + 5 + self.barWidth + 2
                if bar.vmin == -bar.vmax:
                    ticks = [(0.5, "0"), (0.0, f"+/-{_tick(bar.vmax)}")]
                else:
                    ticks = [(0.0, _tick(bar.vmax)), (1.0, _tick(bar.vmin))]
                for frac, text in ticks:
                    put(
                        x0,
                        y0 + frac * (c - 1) + (4 if frac == 0 else 0),
                        text,
                        fontsize=5.5,
                        ha="left",
                        va="center",
                    )
                put(x0 + 2, y0 + 0.78 * c, bar.label, fontsize=5.5, ha="left", va="center", color="0.35")
        return fig
