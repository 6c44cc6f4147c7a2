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
"""The spatial model displays: ``plotKernelSpatialModel`` and ``plotKernelCoefficients``.

``plotKernelSpatialModel`` draws maps over the field of the spatial kernel's
sum, centroid offset (x and y) and FWHM (see `KernelShapes`), with each
candidate's own-fit value drawn on the map in the same colours, then
upstream's per-coefficient figure (the first 10 coefficients: the spatial
function over the field, the candidates' coefficients against their
instrumental magnitude, and their residuals from the model against x and y).

``plotKernelCoefficients`` draws upstream's three figures: the candidates'
coefficient vectors by image region (8 x 8), a histogram of each coefficient
over the candidates with, overlaid, the histogram of the spatial model's
prediction at each candidate and the model's value at the image centre, and
the model's coefficient vectors by region.

The candidates' own coefficients are those of their fit on the spatial
model's basis: the PCA fit when the model was built on a PCA basis, else the
original fit.  Candidates without such a fit are left out.
"""

from __future__ import annotations

__all__ = ["plotKernelCoefficients", "plotKernelSpatialModel"]

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernel.candidate import CandidateSwitch, KernelCandidate
from ..math.exceptions import KernelSolutionError
from ..math.spatialCell import SpatialCellCandidateStatus
from .candidateMaps import drawCellGrid, subsample
from .candidateMosaics import sortedCandidates, statusColour
from .core import addColorbar, debugNumber, finishFigure, pages, pyplot
from .kernelDisplays import measureKernelShapes

if TYPE_CHECKING:
    import lsstDebug

    from lsst.images import Box
    from lsst.utils.logging import LsstLoggers

    from ..math.kernels import LinearCombinationKernel
    from ..math.spatialCell import SpatialCellSet

GOOD = SpatialCellCandidateStatus.GOOD
BAD = SpatialCellCandidateStatus.BAD
_MARKERS = {GOOD: "o", SpatialCellCandidateStatus.UNKNOWN: "s", BAD: "X"}


def _fitted(cellSet: SpatialCellSet, showBad: bool, nBasis: int) -> tuple[list[KernelCandidate], np.ndarray]:
    """Return the candidates with a fit on the model's basis and their coefficients ``(n, nBasis)``."""
    cands, rows = [], []
    for cand in sortedCandidates(cellSet, showBad):
        for which in (CandidateSwitch.PCA, CandidateSwitch.ORIG):
            try:
                params = cand.getKernel(which).getKernelParameters()
            except KernelSolutionError:
                continue
            if len(params) == nBasis:
                cands.append(cand)
                rows.append(params)
                break
    return cands, np.array(rows, dtype=float).reshape(len(rows), nBasis)


def _drawn(cands: list[KernelCandidate], maxPoints: int) -> np.ndarray:
    """Return the indices of candidates a map draws: at most ``maxPoints``, shared between the statuses."""
    byStatus: dict[Any, list[int]] = {}
    for i, c in enumerate(cands):
        byStatus.setdefault(c.getStatus(), []).append(i)
    shares = subsample({s: len(v) for s, v in byStatus.items()}, maxPoints)
    rng = np.random.default_rng(2024)
    out = [rng.permutation(v)[: shares[s]] for s, v in byStatus.items()]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=int)


