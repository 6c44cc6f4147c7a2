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
"""Output of debug displays: matplotlib figures shown or written as PNG files.

With an interactive matplotlib backend the figures are shown; headless
(``Agg`` and friends) they are written to the folder named by
``$IPDIFFIM_DEBUG_DIR`` or the module's ``displayDir`` debug variable
(default ``./debug_displays``), as ``<frame>_<name>.png`` where ``<frame>`` is
the global ``lsstDebug.frame`` counter, which each figure increments.  A log
line names every file written.
"""

from __future__ import annotations

__all__ = [
    "addColorbar",
    "debugNumber",
    "finishFigure",
    "finishPicture",
    "imageLimits",
    "isInteractive",
    "maskAlpha",
    "pages",
    "pyplot",
    "showMaskedImage",
    "stampAxes",
]

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..math.masks import DIFFERENCE_MASK_PLANES

if TYPE_CHECKING:
    import lsstDebug
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colorbar import Colorbar
    from matplotlib.figure import Figure

    from lsst.images import MaskedImage
    from lsst.utils.logging import LsstLoggers

_INTERACTIVE = {
    "tkagg",
    "qtagg",
    "qt5agg",
    "gtk3agg",
    "gtk4agg",
    "macosx",
    "wxagg",
    "nbagg",
    "webagg",
    "ipympl",
}


def pyplot() -> Any:
    """Import and return ``matplotlib.pyplot`` (lazily: debugging only)."""
    import matplotlib

    backend = matplotlib.get_backend().lower()
    if backend not in _INTERACTIVE and "inline" not in backend:
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def isInteractive() -> bool:
    """Return `True` if figures are shown (interactive or inline backend), not written."""
    backend = pyplot().get_backend().lower()
    return backend in _INTERACTIVE or "inline" in backend


def debugNumber(info: lsstDebug.Info, name: str, default: float) -> float:
    """Return the number held by debug variable ``name`` (``default`` if unset or not a number)."""
    value = getattr(info, name, False)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return default
    return value


def pages[T](items: Sequence[T], perPage: int, maxPages: int = 0) -> list[Sequence[T]]:
    """Split ``items`` into pages of ``perPage`` (at most ``maxPages`` pages if > 0)."""
    perPage = max(1, int(perPage))
    n = math.ceil(len(items) / perPage)
    if maxPages > 0:
        n = min(n, int(maxPages))
    return [items[k * perPage : (k + 1) * perPage] for k in range(n)]


def addColorbar(
    fig: Figure, ax: Axes, mappable: ScalarMappable, label: str = "", width: float = 0.06
) -> Colorbar:
    """Draw a colour bar in a thin strip right of ``ax`` (no layout engine needed)."""
    cax = ax.inset_axes((1.03, 0.0, width, 1.0))
    bar = fig.colorbar(mappable, cax=cax)
    bar.ax.tick_params(labelsize=6, length=2, pad=1)
    if label:
        bar.set_label(label, fontsize=6, labelpad=1)
    return bar


def stampAxes(ax: Axes, edgeColour: str | None = None) -> None:
    """Strip ticks from a stamp panel; outline it in ``edgeColour``."""
    ax.set_xticks([])
    ax.set_yticks([])
    if edgeColour is not None:
        for spine in ax.spines.values():
            spine.set_edgecolor(edgeColour)
            spine.set_linewidth(2.0)


def maskAlpha(info: lsstDebug.Info) -> float:
    """Return the alpha of mask overlays from ``maskTransparency``.

    afw's ``maskTransparency`` is 0 (opaque) to 100 (invisible); unset (False)
    gives 0, as upstream; here it maps to ``alpha = 1 - t/100`` with a floor
    of 0.1 so masks stay visible.
    """
    t = getattr(info, "maskTransparency", 0) or 0
    return float(max(0.1, 1.0 - float(t) / 100.0))


def _claimPath(name: str, info: lsstDebug.Info, frame: int) -> tuple[Path, int]:
    """Create and return a new ``<frame>_<name>.png`` in the display folder, and its frame."""
    import lsstDebug

    folder = Path(lsstDebug.displayDir(info)) if hasattr(lsstDebug, "displayDir") else Path("debug_displays")
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    # Claim the file name atomically: parallel processes (pipetask -j)
    # start with the same frame counter.
    while True:
        path = folder / f"{frame:03d}_{safe}.png"
        try:
            with open(path, "x"):
                return path, frame
        except FileExistsError:
            frame += 1


