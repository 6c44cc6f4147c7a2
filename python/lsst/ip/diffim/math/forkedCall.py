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
"""One call run in a forked child of the process, beside the process's own work.

Some C libraries hold the GIL for their whole call (`sep`'s background and
extraction: about a second per 4096^2 image), so threads cannot run two of
them at once.  `ForkedCall` runs one such call in a child made by
`os.fork` (which shares the parent's arrays without copying them): the
call fills an array in memory shared with the parent (`numpy` array of a
given shape and type) and returns a small picklable value, sent back down
a pipe.  The child resets the signal handlers, runs nothing but the call
and ends with `os._exit` (no ``atexit`` or cleanup code of the parent runs
in it).  Any failure of the child (an exception, a signal) is raised in the
parent as `ForkedCallError`, so that the caller can run the call itself.

Forking is used only on Linux, with more than one thread allowed
(`lsst.ip.diffim.math.threads.threadCount`, ``$IPDIFFIM_NUM_THREADS``).
"""

from __future__ import annotations

__all__ = ["ForkedCall", "ForkedCallError", "forkAvailable"]

import math
import mmap
import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from .threads import threadCount


class ForkedCallError(RuntimeError):
    """The forked child failed (its exception's text, or how it ended)."""


def forkAvailable(workers: int | None = None) -> bool:
    """Whether `ForkedCall` may fork: Linux, `os.fork`, more than one thread allowed."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threadCount(workers) > 1


def _childMain(call: Callable[[np.ndarray], Any], out: np.ndarray, write: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    try:
        payload = pickle.dumps((True, call(out)), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # everything goes to the parent; the child only ends
        payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
    view = memoryview(payload)
    while view:
        view = view[os.write(write, view) :]


class ForkedCall:
    """Run ``call(out)`` in a forked child; `result` waits for it.

    Parameters
    ----------
    call : callable
        ``call(out)`` fills ``out`` (a zeroed array of ``shape`` and
        ``dtype`` in shared memory) and returns a picklable value.
    shape : `tuple` [`int`, ...]
        Shape of the shared array.
    dtype : `numpy.dtype`
        Its type.

    Notes
    -----
    Use it as a context manager: leaving the block reaps the child (killing
    it first if `result` was not called).
    """

    def __init__(self, call: Callable[[np.ndarray], Any], shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._shape = tuple(shape)
        self._dtype = np.dtype(dtype)
        count = math.prod(self._shape)
        self._buffer = mmap.mmap(-1, max(1, count * self._dtype.itemsize))  # shared with the child
        self._out = np.frombuffer(self._buffer, dtype=self._dtype, count=count).reshape(self._shape)
        read, write = os.pipe()
        try:
            with warnings.catch_warnings():
                # The child runs only ``call`` (C code and numpy) and never takes the other threads' locks.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if pid == 0:  # the child
            try:
                os.close(read)
                _childMain(call, self._out, write)
            finally:
                os._exit(0)
        os.close(write)
        self._pid: int | None = pid
        self._read: int | None = read

    def result(self) -> tuple[Any, np.ndarray]:
        """Wait for the child; return the call's value and the array it filled.

        Raises
        ------
        ForkedCallError
            If the call raised in the child, or the child ended without an answer.
        """
        if self._read is None:
            raise ForkedCallError("the forked call's result was already taken")
        chunks = []
        try:
            while chunk := os.read(self._read, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self._read)
            self._read = None
            status = self._reap()
        if not chunks:
            raise ForkedCallError(f"the forked child ended without an answer (wait status {status})")
        ok, value = pickle.loads(b"".join(chunks))
        if not ok:
            raise ForkedCallError(value)
        return value, self._out

    def _reap(self) -> int:
        pid, self._pid = self._pid, None
        if pid is None:
            return 0
        return os.waitpid(pid, 0)[1]

    def close(self) -> None:
        """Kill the child if it still runs and reap it."""
        if self._read is not None:
            os.close(self._read)
            self._read = None
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()

    def __enter__(self) -> ForkedCall:
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
