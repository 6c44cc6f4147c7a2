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
"""Progress and arithmetic rate of the one-at-a-time candidate builds.

Large bases (the delta-function basis: 441 terms) are built and solved one
candidate at a time, seconds to minutes for a field.  `BuildProgress` logs
a line at most every `INTERVAL_SECONDS` ("built 300/1280 candidate
systems, 21.4 GFLOP/s") and a last one with the totals, counting the
floating-point work of each system: ``M = C^T C`` and ``b = C^T d``
(``2 nloc^2 npix + 2 nloc npix``) and its factorization
(``2/3 nloc^3``), so the rate can be set beside a plain matrix multiply
of the same shapes.  The caller times each build in the CPU time of its
thread (`time.thread_time`), so that the rate means the same on a loaded
machine; the progress lines' elapsed seconds are wall time.
"""

from __future__ import annotations

__all__ = ["INTERVAL_SECONDS", "BuildProgress", "systemFlops"]

import logging
import time

#: Least time between two progress lines.
INTERVAL_SECONDS = 5.0


def systemFlops(nloc: int, npix: int) -> float:
    """Floating-point operations to build and factor one candidate's system."""
    return 2.0 * nloc * nloc * npix + 2.0 * nloc * npix + (2.0 / 3.0) * nloc**3


class BuildProgress:
    """Count built candidate systems; log progress lines and a summary.

    Parameters
    ----------
    total : `int`
        Candidates to build.
    log : `logging.Logger`
        Where the lines go (INFO).
    minTotal : `int`, optional
        Fewer candidates than this log nothing (small fits).
    """

    def __init__(self, total: int, log: logging.Logger, minTotal: int = 50) -> None:
        self.total = int(total)
        self.log = log
        self.enabled = self.total >= minTotal
        self.done = 0
        self.flops = 0.0
        self.seconds = 0.0
        self._start = time.perf_counter()
        self._lastLine = self._start

    def add(self, seconds: float, nloc: int | None, npix: int | None) -> None:
        """Count one candidate built in ``seconds`` of CPU (shape unknown: no flops counted)."""
        self.done += 1
        self.seconds += seconds
        if nloc and npix:
            self.flops += systemFlops(nloc, npix)
        now = time.perf_counter()
        if self.enabled and now - self._lastLine >= INTERVAL_SECONDS and self.done < self.total:
            self._lastLine = now
            self.log.info(
                "built %d/%d candidate systems (%.0f s, %.1f GFLOP/s)",
                self.done,
                self.total,
                now - self._start,
                self.rate(),
            )

    def rate(self) -> float:
        """GFLOP/s over the CPU time spent building and solving."""
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def finish(self) -> None:
        """Log the totals (if enabled)."""
        if self.enabled and self.done:
            self.log.info(
                "built %d candidate systems in %.1f s: %.2f GFLOP in %.1f s of CPU building and solving, "
                "%.1f GFLOP/s",
                self.done,
                time.perf_counter() - self._start,
                self.flops / 1e9,
                self.seconds,
                self.rate(),
            )
