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
"""The diagnostic PNG sheet of a subtraction (demo and command line).

The sheet is made in two steps.  `prepareSummarySheet` takes what the sheet
shows from the result: every image panel is a decimated view (every k-th
pixel, k chosen so that at most `MAX_PANEL_PIXELS` remain on a side), which
is what a panel of a few hundred screen pixels drawn with nearest-neighbour
sampling shows of a full-resolution plane anyway, so the sheet looks the
same while matplotlib resamples a 1k instead of a 4k image; the
residual histogram is counted on at most `MAX_HISTOGRAM_PIXELS`.  The
prepared views are small copies, so `drawSummarySheet` can run while the
FITS planes are being written.
"""

from __future__ import annotations

__all__ = [
    "MAX_HISTOGRAM_PIXELS",
    "MAX_PANEL_PIXELS",
    "SheetFigure",
    "SummarySheetData",
    "buildSheetFigure",
    "drawSummarySheet",
    "makeSummarySheet",
    "prepareSummarySheet",
]

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

# Nothing of the package's math (which imports lsst.images) at the top: the drawing process
# (`lsst.ip.diffim.cli.sheetWorker`) imports this module for the data class only.

if TYPE_CHECKING:
    from astropy.table import Table
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    import lsst.pipe.base as pipeBase
    from lsst.images import MaskedImage

#: Most pixels kept on a side of an image panel (a panel is about 330 screen pixels wide on the sheet:
#: 15 inches at 80 dpi, three columns; more pixels only cost resampling time).
MAX_PANEL_PIXELS = 512
#: Most pixels counted in the residual histogram.
MAX_HISTOGRAM_PIXELS = 4_000_000


def _stride(shape: tuple[int, ...], limit: int) -> int:
    return max(1, math.ceil(max(shape) / limit))


def _decimate(array: np.ndarray, stride: int) -> np.ndarray:
    return np.array(array[::stride, ::stride], dtype=np.float32, copy=True)


def _limits(array: np.ndarray, lo: float = 1.0, hi: float = 99.5) -> tuple[float, float]:
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return 0.0, 1.0
    a, b = np.percentile(finite, [lo, hi])
    return float(a), float(b if b > a else a + 1.0)


@dataclass
class SummarySheetData:
    """What the summary sheet shows, taken from a result (small copies)."""

    panels: dict[str, np.ndarray]
    extent: tuple[float, float, float, float]
    kernelMosaic: np.ndarray
    kernelSumMap: np.ndarray
    bbox: tuple[float, float, float, float]
    candidates: dict[str, np.ndarray]
    cellBoxes: list[tuple[float, float, float, float]]
    histogramEdges: np.ndarray
    histogramCounts: np.ndarray
    title: str
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    diaSources: Any = None
    """DIA sources to mark on the difference panel (`astropy.table.Table`)."""
    stride: int = 1
    """Decimation of the image panels."""
    convolved: str = "template"
    """Which image the kernel convolved (``template`` or ``science``): the matched panel's title."""


class _Summary(Protocol):
    """A subtraction summary (`lsst.ip.diffim.cli.outputs.SubtractionSummary`): its text is shown."""

    def format(self) -> str:
        """Return the summary's lines."""
        ...


