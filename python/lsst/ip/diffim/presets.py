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
"""Named configuration presets of `ImagePsfMatchConfig`.

A preset is a few config settings under one name, measured to help a kind of
data (``bench/bench_crowded.py``); ``ipdiffim-subtract --preset NAME`` and
``applyPreset(config, NAME)`` apply one, after which ``-c`` overrides still
apply.

Measured with ``bench/bench_crowded.py --cli --pairs 0100:0028 0100:0091``
(whole ``ipdiffim-subtract --saturation 60000`` runs; median aperture chi^2
of the brightest quartile of unsaturated stars / fraction of pixels with
``|D/sigma| > 5``, SAT pixels excluded; HOTPANTS' best of a 36-run grid):

``crowded``
    A pixel-level kernel for crowded fields of similar seeing: the
    regularized delta-function basis (``kernel.name = "DF"``) fitted
    directly in the spatial model (``usePcaForSpatialKernel = False``, no
    PCA truncation), with the differential background fitted.  The basis
    that closes the gap to SFFT on the SAAO bulge pairs 0100/0028 and
    0100/0091 (FWHM 4.5 vs 4.7 px): template convolved, chi^2 0.87/1.00
    against 1.55/1.62 at the defaults and 1.62/1.83 for HOTPANTS' best run,
    with a ``|D/sigma| > 5`` fraction of 0.149%/0.102% (defaults
    0.131%/0.098%, HOTPANTS' lowest 0.130%/0.111%).  On pairs of very
    different seeing (0015 with 0028/0091/0100) its ``|D/sigma| > 5``
    fraction doubles.  Hence a preset, not the default.

    Which is better: the preset for the photometry of bright stars, the
    defaults for finding what changed.  Re-measured after the crowded
    sharpening fix (the same bench, the bench's variance of that session):
    science convolved on 0100/0028 the preset leaves chi^2 2.74 and
    1.22% of the pixels beyond 5 sigma, the defaults 3.31 and 0.87%
    (HOTPANTS ``-c i`` at best 4.2, lowest fraction 0.72%, or 1.05% with
    its difference normalized by its own star-free noise); template
    convolved 1.25 and 0.216% against 2.37 and 0.195%.  The extra
    outliers of the pixel-level kernel are what a transient search counts
    as false detections.

    Session 7 (issue 18), the same bench (``bench_crowded`` now scores the
    delta-function kernel inside its true 21 px border), chi^2 /
    ``|D/sigma| > 5`` fraction per pair and convolved image (T template,
    S science); SFFT leaves chi^2 1.4-1.6 on these pairs:

    ============================  ============  ============  ============  ============
    basis                         0028 T        0028 S        0091 T        0091 S
    ============================  ============  ============  ============  ============
    defaults                      2.41 / 0.195  3.75 / 0.662  2.20 / 0.160  1.99 / 0.098
    ``crowded`` (this preset)     1.28 / 0.214  2.85 / 1.233  1.42 / 0.148  1.52 / 0.041
    AL ``[10, 8, 6]``             2.01 / 0.208                2.91 / 0.473
    AL 10 candidates per cell     2.49 / 0.198  3.65 / 0.890* 2.27 / 0.158
    AL kernel 27 px               2.44 / 0.207                2.43 / 0.167
    ============================  ============  ============  ============  ============

    (percentages; the AL rows change the defaults by one setting; empty:
    not measured; * against the session-6 sharpening fit, 3.32 / 0.862).
    ``kernel.active.lambdaValue = 2`` (ten times the preset's) moves no
    number by more than 0.04 in chi^2 or 0.01% (scored in the bench's old
    35 px border).  The pixel-level basis is the one that reaches SFFT's
    residuals (three of the four rows within 1.3-1.5), the Alard-Lupton
    variants do not; it stays a
    preset because it raises the fraction on 0028 (1.23% against 0.66%
    science-convolved, 0.214% against 0.195% template-convolved) and its fit
    costs about twice the CPU time (17 s against 9 s user for a 430 x 469
    pair on a loaded machine).
``crowded-al``
    The Alard-Lupton basis with higher polynomial degrees
    (``alardDegGauss = [8, 6, 4]``, upstream's default being ``[4, 2, 2]``),
    whatever the field.  The defaults already take these degrees in a
    crowded field of similar seeing (``ImagePsfMatchConfig.crowdedAlardDegGauss``,
    `lsst.ip.diffim.crowdedField`); the preset forces them elsewhere too
    (bright-star chi^2 lower than with upstream's degrees on every bulge pair
    tried, 0015 with 0028/0091/0100 and 0001 with 0037, with a
    ``|D/sigma| > 5`` fraction within 0.2% of theirs).
"""

from __future__ import annotations

__all__ = ["PRESETS", "UnknownPresetError", "applyPreset"]

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .imagePsfMatch import ImagePsfMatchConfig


class UnknownPresetError(ValueError):
    """No configuration preset has this name."""


def _crowded(config: ImagePsfMatchConfig) -> None:
    config.kernel.name = "DF"
    active = config.kernel.active
    active.usePcaForSpatialKernel = False
    active.fitForBackground = True


def _crowdedAl(config: ImagePsfMatchConfig) -> None:
    config.kernel.name = "AL"
    active = config.kernel.active
    active.alardDegGauss = [8, 6, 4]
    active.fitForBackground = True


#: The presets, by name: each sets fields of an `ImagePsfMatchConfig` in place.
PRESETS: dict[str, Callable[[ImagePsfMatchConfig], None]] = {"crowded": _crowded, "crowded-al": _crowdedAl}


def applyPreset(config: ImagePsfMatchConfig, name: str) -> ImagePsfMatchConfig:
    """Apply the named preset to an `ImagePsfMatchConfig` (in place) and return it.

    Raises
    ------
    UnknownPresetError
        If ``name`` is not one of `PRESETS`.
    """
    try:
        preset = PRESETS[name]
    except KeyError:
        raise UnknownPresetError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
    preset(config)
    return config
