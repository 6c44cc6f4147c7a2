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
"""SIGTERM and SIGHUP end a run the way Ctrl-C does: as an exception, so cleanup runs."""

from __future__ import annotations

__all__ = ["signalsRaise"]

import contextlib
import signal
from collections.abc import Iterator

from .errors import InterruptedRun


def _raise(signum: int, frame: object) -> None:
    raise InterruptedRun(signum)


@contextlib.contextmanager
def signalsRaise() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise `InterruptedRun` in the main thread.

    SIGINT keeps raising `KeyboardInterrupt`.  Both unwind through every
    ``finally`` (the staging folders, the lock); the handlers are restored
    on exit.
    """
    old = {sig: signal.signal(sig, _raise) for sig in (signal.SIGTERM, signal.SIGHUP)}
    oldInt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, oldInt)
