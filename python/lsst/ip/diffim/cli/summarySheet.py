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
"""The diagnostic PNG sheet of a subtraction (demo and command line)."""

from __future__ import annotations

__all__ = ["makeSummarySheet"]

from pathlib import Path
from typing import Any

import numpy as np

from ..math.spatialCell import SpatialCellCandidateStatus


def _limits(array: np.ndarray, lo: float = 1.0, hi: float = 99.5) -> tuple[float, float]:
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return 0.0, 1.0
    a, b = np.percentile(finite, [lo, hi])
    return float(a), float(b if b > a else a + 1.0)


def _show(
    ax: Any, array: np.ndarray, title: str, fig: Any, *, symmetric: float | None = None, cmap: str = "gray"
) -> None:
    if symmetric is not None:
        vmin, vmax, cmap = -symmetric, symmetric, "RdBu_r"
    else:
        vmin, vmax = _limits(array)
    im = ax.imshow(array, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)


def makeSummarySheet(
    path: str | Path,
    result: Any,
    *,
    template: Any = None,
    science: Any = None,
    title: str = "",
    summary: Any = None,
    diaSources: Any = None,
) -> Path:
    """Draw template, science, matched template, difference, normalized
    difference, the kernel across the field, the kernel-sum map and the
    candidates used and rejected; write a PNG.

    Returns
    -------
    path : `pathlib.Path`
        The PNG written.
    """
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    diff = result.subtractedMaskedImage
    bbox = diff.bbox
    kernel = result.psfMatchingKernel
    fig, axes = plt.subplots(3, 3, figsize=(15, 14))
    if template is not None:
        _show(axes[0, 0], template.image.array, "Template (input)", fig)
    if science is not None:
        _show(axes[0, 1], science.image.array, "Science", fig)
    _show(axes[0, 2], result.matchedImage.image.array, "PSF-matched template", fig)
    dlo, dhi = _limits(diff.image.array, 0.5, 99.5)
    _show(axes[1, 0], diff.image.array, "Difference", fig, symmetric=max(abs(dlo), abs(dhi)))
    if diaSources is not None:
        from ..display.diaSourceDisplays import overlayDiaSources

        overlayDiaSources(axes[1, 0], diaSources, origin=(bbox.x.start, bbox.y.start), size=30.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = diff.image.array / np.sqrt(diff.variance.array)
    _show(axes[1, 1], norm, "Difference / sqrt(variance)", fig, symmetric=5.0)

    # Kernel realized on a 3 x 3 grid across the field.
    kh, kw = kernel.getHeight(), kernel.getWidth()
    mosaic = np.full((3 * kh + 2, 3 * kw + 2), np.nan)
    for iy, fy in enumerate((0.1, 0.5, 0.9)):
        for ix, fx in enumerate((0.1, 0.5, 0.9)):
            x = bbox.x.min + fx * (bbox.x.size - 1)
            y = bbox.y.min + fy * (bbox.y.size - 1)
            k = kernel.getArray(x, y)
            mosaic[iy * (kh + 1) : iy * (kh + 1) + kh, ix * (kw + 1) : ix * (kw + 1) + kw] = k
    peak = float(np.nanmax(np.abs(mosaic)))
    _show(axes[1, 2], mosaic, "Kernel at 10/50/90 % of x and y", fig, symmetric=peak)

    ys = np.linspace(bbox.y.min, bbox.y.max, 48)
    xs = np.linspace(bbox.x.min, bbox.x.max, 48)
    ksum = np.array([[kernel.getSum(x, y) for x in xs] for y in ys])
    im = axes[2, 0].imshow(
        ksum,
        origin="lower",
        cmap="viridis",
        extent=(bbox.x.min, bbox.x.max, bbox.y.min, bbox.y.max),
        aspect="auto",
    )
    axes[2, 0].set_title(f"Kernel sum map (mean {np.mean(ksum):.4f})", fontsize=10)
    axes[2, 0].set_xlabel("x [pix]")
    axes[2, 0].set_ylabel("y [pix]")
    fig.colorbar(im, ax=axes[2, 0], fraction=0.046, pad=0.02)

    ax = axes[2, 1]
    base = science.image.array if science is not None else result.matchedImage.image.array
    lo, hi = _limits(base)
    ax.imshow(
        base,
        origin="lower",
        cmap="gray",
        vmin=lo,
        vmax=hi,
        extent=(bbox.x.min - 0.5, bbox.x.max + 0.5, bbox.y.min - 0.5, bbox.y.max + 0.5),
    )
    cands = result.kernelCellSet.allCandidates()
    for status, colour, label in (
        (SpatialCellCandidateStatus.GOOD, "lime", "used"),
        (SpatialCellCandidateStatus.BAD, "red", "rejected"),
        (SpatialCellCandidateStatus.UNKNOWN, "gold", "not visited"),
    ):
        pts = [(c.getXCenter(), c.getYCenter()) for c in cands if c.getStatus() == status]
        if pts:
            arr = np.array(pts)
            ax.scatter(
                arr[:, 0],
                arr[:, 1],
                s=22,
                facecolors="none",
                edgecolors=colour,
                linewidths=1.0,
                label=f"{label} ({len(pts)})",
            )
    for cell in result.kernelCellSet.getCellList():
        cb = cell.getBBox()
        ax.add_patch(
            plt.Rectangle(
                (cb.x.min - 0.5, cb.y.min - 0.5),
                cb.x.size,
                cb.y.size,
                fill=False,
                edgecolor="cyan",
                linewidth=0.3,
                alpha=0.5,
            )
        )
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_title("Kernel candidates and spatial cells", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])

    ax = axes[2, 2]
    values = norm[np.isfinite(norm)]
    values = values[np.abs(values) < 8]
    ax.hist(values, bins=120, density=True, color="steelblue", alpha=0.8, label="pixels")
    grid = np.linspace(-8, 8, 400)
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k-", lw=1.2, label="N(0, 1)")
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1)
    ax.set_xlabel("difference / sqrt(variance)")
    ax.set_title("Normalized residual distribution", fontsize=10)
    ax.legend(fontsize=8)
    if summary is not None:
        title = (title + "\n" if title else "") + summary.format()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
