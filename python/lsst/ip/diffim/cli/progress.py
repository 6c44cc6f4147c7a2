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
"""Progress over the science images of a run: a bar on a terminal, log lines otherwise."""

from __future__ import annotations

__all__ = ["RunProgress"]

import sys
import time
from typing import TextIO


class RunProgress:
    """Report the science images of a run as they start and end.

    On a terminal (``stream.isatty()``) a `tqdm` bar on ``stream`` counts
    the images, with the elapsed and remaining time; otherwise each image
    prints a ``[i/N] name`` line (and the time left once one is done).
    Other output of the run goes through `write`, which keeps the bar
    below it.

    Parameters
    ----------
    total : `int`
        Number of science images.
    stream : text stream, optional
        Where the bar goes (default `sys.stderr`).
    quiet : `bool`, optional
        No bar and no lines (errors still go through `write`).
    """

    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False):
        self.total = total
        self.done = 0
        self._start = time.monotonic()
        stream = stream or sys.stderr
        self._bar = None
        self._quiet = quiet
        if not quiet and total > 1 and hasattr(stream, "isatty") and stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=stream, unit="image", dynamic_ncols=True, leave=True)

    def start(self, index: int, name: str) -> None:
        """Announce image ``index`` (1-based) of the run."""
        if self._bar is not None:
            self._bar.set_description(name, refresh=True)
        elif not self._quiet:
            eta = ""
            if self.done:
                left = (time.monotonic() - self._start) / self.done * (self.total - self.done)
                eta = f"  (about {left:.0f} s left)"
            print(f"[{index}/{self.total}] {name}{eta}", flush=True)

    def finish(self) -> None:
        """Count one image as done (written or failed)."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)

    def write(self, text: str, stream: TextIO | None = None) -> None:
        """Print ``text`` (to stdout by default) without breaking the bar."""
        stream = stream or sys.stdout
        if self._bar is not None:
            self._bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def close(self) -> None:
        """Close the progress bar, if one is shown."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
