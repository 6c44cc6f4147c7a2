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
"""Debug displays of the kernel fit (``lsst.ip.diffim.psfMatch``)."""

from __future__ import annotations

__all__ = ["displayKernelFit"]

import math
from typing import Any

import numpy as np

from ..kernel.candidate import CandidateSwitch, KernelCandidate
from ..math.exceptions import KernelSolutionError
from ..math.kernels import FixedKernel
from ..math.spatialCell import SpatialCellCandidateStatus
from .core import finishFigure, imageLimits, pyplot

GOOD = SpatialCellCandidateStatus.GOOD
BAD = SpatialCellCandidateStatus.BAD


def _candidates(cellSet: Any, showBad: bool) -> list[KernelCandidate]:
    out = []
    for cand in cellSet.allCandidates():
        if not isinstance(cand, KernelCandidate):
            continue
        if cand.getStatus() == BAD and not showBad:
            continue
        try:
            cand.getKernelSolution(CandidateSwitch.ORIG)
        except KernelSolutionError:
            continue
        out.append(cand)
    return out


def _statusColour(cand: KernelCandidate) -> str:
    return {GOOD: "green", BAD: "red"}.get(cand.getStatus(), "gold")


def _label(cand: KernelCandidate) -> str:
    chi2 = cand.getChi2()
    chi2Text = f"{chi2:.2f}" if chi2 < 1e30 else "-"
    return f"#{cand.getId()} {cand.getStatus().name} chi2={chi2Text}"


def displayKernelFit(
    moduleName: str, log: Any, cellSet: Any, spatialKernel: Any, spatialBackground: Any, kConfig: Any
) -> None:
    """Draw every display switched on for ``moduleName`` after the spatial fit."""
    import lsstDebug

    info = lsstDebug.Info(moduleName)
    showBad = bool(info.showBadCandidates)
    if info.displayCandidates:
        _displayCandidates(info, log, cellSet, spatialKernel, spatialBackground, showBad)
    if info.displayKernelBasis:
        _displayKernelBasis(info, log, spatialKernel)
    if info.displayKernelMosaic:
        _displayKernelMosaic(info, log, cellSet.getBBox(), spatialKernel)
    if info.plotKernelSpatialModel:
        _plotKernelSpatialModel(info, log, cellSet, spatialKernel, showBad)
    if info.plotKernelCoefficients:
        _plotKernelCoefficients(info, log, cellSet, spatialKernel, showBad)


