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
"""A mosaic of tiles spread over a large image: a small stand-in for global statistics.

A global statistic of the noise (the variance scale factor of
`lsst.ip.diffim.ScaleVarianceTask`) needs about a million sky pixels, not
all sixteen million of a 4096^2 CCD.  `mosaicLayout` picks ``rows x cols``
square tiles, one at the centre of each cell of a regular grid over the
image, so that every part of the field is represented; `tileMosaic`
assembles them edge to edge into one array of at most ``maxPixels`` pixels.
Each tile is a contiguous piece of the image, so sources, sky gradients and
the correlation of neighbouring pixels are measured on it as on the whole
image; only the seams between tiles are new.
"""

from __future__ import annotations

__all__ = ["MOSAIC_PIXELS", "MOSAIC_TILE", "MosaicLayout", "mosaicLayout", "tileMosaic"]

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Images with more pixels than this are measured on a mosaic of this many pixels (1024^2).
MOSAIC_PIXELS = 1 << 20

#: Side (pixels) of the mosaic's tiles.
MOSAIC_TILE = 512


@dataclass(frozen=True)
class MosaicLayout:
    """Where the tiles of a mosaic come from (`mosaicLayout`)."""

    #: Side of the square tiles (pixels).
    tile: int
    #: First row of each row of tiles in the image.
    rowStarts: tuple[int, ...]
    #: First column of each column of tiles in the image.
    colStarts: tuple[int, ...]
    #: Pixels between neighbouring tiles in the mosaic.
    gutter: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """Return the mosaic's shape."""
        step = self.tile + self.gutter
        return len(self.rowStarts) * step - self.gutter, len(self.colStarts) * step - self.gutter

    def pieces(self) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice]]]:
        """Yield ``(source, destination)``: each tile's slices in the image and in the mosaic."""
        t = self.tile
        step = t + self.gutter
        for i, y in enumerate(self.rowStarts):
            for j, x in enumerate(self.colStarts):
                destination = (slice(i * step, i * step + t), slice(j * step, j * step + t))
                yield (slice(y, y + t), slice(x, x + t)), destination


def _starts(size: int, count: int, tile: int) -> tuple[int, ...]:
    """First pixels of ``count`` tiles centred in equal cells along an axis of ``size`` pixels."""
    cell = size / count
    return tuple(int(min(max(round((k + 0.5) * cell - tile / 2), 0), size - tile)) for k in range(count))


def mosaicLayout(
    shape: tuple[int, int], maxPixels: int = MOSAIC_PIXELS, tile: int = MOSAIC_TILE, gutter: int = 0
) -> MosaicLayout | None:
    """Return the layout of a mosaic of ``shape``'s image, or `None` if the image is small enough.

    Parameters
    ----------
    shape : `tuple` [`int`, `int`]
        Shape of the image.
    maxPixels : `int`, optional
        Images with at most this many pixels are used whole (`None`
        returned); larger ones get a mosaic of at most this many pixels.
    tile : `int`, optional
        Side of the tiles (reduced to the image's smaller side).
    gutter : `int`, optional
        Pixels left between the tiles in the mosaic (not counted in
        ``maxPixels``), filled by `tileMosaic`.

    Returns
    -------
    layout : `MosaicLayout` or `None`
        The tiles: ``rows x cols`` of them with ``rows / cols`` close to
        the image's aspect ratio.
    """
    ny, nx = (int(s) for s in shape)
    if ny * nx <= maxPixels:
        return None
    tile = max(1, min(tile, ny, nx))
    count = max(1, maxPixels // (tile * tile))
    rows = max(1, min(ny // tile, round(math.sqrt(count * ny / nx))))
    cols = max(1, min(nx // tile, count // rows))
    return MosaicLayout(tile, _starts(ny, rows, tile), _starts(nx, cols, tile), gutter=max(0, int(gutter)))


def tileMosaic(array: np.ndarray, layout: MosaicLayout, fill: float = 0) -> np.ndarray:
    """Return the mosaic of ``array``'s tiles (a new C-contiguous array; trailing axes are kept).

    The gutters between the tiles, if any, hold ``fill``.
    """
    shape = layout.shape + array.shape[2:]
    out = np.full(shape, fill, dtype=array.dtype) if layout.gutter else np.empty(shape, dtype=array.dtype)
    for source, destination in layout.pieces():
        out[destination] = array[source]
    return out
