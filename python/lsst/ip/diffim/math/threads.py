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
"""

from __future__ import annotations

__all__ = ["singleThreadedBlas"]

import contextlib
from collections.abc import Iterator

from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def singleThreadedBlas() -> Iterator[None]:
    """Limit BLAS to one thread inside the ``with`` block (restored after)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
