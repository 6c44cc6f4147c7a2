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
"""Stacks of equal-sized candidate stamps.

A 4k x 4k image gives thousands of kernel candidates.  Cutting each stamp
as its own `lsst.images.MaskedImage` and reading it back plane by plane
costs far more than the arithmetic, so the task cuts all stamps of a cell
set at once, with one fancy-indexing gather per plane, into a
`StampStack`; each candidate keeps its row of the stack, and the batched
visitors work on whole stacks.  Candidates made one at a time (by users or
tests) get a stack of their own stamps on first use.
"""

from __future__ import annotations

__all__ = ["StampStack", "gatherStamps"]

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lsst.images import MaskedImage

from ..math.convolveImage import fftWorkers
from ..math.masks import maskPlaneBitmask


def gatherStamps(array: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Copy equal-sized stamps out of an image plane.

    Parameters
    ----------
    array : `numpy.ndarray`
        Plane ``(H, W, ...)`` (trailing axes, e.g. mask elements, are kept).
    rows, cols : `numpy.ndarray`
        Array indices of every stamp's first row and column.
    shape : `tuple` [`int`, `int`]
        Stamp shape ``(ny, nx)``; every stamp must lie inside the plane.

    Returns
    -------
    stamps : `numpy.ndarray`
        ``(n, ny, nx, ...)``.
    """
    windows = sliding_window_view(array, shape, axis=(0, 1))
    stamps = windows[np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)]
    # Window axes come last in the view; put them back after the stamp axis.
    return np.moveaxis(stamps, (-2, -1), (1, 2)) if array.ndim > 2 else stamps


class _MaskStamps:
    """Mask stamps ``(n, ny, nx, nElem)``: a stacked array, or cut from the parent plane on demand.

    Masks are read only through a few per-stamp reductions (any bad bit in
    the stamp, bits in the core), so stamps cut from a parent are not
    copied as a whole unless asked for.
    """

    def __init__(
        self,
        stack: np.ndarray | None = None,
        parent: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        cols: np.ndarray | None = None,
        shape: tuple[int, int] | None = None,
    ) -> None:
        self._stack = stack
        self._parent = parent
        self._rows = None if rows is None else np.asarray(rows, dtype=np.intp)
        self._cols = None if cols is None else np.asarray(cols, dtype=np.intp)
        self._shape = shape

    def __len__(self) -> int:
        return len(self._stack) if self._stack is not None else len(self._rows)

    @property
    def nElem(self) -> int:
        return (self._stack if self._stack is not None else self._parent).shape[-1]

    def all(self) -> np.ndarray:
        """Return (and keep) the whole stack."""
        if self._stack is None:
            self._stack = gatherStamps(self._parent, self._rows, self._cols, self._shape)
            self._parent = self._rows = self._cols = None
        return self._stack

    def window(self, index: slice, ys: slice, xs: slice) -> np.ndarray:
        """Return ``[index, ys, xs]`` of the stamps, cutting only that window."""
        if self._stack is not None:
            return self._stack[index][:, ys, xs]
        ny, nx = self._shape
        y0, y1, _ = ys.indices(ny)
        x0, x1, _ = xs.indices(nx)
        return gatherStamps(self._parent, self._rows[index] + y0, self._cols[index] + x0, (y1 - y0, x1 - x0))


class StampStack:
    """Template and science stamps of many candidates, as arrays.

    Parameters
    ----------
    template, templateVariance, science, scienceVariance : `numpy.ndarray`
        Stamps ``(n, ny, nx)``.
    templateMask, scienceMask : `numpy.ndarray` or `None`
        Mask stamps ``(n, ny, nx, nElem)`` in `lsst.images` layout.
    templateSchema, scienceSchema : `lsst.images.MaskSchema` or `None`
        Schemas of the masks.
    """

    def __init__(
        self,
        template: np.ndarray,
        templateVariance: np.ndarray,
        science: np.ndarray,
        scienceVariance: np.ndarray,
        templateMask: np.ndarray | None = None,
        scienceMask: np.ndarray | None = None,
        templateSchema: object | None = None,
        scienceSchema: object | None = None,
    ) -> None:
        shape = template.shape
        for name, array in (
            ("templateVariance", templateVariance),
            ("science", science),
            ("scienceVariance", scienceVariance),
        ):
            if array.shape != shape:
                raise ValueError(f"Stamp stack {name} has shape {array.shape}; template has {shape}.")
        self.template = template
        self.templateVariance = templateVariance
        self.science = science
        self.scienceVariance = scienceVariance
        self._templateMask = None if templateMask is None else _MaskStamps(templateMask)
        self._scienceMask = None if scienceMask is None else _MaskStamps(scienceMask)
        self.templateSchema = templateSchema
        self.scienceSchema = scienceSchema
        self._badCache: dict[tuple[str, ...], np.ndarray] = {}
        self._finiteImages: np.ndarray | None = None
        self._finiteAll: np.ndarray | None = None
        self._weights: np.ndarray | None = None

    def __len__(self) -> int:
        return self.template.shape[0]

    @property
    def stampShape(self) -> tuple[int, int]:
        return self.template.shape[1], self.template.shape[2]

    @property
    def templateMask(self) -> np.ndarray | None:
        """Template mask stamps ``(n, ny, nx, nElem)``, or `None`."""
        return None if self._templateMask is None else self._templateMask.all()

    @property
    def scienceMask(self) -> np.ndarray | None:
        """Science mask stamps ``(n, ny, nx, nElem)``, or `None`."""
        return None if self._scienceMask is None else self._scienceMask.all()

    # --- construction ---------------------------------------------------------
    @classmethod
    def fromParents(
        cls,
        templateMaskedImage: MaskedImage,
        scienceMaskedImage: MaskedImage,
        rows: np.ndarray,
        cols: np.ndarray,
        shape: tuple[int, int],
    ) -> StampStack:
        """Cut equal-sized stamps out of two aligned masked images.

        Parameters
        ----------
        templateMaskedImage, scienceMaskedImage : `lsst.images.MaskedImage`
            Parents with the same bounding box.
        rows, cols : `numpy.ndarray`
            Array indices (relative to the parents' origin) of every stamp's
            first row and column.
        shape : `tuple` [`int`, `int`]
            Stamp shape ``(ny, nx)``; every stamp must lie inside the parent.
        """

        planes = [
            templateMaskedImage.image.array,
            templateMaskedImage.variance.array,
            scienceMaskedImage.image.array,
            scienceMaskedImage.variance.array,
        ]
        # The four gathers share the threads (numpy releases the GIL for them).
        with ThreadPoolExecutor(min(fftWorkers(None), len(planes))) as pool:
            stamps = list(pool.map(lambda plane: gatherStamps(plane, rows, cols, shape), planes))
        stack = cls(
            *stamps,
            templateSchema=templateMaskedImage.mask.schema,
            scienceSchema=scienceMaskedImage.mask.schema,
        )
        stack._templateMask = _MaskStamps(
            parent=templateMaskedImage.mask.array, rows=rows, cols=cols, shape=shape
        )
        stack._scienceMask = _MaskStamps(
            parent=scienceMaskedImage.mask.array, rows=rows, cols=cols, shape=shape
        )
        return stack

    @classmethod
    def fromMaskedImages(
        cls, templates: Sequence[MaskedImage], sciences: Sequence[MaskedImage]
    ) -> StampStack:
        """Stack stamps that exist as separate masked images (same shape and schemas)."""

        def stack(images: Sequence[MaskedImage], plane: str) -> np.ndarray:
            return np.stack([getattr(mi, plane).array for mi in images])

        def masks(images: Sequence[MaskedImage]) -> np.ndarray | None:
            if any(mi.mask is None for mi in images):
                return None
            return np.stack([mi.mask.array for mi in images])

        return cls(
            stack(templates, "image"),
            stack(templates, "variance"),
            stack(sciences, "image"),
            stack(sciences, "variance"),
            masks(templates),
            masks(sciences),
            templates[0].mask.schema if templates[0].mask is not None else None,
            sciences[0].mask.schema if sciences[0].mask is not None else None,
        )

    # --- per-stamp flags -----------------------------------------------------
    def hasBadPixels(self, planes: Iterable[str]) -> np.ndarray:
        """Return ``(n,)`` flags: the template or science stamp has a pixel in ``planes``."""
        key = tuple(planes)
        hit = self._badCache.get(key)
        if hit is None:
            hit = np.zeros(len(self), dtype=bool)
            sides = ((self._templateMask, self.templateSchema), (self._scienceMask, self.scienceSchema))
            every = slice(None)
            for masks, schema in sides:
                if masks is None or schema is None or not len(masks):
                    continue
                bitmask = maskPlaneBitmask(schema, list(key))
                if not bitmask.any():
                    continue
                # OR of every stamp's pixels: a stamp has a bad pixel iff its OR has a bad bit.
                for start in range(0, len(masks), 1024):
                    chunk = slice(start, min(start + 1024, len(masks)))
                    stamps = masks.window(chunk, every, every)
                    stampBits = np.bitwise_or.reduce(stamps.reshape(len(stamps), -1, masks.nElem), axis=1)
                    hit[chunk] |= (stampBits & bitmask).any(axis=1)
            self._badCache[key] = hit
        return hit

    def isClean(self, planes: Iterable[str]) -> np.ndarray:
        """Return ``(n,)`` flags: all four planes finite and no pixel in ``planes``.

        Clean stamps are the ones the batched residual statistics handle;
        the others need the masked, one-at-a-time computation.
        """
        return self.finiteAll & ~self.hasBadPixels(planes)

    @property
    def finiteImages(self) -> np.ndarray:
        """``(n,)`` flags: template and science images are finite everywhere."""
        if self._finiteImages is None:
            n = len(self)
            self._finiteImages = np.isfinite(self.template).reshape(n, -1).all(axis=1) & np.isfinite(
                self.science
            ).reshape(n, -1).all(axis=1)
        return self._finiteImages

    @property
    def finiteAll(self) -> np.ndarray:
        """``(n,)`` flags: all four planes are finite everywhere."""
        if self._finiteAll is None:
            n = len(self)
            self._finiteAll = (
                self.finiteImages
                & np.isfinite(self.templateVariance).reshape(n, -1).all(axis=1)
                & np.isfinite(self.scienceVariance).reshape(n, -1).all(axis=1)
            )
        return self._finiteAll

    # --- batched statistics --------------------------------------------------
    def constantWeights(self, index: np.ndarray) -> np.ndarray:
        """Return the constant inverse-variance weight of stamps ``index``.

        The weight is ``1 / median(templateVariance + scienceVariance)`` over
        the finite pixels, the variances summed in float32 as afw's variance
        planes are (1 if the median is not positive), the weight
        `KernelCandidate.build` uses with constant variance weighting.  The
        weights of the whole stack are computed on first use.
        """
        if self._weights is None:
            self._weights = self._constantWeights()
        return self._weights[index]

    def _constantWeights(self) -> np.ndarray:
        n = len(self)
        median = np.empty(n, dtype=np.float32)
        for start in range(0, n, 1024):
            chunk = slice(start, min(start + 1024, n))
            var = np.add(self.templateVariance[chunk], self.scienceVariance[chunk], dtype=np.float32)
            flat = var.reshape(len(var), -1)
            finite = np.isfinite(flat)
            if finite.all() and flat.shape[1]:
                median[chunk] = np.median(flat, axis=1, overwrite_input=True)
                continue
            # Rare: the median of each stamp's finite pixels, as build() takes it.
            for i, (row, ok) in enumerate(zip(flat, finite, strict=True)):
                median[start + i] = np.median(row[ok]) if ok.any() else math.nan
        return 1.0 / np.where(median > 0.0, median, np.float32(1.0)).astype(float)

    def coreRatings(self, core: int, planes: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return every stamp's core signal-to-noise rating, as `ImageStatistics`.

        The rating is the mean of ``science / sqrt(scienceVariance)`` over the
        unmasked pixels with finite inverse variance of the central
        ``(2 core + 1)^2`` pixels.

        Returns
        -------
        ratings : `numpy.ndarray`
            ``(n,)`` ratings (NaN where no pixel is usable).
        ok : `numpy.ndarray`
            ``(n,)`` `False` where the sums are not finite (the candidate
            is then BAD with rating 0).
        """
        n, h, w = self.science.shape
        if core > 0:
            ys = slice(max(h // 2 - core, 0), min(h // 2 + core + 1, h))
            xs = slice(max(w // 2 - core, 0), min(w // 2 + core + 1, w))
        else:
            ys, xs = slice(None), slice(None)
        image = self.science[:, ys, xs].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ivar = 1.0 / self.scienceVariance[:, ys, xs].astype(float)
        use = np.isfinite(ivar)
        if self._scienceMask is not None and self.scienceSchema is not None:
            bitmask = maskPlaneBitmask(self.scienceSchema, list(planes))
            if bitmask.any():
                use &= ~np.any(self._scienceMask.window(slice(None), ys, xs) & bitmask, axis=-1)
        with np.errstate(invalid="ignore", over="ignore"):
            xsum = np.where(use, image * np.sqrt(np.where(use, ivar, 0.0)), 0.0).reshape(n, -1).sum(axis=1)
            x2sum = np.where(use, image * image * np.where(use, ivar, 0.0), 0.0).reshape(n, -1).sum(axis=1)
        npix = use.reshape(n, -1).sum(axis=1)
        ok = np.isfinite(xsum) & np.isfinite(x2sum)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratings = np.where(npix > 0, xsum / np.maximum(npix, 1), np.nan)
        return ratings, ok
