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
"""Kernel basis and kernel mosaic displays, and the kernel shape measures they and the maps use."""

from __future__ import annotations

__all__ = ["KernelShapes", "displayKernelBasis", "displayKernelMosaic", "measureKernelShapes"]

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..math.gaussian import SIGMA2FWHM
from .core import addColorbar, finishFigure, pages, pyplot, stampAxes

if TYPE_CHECKING:
    import lsstDebug

    from lsst.images import Box
    from lsst.utils.logging import LsstLoggers

    from ..math.kernels import LinearCombinationKernel

_FWHM_PER_SIGMA = SIGMA2FWHM


@dataclass
class KernelShapes:
    """Sum, centroid offset and size of kernel images (arrays over the images).

    The centroid and the second moments are those of the squared kernel,
    which stays positive where the kernel has negative wings (upstream's test
    helpers used the same weighting).  ``fwhm`` is that of a Gaussian kernel
    with those moments: a Gaussian of width ``s`` squared has second moments
    ``s^2 / 2`` per axis, so ``fwhm = 2.3548 * sqrt(Ixx + Iyy)``.
    """

    sum: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    ixx: np.ndarray
    iyy: np.ndarray
    ixy: np.ndarray

    @property
    def fwhm(self) -> np.ndarray:
        """FWHM of each kernel from its second moments (`numpy.ndarray`)."""
        return _FWHM_PER_SIGMA * np.sqrt(np.maximum(self.ixx + self.iyy, 0.0))


def measureKernelShapes(images: np.ndarray, ctrX: int, ctrY: int) -> KernelShapes:
    """Measure kernel images ``(n, height, width)``; offsets are from pixel ``(ctrX, ctrY)``."""
    images = np.asarray(images, dtype=float)
    if images.ndim == 2:
        images = images[np.newaxis]
    n, h, w = images.shape
    weight = images * images
    total = weight.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(total > 0, 1.0 / total, np.nan)
        xx = np.arange(w, dtype=float) - ctrX
        yy = np.arange(h, dtype=float) - ctrY
        wx = weight.sum(axis=1)
        wy = weight.sum(axis=2)
        dx = (wx @ xx) * norm
        dy = (wy @ yy) * norm
        ixx = (wx @ (xx * xx)) * norm - dx * dx
        iyy = (wy @ (yy * yy)) * norm - dy * dy
        ixy = np.einsum("nij,i,j->n", weight, yy, xx) * norm - dx * dy
    return KernelShapes(images.sum(axis=(1, 2)), dx, dy, ixx, iyy, ixy)


def displayKernelBasis(
    info: lsstDebug.Info, log: LsstLoggers | None, kernel: LinearCombinationKernel, perPage: int = 49
) -> None:
    """Draw the spatial kernel's basis images, 7 to a row, each with its own colour bar."""
    plt = pyplot()
    basis = kernel.basisArray
    n = basis.shape[0]
    allPages = pages(list(range(n)), perPage)
    for p, indices in enumerate(allPages, start=1):
        ncol = min(len(indices), 7)
        nrow = math.ceil(len(indices) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.1 * ncol + 0.3, 2.0 * nrow + 0.7), squeeze=False)
        for ax in axes.ravel()[len(indices) :]:
            ax.axis("off")
        for k, ax in zip(indices, axes.ravel(), strict=False):
            stampAxes(ax)
            lim = float(np.abs(basis[k]).max()) or 1.0
            im = ax.imshow(
                basis[k], origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest"
            )
            addColorbar(fig, ax, im)
            ax.set_title(f"basis {k}: sum {basis[k].sum():.3g}", fontsize=7)
        pageText = f", page {p}/{len(allPages)}" if len(allPages) > 1 else ""
        fig.suptitle(
            f"Kernel basis: {n} images of {basis.shape[2]}x{basis.shape[1]} px, "
            f"each on its own symmetric colour scale{pageText}",
            fontsize=10,
        )
        fig.subplots_adjust(
            left=0.02, right=0.93, bottom=0.02, top=1 - 0.55 / fig.get_figheight(), wspace=0.45
        )
        finishFigure(fig, "kernelBasis" + (f"_p{p:03d}" if len(allPages) > 1 else ""), info, log)


def displayKernelMosaic(
    info: lsstDebug.Info, log: LsstLoggers | None, bbox: Box, kernel: LinearCombinationKernel
) -> None:
    """Draw the spatial kernel on a 7 x ny grid over ``bbox``, on one shared colour scale.

    Each panel marks the kernel's centroid (blue ``+``) and its second-moment
    ellipse (red, at the kernel's 1-sigma size), and gives its sum and FWHM.
    """
    from matplotlib.patches import Ellipse

    plt = pyplot()
    nx = 7
    ny = max(1, int(round(nx * bbox.y.size / bbox.x.size)))
    xs = np.linspace(bbox.x.min, bbox.x.max, nx)
    ys = np.linspace(bbox.y.min, bbox.y.max, ny)
    gx, gy = np.meshgrid(xs, ys)
    images = kernel.getArrays(gx.ravel(), gy.ravel())
    shapes = measureKernelShapes(images, kernel.getCtrX(), kernel.getCtrY())
    lim = float(np.abs(images).max()) or 1.0
    fig, axes = plt.subplots(ny, nx, figsize=(1.7 * nx + 1.0, 1.75 * ny + 0.9), squeeze=False)
    im = None
    for k in range(nx * ny):
        iy, ix = divmod(k, nx)
        ax = axes[ny - 1 - iy, ix]
        im = ax.imshow(images[k], origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        stampAxes(ax)
        xc, yc = kernel.getCtrX() + shapes.dx[k], kernel.getCtrY() + shapes.dy[k]
        cov = 2.0 * np.array([[shapes.ixx[k], shapes.ixy[k]], [shapes.ixy[k], shapes.iyy[k]]])
        if np.all(np.isfinite(cov)):
            ax.plot([xc], [yc], "+", color="blue", markersize=8)
            values, vectors = np.linalg.eigh(cov)
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
        ax.set_title(f"({xs[ix]:.0f}, {ys[iy]:.0f})", fontsize=6, pad=2)
        ax.text(
            0.03,
            0.03,
            f"sum {shapes.sum[k]:.3f}\nFWHM {shapes.fwhm[k]:.2f}",
            transform=ax.transAxes,
            fontsize=5.5,
            va="bottom",
            bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "linewidth": 0},
        )
    fig.subplots_adjust(
        left=0.01, right=0.88, bottom=0.01, top=1 - 0.75 / fig.get_figheight(), wspace=0.08, hspace=0.25
    )
    cax = fig.add_axes([0.9, 0.1, 0.02, 0.75])
    bar = fig.colorbar(im, cax=cax)
    bar.set_label("kernel value (one scale for every panel)", fontsize=8)
    fig.suptitle(
        f"Spatial kernel at {nx}x{ny} positions (x, y) over the image; shared colour scale; "
        "+ centroid, ellipse: 1-sigma second moments",
        fontsize=9,
    )
    finishFigure(fig, "kernelMosaic", info, log)
