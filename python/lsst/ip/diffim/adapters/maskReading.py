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
"""Reading mask planes from FITS with whole-array bit moves.

`lsst.images` reads a `~lsst.images.Mask` from FITS as one 2-d ``int32``
array per group of 31 planes and merges each into the in-memory mask with
`lsst.images.Mask.update`, plane by plane through boolean images: about
0.8 s per 4096^2 input (seconds for a busy mask), a good part of a
subtraction quantum's reads.  While `fastMaskReads` lasts,
`Mask.update` is `lsst.ip.diffim.math.maskMerge.mergeMaskPlanes`, which
gives the same mask for every pair of masks (``tests/test_maskMerge.py``
compares them on random schemas, layouts and boxes) with one bit move per
run of planes.  The replacement is made on the class (the masks being read
do not exist yet), counted, so that overlapping contexts in several
threads restore `lsst.images`' own method only when the last one ends.
"""

from __future__ import annotations

__all__ = ["fastMaskReads"]

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..math.maskMerge import mergeMaskPlanes

_lock = threading.Lock()
_users = 0
_original: Callable[..., Any] | None = None


@contextlib.contextmanager
def fastMaskReads() -> Iterator[None]:
    """Have `lsst.images.Mask.update` merge with `mergeMaskPlanes` while the context lasts.

    Wrap the reads of masked images (`lsst.images.VisitImage.read`, a
    Butler ``get``) in it; with an `lsst.images` whose `~lsst.images.Mask`
    has no ``update`` of its own, nothing is replaced.
    """
    from lsst.images import Mask

    global _users, _original
    with _lock:
        if _users == 0:
            _original = vars(Mask).get("update")
            if _original is not None:
                Mask.update = mergeMaskPlanes  # type: ignore[method-assign,assignment]
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _original is not None:
                Mask.update = _original  # type: ignore[method-assign]
                _original = None
