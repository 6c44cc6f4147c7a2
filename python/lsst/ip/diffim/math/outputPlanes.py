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
"""Output planes made ready on a spare core while the kernel is being fitted.

The first write to newly allocated memory is not free: the kernel must
zero every page, and on virtual machines the hypervisor must back it too
(measured here: about 3 s per GB on one thread, a second and a half for the
six planes of a 4k x 4k match and subtraction).  Candidate selection and
the kernel fit leave one core mostly idle, so `OutputPlanes` allocates the
planes the convolution and the subtraction will return and zeroes them on a
background thread meanwhile; those steps then take them instead of
allocating.  The planes are ordinary arrays handed to the caller's
results; nothing is shared afterwards.
"""

from __future__ import annotations

__all__ = ["OutputPlanes"]

import contextlib
import os
import sys
import threading
from collections.abc import Mapping

import numpy as np

from .convolveImage import fftWorkers

#: Rows zeroed per call (numpy releases the GIL for each block).
_ROWS_PER_BLOCK = 64


class OutputPlanes:
    """Named, zeroed arrays prepared on a background thread.

    Parameters
    ----------
    specs : mapping [`str`, `tuple`]
        ``name -> (shape, dtype)`` of every plane, in the order they are
        needed.
    """

    def __init__(self, specs: Mapping[str, tuple[tuple[int, ...], np.typing.DTypeLike]]) -> None:
        self._specs = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in specs.items()}
        self._arrays: dict[str, np.ndarray] = {}
        self._ready = {name: threading.Event() for name in self._specs}
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._prepare, name="ipdiffim-output-planes", daemon=True)

    def begin(self) -> None:
        """Start the background thread (once)."""
        if not self._thread.is_alive() and not self._thread.ident:
            self._thread.start()

    @classmethod
    def start(cls, specs: Mapping[str, tuple[tuple[int, ...], np.typing.DTypeLike]]) -> OutputPlanes | None:
        """Start preparing planes, or return `None` when only one thread is allowed.

        The thread count is ``$IPDIFFIM_NUM_THREADS`` (default the CPU
        count), as for every other threaded step.
        """
        if fftWorkers(None) <= 1 or not specs:
            return None
        return cls(specs)

    def _prepare(self) -> None:
        # Lowest priority: the thread should only use time the other threads
        # leave idle (Linux applies a "process" priority to a thread id).
        if sys.platform.startswith("linux"):
            with contextlib.suppress(AttributeError, OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            for name, (shape, dtype) in self._specs.items():
                if self._cancel.is_set():
                    return
                array = np.empty(shape, dtype=dtype)
                for y0 in range(0, shape[0] if shape else 0, _ROWS_PER_BLOCK):
                    if self._cancel.is_set():
                        return
                    np.copyto(array[y0 : y0 + _ROWS_PER_BLOCK], 0)
                self._arrays[name] = array
                self._ready[name].set()
        finally:
            for event in self._ready.values():
                event.set()

    def take(self, name: str, shape: tuple[int, ...], dtype: np.typing.DTypeLike) -> np.ndarray | None:
        """Return the zeroed plane ``name`` if it has this shape and type, else `None`.

        Waits for the plane if it is still being prepared.  A plane is
        handed out once.
        """
        if name not in self._ready:
            return None
        self.begin()
        self._ready[name].wait()
        array = self._arrays.pop(name, None)
        if array is None or array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
            return None
        return array

    def close(self) -> None:
        """Stop preparing and drop the planes nobody took."""
        self._cancel.set()
        if self._thread.ident:
            self._thread.join()
        self._arrays.clear()