def prepareSummarySheet(
    result: pipeBase.Struct,
    *,
    template: MaskedImage | None = None,
    science: MaskedImage | None = None,
    title: str = "",
    summary: _Summary | None = None,
    diaSources: Table | None = None,
) -> SummarySheetData:
    """Take the decimated views, kernel realizations, candidates and histogram of a result."""
    from ..math.masks import anyMaskPlaneSet
    from ..math.spatialCell import SpatialCellCandidateStatus

    diff = result.subtractedMaskedImage
    bbox = diff.bbox
    kernel = result.psfMatchingKernel
    shape = diff.image.array.shape
    stride = _stride(shape, MAX_PANEL_PIXELS)
    panels: dict[str, np.ndarray] = {}
    if template is not None:
        panels["template"] = _decimate(template.image.array, stride)
    if science is not None:
        panels["science"] = _decimate(science.image.array, stride)
    panels["matched"] = _decimate(result.matchedImage.image.array, stride)
    # Pixels the difference mask flags (saturated, bad, no data, edge) are drawn grey, not as residuals.
    panels["difference"] = _decimate(diff.image.array, stride)
    masked = anyMaskPlaneSet(diff.mask, ["SAT", "BAD", "NO_DATA", "EDGE"])
    if masked is not None:
        panels["difference"][masked[::stride, ::stride]] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        panels["normalized"] = panels["difference"] / np.sqrt(_decimate(diff.variance.array, stride))
    limits = {name: _limits(array) for name, array in panels.items()}
    dlo, dhi = _limits(panels["difference"], 0.5, 99.5)
    limits["difference"] = (-max(abs(dlo), abs(dhi)), max(abs(dlo), abs(dhi)))
    ny, nx = panels["difference"].shape
    extent = (
        bbox.x.min - 0.5,
        bbox.x.min + nx * stride - 0.5,
        bbox.y.min - 0.5,
        bbox.y.min + ny * stride - 0.5,
    )

    # Kernel realized on a 3 x 3 grid across the field.
    kh, kw = kernel.getHeight(), kernel.getWidth()
    mosaic = np.full((3 * kh + 2, 3 * kw + 2), np.nan)
    for iy, fy in enumerate((0.1, 0.5, 0.9)):
        for ix, fx in enumerate((0.1, 0.5, 0.9)):
            x = bbox.x.min + fx * (bbox.x.size - 1)
            y = bbox.y.min + fy * (bbox.y.size - 1)
            mosaic[iy * (kh + 1) : iy * (kh + 1) + kh, ix * (kw + 1) : ix * (kw + 1) + kw] = kernel.getArray(
                x, y
            )
    ys = np.linspace(bbox.y.min, bbox.y.max, 48)
    xs = np.linspace(bbox.x.min, bbox.x.max, 48)
    if hasattr(kernel, "getArrays"):  # all 48 x 48 kernel images from one product
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        ksum = kernel.getArrays(gx.ravel(), gy.ravel()).sum(axis=(1, 2)).reshape(gy.shape)
    else:
        ksum = np.array([[kernel.getSum(x, y) for x in xs] for y in ys])

    cands = result.kernelCellSet.allCandidates()
    candidates = {}
    for status, label in (
        (SpatialCellCandidateStatus.GOOD, "used"),
        (SpatialCellCandidateStatus.BAD, "rejected"),
        (SpatialCellCandidateStatus.UNKNOWN, "not visited"),
    ):
        pts = [(c.getXCenter(), c.getYCenter()) for c in cands if c.getStatus() == status]
        candidates[label] = np.array(pts, dtype=float).reshape(-1, 2)
    cellBoxes = []
    for cell in result.kernelCellSet.getCellList():
        cb = cell.getBBox()
        cellBoxes.append((cb.x.min - 0.5, cb.y.min - 0.5, cb.x.size, cb.y.size))

    # Residual histogram: a regular subsample of at most MAX_HISTOGRAM_PIXELS.
    hStride = max(1, math.ceil(math.sqrt(diff.image.array.size / MAX_HISTOGRAM_PIXELS)))
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = diff.image.array[::hStride, ::hStride] / np.sqrt(diff.variance.array[::hStride, ::hStride])
    values = norm[np.isfinite(norm)]
    values = values[np.abs(values) < 8]
    if values.size:
        counts, edges = np.histogram(values, bins=120)
    else:
        counts, edges = np.zeros(120), np.linspace(-8, 8, 121)
    if summary is not None:
        title = (title + "\n" if title else "") + summary.format()
    return SummarySheetData(
        panels=panels,
        extent=extent,
        kernelMosaic=mosaic,
        kernelSumMap=ksum,
        bbox=(bbox.x.min, bbox.x.max, bbox.y.min, bbox.y.max),
        candidates=candidates,
        cellBoxes=cellBoxes,
        histogramEdges=edges,
        histogramCounts=counts,
        title=title,
        limits=limits,
        diaSources=None if diaSources is None else diaSources.copy(copy_data=True),
        stride=stride,
        convolved="template" if getattr(result, "convolveTemplate", True) else "science",
    )


#: The sheet's layout, fixed (figure fractions, as ``fig.add_axes`` takes them): where
#: ``tight_layout`` put the panels of this 15 x 14 inch sheet, measured once, so that no
#: layout pass (a text-extent computation of every label: 0.4 s) runs per sheet.
_FIGSIZE = (15.0, 14.0)
_DPI = 80
_HEIGHT = 0.2461
_ROWS = (0.5831, 0.3125, 0.0418)
_COLUMNS = (0.0537, 0.3658, 0.6778)
_PANEL_WIDTH = 0.2588
_WIDE_PANEL_WIDTH = 0.2771
_COLORBAR_X = (0.3181, 0.6301, 0.9421)
_COLORBAR_WIDTH = 0.0127
#: Panels (row, column) with a colour bar at their right.
_WITH_COLORBAR = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0))


@dataclass
class SheetFigure:
    """A summary sheet's figure, its panels placed and labelled, waiting for data.

    Built by `buildSheetFigure` (before the data exist, e.g. in the drawing
    process while the subtraction runs) and filled by `drawSummarySheet`.
    """

    figure: Figure
    axes: dict[tuple[int, int], Axes]
    colorbarAxes: dict[tuple[int, int], Axes]


