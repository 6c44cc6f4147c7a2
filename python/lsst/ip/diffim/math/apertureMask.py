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
"""The area of masked pixels inside circular apertures, measured only where sep saw one.

The aperture photometry (`lsst.ip.diffim.apertureFluxes`,
`lsst.ip.diffim.kernelSumCheck`) rejects an aperture that overlaps an
unusable pixel.  Summing a float copy of the whole bad-pixel map over every
aperture cost as much as the photometry itself at 4096^2 (a 64 MB
conversion and a second pass over 15,000 apertures); `maskedOverlap` sums
the boolean map as it is (a ``uint8`` view) and only over the apertures
that sep's own sum already flagged (``APER_HASMASKED``: a masked pixel
within the aperture's outer bound, a superset of those with a non-zero
overlap).  The result is the same overlap, aperture by aperture.
"""

from __future__ import annotations

__all__ = ["maskedOverlap"]

import numpy as np


def maskedOverlap(
    bad: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float, flag: np.ndarray | None = None
) -> np.ndarray:
    """Return the overlap area of each circle with the `True` pixels of ``bad``.

    Parameters
    ----------
    bad : `numpy.ndarray`
        Boolean map of the pixels that spoil an aperture (C-contiguous).
    x, y : `numpy.ndarray`
        Centres (array pixels, float64).
    radius : `float`
        Radius of the circles.
    flag : `numpy.ndarray`, optional
        The flags sep returned for a sum over the same circles with
        ``mask=bad``: only the circles flagged ``APER_HASMASKED`` are
        measured (the others have no masked pixel).  Without it every circle
        is measured.

    Returns
    -------
    overlap : `numpy.ndarray`
        The summed overlap (pixels; 0 where no masked pixel is covered).
    """
    import sep

    mask = np.ascontiguousarray(bad, dtype=bool).view(np.uint8)
    overlap = np.zeros(len(x))
    which = np.arange(len(x)) if flag is None else np.flatnonzero(np.asarray(flag) & sep.APER_HASMASKED)
    if which.size:
        overlap[which], _, _ = sep.sum_circle(
            mask, np.ascontiguousarray(x[which]), np.ascontiguousarray(y[which]), radius
        )
    return overlap
