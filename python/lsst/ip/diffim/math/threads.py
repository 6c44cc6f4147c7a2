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
candidates over its own threads (``$IPDIFFIM_NUM_THREADS``, see
`lsst.ip.diffim.math.convolveImage.fftWorkers`).

Whole-image pixel arithmetic (the subtraction) is spread over the same
threads by bands of rows (`forEachRowBand`): numpy releases the GIL for
it, and on virtual machines the first touch of a new output page is a
large part of its cost, which two threads also share.
"""

from __future__ import annotations

__all__ = ["chunkSlices", "forEach", "forEachRowBand", "singleThreadedBlas"]

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_limits


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
    from .convolveImage import fftWorkers

    threads = min(fftWorkers(workers), len(items))
    if threads <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


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