def buildSheetFigure(*, warm: bool = False) -> SheetFigure:
    """Build the sheet's figure: the panels at their fixed places, the fixed titles and labels.

    Parameters
    ----------
    warm : `bool`, optional
        Also render the empty figure once, off-screen: the fonts, the
        glyphs and the log axis' labels are then ready, and the first
        real rendering is faster (worth it where the figure is built ahead
        of the data).
    """
    # A Figure without pyplot (which is slow to import and picks a GUI
    # backend): no global figure manager, safe on a thread; savefig renders
    # the PNG with Agg.
    from matplotlib.figure import Figure

    fig = Figure(figsize=_FIGSIZE, dpi=_DPI)
    axes: dict[tuple[int, int], Axes] = {}
    colorbarAxes: dict[tuple[int, int], Axes] = {}
    for row, y in enumerate(_ROWS):
        for col, x in enumerate(_COLUMNS):
            width = _WIDE_PANEL_WIDTH if (row, col) in ((2, 1), (2, 2)) else _PANEL_WIDTH
            axes[row, col] = fig.add_axes((x, y, width, _HEIGHT))
    for row, col in _WITH_COLORBAR:
        # As fig.colorbar(ax=...) places them: the panel pushed against its bar, the bar 20:1.
        axes[row, col].set_anchor((1.0, 0.5))
        cax = fig.add_axes((_COLORBAR_X[col], _ROWS[row], _COLORBAR_WIDTH, _HEIGHT), label="<colorbar>")
        cax.set_anchor((0.0, 0.5))
        cax.set_box_aspect(20.0)
        colorbarAxes[row, col] = cax
    for key, title in (
        ((0, 0), "Template (input)"),
        ((0, 1), "Science"),
        ((1, 0), "Difference (masked: grey)"),
        ((1, 1), "Difference / sqrt(variance) (masked: grey)"),
        ((1, 2), "Kernel at 10/50/90 % of x and y"),
        ((2, 1), "Kernel candidates and spatial cells"),
    ):
        axes[key].set_title(title, fontsize=10)
    for key in ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 1)):
        axes[key].set_xticks([])
        axes[key].set_yticks([])
    axes[2, 0].set_xlabel("x [pix]")
    axes[2, 0].set_ylabel("y [pix]")
    ax = axes[2, 2]
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1)
    ax.set_xlabel("difference / sqrt(variance)")
    ax.set_title("Normalized residual distribution", fontsize=10)
    sheet = SheetFigure(figure=fig, axes=axes, colorbarAxes=colorbarAxes)
    if warm:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig).draw()
    return sheet


def _show(
    sheet: SheetFigure,
    key: tuple[int, int],
    array: np.ndarray,
    limits: tuple[float, float] | None = None,
    *,
    title: str | None = None,
    symmetric: float | None = None,
    cmap: str = "gray",
) -> None:
    if symmetric is not None:
        vmin, vmax, cmap = -symmetric, symmetric, "RdBu_r"
    else:
        vmin, vmax = limits if limits is not None else _limits(array)
    import matplotlib

    ax = sheet.axes[key]
    colours = matplotlib.colormaps[cmap].with_extremes(bad="0.6")  # NaN (masked) pixels grey
    im = ax.imshow(array, origin="lower", cmap=colours, vmin=vmin, vmax=vmax, interpolation="nearest")
    if title is not None:
        ax.set_title(title, fontsize=10)
    sheet.figure.colorbar(im, cax=sheet.colorbarAxes[key])


def _kernelSumLimits(kernelSum: np.ndarray) -> tuple[float, float]:
    """Colour limits of the kernel-sum map: its range, widened to a few parts in 1e5 when nearly flat.

    A constant spatial kernel gives a map flat to rounding; its own range would
    leave the colour bar with no readable tick (or one offset label).
    """
    lo, hi = float(np.nanmin(kernelSum)), float(np.nanmax(kernelSum))
    centre, scale = 0.5 * (lo + hi), max(abs(0.5 * (lo + hi)), 1e-3)
    if hi - lo < 1e-4 * scale:
        return centre - 5e-5 * scale, centre + 5e-5 * scale
    return lo, hi


