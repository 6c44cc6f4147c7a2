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
"""Recognising a crowded field from its kernel candidates, and the basis it gets.

A field is crowded when the detection footprints of its stars merge: with
``selectDetection.splitFootprintsAtPeaks`` every candidate carries ``nPeaks``,
the number of peaks of the footprint it was split from.  On the SAAO bulge
frames the median is 915 (one footprint holds most of the image); on a
sparse field it is 1.

In a crowded field every stamp holds many neighbours whose light the kernel
must also match, and there are hundreds of candidates to constrain it, so the
Alard-Lupton basis of upstream's degrees (``[4, 2, 2]``) leaves bright-star
residuals well above HOTPANTS'.  `crowdedBasisDegrees` gives the higher
degrees (``ImagePsfMatchConfig.crowdedAlardDegGauss``, ``[8, 6, 4]``)
then, `ImagePsfMatchTask` only for similar seeing (``crowdedMinFwhmRatio``):
measured with ``bench/bench_crowded.py --cli`` on the bulge pairs
0100/0028 and 0100/0091 (template convolved, as ``--convolve auto`` picks),
median aperture chi^2 of the brightest quartile 2.63/2.44 -> 1.56/1.62
(HOTPANTS' best-chi^2 grid run 1.62/1.83) and a ``|D/sigma| > 5`` fraction
0.16%/0.12% -> 0.13%/0.10% (HOTPANTS' lowest 0.13%/0.11%).

A crowded field's *sharpening* fit (the convolved image's PSF a little the
wider, ``crowdedMaxFwhmRatio``) has its own settings, chosen by
`ImagePsfMatchTask._fitBasis` and passed to the fit as values (no task
state): degrees ``crowdedSharpeningAlardDegGauss = [8, 4, 2]``, two
candidates per cell (``crowdedSharpeningStarsPerCell``) and stamp weights
``1 / (variance + 40 x median variance)`` (``crowdedSharpeningWeightingFloor``,
``kernel.active.varianceWeightingFloor``).  With the broadening fit's
``[8, 6, 4]``, five candidates per cell and constant weights, the kernel of
0100/0028 science-convolved oscillated out to its edge (rings of +/-1.5 in
kernel-sum units at 1-6 px, -0.29 at 7-10 px): the bright-star cores were
fitted (chi^2 3.31) but their wings left ``|D/sigma| > 5`` rings 6-13 px
from the saturated stars, 0.862% of the pixels against 0.722% for HOTPANTS'
lowest run.  The kernel sum was not the cause: scaling the difference to a
kernel sum 1-2% higher (the aperture ratio 1.86) raises the fraction
(0.862% -> 0.893% at +1.5%).  Now chi^2 3.75 and 0.662% (HOTPANTS, scored
with this difference's variance: best chi^2 run 3.91, lowest fraction
0.686%; floor 64 gave 3.57 / 0.676% against HOTPANTS' 3.87 / 0.672%).
Each piece alone, measured with ``bench/bench_crowded.py --cli`` (chi^2 /
fraction): ``[8, 4, 2]`` 3.67 / 0.800%, ``[6, 4, 2]``
4.40 / 0.715%, two candidates per cell 3.11 / 0.780%, both 3.31 / 0.716%;
per-pixel weights (floor 0) 7.38 / 0.659%, floor 16 4.08 / 0.630%, 128
3.49 / 0.689%.
"""

from __future__ import annotations

__all__ = ["crowdedBasisDegrees", "medianFootprintPeaks"]

from collections.abc import Sequence

import numpy as np
from astropy.table import Table


def medianFootprintPeaks(candidates: Table | None) -> float:
    """Return the median ``nPeaks`` of the candidates (1 without that column)."""
    names = getattr(candidates, "colnames", ())
    if candidates is None or "nPeaks" not in names or len(candidates) == 0:
        return 1.0
    return float(np.median(np.asarray(candidates["nPeaks"], dtype=float)))


def crowdedBasisDegrees(
    candidates: Table | None, configured: Sequence[int], crowded: Sequence[int], minPeaks: float
) -> list[int] | None:
    """Return the Alard-Lupton degrees for a crowded field, or `None` to keep the configured ones.

    Parameters
    ----------
    candidates : `astropy.table.Table`
        The kernel candidates (``nPeaks`` column, see `medianFootprintPeaks`).
    configured : sequence of `int`
        The configured degrees (``alardDegGauss``).
    crowded : sequence of `int`
        The degrees for a crowded field; empty: never changed.
    minPeaks : `float`
        The field is crowded when the candidates' median ``nPeaks`` is at
        least this; ``<= 0`` never.

    Returns
    -------
    degrees : `list` [`int`] or `None`
        ``crowded`` when the field is crowded and ``crowded`` has as many
        Gaussians as ``configured`` and raises none of their degrees'
        below the configured ones; otherwise `None`.
    """
    if minPeaks <= 0 or not crowded or len(crowded) != len(configured):
        return None
    if any(c < d for c, d in zip(crowded, configured)):
        return None
    if medianFootprintPeaks(candidates) < minPeaks:
        return None
    return [int(d) for d in crowded]