def _displayCandidates(
    info: Any, log: Any, cellSet: Any, kernel: Any, background: Any, showBad: bool, maxShown: int = 12
) -> None:
    plt = pyplot()
    cands = _candidates(cellSet, showBad)[:maxShown]
    if not cands:
        return
    rows = len(cands)
    # (a) stamps and differences; (b) kernels; (c) normalized residuals.
    figA, axA = plt.subplots(rows, 4, figsize=(10, 2.4 * rows + 0.8), squeeze=False, layout="constrained")
    figB, axB = plt.subplots(rows, 2, figsize=(5.6, 2.4 * rows + 0.8), squeeze=False, layout="constrained")
    figC, axC = plt.subplots(rows, 2, figsize=(5.6, 2.4 * rows + 0.8), squeeze=False, layout="constrained")
    kh, kw = kernel.getHeight(), kernel.getWidth()
    for i, cand in enumerate(cands):
        x, y = cand.getXCenter(), cand.getYCenter()
        spatialK = FixedKernel(kernel.getArray(x, y))
        local = cand.getDifferenceImage(CandidateSwitch.ORIG)
        spatial = cand.getDifferenceImage(spatialK, float(background(x, y)))
        sci = cand.getScienceMaskedImage().image.array
        tmpl = cand.getTemplateMaskedImage().image.array
        lo, hi = imageLimits(sci)
        dlim = imageLimits(np.concatenate([local.image.array.ravel(), spatial.image.array.ravel()]), True)[1]
        panels = [
            (sci, "science", "gray", (lo, hi)),
            (tmpl, "template", "gray", imageLimits(tmpl)),
            (local.image.array, "diff (own fit)", "RdBu_r", (-dlim, dlim)),
            (spatial.image.array, "diff (spatial)", "RdBu_r", (-dlim, dlim)),
        ]
        for j, (array, name, cmap, (vmin, vmax)) in enumerate(panels):
            ax = axA[i, j]
            ax.imshow(array, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name if i == 0 else "", fontsize=8)
            for spine in ax.spines.values():
                spine.set_edgecolor(_statusColour(cand))
                spine.set_linewidth(2.0)
        axA[i, 0].set_ylabel(_label(cand), fontsize=7)
        kOrig = cand.getKernelImage(CandidateSwitch.ORIG)
        kSpat = spatialK.getArray()
        kl = max(float(np.abs(kOrig).max()), float(np.abs(kSpat).max())) or 1.0
        for j, (array, name) in enumerate(((kOrig, "own kernel"), (kSpat, "spatial kernel"))):
            ax = axB[i, j]
            ax.imshow(array, origin="lower", cmap="RdBu_r", vmin=-kl, vmax=kl, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name if i == 0 else "", fontsize=8)
            for spine in ax.spines.values():
                spine.set_edgecolor(_statusColour(cand))
                spine.set_linewidth(2.0)
        axB[i, 0].set_ylabel(_label(cand), fontsize=7)
        ys = slice(kh // 2, local.image.array.shape[0] - (kh - 1 - kh // 2))
        xs = slice(kw // 2, local.image.array.shape[1] - (kw - 1 - kw // 2))
        for j, (diff, name) in enumerate(((local, "resid (own)"), (spatial, "resid (spatial)"))):
            with np.errstate(divide="ignore", invalid="ignore"):
                norm = (diff.image.array / np.sqrt(diff.variance.array))[ys, xs]
            ax = axC[i, j]
            im = ax.imshow(norm, origin="lower", cmap="RdBu_r", vmin=-5, vmax=5, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name if i == 0 else "", fontsize=8)
            for spine in ax.spines.values():
                spine.set_edgecolor(_statusColour(cand))
                spine.set_linewidth(2.0)
        axC[i, 0].set_ylabel(_label(cand), fontsize=7)
    figC.colorbar(im, ax=axC, fraction=0.05, pad=0.02, label="difference / sigma", shrink=0.5)
    figA.suptitle("Kernel candidates (green: good, red: bad)", fontsize=10)
    figB.suptitle("Candidate kernels", fontsize=10)
    figC.suptitle("Normalized residuals", fontsize=10)
    for fig, name in ((figA, "candidates"), (figB, "candidateKernels"), (figC, "candidateResiduals")):
        finishFigure(fig, name, info, log)


def _displayKernelBasis(info: Any, log: Any, kernel: Any) -> None:
    plt = pyplot()
    basis = kernel.basisArray
    n = basis.shape[0]
    ncol = min(n, 7)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 * ncol + 0.5, 1.7 * nrow + 0.6), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        lim = float(np.abs(basis[k]).max()) or 1.0
        ax.imshow(basis[k], origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"basis {k} (sum {basis[k].sum():.2f})", fontsize=7)
    fig.suptitle(f"Kernel basis: {n} kernels of {basis.shape[2]}x{basis.shape[1]} px", fontsize=10)
    fig.tight_layout()
    finishFigure(fig, "kernelBasis", info, log)


def _moments(image: np.ndarray) -> tuple[float, float, float, float, float]:
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    total = image.sum()
    xc, yc = (image * xx).sum() / total, (image * yy).sum() / total
    ixx = (image * (xx - xc) ** 2).sum() / total
    iyy = (image * (yy - yc) ** 2).sum() / total
    ixy = (image * (xx - xc) * (yy - yc)).sum() / total
    return xc, yc, ixx, iyy, ixy


def _displayKernelMosaic(info: Any, log: Any, bbox: Any, kernel: Any) -> None:
    from matplotlib.patches import Ellipse

    plt = pyplot()
    nx = 7
    ny = max(1, int(round(nx * bbox.y.size / bbox.x.size)))
    fig, axes = plt.subplots(ny, nx, figsize=(1.5 * nx + 0.5, 1.5 * ny + 0.8), squeeze=False)
    xs = np.linspace(bbox.x.min, bbox.x.max, nx)
    ys = np.linspace(bbox.y.min, bbox.y.max, ny)
    images = [[kernel.getArray(x, y) for x in xs] for y in ys]
    lim = max(float(np.abs(im).max()) for row in images for im in row) or 1.0
    for iy in range(ny):
        for ix in range(nx):
            ax = axes[ny - 1 - iy, ix]
            image = images[iy][ix]
            ax.imshow(image, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            try:
                xc, yc, ixx, iyy, ixy = _moments(image)
                ax.plot([xc], [yc], "+", color="blue", markersize=8)
                values, vectors = np.linalg.eigh(np.array([[ixx, ixy], [ixy, iyy]]))
                if np.all(values > 0):
                    angle = math.degrees(math.atan2(vectors[1, 1], vectors[0, 1]))
                    ax.add_patch(
                        Ellipse(
                            (xc, yc),
                            2 * math.sqrt(values[1]),
                            2 * math.sqrt(values[0]),
                            angle=angle,
                            fill=False,
                            edgecolor="red",
                            linewidth=1.0,
                        )
                    )
            except (ValueError, ZeroDivisionError, np.linalg.LinAlgError):
                pass
            ax.set_title(f"({xs[ix]:.0f}, {ys[iy]:.0f})", fontsize=6)
    fig.suptitle("Spatial kernel across the image (+ centroid, ellipse: second moments)", fontsize=10)
    fig.tight_layout()
    finishFigure(fig, "kernelMosaic", info, log)


def _coefficientTable(cands: list[KernelCandidate]) -> np.ndarray:
    return np.array([cand.getKernel(CandidateSwitch.ORIG).getKernelParameters() for cand in cands])


def _plotKernelSpatialModel(info: Any, log: Any, cellSet: Any, kernel: Any, showBad: bool) -> None:
    plt = pyplot()
    cands = _candidates(cellSet, showBad)
    if not cands:
        return
    bbox = cellSet.getBBox()
    coeffs = _coefficientTable(cands)
    xs = np.array([c.getXCenter() for c in cands])
    ys = np.array([c.getYCenter() for c in cands])
    ratings = np.array([c.getCandidateRating() for c in cands])
    with np.errstate(divide="ignore", invalid="ignore"):
        mags = -2.5 * np.log10(np.where(ratings > 0, ratings, np.nan))
    model = kernel.coefficientsAt(xs, ys)
    colours = [_statusColour(c) for c in cands]
    gx = np.linspace(bbox.x.min, bbox.x.max, 64)
    gy = np.linspace(bbox.y.min, bbox.y.max, 64)
    mx, my = np.meshgrid(gx, gy)
    grid = kernel.coefficientsAt(mx, my)
    n = min(10, coeffs.shape[1])
    fig, axes = plt.subplots(n, 4, figsize=(13, 2.6 * n + 0.8), squeeze=False)
    for k in range(n):
        ax = axes[k, 0]
        im = ax.imshow(
            grid[k], origin="lower", extent=(gx[0], gx[-1], gy[0], gy[-1]), aspect="auto", cmap="viridis"
        )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        ax.scatter(xs, ys, c=colours, s=10, edgecolors="k", linewidths=0.3)
        ax.set_title(f"coefficient {k}: spatial model", fontsize=8)
        axes[k, 1].scatter(mags, coeffs[:, k], c=colours, s=10)
        axes[k, 1].set_xlabel("instrumental mag (rating)", fontsize=7)
        axes[k, 1].set_ylabel(f"a_{k} (own fit)", fontsize=7)
        resid = coeffs[:, k] - model[k]
        axes[k, 2].scatter(xs, resid, c=colours, s=10)
        axes[k, 2].axhline(0, color="k", lw=0.5)
        axes[k, 2].set_xlabel("x [pix]", fontsize=7)
        axes[k, 2].set_ylabel("own - model", fontsize=7)
        axes[k, 3].scatter(ys, resid, c=colours, s=10)
        axes[k, 3].axhline(0, color="k", lw=0.5)
        axes[k, 3].set_xlabel("y [pix]", fontsize=7)
    fig.suptitle("Kernel coefficients: spatial model and candidates (green good, red bad)", fontsize=10)
    fig.tight_layout()
    finishFigure(fig, "kernelSpatialModel", info, log)


def _plotKernelCoefficients(info: Any, log: Any, cellSet: Any, kernel: Any, showBad: bool) -> None:
    plt = pyplot()
    cands = _candidates(cellSet, showBad)
    if not cands:
        return
    bbox = cellSet.getBBox()
    coeffs = _coefficientTable(cands)
    nb = coeffs.shape[1]
    # 1. per-candidate coefficient vectors on an 8x8 grid of image regions.
    fig, axes = plt.subplots(8, 8, figsize=(12, 10), sharex=True, sharey=True)
    for cand, row in zip(cands, coeffs, strict=True):
        ix = min(int(8 * (cand.getXCenter() - bbox.x.min) / bbox.x.size), 7)
        iy = min(int(8 * (cand.getYCenter() - bbox.y.min) / bbox.y.size), 7)
        axes[7 - iy, ix].plot(np.arange(nb), row, ".-", color=_statusColour(cand), lw=0.6, ms=2)
    fig.suptitle("Candidates' own kernel coefficients by image region (x right, y up)", fontsize=10)
    finishFigure(fig, "kernelCoefficientsByRegion", info, log)
    # 2. histograms with the spatial value at the centre.
    ncol = 6
    nrow = math.ceil(nb / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(14, 2.2 * nrow + 0.6), squeeze=False)
    centre = kernel.coefficientsAt(0.5 * (bbox.x.min + bbox.x.max), 0.5 * (bbox.y.min + bbox.y.max)).ravel()
    for k, ax in enumerate(axes.ravel()):
        if k >= nb:
            ax.axis("off")
            continue
        ax.hist(coeffs[:, k], bins=20, color="steelblue")
        ax.axvline(centre[k], color="red", lw=1.2)
        ax.set_title(f"a_{k}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle("Coefficient histograms (red: spatial model at the centre)", fontsize=10)
    fig.tight_layout()
    finishFigure(fig, "kernelCoefficientHistograms", info, log)
    # 3. spatial model's coefficient vectors at grid-cell centres.
    fig, axes = plt.subplots(8, 8, figsize=(12, 10), sharex=True, sharey=True)
    for iy in range(8):
        for ix in range(8):
            x = bbox.x.min + (ix + 0.5) * bbox.x.size / 8
            y = bbox.y.min + (iy + 0.5) * bbox.y.size / 8
            axes[7 - iy, ix].plot(
                np.arange(nb), kernel.coefficientsAt(x, y).ravel(), ".-", color="k", lw=0.6, ms=2
            )
    fig.suptitle("Spatial model coefficients by image region", fontsize=10)
    finishFigure(fig, "kernelCoefficientsModel", info, log)
