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
"""A `sep` mesh background of an image, kept so that a later step on the same pixels can reuse it.

The candidate detection of `lsst.ip.diffim.ImagePsfMatchTask` and the
variable-candidate screen that follows it (`lsst.ip.diffim.apertureFluxes`)
both fit a `sep.Background` with 64-pixel boxes to the template; at
4096^2 one such fit takes 0.3 s.  The screen reuses the detection's when
it would have fitted the same one: same box, same pixels left out, the
image itself (not its negative) and float32 pixels (what `sep` fits in).
"""

from __future__ import annotations

__all__ = ["MeshBackground"]

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MeshBackground:
    """A `sep.Background` fitted to an image's float32 pixels.

    Attributes
    ----------
    background : `sep.Background`
        The fitted background.
    box : `int`
        Its box width and height (pixels).
    masked : `numpy.ndarray` or `None`
        The pixels left out of the fit (boolean, the image's shape), or
        `None` if none was.
    """

    background: Any
    box: int
    masked: np.ndarray | None

    def fits(self, bad: np.ndarray, box: int) -> bool:
        """Return whether fitting ``box`` boxes without the ``bad`` pixels would give this background.

        Parameters
        ----------
        bad : `numpy.ndarray`
            Boolean pixels a new fit would leave out.
        box : `int`
            Its box size.
        """
        if box != self.box:
            return False
        if self.masked is None:
            return not bad.any()
        return self.masked.shape == bad.shape and bool(np.array_equal(self.masked, bad))
