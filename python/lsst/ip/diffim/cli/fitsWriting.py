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
"""How the command line writes its FITS planes: compression and concurrency.

The compression choices are `lsst.ip.diffim.planeCompression`'s (by
default the image and variance planes uncompressed, the mask ``RICE_1``).
"""

from __future__ import annotations

__all__ = ["COMPRESSION_CHOICES", "planeCompression", "runConcurrently"]

from collections.abc import Callable, Sequence
from typing import Any

#: Values of the command line's ``--compress`` (`lsst.ip.diffim.planeCompression.COMPRESSION_CHOICES`;
#: repeated here so that ``--help`` imports nothing of lsst.images).
COMPRESSION_CHOICES = ("mask", "all", "none")


def planeCompression(choice: str = "mask") -> dict[str, Any]:
    """Return ``compression_options`` for `lsst.images` FITS writes.

    See `lsst.ip.diffim.planeCompression.planeCompressionOptions`.
    """
    from ..planeCompression import planeCompressionOptions

    return planeCompressionOptions(choice)


def runConcurrently(jobs: Sequence[Callable[[], Any]], maxWorkers: int = 4) -> list[Any]:
    """Run independent jobs on threads; return their results in order.

    File writes spend their time in system calls and compression, which
    release the GIL, so they overlap with each other and with drawing.  Every
    job is waited for; the first exception (in job order) is raised.

    Parameters
    ----------
    jobs : sequence of callables
        Jobs taking no argument.  They must not write arrays another job
        reads (astropy byte-swaps a plane in place while it writes it).
    maxWorkers : `int`, optional
        Most threads used.
    """
    if len(jobs) <= 1:
        return [job() for job in jobs]
    from concurrent.futures import ThreadPoolExecutor, wait

    with ThreadPoolExecutor(
        max_workers=min(maxWorkers, len(jobs)), thread_name_prefix="ipdiffim-write"
    ) as pool:
        futures = [pool.submit(job) for job in jobs]
        wait(futures)
    for future in futures:
        if (exc := future.exception()) is not None:
            raise exc
    return [future.result() for future in futures]
