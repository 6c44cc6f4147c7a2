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
"""Output names of the science images of one run, derived from their paths.

Every science image writes its products into its own sub-folder of the
output folder, ``OUT/<name>/``, for one image as for many.  ``<name>`` is
the file name without its FITS suffixes (``sci.fits.gz`` -> ``sci``); when
two images of the run share that, the names take as many parent folders as
tell them apart: first the full file name (``S.fits``, ``S.fits.gz`` ->
``S.fits``, ``S.fits.gz``), then parent folders (``dirA/sci.fits``,
``dirB/sci.fits`` -> ``dirA_sci``, ``dirB_sci``).  The same file given twice, or names that stay
equal, are refused before any work (`OutputCollisionError`).
"""

from __future__ import annotations

__all__ = ["FITS_SUFFIXES", "outputNames"]

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .errors import OutputCollisionError

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fz", ".gz", ".bz2", ".xz", ".zip")
"""Suffixes dropped from a file name to make its output name."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _stem(name: str) -> str:
    stem = name
    while True:
        lowered = stem.lower()
        suffix = next((s for s in FITS_SUFFIXES if lowered.endswith(s) and len(stem) > len(s)), None)
        if suffix is None:
            return stem
        stem = stem[: -len(suffix)]


def _clean(parts: Sequence[str]) -> str:
    name = "_".join(_UNSAFE.sub("_", p) for p in parts if p not in ("", "/"))
    name = name.strip("._") or "image"
    return name


def _candidates(path: Path) -> list[str]:
    """Names for one path, from the shortest to the most specific."""
    parents = [p for p in path.parent.parts if p not in ("/", "")]
    stem = _stem(path.name)
    names = [_clean([stem]), _clean([path.name])]
    names += [_clean([*parents[len(parents) - k :], stem]) for k in range(1, len(parents) + 1)]
    names.append(_clean([*parents, path.name]))
    return names


def outputNames(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Return one output sub-folder name per science path, unique in the run.

    Parameters
    ----------
    paths : sequence of `str` or path-like
        The science images, in the order given.

    Returns
    -------
    names : `list` [`str`]
        Folder names (letters, digits, ``._+-``), compared without case so
        that they are distinct on case-insensitive file systems too.

    Raises
    ------
    OutputCollisionError
        If a file is given twice, or two paths cannot be told apart.
    """
    resolved = [Path(os.path.abspath(p)) for p in paths]
    seen: dict[str, str] = {}
    for original, path in zip(paths, resolved, strict=True):
        key = os.path.realpath(path)
        if key in seen:
            raise OutputCollisionError(
                f"{original}: the same science file is given twice (also as {seen[key]}); "
                "its outputs would overwrite each other"
            )
        seen[key] = str(original)
    options = [_candidates(p) for p in resolved]
    level = [0] * len(paths)
    while True:
        current = [opts[min(lv, len(opts) - 1)] for opts, lv in zip(options, level, strict=True)]
        counts = Counter(n.lower() for n in current)
        clashing = [i for i, n in enumerate(current) if counts[n.lower()] > 1]
        if not clashing:
            return current
        progressed = False
        for i in clashing:
            if level[i] < len(options[i]) - 1:
                level[i] += 1
                progressed = True
        if not progressed:
            i = clashing[0]
            j = next(k for k in clashing[1:] if current[k].lower() == current[i].lower())
            raise OutputCollisionError(
                f"{paths[i]} and {paths[j]} would both write to the output folder {current[i]!r}; "
                "rename one of them"
            )
