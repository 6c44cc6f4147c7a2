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
"""One-call subtraction of a synthetic pair, as the tests call `lsst.ip.diffim.subtract`."""

from __future__ import annotations

__all__ = ["subtractSyntheticPair"]

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..notebook import DifferenceResult
    from ..syntheticPairs import SyntheticPair


def subtractSyntheticPair(
    pair: SyntheticPair,
    *,
    templateFwhm: float = 3.0,
    scienceFwhm: float = 4.5,
    **kwargs: object,
) -> DifferenceResult:
    """Subtract a `~lsst.ip.diffim.syntheticPairs.SyntheticPair` with `lsst.ip.diffim.subtract`.

    Parameters
    ----------
    pair : `lsst.ip.diffim.syntheticPairs.SyntheticPair`
        The pair; its images and variance planes are passed.
    templateFwhm, scienceFwhm : `float`, optional
        PSF FWHMs (pixels); the defaults are those of `makeSyntheticPair`'s
        default PSFs at the image centre.
    **kwargs
        Further arguments of `lsst.ip.diffim.subtract` (``config``,
        ``detect``, ``stamps``, ...).

    Returns
    -------
    result : `lsst.ip.diffim.DifferenceResult`
        What `lsst.ip.diffim.subtract` returns.
    """
    from ..notebook import subtract

    return subtract(
        pair.template,
        pair.science,
        templateVariance=pair.templateVariance,
        scienceVariance=pair.scienceVariance,
        templateFwhm=templateFwhm,
        scienceFwhm=scienceFwhm,
        **kwargs,  # type: ignore[arg-type]
    )
