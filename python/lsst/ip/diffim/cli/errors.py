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
"""The named errors of the console commands and the exit codes they map to.

Every failure the commands report is one of these (or a library error they
wrap in one line); each class carries the process exit code it ends a run
with when it stops the whole run.  Codes (documented in the README):

====  ==========================================================================
code  meaning
====  ==========================================================================
0     every science image was subtracted and its outputs are in place
1     at least one science image failed (the others were processed; see summary)
2     refused before any work: bad option, config, template, names or memory
3     another live run holds the output folder's lock
130   interrupted by SIGINT (staging removed, finished images kept)
129   hung up (SIGHUP); 143: terminated (SIGTERM); as for SIGINT
====  ==========================================================================
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAILED_IMAGES",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "CliError",
    "ConfigOverrideError",
    "InputError",
    "InterruptedRun",
    "MemoryLimitError",
    "OutputCollisionError",
    "OutputExistsError",
    "RunLockedError",
    "formatError",
]

EXIT_OK = 0
EXIT_FAILED_IMAGES = 1
EXIT_REFUSED = 2
EXIT_LOCKED = 3


class CliError(Exception):
    """Base of the errors a console command reports as one line.

    Attributes
    ----------
    exitCode : `int`
        Exit status of the process when this error stops the whole run.
    """

    exitCode: int = EXIT_REFUSED


class InputError(CliError, ValueError):
    """An input file cannot be used (missing, unreadable, no image, bad options)."""


class ConfigOverrideError(CliError, ValueError):
    """A ``-c`` override or ``-C`` file cannot be applied to the task config."""


class OutputCollisionError(CliError, ValueError):
    """Two science images of one run would write to the same output name."""


class OutputExistsError(CliError, FileExistsError):
    """Outputs of a science image already exist (an earlier run); nothing is overwritten."""


class RunLockedError(CliError, RuntimeError):
    """Another live run holds the output folder's lock."""

    exitCode = EXIT_LOCKED


class MemoryLimitError(CliError, MemoryError):
    """The estimated memory of a subtraction exceeds what the machine has."""


class InterruptedRun(BaseException):
    """Raised in the main thread when SIGTERM or SIGHUP arrives (like `KeyboardInterrupt`).

    Attributes
    ----------
    signum : `int`
        The signal number; the process exits with ``128 + signum``.
    """

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


def formatError(exc: BaseException) -> str:
    """Return the one-line text of an error: its message, or its class name when it has none.

    Library errors that are not this module's (and not a plain `ValueError`
    or `OSError`) get their class name in front, so a user can look it up in
    the README's table of bad inputs.
    """
    message = " ".join(str(exc).split())
    if isinstance(exc, CliError) or type(exc) in (ValueError, OSError, FileNotFoundError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
