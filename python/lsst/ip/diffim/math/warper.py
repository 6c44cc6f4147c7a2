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
"""Configuration of image resampling (afw's ``WarperConfig``)."""

from __future__ import annotations

__all__ = ["WarperConfig"]

import lsst.pex.config as pexConfig


class WarperConfig(pexConfig.Config):
    """Configuration of the resampling of a template onto the science grid."""

    warpingKernelName = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Interpolation kernel used to resample the image and variance planes.",
        default="lanczos3",
        allowed={
            "bilinear": "bilinear interpolation",
            "lanczos3": "Lanczos kernel of order 3",
            "lanczos4": "Lanczos kernel of order 4",
            "lanczos5": "Lanczos kernel of order 5",
        },
    )
    maskWarpingKernelName = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Interpolation kernel used for the mask plane; mask bits are OR-ed over its footprint.",
        default="bilinear",
        allowed={
            "": "use the image warping kernel",
            "bilinear": "bilinear interpolation",
            "lanczos3": "Lanczos kernel of order 3",
        },
    )
    interpLength = pexConfig.Field[int](
        dtype=int,
        doc="Distance (pixels) over which the coordinate transform is linearly interpolated; "
        "0 evaluates it at every pixel.",
        default=10,
        check=lambda x: x >= 0,
    )
    growFullMask = pexConfig.Field[int](
        dtype=int,
        doc="Mask bits (as an integer) that are grown by the full warping kernel instead of the mask kernel.",
        default=0,
    )
