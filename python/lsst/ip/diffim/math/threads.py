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
"""Thread settings of the numerical libraries.

The kernel fit does many small and medium matrix products; OpenBLAS's own
threads make those slower, not faster (measured: a (256, 3) x (3, 4096)
float32 product takes 6x longer on two BLAS threads than on one).  The
fit therefore runs with BLAS on one thread and spreads chunks of
candidates over its own threads.

Every threaded step takes its thread count from `threadCount`
(``$IPDIFFIM_NUM_THREADS``, default the CPU count) and runs its work on a
`ThreadPool`: the FFT tiles of the convolution, the chunks of candidates
of the kernel fit, and whole-image pixel arithmetic (the subtraction,
zeroing of new planes) by bands of rows (`forEachRowBand`).  numpy and
scipy release the GIL for that work, and on virtual machines the first
touch of a new output page is a large part of its cost, which the threads
also share.
"""

from __future__ import annotations

__all__ = [
    "ThreadPool",
    "chunkSlices",
    "forEach",
    "forEachRowBand",
    "singleThreadedBlas",
    "threadCount",
]

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from threadpoolctl import threadpool_limits


def threadCount(workers: int | None = None) -> int:
    """Return the number of threads a step may use.

    Parameters
    ----------
    workers : `int`, optional
        An explicit count, returned as is; otherwise
        ``$IPDIFFIM_NUM_THREADS`` (at least 1) or the CPU count.
    """
    if workers is not None:
        return int(workers)
    env = os.environ.get("IPDIFFIM_NUM_THREADS")
    if env:
        return max(1, int(env))
    return os.cpu_count() or 1


class ThreadPool:
    """Threads that run calls on disjoint outputs, or this thread alone.

    A context manager: with one thread no pool is made and `forEach` runs
    the calls in the calling thread.

    Parameters
    ----------
    threads : `int`
        Number of threads (see `threadCount`).
    """

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
        self._executor = ThreadPoolExecutor(max_workers=self.threads) if self.threads > 1 else None

    def __enter__(self) -> ThreadPool:
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def forEach[T](self, work: Callable[[T], None], items: Iterable[T]) -> None:
        """Call ``work(item)`` for every item and wait for all of them.

        The first exception raised by a call is raised here.
        """
        if self._executor is None:
            for item in items:
                work(item)
            return
        for _ in self._executor.map(work, items):
            pass


@contextlib.contextmanager
def singleThreadedBlas() -> Iterator[None]:
    """Limit BLAS to one thread inside the ``with`` block (restored after)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def chunkSlices(n: int, size: int) -> list[slice]:
    """Return consecutive slices of at most ``size`` items covering ``range(n)``."""
    size = max(1, int(size))
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def forEach[T](work: Callable[[T], None], items: Sequence[T], workers: int | None = None) -> None:
    """Call ``work(item)`` for every item, on up to ``workers`` threads.

    Parameters
    ----------
    work : callable
        Called once per item; calls must write disjoint outputs.
    items : sequence
        The items, handed out in order.
    workers : `int`, optional
        Threads; ``$IPDIFFIM_NUM_THREADS`` or the CPU count if not given.
        With one thread (or one item) the calls run in this thread.
    """
    with ThreadPool(min(threadCount(workers), len(items))) as pool:
        pool.forEach(work, items)


def forEachRowBand(
    nRows: int, work: Callable[[slice], None], workers: int | None = None, rowsPerBand: int = 256
) -> None:
    """Call ``work(rows)`` for consecutive bands of ``rowsPerBand`` rows, on several threads.

    Parameters
    ----------
    nRows : `int`
        Rows of the image.
    work : callable
        Computes the band ``rows`` (a `slice`); bands must write disjoint
        outputs.
    workers : `int`, optional
        Threads; ``$IPDIFFIM_NUM_THREADS`` or the CPU count if not given.
    rowsPerBand : `int`, optional
        Rows of each band.
    """
    forEach(work, chunkSlices(nRows, rowsPerBand), workers)