def _modelGrid(bbox: Box, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    nx = n
    ny = max(8, int(round(n * bbox.y.size / bbox.x.size)))
    return np.linspace(bbox.x.min, bbox.x.max, nx), np.linspace(bbox.y.min, bbox.y.max, ny)


def plotKernelSpatialModel(
    info: lsstDebug.Info,
    log: LsstLoggers | None,
    cellSet: SpatialCellSet,
    kernel: LinearCombinationKernel,
    showBad: bool,
) -> None:
    """Draw the kernel sum, centroid and FWHM maps, then upstream's per-coefficient figure."""
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    plt = pyplot()
    bbox = cellSet.getBBox()
    nb = kernel.basisArray.shape[0]
    cands, coeffs = _fitted(cellSet, showBad, nb)
    gx, gy = _modelGrid(bbox)
    mx, my = np.meshgrid(gx, gy)
    ctrX, ctrY = kernel.getCtrX(), kernel.getCtrY()
    model = measureKernelShapes(kernel.getArrays(mx.ravel(), my.ravel()), ctrX, ctrY)
    own = measureKernelShapes(
        np.array([c.getKernelImage(CandidateSwitch.ORIG) for c in cands]).reshape(
            len(cands), kernel.getHeight(), kernel.getWidth()
        ),
        ctrX,
        ctrY,
    )
    drawn = _drawn(cands, int(debugNumber(info, "maxMapPoints", 1500)))
    statuses = np.array([int(c.getStatus()) for c in cands], dtype=int)
    xs = np.array([c.getXCenter() for c in cands])
    ys = np.array([c.getYCenter() for c in cands])
    # name, model grid, candidates' values, colour map, smallest span of the colour scale
    quantities = [
        ("kernel sum", model.sum, own.sum, "viridis", 2e-3),
        ("kernel centroid x offset [pix]", model.dx, own.dx, "RdBu_r", 0.02),
        ("kernel centroid y offset [pix]", model.dy, own.dy, "RdBu_r", 0.02),
        ("kernel FWHM [pix]", model.fwhm, own.fwhm, "viridis", 0.02),
    ]
    aspect = bbox.y.size / bbox.x.size
    fig, axes = plt.subplots(2, 2, figsize=(13, 11.5 * min(max(aspect, 0.5), 1.5) + 0.8), squeeze=False)
    extent = (bbox.x.min - 0.5, bbox.x.max + 0.5, bbox.y.min - 0.5, bbox.y.max + 0.5)
    for ax, (name, grid, values, cmap, minSpan) in zip(axes.ravel(), quantities, strict=True):
        # The scale covers the whole model and all but the most extreme 2% of the candidates.
        finite = values[np.isfinite(values)]
        lo, hi = float(np.nanmin(grid)), float(np.nanmax(grid))
        if finite.size:
            plo, phi = np.percentile(finite, [2, 98])
            lo, hi = min(lo, float(plo)), max(hi, float(phi))
        if hi - lo < minSpan:
            mid = 0.5 * (lo + hi)
            lo, hi = mid - minSpan / 2, mid + minSpan / 2
        if cmap == "RdBu_r":
            v = max(abs(lo), abs(hi))
            lo, hi = -v, v
        norm = Normalize(lo, hi)
        im = ax.imshow(
            grid.reshape(len(gy), len(gx)), origin="lower", extent=extent, cmap=cmap, norm=norm, aspect="auto"
        )
        drawCellGrid(ax, cellSet, colour="0.5", alpha=0.4)
        for status, marker in _MARKERS.items():
            sel = drawn[statuses[drawn] == int(status)]
            if sel.size:
                ax.scatter(
                    xs[sel],
                    ys[sel],
                    c=values[sel],
                    cmap=cmap,
                    norm=norm,
                    marker=marker,
                    s=22 if sel.size < 500 else 10,
                    edgecolors="red" if status == BAD else "k",
                    linewidths=0.4,
                    zorder=3,
                )
        addColorbar(fig, ax, im, name, width=0.035)
        good = statuses == int(GOOD)
        modelAt = _modelAt(kernel, xs[good], ys[good], name, ctrX, ctrY)
        scatter = float(np.sqrt(np.nanmean((values[good] - modelAt) ** 2))) if good.any() else float("nan")
        ax.set_title(
            f"{name}: model (image) and candidates' own fits (symbols),\none colour scale; "
            f"model {np.nanmin(grid):.3g} to {np.nanmax(grid):.3g}, GOOD own - model rms {scatter:.2g}",
            fontsize=8,
        )
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_xlabel("x [pix]", fontsize=8)
        ax.set_ylabel("y [pix]", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = []
    for status, marker in _MARKERS.items():
        n = int((statuses == int(status)).sum())
        if n:
            shown = int((statuses[drawn] == int(status)).sum())
            label = f"{status.name}: {n}" + ("" if shown == n else f" ({shown} drawn)")
            handles.append(
                Line2D(
                    [], [], marker=marker, ls="", mfc="0.7", mec="red" if status == BAD else "k", label=label
                )
            )
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(
        f"Spatial kernel model over the field (order {_spatialOrder(kernel)}), with {len(cands)} candidates' "
        "own kernels overplotted",
        fontsize=11,
    )
    fig.subplots_adjust(left=0.06, right=0.92, bottom=0.08, top=0.91, wspace=0.3, hspace=0.3)
    finishFigure(fig, "kernelSpatialModel", info, log)
    if cands:
        _plotCoefficientModel(info, log, bbox, kernel, cands, coeffs)


def _spatialOrder(kernel: LinearCombinationKernel) -> Any:
    try:
        return kernel.getSpatialFunction(0).getOrder()
    except (AttributeError, IndexError, TypeError):
        return 0


def _modelAt(
    kernel: LinearCombinationKernel, xs: np.ndarray, ys: np.ndarray, name: str, ctrX: int, ctrY: int
) -> np.ndarray:
    if xs.size == 0:
        return np.zeros(0)
    shapes = measureKernelShapes(kernel.getArrays(xs, ys), ctrX, ctrY)
    if name.startswith("kernel sum"):
        return shapes.sum
    if "x offset" in name:
        return shapes.dx
    if "y offset" in name:
        return shapes.dy
    return shapes.fwhm


def _plotCoefficientModel(
    info: lsstDebug.Info,
    log: LsstLoggers | None,
    bbox: Box,
    kernel: LinearCombinationKernel,
    cands: list[KernelCandidate],
    coeffs: np.ndarray,
) -> None:
    """Upstream's figure: per coefficient (first 10) the model map, vs magnitude, residuals vs x and y."""
    plt = pyplot()
    # GOOD first, BAD last: the rejected candidates are drawn on top.
    cands, coeffs = cands[::-1], coeffs[::-1]
    onMap = _drawn(cands, int(debugNumber(info, "maxMapPoints", 1500)) // 3)
    xs = np.array([c.getXCenter() for c in cands])
    ys = np.array([c.getYCenter() for c in cands])
    ratings = np.array([c.getCandidateRating() for c in cands])
    with np.errstate(divide="ignore", invalid="ignore"):
        mags = -2.5 * np.log10(np.where(ratings > 0, ratings, np.nan))
    model = kernel.coefficientsAt(xs, ys)
    colours = [statusColour(c) for c in cands]
    gx, gy = _modelGrid(bbox, 64)
    grid = kernel.coefficientsAt(*np.meshgrid(gx, gy))
    n = min(10, coeffs.shape[1])
    size = 10 if len(cands) < 1000 else 3
    fig, axes = plt.subplots(n, 4, figsize=(14, 2.5 * n + 0.9), squeeze=False)
    for k in range(n):
        ax = axes[k, 0]
        im = ax.imshow(
            grid[k], origin="lower", extent=(gx[0], gx[-1], gy[0], gy[-1]), aspect="auto", cmap="viridis"
        )
        addColorbar(fig, ax, im, f"a_{k}", width=0.04)
        ax.scatter(xs[onMap], ys[onMap], c=[colours[i] for i in onMap], s=4, edgecolors="none")
        ax.set_title(f"a_{k}: spatial model over the field (dots: {len(onMap)} candidates)", fontsize=7)
        axes[k, 1].scatter(mags, coeffs[:, k], c=colours, s=size)
        axes[k, 1].set_xlabel("instrumental mag of the rating", fontsize=7)
        axes[k, 1].set_ylabel(f"a_{k}, own fit", fontsize=7)
        resid = coeffs[:, k] - model[k]
        for ax, pos, label in ((axes[k, 2], xs, "x [pix]"), (axes[k, 3], ys, "y [pix]")):
            ax.scatter(pos, resid, c=colours, s=size)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xlabel(label, fontsize=7)
            ax.set_ylabel(f"a_{k}: own - model", fontsize=7)
        for ax in axes[k]:
            ax.tick_params(labelsize=6)
    fig.suptitle(
        f"Kernel coefficients a_0..a_{n - 1}: spatial model and {len(cands)} candidates' own fits "
        "(green GOOD, gold UNKNOWN, red BAD)",
        fontsize=10,
    )
    h = fig.get_figheight()
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.5 / h, top=1 - 0.6 / h, wspace=0.45, hspace=0.55)
    finishFigure(fig, "kernelSpatialModelCoefficients", info, log)


def _regionGrid(title: str, xlabel: str) -> tuple[Any, Any]:
    plt = pyplot()
    fig, axes = plt.subplots(8, 8, figsize=(13, 10.5), sharex=True, sharey=True)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.06, top=0.93, wspace=0.05, hspace=0.05)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel(xlabel, fontsize=9)
    fig.supylabel("coefficient value", fontsize=9)
    for ax in axes.ravel():
        ax.tick_params(labelsize=6)
    return fig, axes


def plotKernelCoefficients(
    info: lsstDebug.Info,
    log: LsstLoggers | None,
    cellSet: SpatialCellSet,
    kernel: LinearCombinationKernel,
    showBad: bool,
) -> None:
    """Draw the coefficient vectors by region, the coefficient histograms and the model's vectors."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    plt = pyplot()
    bbox = cellSet.getBBox()
    nb = kernel.basisArray.shape[0]
    cands, coeffs = _fitted(cellSet, showBad, nb)
    if not cands:
        if log is not None:
            log.info("plotKernelCoefficients: no candidate has a fit on the spatial model's basis")
        return
    index = np.arange(nb, dtype=float)
    # 1. the candidates' own coefficient vectors on an 8x8 grid of image regions.
    fig, axes = _regionGrid(
        f"{len(cands)} candidates' own kernel coefficients by image region (8x8, x right, y up; "
        "green GOOD, gold UNKNOWN, red BAD)",
        "coefficient index",
    )
    lines: dict[tuple[int, int], list[tuple[np.ndarray, str]]] = {}
    for cand, row in zip(cands[::-1], coeffs[::-1], strict=True):  # BAD drawn last, on top
        ix = min(int(8 * (cand.getXCenter() - bbox.x.min) / bbox.x.size), 7)
        iy = min(int(8 * (cand.getYCenter() - bbox.y.min) / bbox.y.size), 7)
        lines.setdefault((ix, iy), []).append((np.column_stack([index, row]), statusColour(cand)))
    for (ix, iy), items in lines.items():
        ax = axes[7 - iy, ix]
        ax.add_collection(
            LineCollection(
                [s for s, _ in items],
                colors=[c for _, c in items],
                linewidths=0.6 if len(items) < 20 else 0.35,
                alpha=1.0 if len(items) < 20 else 0.6,
            )
        )
        ax.text(0.97, 0.95, str(len(items)), transform=ax.transAxes, ha="right", va="top", fontsize=6)
    axes[0, 0].set_xlim(-0.5, nb - 0.5)
    lo, hi = np.percentile(coeffs, [0.5, 99.5])
    axes[0, 0].set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    finishFigure(fig, "kernelCoefficientsByRegion", info, log)

    # 2. histograms: own fits, the model's prediction at each candidate, the model at the centre.
    predicted = kernel.coefficientsAt(
        np.array([c.getXCenter() for c in cands]), np.array([c.getYCenter() for c in cands])
    )
    centre = kernel.coefficientsAt(0.5 * (bbox.x.min + bbox.x.max), 0.5 * (bbox.y.min + bbox.y.max)).ravel()
    statuses = np.array([int(c.getStatus()) for c in cands])
    allPages = pages(list(range(nb)), 36)
    for p, ks in enumerate(allPages, start=1):
        ncol = 6
        nrow = math.ceil(len(ks) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(15, 2.3 * nrow + 1.3), squeeze=False)
        for ax in axes.ravel()[len(ks) :]:
            ax.axis("off")
        for k, ax in zip(ks, axes.ravel(), strict=False):
            values = np.concatenate([coeffs[:, k], predicted[k]])
            edges = np.histogram_bin_edges(values[np.isfinite(values)], bins=25)
            good = statuses == int(GOOD)
            ax.hist(coeffs[good, k], bins=edges, color="steelblue", alpha=0.8)
            if (~good).any():
                ax.hist(coeffs[~good, k], bins=edges, histtype="step", color="red", lw=1.0)
            ax.hist(predicted[k], bins=edges, histtype="step", color="k", lw=1.2)
            ax.axvline(centre[k], color="orange", lw=1.2, ls="--")
            ax.set_yscale("log")
            ax.set_title(
                f"a_{k} (model {np.min(predicted[k]):.3g} to {np.max(predicted[k]):.3g})", fontsize=7, pad=2
            )
            ax.tick_params(labelsize=6)
        handles = [
            Line2D([], [], color="steelblue", lw=6, label="own fits, GOOD"),
            Line2D([], [], color="red", lw=1, label="own fits, not GOOD"),
            Line2D([], [], color="k", lw=1.2, label="spatial model at each candidate"),
            Line2D([], [], color="orange", lw=1.2, ls="--", label="spatial model at the image centre"),
        ]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
        pageText = f", page {p}/{len(allPages)}" if len(allPages) > 1 else ""
        fig.suptitle(
            f"Kernel coefficient histograms over {len(cands)} candidates (counts, log scale){pageText}",
            fontsize=10,
        )
        h = fig.get_figheight()
        fig.subplots_adjust(left=0.04, right=0.99, bottom=0.85 / h, top=1 - 0.75 / h, wspace=0.3, hspace=0.5)
        name = "kernelCoefficientHistograms" + (f"_p{p:03d}" if len(allPages) > 1 else "")
        finishFigure(fig, name, info, log)

    # 3. the spatial model's coefficient vectors at the centres of the 8x8 regions.
    fig, axes = _regionGrid(
        "Spatial model's kernel coefficients at the centres of 8x8 image regions (x right, y up)",
        "coefficient index",
    )
    cx = bbox.x.min + (np.arange(8) + 0.5) * bbox.x.size / 8
    cy = bbox.y.min + (np.arange(8) + 0.5) * bbox.y.size / 8
    gxx, gyy = np.meshgrid(cx, cy)
    regionModel = kernel.coefficientsAt(gxx, gyy)
    for iy in range(8):
        for ix in range(8):
            axes[7 - iy, ix].plot(index, regionModel[:, iy, ix], ".-", color="k", lw=0.6, ms=2)
            axes[7 - iy, ix].text(
                0.97,
                0.95,
                f"({cx[ix]:.0f},{cy[iy]:.0f})",
                transform=axes[7 - iy, ix].transAxes,
                ha="right",
                va="top",
                fontsize=5,
            )
    finishFigure(fig, "kernelCoefficientsModel", info, log)
