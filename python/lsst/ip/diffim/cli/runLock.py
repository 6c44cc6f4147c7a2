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
"""One run at a time per output folder: a lock file holding the owner's pid.

The lock is ``OUT/.ipdiffim-subtract.lock``, held with ``flock`` for the
whole run (the kernel drops it when the process dies, so a killed run never
leaves a live lock); the file records the owner's pid, host and start time
for the message another run prints when it refuses.
"""

from __future__ import annotations

__all__ = ["LOCK_NAME", "RunLock"]

import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from .errors import RunLockedError

LOCK_NAME = ".ipdiffim-subtract.lock"


class RunLock:
    """Exclusive lock of an output folder, as a context manager.

    Parameters
    ----------
    outDir : `pathlib.Path`
        The output folder (created if missing).

    Raises
    ------
    RunLockedError
        On entry, if another live process holds the lock.
    """

    def __init__(self, outDir: Path):
        self.path = Path(outDir) / LOCK_NAME
        self._fd: int | None = None

    def _owner(self) -> str:
        try:
            text = self.path.read_text().split()
        except OSError:
            return "another process"
        return f"pid {text[0]} on {text[1]}" if len(text) >= 2 else "another process"

    def acquire(self) -> None:
        """Take the lock or raise `RunLockedError`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent}: another ipdiffim-subtract run ({self._owner()}) is writing "
                    "into this folder; wait for it to finish or choose another output folder"
                ) from None
            # The owner may have removed the file between our open and our lock: retry on the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (signals held back meanwhile)."""
        from .staging import heldSignals

        if self._fd is None:
            return
        with heldSignals():
            try:
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RunLock:
        from .staging import heldSignals

        with heldSignals():
            self.acquire()
        return self

    def __exit__(
        self, excType: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
