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
"""Configuration of the background fit before candidate detection."""

from __future__ import annotations

__all__ = ["SubtractBackgroundConfig"]

import lsst.pex.config as pexConfig


class SubtractBackgroundConfig(pexConfig.Config):
    """Configuration of a binned, smoothed sky-background estimate."""

    binSize = pexConfig.RangeField(
        dtype=int,
        doc="Side (pixels) of the bins in which the background level is estimated.",
        default=128,
        min=1,
    )
    statisticsProperty = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Statistic used for the level of each bin.",
        default="MEANCLIP",
        allowed={"MEANCLIP": "clipped mean", "MEAN": "unclipped mean", "MEDIAN": "median"},
    )
    algorithm = pexConfig.ChoiceField[str](
        dtype=str,
        doc="How the binned levels are interpolated back to pixels.",
        default="AKIMA_SPLINE",
        allowed={
            "CONSTANT": "a single level",
            "LINEAR": "bilinear interpolation",
            "NATURAL_SPLINE": "cubic spline",
            "AKIMA_SPLINE": "Akima spline (robust to outliers)",
        },
    )
    ignoredPixelMask = pexConfig.ListField[str](
        dtype=str,
        doc="Mask planes whose pixels are ignored in the bin statistics.",
        default=["BAD", "EDGE", "DETECTED", "DETECTED_NEGATIVE", "NO_DATA"],
    )
    undersampleStyle = pexConfig.ChoiceField[str](
        dtype=str,
        doc="What to do when there are too few bins for the interpolation algorithm.",
        default="REDUCE_INTERP_ORDER",
        allowed={
            "THROW_EXCEPTION": "raise an error",
            "REDUCE_INTERP_ORDER": "use the highest-order interpolation the bins allow",
        },
    )
