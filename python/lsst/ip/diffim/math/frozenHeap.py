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
"""The objects that exist before a subtraction, kept out of the garbage collector's walks during it.

A process that runs a subtraction has usually built a large heap first:
the stack's modules (pydantic models, SQLAlchemy tables, astropy units)
and, under ``pipetask``, the Butler, its registry and the quantum graph:
one to a few million tracked objects.  Each full collection of Python's
cyclic garbage collector walks all of them (about 0.3 s here), and the
fit's many small objects (candidates, stamps, cells) set off several full
collections per run.  `frozenHeap` moves the objects that exist on entry to
the collector's permanent generation (`gc.freeze`) and moves them back on
exit (`gc.unfreeze`): during the block only what the block creates is
walked, and afterwards the process collects exactly as before.  Nothing is
collected any later than it would have been except cyclic garbage that
already existed on entry, which waits until the block ends.

When the heap is already frozen on entry (``ipdiffim-subtract`` freezes
the stack's objects for the whole process) the block changes nothing.
"""

from __future__ import annotations

__all__ = ["frozenHeap"]

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozenHeap() -> Iterator[None]:
    """Keep the objects existing on entry out of the cyclic collector's walks until the block ends."""
    if gc.get_freeze_count() > 0 or not gc.isenabled():
        yield  # the caller manages the collector
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
