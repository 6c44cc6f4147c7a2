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
"""Per-image outputs that appear all at once: a staging folder and one rename.

A science image's products are written into ``OUT/.staging-<name>-XXXX/``
and, once every file is complete, that folder is renamed to ``OUT/<name>/``
in one `os.rename`: a reader sees either no folder or the finished one.
Replacing earlier results (``--overwrite`` only) moves the old folder aside
to ``OUT/.replaced-<name>`` first, with SIGINT/SIGTERM/SIGHUP held back
across the two renames; a run that finds a ``.replaced-`` folder without
its result (the machine died between the renames) puts it back.
"""

from __future__ import annotations

__all__ = ["STAGING_PREFIX", "heldSignals", "removeStaleStaging", "stagedFolder"]

import contextlib
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputExistsError

STAGING_PREFIX = ".staging-"
REPLACED_PREFIX = ".replaced-"

_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_log = logging.getLogger(__name__)


@contextlib.contextmanager
def heldSignals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back inside the block (delivered after it)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def removeStaleStaging(outDir: Path) -> list[Path]:
    """Remove the staging folders a killed run left in ``outDir``; restore replaced results.

    Call only while holding the folder's `RunLock`: no live run then owns
    them.

    Returns
    -------
    removed : `list` [`pathlib.Path`]
        The staging folders removed.
    """
    removed: list[Path] = []
    if not outDir.is_dir():
        return removed
    for entry in sorted(outDir.iterdir()):
        if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif entry.name.startswith(REPLACED_PREFIX) and entry.is_dir():
            target = outDir / entry.name.removeprefix(REPLACED_PREFIX)
            if target.exists():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                os.rename(entry, target)
                _log.warning("Restored %s, left aside by a run that was killed while replacing it", target)
    return removed


@contextlib.contextmanager
def stagedFolder(outDir: Path, name: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes ``outDir / name`` in one rename.

    Parameters
    ----------
    outDir : `pathlib.Path`
        The run's output folder (must exist).
    name : `str`
        The image's output name (`outputNames`).
    overwrite : `bool`, optional
        Replace an existing ``outDir / name``; otherwise that is an error.

    Raises
    ------
    OutputExistsError
        If ``outDir / name`` exists and ``overwrite`` is False (checked
        before and again after the work).

    Notes
    -----
    On any exception, `KeyboardInterrupt` and `InterruptedRun` included,
    the staging folder is removed and the target is left as it was.
    """
    target = outDir / name
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists (an earlier run); pass --overwrite to replace it")
    staging: Path | None = None
    try:
        # The folder's name is known before it is made, so a signal at any point (held back only
        # from this thread: another thread of the process may take it at once) leaves nothing.
        with heldSignals():
            while True:
                staging = outDir / f"{STAGING_PREFIX}{name}-{secrets.token_hex(4)}"
                try:
                    staging.mkdir(mode=0o700)
                    break
                except FileExistsError:
                    continue
        yield staging
        with heldSignals():
            if target.exists() or target.is_symlink():
                if not overwrite:
                    raise OutputExistsError(f"{target} appeared while this run worked; not replaced")
                aside = outDir / f"{REPLACED_PREFIX}{name}"
                if aside.exists():
                    shutil.rmtree(aside)
                os.rename(target, aside)
                os.rename(staging, target)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.rename(staging, target)
    finally:
        if staging is not None and staging.exists():
            with heldSignals():
                shutil.rmtree(staging, ignore_errors=True)
