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
"""frozenHeap: the objects existing on entry are out of the collector's walks during the block only."""

import gc

from lsst.ip.diffim.math.frozenHeap import frozenHeap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a


def test_heapFrozenDuringTheBlockOnly():
    gc.unfreeze()  # an in-process CLI test may have frozen this process's heap for good
    existing = [[i] for i in range(1000)]
    with frozenHeap():
        assert gc.get_freeze_count() >= len(existing)
        _cycle()  # garbage made in the block is still collected in the block
        assert gc.collect() >= 2
    assert gc.get_freeze_count() == 0
    del existing


def test_existingGarbageWaitsForTheEndOfTheBlock():
    gc.unfreeze()
    gc.collect()
    _cycle()  # unreachable on entry: frozen with the rest, collected once the block has ended
    with frozenHeap():
        assert gc.collect() == 0
    assert gc.collect() >= 2


def test_callerFrozenHeapIsLeftAlone():
    gc.unfreeze()
    gc.freeze()  # as ipdiffim-subtract does for the whole process
    frozen = gc.get_freeze_count()
    try:
        with frozenHeap():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen  # not unfrozen by the block
    finally:
        gc.unfreeze()
