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

A matplotlib figure with one Axes per stamp and per colour bar costs tens of
milliseconds per Axes, and even one full-page image costs a second to draw,
which makes pages of many candidates slow.  Here the stamps (nearest-neighbour
resized to a cell of ``cell`` pixels), their outlines and the colour-bar
strips are painted into one array and the texts are drawn on it with Pillow
(in matplotlib's DejaVu Sans), one output pixel per array pixel; the picture
is written as it is, or shown in a zoomable figure (`finishPicture`).
"""

from __future__ import annotations

__all__ = ["StampMosaic"]

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

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
        One title per column (a newline is allowed).
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
        """Return the top pixel row of stamp row ``i`` in the picture."""
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

        def byte(v: ArrayLike) -> np.ndarray:
            return np.round(np.asarray(v, dtype=float) * 255).astype(np.uint8)

        canvas = np.full((self.height, self.width, 3), byte(_BACKGROUND), dtype=np.uint8)
        c = self.cell
        for i, row in enumerate(self.rows):
            y0 = self.rowY(i)
            for j in range(self.nCols):
                x0 = self.colX[j]
                if row.colour is not None:
                    canvas[y0 - 2 : y0 + c + 2, x0 - 2 : x0 + c + 2] = byte(to_rgb(row.colour))
                canvas[y0 : y0 + c, x0 : x0 + c] = byte(_NAN_GREY if j in row.stamps else 0.93)
                if j not in row.stamps:
                    continue
                array, cmap, vmin, vmax = row.stamps[j]
                if array.size == 0:
                    continue
                span = vmax - vmin if vmax > vmin else 1.0
                rgb = lookup(cmap)(np.clip((array[::-1] - vmin) / span, 0.0, 1.0), bytes=True)[..., :3]
                rgb[~np.isfinite(array[::-1])] = byte(_NAN_GREY)
                big = _fit(rgb, c)
                oy, ox = (c - big.shape[0]) // 2, (c - big.shape[1]) // 2
                canvas[y0 + oy : y0 + oy + big.shape[0], x0 + ox : x0 + ox + big.shape[1]] = big
            for j, bar in row.bars.items():
                x0 = self.colX[j] + c + 5
                ramp = lookup(bar.cmap)(np.linspace(1.0, 0.0, c), bytes=True)[:, :3]
                canvas[y0 : y0 + c, x0 : x0 + self.barWidth] = ramp[:, np.newaxis, :]
        return canvas

    def picture(self, title: str) -> np.ndarray:
        """Return the mosaic as an RGB array ``(height, width, 3)`` of uint8, texts included."""
        from matplotlib.colors import to_rgb
        from PIL import Image, ImageDraw

        image = Image.fromarray(self._paint())
        draw = ImageDraw.Draw(image)

        def put(
            x: float,
            y: float,
            text: str,
            size: int,
            ha: str,
            va: str,
            colour: str = "black",
            box: bool = False,
        ) -> None:
            font = _font(size)
            left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, spacing=1)
            w, h = right - left, bottom - top
            x0 = {"left": x, "center": x - w / 2, "right": x - w}[ha]
            y0 = {"top": y, "center": y - h / 2, "bottom": y - h}[va]
            if box:
                draw.rectangle((x0 - 2, y0 - 1, x0 + w + 2, y0 + h + 1), fill=(255, 255, 255))
            fill = tuple(int(round(255 * v)) for v in to_rgb(colour))
            draw.multiline_text(
                (x0 - left, y0 - top),
                text,
                font=font,
                fill=fill,
                spacing=1,
                align={"left": "left", "center": "center", "right": "right"}[ha],
            )

        put(6, 5, title, 12, "left", "top")
        c = self.cell
        for j, t in enumerate(self.columnTitles):
            put(self.colX[j] + c / 2, self.header - 6, t, 10, "center", "bottom")
        for i, row in enumerate(self.rows):
            y0 = self.rowY(i)
            if row.label:
                put(self.left - 8, y0 + c / 2, row.label, 9, "right", "center")
            for col, text, where, colour in row.texts:
                y, va = {
                    "bottom": (y0 + c - 3, "bottom"),
                    "top": (y0 + 3, "top"),
                    "centre": (y0 + c / 2, "center"),
                }[where]
                put(self.colX[col] + c / 2, y, text, 8, "center", va, colour, box=True)
            for j, bar in row.bars.items():
                x0 = self.colX[j] + c + 5 + self.barWidth + 3
                if bar.vmin == -bar.vmax:
                    ticks = [(y0 + c / 2, "0", "center"), (y0, f"+/-{_tick(bar.vmax)}", "top")]
                else:
                    ticks = [(y0, _tick(bar.vmax), "top"), (y0 + c, _tick(bar.vmin), "bottom")]
                for y, text, va in ticks:
                    put(x0, y, text, 8, "left", va)
                put(x0, y0 + 0.75 * c, bar.label, 8, "left", "center", "0.35")
        return np.asarray(image)


_FONTS: dict[int, Any] = {}


def _font(size: int) -> Any:
    """Return the DejaVu Sans font matplotlib ships, at ``size`` pixels."""
    if size not in _FONTS:
        from matplotlib import font_manager
        from PIL import ImageFont

        _FONTS[size] = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    return _FONTS[size]
