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
"""The summary sheet drawn by a child process, started when the command line starts.

Importing matplotlib and building the sheet's figure take about a second
and a half of pure Python, which a thread of the command line could not
overlap with its own imports (both hold the GIL).  A child process does it
on the machine's other core while the command line imports the stack,
reads and subtracts; when a result is ready, `SheetWorker.draw` hands it the
prepared views (`lsst.ip.diffim.cli.summarySheet.SummarySheetData`, small
copies, pickled down a pipe) and waits for its answer while the FITS planes
are written.

The child writes the PNG where it is told (the command line's staging
folder) and answers ``ok`` or the error it met, which `draw` raises as
`SummarySheetError`, so a sheet that failed is never left half-written
among finished outputs: the image counts as failed like any other error.
It ignores SIGINT (the command line handles interrupts and closes it), and
ends when its input closes, so it cannot outlive the command line.
"""

from __future__ import annotations

__all__ = ["SheetWorker", "SummarySheetError", "serve"]

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from .summarySheet import SheetFigure, SummarySheetData

# The child runs with the command line's own import path, so that it draws with the same code.
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from lsst.ip.diffim.cli.sheetWorker import serve; serve()"
)


class SummarySheetError(RuntimeError):
    """The summary sheet could not be drawn (the drawing process's error, or its end)."""


class SheetWorker:
    """A child process drawing summary sheets (see the module's documentation).

    Use `start`; `close` it when done (or use it as a context manager).
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._lock = threading.Lock()

    @classmethod
    def start(cls) -> SheetWorker | None:
        """Start the drawing process; return `None` if it cannot be started (draw in-process then)."""
        if not sys.executable:
            return None
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(sys.path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError:
            return None
        return cls(process)

    @property
    def pid(self) -> int:
        """The drawing process's id."""
        return self._process.pid

    def draw(self, data: SummarySheetData, path: str | Path) -> Path:
        """Have the sheet drawn and written to ``path``; return the path when it is written.

        Raises
        ------
        SummarySheetError
            When drawing failed, or the drawing process ended.
        """
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        with self._lock:
            try:
                pickle.dump((str(path), data), process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.flush()
                status, detail = pickle.load(process.stdout)
            except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
                code = process.poll()
                raise SummarySheetError(
                    f"summary sheet not drawn: its drawing process ended (exit code {code})"
                ) from exc
        if status != "ok":
            message, where = detail
            error = SummarySheetError(f"summary sheet not drawn: {message}")
            error.add_note(f"in the drawing process (pid {process.pid}):\n{where}")
            raise error
        return Path(path)

    def close(self) -> None:
        """End the drawing process.

        Every sheet asked for has been answered by then (`draw` waits), so
        whatever the process is doing (building the next empty figure, about
        half a second) is cut short: it is killed at once rather than waited for.
        """
        process = self._process
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> SheetWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _build() -> SheetFigure | None:
    from .summarySheet import buildSheetFigure

    try:
        return buildSheetFigure(warm=True)
    except Exception:  # met again, and answered, when a sheet is asked for
        return None


def serve(source: BinaryIO | None = None, answers: BinaryIO | None = None) -> None:
    """Run the drawing process: answer each ``(path, data)`` on ``source`` until it closes.

    Parameters
    ----------
    source, answers : binary files, optional
        Where requests come from and answers go (default: standard input and
        standard output; whatever else writes to standard output then goes to
        standard error).
    """
    import signal
    import traceback

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if source is None:
        source = sys.stdin.buffer
    if answers is None:
        answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sheet = _build()  # matplotlib imported and the empty figure ready before the first result
    while True:
        try:
            path, data = pickle.load(source)
        except EOFError:
            return
        answer: tuple[str, Any]
        try:
            from .summarySheet import drawSummarySheet

            drawSummarySheet(data, path, sheet=sheet)
            answer = ("ok", path)
        except Exception as exc:
            answer = ("error", (f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        pickle.dump(answer, answers)
        answers.flush()
        sheet = _build()  # the next sheet's figure, while the command line works on
