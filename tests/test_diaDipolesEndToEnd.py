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
"""Dipoles through the whole subtraction: misregistered bright stars and transients.

Each pair (`makeMisregisteredPair`: 250 field stars, spatially varying
elliptical science PSF) holds 8 bright stars shifted by 0.3-0.5 px in random
directions and 8 transients; ``ipDiffim.subtract(..., detect=True)`` runs the
real kernel fit, convolution, subtraction, detection and measurement.  The
misregistered stars must be classified as dipoles, with their separation
and orientation; the transients must not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsst.ip.diffim import notebook
from lsst.ip.diffim.syntheticPairs import makeMisregisteredPair

SEEDS = (0, 1, 2, 3)


def _nearest(table, x: float, y: float) -> tuple[int, float]:
    """The DIA source whose dipole centre or centroid is nearest to (x, y)."""
    d = np.fmin(
        np.hypot(np.asarray(table["x"]) - x, np.asarray(table["y"]) - y),
        np.hypot(np.asarray(table["dipole_x"]) - x, np.asarray(table["dipole_y"]) - y),
    )
    d = np.where(np.isfinite(d), d, np.inf)
    k = int(np.argmin(d))
    return k, float(d[k])


@pytest.fixture(scope="module")
def endToEnd():
    rows, transients = [], []
    for seed in SEEDS:
        pair = makeMisregisteredPair(seed)
        result = notebook.subtract(
            pair.template, pair.science, templateVariance=pair.templateVariance,
            scienceVariance=pair.scienceVariance, templateFwhm=3.0, scienceFwhm=4.5, detect=True,
        )  # fmt: skip
        table = result.diaSources
        for x, y, _, dx, dy in pair.extra["shifts"]:
            k, dist = _nearest(table, x + 0.5 * dx, y + 0.5 * dy)
            rows.append((dist, table[k], dx, dy))
        for x, y, flux in pair.transients:
            k, dist = _nearest(table, x, y)
            transients.append((dist, table[k], flux))
    return rows, transients


def test_misregistered_bright_stars_are_dipoles(endToEnd):
    """>= 90% of the 0.3-0.5 px misregistrations are dipoles, with their separation and orientation."""
    rows, _ = endToEnd
    isDipole = np.array([dist < 2.0 and bool(row["isDipole"]) for dist, row, _, _ in rows])
    assert len(rows) == 8 * len(SEEDS)
    assert isDipole.mean() >= 0.9, isDipole.mean()
    sepErr, angleErr = [], []
    for (_, row, dx, dy), ok in zip(rows, isDipole, strict=True):
        if not ok:
            continue
        sepErr.append(row["dipole_separation"] - math.hypot(dx, dy))
        delta = row["dipole_orientation"] - math.degrees(math.atan2(dy, dx))
        angleErr.append((delta + 180.0) % 360.0 - 180.0)
    assert np.median(np.abs(sepErr)) < 0.15, np.median(np.abs(sepErr))
    assert np.median(np.abs(angleErr)) < 20.0, np.median(np.abs(angleErr))


def test_transients_are_point_sources(endToEnd):
    """Every transient is detected near its position, none is a dipole, its PSF flux is near the truth."""
    _, transients = endToEnd
    assert all(dist < 1.5 for dist, _, _ in transients)
    assert not any(bool(row["isDipole"]) for _, row, _ in transients)
    ratios = [row["psfFlux"] / flux for _, row, flux in transients if flux > 1e4]
    assert abs(np.median(ratios) - 1.0) < 0.05, np.median(ratios)
