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
"""Writing mask planes to FITS with whole-array bit moves.

`lsst.images` writes a `~lsst.images.Mask` to FITS as one 2-d ``int32``
array per group of 31 planes (`lsst.images.MaskSchema.split`).  It fills
each array plane by plane, through a boolean image per plane: at 4096^2
with the 19 difference-image planes that is about a second per file, most
of the time of writing a subtraction's outputs.  `packedMaskArrays` builds
the same arrays by merging the mask into a cleared one of each array's
schema with `lsst.ip.diffim.math.maskMerge.mergeMaskPlanes` (one
shift-and-mask per run of planes that move by the same number of bits: a
single ``&`` for the difference-image schema, whose planes keep their
bits), and `fastMaskWrites` has a mask written that way for
the duration of a write.  The files are byte for byte those `lsst.images`
writes (``tests/test_maskWriting.py`` compares them); masks the fast path
does not cover (other archives than FITS) are written by `lsst.images`
itself.
"""

from __future__ import annotations

__all__ = ["fastMaskWrites", "packedMaskArrays"]

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..math.maskMerge import mergeMaskPlanes

if TYPE_CHECKING:
    from astropy.io.fits import Header

    from lsst.images import Mask, MaskedImage, MaskSchema, MaskSerializationModel
    from lsst.images.serialization import OutputArchive


def packedMaskArrays(mask: Mask, schemas: list[MaskSchema]) -> list[np.ndarray]:
    """Return ``mask``'s planes re-packed into one 2-d array per schema of ``schemas``.

    Each schema must have a single array element (``mask_size`` 1) and
    planes all present in ``mask``'s schema, as those of
    ``mask.schema.split(dtype)``; every plane keeps its pixels, moved to the
    bit the schema gives it, and other bits are zero (what
    `lsst.images.Mask.update` leaves in a cleared mask of that schema).

    Parameters
    ----------
    mask : `lsst.images.Mask`
        The mask to re-pack.
    schemas : `list` [`lsst.images.MaskSchema`]
        Target schemas.

    Returns
    -------
    arrays : `list` [`numpy.ndarray`]
        One array of the mask's shape per schema, of that schema's dtype.
    """
    from lsst.images import Mask

    arrays = []
    for schema in schemas:
        if schema.mask_size != 1:
            raise ValueError(f"Target schema {schema} needs {schema.mask_size} array elements, not 1.")
        missing = [name for name in schema.names if name not in mask.schema.names]
        if missing:
            raise ValueError(f"Target schema {schema} has planes the mask lacks: {missing}.")
        packed = Mask(0, schema=schema, bbox=mask.bbox)
        mergeMaskPlanes(packed, mask)
        arrays.append(packed.array[..., 0])
    return arrays


def _serializeMask(
    mask: Mask,
    archive: OutputArchive[Any],
    *,
    update_header: Callable[[Header], None] | None = None,
    save_projection: bool = True,
    add_offset_wcs: str | None = "A",
    tile_shape: tuple[int, ...] | None = None,
    options_name: str | None = None,
) -> MaskSerializationModel[Any]:
    """Serialize ``mask`` as `lsst.images.Mask.serialize` does, with its arrays from `packedMaskArrays`."""
    from lsst.images import Mask, MaskSerializationModel
    from lsst.images.serialization import NumberType, no_header_updates

    updateHeader = no_header_updates if update_header is None else update_header
    if not _writesFits(archive):
        # Other formats (NDF keeps the 3-d layout): lsst.images' own path.
        return Mask.serialize(
            mask,
            archive,
            update_header=updateHeader,
            save_projection=save_projection,
            add_offset_wcs=add_offset_wcs,
            tile_shape=tile_shape,
            options_name=options_name,
        )
    schemas = mask.schema.split(np.int32)
    data = []
    for schema, array in zip(schemas, packedMaskArrays(mask, schemas), strict=True):
        plane = Mask(
            array[..., np.newaxis], schema=schema, bbox=mask.bbox, sky_projection=mask.sky_projection
        )
        data.append(
            plane._serialize_2d(
                archive,
                update_header=updateHeader,
                add_offset_wcs=add_offset_wcs,
                tile_shape=tile_shape,
                options_name=options_name,
            )
        )
        del plane, array
    projection = None
    if save_projection and mask.sky_projection is not None:
        projection = archive.serialize_direct("sky_projection", mask.sky_projection.serialize)
    return MaskSerializationModel.model_construct(
        data=data,
        yx0=list(mask.bbox.start),
        planes=list(mask.schema),
        dtype=NumberType.from_numpy(mask.schema.dtype),
        sky_projection=projection,
        metadata=mask._metadata,
    )


def _writesFits(archive: object) -> bool:
    """Whether ``archive`` (or the archive it is nested in) writes a FITS file."""
    from lsst.images.fits import FitsOutputArchive

    while archive is not None:
        if getattr(archive, "_prefer_native_mask_arrays", False):
            return False
        if isinstance(archive, FitsOutputArchive):
            return True
        archive = getattr(archive, "_parent", None)
    return False


def _fastPathAvailable() -> bool:
    from lsst.images import Mask

    return callable(getattr(Mask, "_serialize_2d", None))


@contextlib.contextmanager
def fastMaskWrites(*images: MaskedImage) -> Iterator[None]:
    """Have the masks of ``images`` written with `packedMaskArrays` while the context lasts.

    Only those mask objects are affected (their ``serialize`` is replaced
    on the instance and restored on exit); with an `lsst.images` that lacks
    the private method this relies on, the masks are written as usual.
    """
    masks = [image.mask for image in images] if _fastPathAvailable() else []
    installed = []
    try:
        for mask in masks:
            if "serialize" in vars(mask):
                continue  # already installed (the same mask twice)
            mask.serialize = functools.partial(_serializeMask, mask)  # type: ignore[method-assign]
            installed.append(mask)
        yield
    finally:
        for mask in installed:
            del mask.serialize
