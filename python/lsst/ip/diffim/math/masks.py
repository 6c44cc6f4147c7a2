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

"""Mask-plane names and bit tests on `lsst.images.Mask` objects.

Configs of the stack name mask planes with their legacy afw names
(``"SAT"``, ``"EDGE"``, ``"NO_DATA"``); `lsst.images` renames some of them
(``"SATURATED"``, ``"DETECTION_EDGE"``).  Everything here accepts either
spelling, so a config written for afw keeps working.
"""

from __future__ import annotations

__all__ = [
    "DIFFERENCE_MASK_PLANES",
    "anyMaskPlaneSet",
    "bitPosition",
    "makeDifferenceMaskSchema",
    "maskBitsPresent",
    "maskPlaneBitmask",
    "requireMaskPlane",
    "resolveMaskPlane",
]

from collections.abc import Iterable
from typing import overload

import numpy as np

from lsst.images import Mask, MaskSchema, get_legacy_difference_image_mask_planes

#: Legacy afw plane name -> `lsst.images.MaskPlane` of a difference image.
DIFFERENCE_MASK_PLANES = get_legacy_difference_image_mask_planes()

#: (id(schema), plane names) -> (schema, bitmask); the schema is kept so the id stays valid.
_BITMASK_CACHE: dict[tuple[int, tuple[str, ...]], tuple[MaskSchema, np.ndarray]] = {}

_LEGACY_TO_NEW = {legacy: plane.name for legacy, plane in DIFFERENCE_MASK_PLANES.items()}
_NEW_TO_LEGACY = {new: legacy for legacy, new in _LEGACY_TO_NEW.items()}


def bitPosition(value: int | np.integer) -> int:
    """Return the position of the single set bit of ``value`` (a `lsst.images.MaskBit` mask)."""
    return int(value).bit_length() - 1


def resolveMaskPlane(schema: MaskSchema, name: str) -> str | None:
    """Return the name under which a plane exists in ``schema``.

    Parameters
    ----------
    schema : `lsst.images.MaskSchema`
        Schema to look the plane up in.
    name : `str`
        Legacy (afw) or `lsst.images` name of the plane.

    Returns
    -------
    resolved : `str` or `None`
        The plane name present in ``schema``, or `None` if neither spelling
        is present (unknown planes are skipped, as afw does).
    """
    names = schema.names
    if name in names:
        return name
    for alias in (_LEGACY_TO_NEW.get(name), _NEW_TO_LEGACY.get(name)):
        if alias is not None and alias in names:
            return alias
    return None


def requireMaskPlane(schema: MaskSchema, name: str) -> str:
    """Return the name under which a plane exists in ``schema`` (see `resolveMaskPlane`).

    Raises
    ------
    LookupError
        If neither spelling of the plane is in ``schema``.
    """
    resolved = resolveMaskPlane(schema, name)
    if resolved is None:
        raise LookupError(f"Mask plane {name!r} is not in the schema {list(schema.names)}.")
    return resolved


def maskPlaneBitmask(schema: MaskSchema, names: Iterable[str]) -> np.ndarray:
    """Return the per-element bitmask of the given planes.

    Parameters
    ----------
    schema : `lsst.images.MaskSchema`
        Schema of the mask the bitmask will be applied to.
    names : iterable of `str`
        Plane names (legacy or new); unknown planes are ignored.

    Returns
    -------
    bitmask : `numpy.ndarray`
        Array of shape ``(schema.mask_size,)`` to be AND-ed with the last
        axis of `lsst.images.Mask.array`.
    """
    key = (id(schema), tuple(names))
    hit = _BITMASK_CACHE.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    resolved = [r for r in (resolveMaskPlane(schema, n) for n in names) if r is not None]
    if not resolved:
        bitmask = np.zeros(schema.mask_size, dtype=schema.dtype)
    else:
        bitmask = schema.bitmask(*resolved)
    if len(_BITMASK_CACHE) > 256:
        _BITMASK_CACHE.clear()
    _BITMASK_CACHE[key] = (schema, bitmask)
    return bitmask


def maskBitsPresent(array: np.ndarray) -> np.ndarray:
    """Return the OR of every pixel of a mask array ``(..., nElem)``: the bits set anywhere."""
    return np.bitwise_or.reduce(array.reshape(-1, array.shape[-1]), axis=0)


@overload
def anyMaskPlaneSet(mask: Mask, names: Iterable[str]) -> np.ndarray: ...


@overload
def anyMaskPlaneSet(mask: None, names: Iterable[str]) -> None: ...


@overload
def anyMaskPlaneSet(mask: Mask | None, names: Iterable[str]) -> np.ndarray | None: ...


def anyMaskPlaneSet(mask: Mask | None, names: Iterable[str]) -> np.ndarray | None:
    """Return a 2-d boolean array, `True` where any of ``names`` is set.

    Parameters
    ----------
    mask : `lsst.images.Mask` or `None`
        The mask to test.
    names : iterable of `str`
        Plane names (legacy or new); unknown planes are ignored.

    Returns
    -------
    flags : `numpy.ndarray` or `None`
        Boolean array of the mask's 2-d shape, or `None` if ``mask`` is
        `None`.
    """
    if mask is None:
        return None
    bitmask = maskPlaneBitmask(mask.schema, names)
    array = mask.array
    if bitmask.any() and array.size:
        # A cheap OR-reduction first: most masks have none of the planes set.
        bitmask = bitmask & maskBitsPresent(array)
    if not bitmask.any():
        return np.zeros(array.shape[:2], dtype=bool)
    elements = np.flatnonzero(bitmask)
    if len(elements) == 1:
        e = int(elements[0])
        return (array[:, :, e] & bitmask[e]) != 0
    return np.any(array & bitmask, axis=-1)


def makeDifferenceMaskSchema(extra: Iterable[str] = ()) -> MaskSchema:
    """Return the mask schema of difference images.

    Parameters
    ----------
    extra : iterable of `str`, optional
        Additional plane names to append (each described as user-defined).

    Returns
    -------
    schema : `lsst.images.MaskSchema`
        The legacy difference-image planes of `lsst.images`, as int32.
    """
    from lsst.images import MaskPlane

    planes = list(DIFFERENCE_MASK_PLANES.values())
    known = {p.name for p in planes}
    for name in extra:
        if resolveMaskPlane(MaskSchema(planes, dtype=np.int32), name) is None and name not in known:
            planes.append(MaskPlane(name, "User-defined mask plane."))
            known.add(name)
    return MaskSchema(planes, dtype=np.int32)
