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
costs far more than the arithmetic, so the task describes all stamps of a
cell set as one `StampStack`: each plane is a `StampPlane` that cuts any
chunk of stamps out of the parent image with one fancy-indexing gather when
it is read.  Each candidate keeps its row of the stack, and the batched
visitors work on whole stacks, a chunk at a time.  Candidates made one at a
time (by users or tests) get a stack of their own stamps on first use.
"""

from __future__ import annotations

__all__ = ["StampPlane", "StampStack", "gatherStamps"]

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lsst.images import MaskedImage

from ..math.masks import maskBitsPresent, maskPlaneBitmask
from ..math.statistics import allFinite
from ..math.threads import chunkSlices

if TYPE_CHECKING:
    from lsst.images import MaskSchema

#: Stamps of a `StampPlane`: an integer, a slice, or an integer or boolean index array.
type StampIndex = int | np.integer | slice | np.ndarray

#: Key of a `StampPlane`: stamps, optionally followed by row and column slices of the stamps.
type StampKey = StampIndex | tuple[StampIndex, *tuple[slice, ...]]


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


class StampPlane:
    """One plane of a stack of stamps ``(n, ny, nx, ...)``, indexed like an array.

    Either a stacked array, or stamps cut from the parent plane when they
    are indexed: the passes over the candidates read a few dozen stamps at
    a time, so the stack itself never needs to exist.  Indexing by stamp
    (an integer, a slice or an index array), optionally followed by row
    and column slices of the stamps, returns a new `numpy.ndarray`.

    Parameters
    ----------
    stack : `numpy.ndarray`, optional
        The stamps, stacked.
    parent : `numpy.ndarray`, optional
        The parent plane ``(H, W, ...)`` (instead of ``stack``).
    rows, cols : `numpy.ndarray`, optional
        Array indices of every stamp's first row and column in ``parent``.
    shape : `tuple` [`int`, `int`], optional
        Stamp shape ``(ny, nx)`` (with ``parent``).
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
        self._stampShape = shape

    def __len__(self) -> int:
        if self._stack is not None:
            return len(self._stack)
        assert self._rows is not None  # a plane holds either a stack or its parent's cut
        return len(self._rows)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the stack, ``(nStamps, height, width, ...)`` (`tuple` [`int`, ...])."""
        if self._stack is not None:
            return self._stack.shape
        assert self._rows is not None and self._stampShape is not None and self._parent is not None
        return (len(self._rows), *self._stampShape, *self._parent.shape[2:])

    @property
    def dtype(self) -> np.dtype:
        """Pixel type of the plane, that of its parent image (`numpy.dtype`)."""
        plane = self._stack if self._stack is not None else self._parent
        assert plane is not None
        return plane.dtype

    @property
    def parent(self) -> np.ndarray | None:
        """The parent plane the stamps are cut from, or `None` if they are stacked."""
        return self._parent

    def all(self) -> np.ndarray:
        """Return (and keep) the whole stack."""
        if self._stack is None:
            assert self._parent is not None and self._rows is not None and self._cols is not None
            assert self._stampShape is not None
            self._stack = gatherStamps(self._parent, self._rows, self._cols, self._stampShape)
            self._parent = self._rows = self._cols = None
        return self._stack

    def __getitem__(self, key: StampKey) -> np.ndarray:
        if self._stack is not None:
            return self._stack[key]
        parent, rows, cols, shape = self._parent, self._rows, self._cols, self._stampShape
        assert parent is not None and rows is not None and cols is not None and shape is not None
        index, window = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if len(window) > 2 or not all(isinstance(w, slice) for w in window):
            raise IndexError("Stamp planes take a stamp index and at most row and column slices.")
        ys, xs = (*window, slice(None), slice(None))[:2]
        ny, nx = shape
        y0, y1, _ = ys.indices(ny)
        x0, x1, _ = xs.indices(nx)
        single = not isinstance(index, slice) and np.ndim(index) == 0
        which = np.arange(len(rows))[index] if not single else np.array([index])
        stamps = gatherStamps(parent, rows[which] + y0, cols[which] + x0, (max(y1 - y0, 0), max(x1 - x0, 0)))
        return stamps[0] if single else stamps


def _plane(stamps: np.ndarray | StampPlane) -> StampPlane:
    return stamps if isinstance(stamps, StampPlane) else StampPlane(stack=stamps)


def _chunks(n: int) -> list[slice]:
    """Stamps are read a thousand at a time."""
    return chunkSlices(n, 1024)


def _finiteStamps(plane: StampPlane) -> np.ndarray:
    """``(n,)`` flags: every pixel of the stamp is finite."""
    if plane.parent is not None and allFinite(plane.parent):
        return np.ones(len(plane), dtype=bool)
    out = np.empty(len(plane), dtype=bool)
    for chunk in _chunks(len(plane)):
        stamps = plane[chunk]
        out[chunk] = np.isfinite(stamps).reshape(len(stamps), -1).all(axis=1)
    return out


class StampStack:
    """Template and science stamps of many candidates, as arrays.

    Parameters
    ----------
    template, templateVariance, science, scienceVariance : `numpy.ndarray` or `StampPlane`
        Stamps ``(n, ny, nx)``; kept as `StampPlane` attributes of the same
        names, which index like arrays.
    templateMask, scienceMask : `numpy.ndarray`, `StampPlane` or `None`
        Mask stamps ``(n, ny, nx, nElem)`` in `lsst.images` layout.
    templateSchema, scienceSchema : `lsst.images.MaskSchema` or `None`
        Schemas of the masks.
    """

    def __init__(
        self,
        template: np.ndarray | StampPlane,
        templateVariance: np.ndarray | StampPlane,
        science: np.ndarray | StampPlane,
        scienceVariance: np.ndarray | StampPlane,
        templateMask: np.ndarray | StampPlane | None = None,
        scienceMask: np.ndarray | StampPlane | None = None,
        templateSchema: MaskSchema | None = None,
        scienceSchema: MaskSchema | None = None,
    ) -> None:
        shape = template.shape
        for name, array in (
            ("templateVariance", templateVariance),
            ("science", science),
            ("scienceVariance", scienceVariance),
        ):
            if array.shape != shape:
                raise ValueError(f"Stamp stack {name} has shape {array.shape}; template has {shape}.")
        self.template = _plane(template)
        self.templateVariance = _plane(templateVariance)
        self.science = _plane(science)
        self.scienceVariance = _plane(scienceVariance)
        self._templateMask = None if templateMask is None else _plane(templateMask)
        self._scienceMask = None if scienceMask is None else _plane(scienceMask)
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
        """Shape ``(height, width)`` of each stamp (`tuple` [`int`, `int`])."""
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
        """Stamps of equal size in two aligned masked images.

        The stack refers to the parents' planes (the stamps are cut as they
        are read), so the parents must not change while it is in use.

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

        def cut(parent: np.ndarray) -> StampPlane:
            return StampPlane(parent=parent, rows=rows, cols=cols, shape=shape)

        # The stamps are cut when the passes over the candidates read them.
        return cls(
            cut(templateMaskedImage.image.array),
            cut(templateMaskedImage.variance.array),
            cut(scienceMaskedImage.image.array),
            cut(scienceMaskedImage.variance.array),
            cut(templateMaskedImage.mask.array),
            cut(scienceMaskedImage.mask.array),
            templateMaskedImage.mask.schema,
            scienceMaskedImage.mask.schema,
        )

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
            for masks, schema in sides:
                if masks is None or schema is None or not len(masks):
                    continue
                bitmask = maskPlaneBitmask(schema, list(key))
                if masks.parent is not None and bitmask.any():
                    # None of the bits anywhere in the parent: no stamp has them.
                    bitmask = bitmask & maskBitsPresent(masks.parent)
                if not bitmask.any():
                    continue
                # OR of every stamp's pixels: a stamp has a bad pixel iff its OR has a bad bit.
                for chunk in _chunks(len(masks)):
                    stamps = masks[chunk]
                    flat = stamps.reshape(len(stamps), -1, stamps.shape[-1])
                    stampBits = np.bitwise_or.reduce(flat, axis=1)
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
            self._finiteImages = _finiteStamps(self.template) & _finiteStamps(self.science)
        return self._finiteImages

    @property
    def finiteAll(self) -> np.ndarray:
        """``(n,)`` flags: all four planes are finite everywhere."""
        if self._finiteAll is None:
            self._finiteAll = (
                self.finiteImages & _finiteStamps(self.templateVariance) & _finiteStamps(self.scienceVariance)
            )
        return self._finiteAll

    # --- batched statistics --------------------------------------------------
    def constantWeights(self, index: np.ndarray) -> np.ndarray:
        """Return the constant inverse-variance weight of stamps ``index``.

        The weight is ``1 / median(templateVariance + scienceVariance)`` over
        the finite pixels, the variances summed in float32 as afw's variance
        planes are (1 if the median is not positive), the weight
        `KernelCandidate.build` uses with constant variance weighting.  Each
        stamp's weight is computed when first asked for and kept (a fit uses
        about a third of the stack's candidates: the medians of the others
        were most of this step's cost).
        """
        index = np.asarray(index, dtype=np.intp)
        if self._weights is None:
            self._weights = np.full(len(self), math.nan)
        todo = np.unique(index[np.isnan(self._weights[index])])
        if todo.size:
            self._weights[todo] = self._constantWeights(todo)
        return self._weights[index]

    def _constantWeights(self, rows: np.ndarray) -> np.ndarray:
        n = len(rows)
        median = np.empty(n, dtype=np.float32)
        for chunk in _chunks(n):
            start = chunk.start
            var = np.add(
                self.templateVariance[rows[chunk]], self.scienceVariance[rows[chunk]], dtype=np.float32
            )
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
                use &= ~np.any(self._scienceMask[:, ys, xs] & bitmask, axis=-1)
        with np.errstate(invalid="ignore", over="ignore"):
            xsum = np.where(use, image * np.sqrt(np.where(use, ivar, 0.0)), 0.0).reshape(n, -1).sum(axis=1)
            x2sum = np.where(use, image * image * np.where(use, ivar, 0.0), 0.0).reshape(n, -1).sum(axis=1)
        npix = use.reshape(n, -1).sum(axis=1)
        ok = np.isfinite(xsum) & np.isfinite(x2sum)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratings = np.where(npix > 0, xsum / np.maximum(npix, 1), np.nan)
        return ratings, ok