def drawSummarySheet(data: SummarySheetData, path: str | Path, *, sheet: SheetFigure | None = None) -> Path:
    """Draw a prepared summary sheet and write it as a PNG.

    Parameters
    ----------
    data : `SummarySheetData`
        What the sheet shows (`prepareSummarySheet`).
    path : `str` or `pathlib.Path`
        The PNG to write.
    sheet : `SheetFigure`, optional
        An empty sheet from `buildSheetFigure` (built ahead of the data);
        one is built if absent.  It is used up.

    Returns
    -------
    path : `pathlib.Path`
        The PNG written.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    if sheet is None:
        sheet = buildSheetFigure()
    fig, axes = sheet.figure, sheet.axes
    panels, limits = data.panels, data.limits
    for key, name in (((0, 0), "template"), ((0, 1), "science")):
        if name in panels:
            _show(sheet, key, panels[name], limits[name])
        else:
            sheet.colorbarAxes[key].remove()
    matchedTitle = "PSF-matched template" if data.convolved == "template" else "PSF-matched science"
    _show(sheet, (0, 2), panels["matched"], limits["matched"], title=matchedTitle)
    dLimit = limits["difference"][1]
    _show(sheet, (1, 0), panels["difference"], symmetric=dLimit)
    if data.diaSources is not None:
        from ..display.diaSourceDisplays import overlayDiaSources

        x0, _, y0, _ = data.bbox
        overlayDiaSources(axes[1, 0], data.diaSources, origin=(x0, y0), size=30.0, stride=data.stride)
    _show(sheet, (1, 1), panels["normalized"], symmetric=5.0)
    peak = float(np.nanmax(np.abs(data.kernelMosaic)))
    _show(sheet, (1, 2), data.kernelMosaic, symmetric=peak)

    xmin, xmax, ymin, ymax = data.bbox
    ax = axes[2, 0]
    lo, hi = _kernelSumLimits(data.kernelSumMap)
    im = ax.imshow(
        data.kernelSumMap,
        origin="lower",
        cmap="viridis",
        extent=(xmin, xmax, ymin, ymax),
        aspect="auto",
        vmin=lo,
        vmax=hi,
    )
    ax.set_title(f"Kernel sum map (mean {np.mean(data.kernelSumMap):.4f})", fontsize=10)
    from matplotlib.ticker import ScalarFormatter

    colorbar = fig.colorbar(im, cax=sheet.colorbarAxes[2, 0])
    # Plain values, never an offset label over the panel's title.
    colorbar.formatter = ScalarFormatter(useOffset=False)
    colorbar.update_ticks()

    ax = axes[2, 1]
    baseName = "science" if "science" in panels else "matched"
    lo, hi = limits[baseName]
    ax.imshow(panels[baseName], origin="lower", cmap="gray", vmin=lo, vmax=hi, extent=data.extent)
    for label, colour in (("used", "lime"), ("rejected", "red"), ("not visited", "gold")):
        pts = data.candidates.get(label)
        if pts is not None and len(pts):
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                s=22,
                facecolors="none",
                edgecolors=colour,
                linewidths=1.0,
                label=f"{label} ({len(pts)})",
            )
    # One collection, not a patch per cell (each add_patch updates the data limits: seconds for 1000 cells).
    cellPatches = [Rectangle((x0, y0), w, h) for x0, y0, w, h in data.cellBoxes]
    ax.add_collection(
        PatchCollection(cellPatches, facecolor="none", edgecolor="cyan", linewidth=0.3, alpha=0.5),
        autolim=False,
    )
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)

    ax = axes[2, 2]
    edges, counts = data.histogramEdges, data.histogramCounts
    # One filled step outline, drawn as hist(density=True) draws its 120 bars, for a fraction of the cost.
    total = float(np.sum(counts))
    density = counts / (total * np.diff(edges)) if total > 0 else np.zeros(len(counts))
    ax.stairs(density, edges, fill=True, color="steelblue", alpha=0.8, label="pixels")
    grid = np.linspace(-8, 8, 400)
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k-", lw=1.2, label="N(0, 1)")
    ax.set_ylim(1e-5, 1)
    ax.legend(fontsize=8, loc="upper right")  # where loc="best" puts it, without its search
    fig.suptitle(data.title, fontsize=11)
    path = Path(path)
    # zlib level 1: the same pixels, written in a third of the time of the default level 6.
    fig.savefig(path, dpi=_DPI, pil_kwargs={"compress_level": 1})
    return path


def makeSummarySheet(
    path: str | Path,
    result: pipeBase.Struct,
    *,
    template: MaskedImage | None = None,
    science: MaskedImage | None = None,
    title: str = "",
    summary: _Summary | None = None,
    diaSources: Table | None = None,
) -> Path:
    """Draw the diagnostic sheet of one subtraction and write it as a PNG.

    The panels: template, science, matched template, difference, normalized
    difference, the kernel across the field, the kernel-sum map and the
    candidates used and rejected.

    Returns
    -------
    path : `pathlib.Path`
        The PNG written.
    """
    data = prepareSummarySheet(
        result, template=template, science=science, title=title, summary=summary, diaSources=diaSources
    )
    return drawSummarySheet(data, path)
