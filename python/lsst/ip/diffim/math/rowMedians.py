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
"""Medians of the usable elements of each row of a 2-d array, all rows in one partition.

`numpy.nanmedian` along an axis runs one Python-level median per row when
the rows are long; `rowMedians` sets the unusable elements of each row half
to ``-inf`` and half to ``+inf``, so that the middle elements of the whole
row are the middle elements of its usable ones, and one `numpy.partition`
serves every row.  The values are those `numpy.median` gives for each row's
usable elements, in the array's precision.
"""

from __future__ import annotations

__all__ = ["rowMedians"]

import numpy as np


def rowMedians(
    values: np.ndarray, usable: np.ndarray | None = None, *, overwrite: bool = False
) -> np.ndarray:
    """Return the median of the usable elements of each row.

    Parameters
    ----------
    values : `numpy.ndarray`
        2-d floating-point array.
    usable : `numpy.ndarray`, optional
        Boolean array of ``values``' shape; by default the elements that
        are not NaN.
    overwrite : `bool`, optional
        Let the function reorder and change ``values`` (no copy).

    Returns
    -------
    medians : `numpy.ndarray`
        One float64 value per row; NaN for a row without usable elements.
    """
    work = np.asarray(values)
    if not np.issubdtype(work.dtype, np.floating):
        work = work.astype(np.float64)
    elif not overwrite:
        work = work.copy()
    if work.ndim != 2:
        raise ValueError(f"rowMedians needs a 2-d array, not one of shape {work.shape}.")
    nRows, k = work.shape
    if usable is None:
        usable = ~np.isnan(work)
    n = np.count_nonzero(usable, axis=1)
    nLow = (k - n) // 2
    if not usable.all():
        bad = ~usable
        rank = np.cumsum(bad, axis=1, dtype=np.int32)  # 1-based rank of each unusable element in its row
        work[bad] = np.inf
        work[bad & (rank <= nLow[:, None])] = -np.inf
    lo = nLow + (n - 1) // 2
    hi = nLow + n // 2
    has = n > 0
    medians = np.full(nRows, np.nan)
    kth = np.unique(np.concatenate([lo[has], hi[has]]))
    if kth.size == 0:
        return medians
    work.partition(kth, axis=1)
    rows = np.arange(nRows)
    lower = work[rows, np.clip(lo, 0, k - 1)]
    upper = work[rows, np.clip(hi, 0, k - 1)]
    with np.errstate(invalid="ignore"):  # -inf + inf in rows with no usable element
        middle = (lower + upper) / work.dtype.type(2)
    medians[has] = middle[has]
    return medians