def finishFigure(
    fig: Figure, name: str, info: lsstDebug.Info, log: LsstLoggers | None, dpi: float = 90
) -> Path | None:
    """Show the figure (interactive backend) or write it as a PNG; bump the frame."""
    import lsstDebug

    plt = pyplot()
    frame = int(getattr(lsstDebug, "frame", 0) or 0)
    path = None
    if isInteractive():
        plt.show(block=False)
    else:
        path, frame = _claimPath(name, info, frame)
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        if log is not None:
            log.info("Debug display written to %s", path)
    lsstDebug.frame = frame + 1
    return path


def finishPicture(
    picture: np.ndarray, name: str, info: lsstDebug.Info, log: LsstLoggers | None, title: str = ""
) -> Path | None:
    """Show an RGB picture ``(h, w, 3)`` uint8 in a zoomable figure, or write it as a PNG; bump the frame."""
    import lsstDebug

    if isInteractive():
        plt = pyplot()
        fig = plt.figure(figsize=(picture.shape[1] / 100, picture.shape[0] / 100), dpi=100)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(picture, interpolation="nearest")
        ax.axis("off")
        manager = getattr(fig.canvas, "manager", None)
        if title and manager is not None:
            manager.set_window_title(title.splitlines()[0])
        return finishFigure(fig, name, info, log)
    from PIL import Image

    path, frame = _claimPath(name, info, int(getattr(lsstDebug, "frame", 0) or 0))
    Image.fromarray(picture).save(path, format="PNG", compress_level=1)
    if log is not None:
        log.info("Debug display written to %s", path)
    lsstDebug.frame = frame + 1
    return path


def imageLimits(array: np.ndarray, symmetric: bool = False) -> tuple[float, float]:
    """Return robust display limits (0.5-99.5 percentiles, or symmetric)."""
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return -1.0, 1.0
    if symmetric:
        v = float(np.percentile(np.abs(finite), 99.5)) or 1.0
        return -v, v
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


_PLANE_COLOURS = ["red", "orange", "yellow", "cyan", "magenta", "lime", "blue", "white", "pink"]


def showMaskedImage(
    ax: Axes,
    maskedImage: MaskedImage,
    title: str,
    info: lsstDebug.Info,
    fig: Figure,
    symmetric: bool = False,
    interpolation: str = "antialiased",
    label: str = "counts",
) -> None:
    """Draw an image with a colour bar and its mask planes as coloured overlays.

    ``interpolation="nearest"`` keeps single-pixel structure (noise,
    residuals) visible when a large image is shown shrunk; the default
    smooths it.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    array = maskedImage.image.array
    bbox = maskedImage.bbox
    extent = (bbox.x.min - 0.5, bbox.x.max + 0.5, bbox.y.min - 0.5, bbox.y.max + 0.5)
    vmin, vmax = imageLimits(array, symmetric)
    im = ax.imshow(
        array,
        origin="lower",
        cmap="RdBu_r" if symmetric else "gray",
        vmin=vmin,
        vmax=vmax,
        extent=extent,
        interpolation=interpolation,
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label=label)
    handles = []
    alpha = maskAlpha(info)
    mask = maskedImage.mask
    names = [p.name for p in mask.schema if p is not None]
    k = 0
    for name in names:
        plane = mask.get(name)
        if not plane.any():
            continue
        colour = _PLANE_COLOURS[k % len(_PLANE_COLOURS)]
        k += 1
        ax.imshow(
            np.where(plane, 1.0, np.nan),
            origin="lower",
            cmap=ListedColormap([colour]),
            alpha=alpha,
            extent=extent,
            interpolation="nearest",
            vmin=0,
            vmax=1,
        )
        legacy = [old for old, new in DIFFERENCE_MASK_PLANES.items() if new.name == name]
        handles.append(Patch(color=colour, alpha=alpha, label=legacy[0] if legacy else name))
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x [pix]")
    ax.set_ylabel("y [pix]")
