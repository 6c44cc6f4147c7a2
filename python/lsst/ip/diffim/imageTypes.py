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
"""What the tasks read of the images they are given, as protocols.

Most task methods take `lsst.images.MaskedImage` (and so its subclasses
`lsst.images.VisitImage` and `lsst.images.DifferenceImage`); a few also
take objects that only look like one, such as a masked image given a PSF
by a wrapper.  These protocols name what such methods read.
"""

from __future__ import annotations

__all__ = ["ExposureLike", "MaskedImageLike"]

from typing import Any, Protocol

from lsst.images import Box, Image, Mask, SkyProjection
from lsst.images.psfs import PointSpreadFunction


class MaskedImageLike(Protocol):
    """Image, mask and variance planes on a box, perhaps with a sky projection.

    `lsst.images.MaskedImage` and its subclasses are such objects.
    """

    @property
    def image(self) -> Image:
        """The image plane."""
        ...

    @property
    def mask(self) -> Mask:
        """The mask plane."""
        ...

    @property
    def variance(self) -> Image:
        """The variance plane."""
        ...

    @property
    def bbox(self) -> Box:
        """The box of the planes (parent pixel coordinates)."""
        ...

    @property
    def sky_projection(self) -> SkyProjection[Any] | None:
        """The pixel-to-sky mapping, if known."""
        ...


class ExposureLike(MaskedImageLike, Protocol):
    """A `MaskedImageLike` with a PSF model, such as `lsst.images.VisitImage`."""

    @property
    def psf(self) -> PointSpreadFunction:
        """The PSF model."""
        ...
