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

The planes are an explicit object: the caller that owns a subtraction
makes them (`preparedPlanes`) and passes them as ``out=`` to the steps
that fill them, which take theirs with `OutputPlanes.takeMatched` and
`OutputPlanes.takeDifference`; no task keeps them.
"""

from __future__ import annotations

__all__ = ["OutputPlanes", "preparedPlanes"]

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from .convolveImage import OutputArrays
from .threads import threadCount

if TYPE_CHECKING:
    from lsst.images import MaskedImage

#: Rows zeroed per call (numpy releases the GIL for each block).
_ROWS_PER_BLOCK = 64
#: Longest wait in `OutputPlanes.take` for the block the (low-priority)
#: background thread holds: on a busy machine it may not run for seconds.
_BLOCK_WAIT_SECONDS = 0.25


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
        # Blocks of rows are claimed under a lock, by the background thread or
        # by `take` when it finds a plane unfinished: on a busy machine the
        # low-priority thread may get no time at all, so nobody waits for it
        # longer than one block.
        self._lock = threading.Lock()
        self._nextRow = dict.fromkeys(self._specs, 0)
        self._inFlight = dict.fromkeys(self._specs, 0)
        self._handedOut: set[str] = set()
        self._thread = threading.Thread(target=self._prepare, name="ipdiffim-output-planes", daemon=True)

    def _claim(self, name: str) -> tuple[np.ndarray, slice] | None:
        """Claim the next block of rows of a plane to zero, or `None` if none is left."""
        with self._lock:
            shape, dtype = self._specs[name]
            if name in self._handedOut:
                return None
            array = self._arrays.get(name)
            if array is None:
                array = self._arrays[name] = np.empty(shape, dtype=dtype)
            rows = shape[0] if shape else 0
            y0 = self._nextRow[name]
            if y0 >= rows:
                if self._inFlight[name] == 0:
                    self._ready[name].set()
                return None
            self._nextRow[name] = y0 + _ROWS_PER_BLOCK
            self._inFlight[name] += 1
            return array, slice(y0, y0 + _ROWS_PER_BLOCK)

    def _zeroBlocks(self, name: str) -> None:
        """Zero blocks of a plane until none is left to claim."""
        while (claim := self._claim(name)) is not None:
            if self._cancel.is_set():
                return
            array, rows = claim
            np.copyto(array[rows], 0)
            with self._lock:
                self._inFlight[name] -= 1
                if self._inFlight[name] == 0 and self._nextRow[name] >= array.shape[0]:
                    self._ready[name].set()

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
        if threadCount() <= 1 or not specs:
            return None
        return cls(specs)

    def _prepare(self) -> None:
        # Lowest priority: the thread should only use time the other threads
        # leave idle (Linux applies a "process" priority to a thread id).
        if sys.platform.startswith("linux"):
            with contextlib.suppress(AttributeError, OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            for name in self._specs:
                if self._cancel.is_set():
                    return
                self._zeroBlocks(name)
        finally:
            for event in self._ready.values():
                event.set()

    def take(self, name: str, shape: tuple[int, ...], dtype: np.typing.DTypeLike) -> np.ndarray | None:
        """Return the zeroed plane ``name`` if it has this shape and type, else `None`.

        A plane still being prepared is finished by the caller's thread;
        only the block the background thread holds is waited for, and at
        most ``_BLOCK_WAIT_SECONDS`` (then `None`).  A plane is handed out
        once.
        """
        if name not in self._ready or self._cancel.is_set():
            return None
        self.begin()
        self._zeroBlocks(name)
        finished = self._ready[name].wait(timeout=_BLOCK_WAIT_SECONDS)
        with self._lock:
            self._handedOut.add(name)
            array = self._arrays.pop(name, None)
        if not finished:
            # The background thread holds a block and gets no time: give up
            # the plane (it drops it after its block); the caller allocates.
            return None
        if array is None or array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
            return None
        return array

    def close(self) -> None:
        """Stop preparing and drop the planes nobody took."""
        self._cancel.set()
        if self._thread.ident:
            self._thread.join()
        self._arrays.clear()

    @classmethod
    def forMatch(cls, image: MaskedImage, difference: MaskedImage | None = None) -> OutputPlanes | None:
        """Start preparing the planes of a PSF match and, optionally, a difference.

        Parameters
        ----------
        image : `lsst.images.MaskedImage`
            The image to be convolved: the matched image has its shape and
            mask type (float32 image and variance).
        difference : `lsst.images.MaskedImage`, optional
            The image the matched one is subtracted from: the difference
            has its shape and mask type.

        Returns
        -------
        planes : `OutputPlanes` or `None`
            `None` when only one thread is allowed (see `start`).
        """
        specs = _maskedImageSpecs("matched", image)
        if difference is not None:
            specs |= _maskedImageSpecs("difference", difference)
        return cls.start(specs)

    def takeMatched(self, like: MaskedImage) -> OutputArrays:
        """Take the planes of the matched image of ``like``'s shape (`None` for any not prepared)."""
        return self._takeMaskedImage("matched", like)

    def takeDifference(self, like: MaskedImage) -> OutputArrays:
        """Take the planes of the difference of ``like``'s shape (`None` for any not prepared)."""
        return self._takeMaskedImage("difference", like)

    def _takeMaskedImage(self, kind: str, like: MaskedImage) -> OutputArrays:
        shape, mask = like.image.array.shape, like.mask.array
        return OutputArrays(
            image=self.take(f"{kind}.image", shape, np.float32),
            variance=self.take(f"{kind}.variance", shape, np.float32),
            mask=self.take(f"{kind}.mask", mask.shape, mask.dtype),
        )


def _maskedImageSpecs(kind: str, like: MaskedImage) -> dict[str, tuple[tuple[int, ...], np.typing.DTypeLike]]:
    """Return the plane specs of a float32 masked image shaped like ``like``."""
    shape, mask = like.image.array.shape, like.mask.array
    return {
        f"{kind}.image": (shape, np.float32),
        f"{kind}.variance": (shape, np.float32),
        f"{kind}.mask": (mask.shape, mask.dtype),
    }


@contextlib.contextmanager
def preparedPlanes(
    given: OutputPlanes | None, image: MaskedImage, difference: MaskedImage | None = None
) -> Iterator[OutputPlanes | None]:
    """Use the caller's planes, or prepare new ones for the block.

    Parameters
    ----------
    given : `OutputPlanes` or `None`
        Planes a caller already prepared (and will close): yielded as is.
    image, difference : `lsst.images.MaskedImage`
        Otherwise, the planes of `OutputPlanes.forMatch` are prepared,
        yielded and closed when the block ends (also on an exception).

    Yields
    ------
    planes : `OutputPlanes` or `None`
        The planes (`None` with one thread).
    """
    if given is not None:
        yield given
        return
    planes = OutputPlanes.forMatch(image, difference)
    try:
        yield planes
    finally:
        if planes is not None:
            planes.close()
