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

Measured on a 4096^2 product: lossless ``GZIP_2`` tile compression of a
float32 noise plane takes 2-5 s and saves about 10 % of its size (noise
hardly compresses); the same plane written plainly takes 0.1 s.  The mask
(integer bits, mostly zero) is where compression pays: ``RICE_1``, lossless
on integers, writes it in about 0.1 s at 1/25 of its size (``GZIP_2`` takes
2.5 s for a file ten times smaller still).  So by default the image and
variance planes are written uncompressed and the mask with ``RICE_1``;
``"all"`` adds lossless ``GZIP_2`` for the float planes (``lsst.images``'
own default), ``"none"`` writes every plane plainly.
"""

from __future__ import annotations

__all__ = ["COMPRESSION_CHOICES", "planeCompression", "runConcurrently"]

from collections.abc import Callable, Sequence
from typing import Any

#: Values of the command line's ``--compress``.
COMPRESSION_CHOICES = ("mask", "all", "none")


def planeCompression(choice: str = "mask") -> dict[str, Any]:
    """Return ``compression_options`` for `lsst.images` FITS writes.

    Parameters
    ----------
    choice : `str`
        ``"mask"`` (lossless ``RICE_1`` for the mask plane only), ``"all"``
        (also lossless ``GZIP_2`` for the image and variance planes) or
        ``"none"``.

    Returns
    -------
    options : `dict`
        Keyed by plane name (``image``, ``mask``, ``variance``); `None`
        writes a plane uncompressed.  Other arrays (PSF, kernel) keep the
        library's default.

    Raises
    ------
    ValueError
        For an unknown choice.
    """
    if choice not in COMPRESSION_CHOICES:
        raise ValueError(f"unknown compression {choice!r}; choose one of {', '.join(COMPRESSION_CHOICES)}")
    from lsst.images.fits import FitsCompressionAlgorithm, FitsCompressionOptions

    rice = FitsCompressionOptions(algorithm=FitsCompressionAlgorithm.RICE_1)
    floats = FitsCompressionOptions(algorithm=FitsCompressionAlgorithm.GZIP_2) if choice == "all" else None
    return {"image": floats, "variance": floats, "mask": None if choice == "none" else rice}


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
