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
"""Checks of the input files of a run, before and around each subtraction."""

from __future__ import annotations

__all__ = ["checkMemory", "checkPair", "fileHasSkyWcs", "readOrFail"]

import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import InputError, MemoryLimitError

if TYPE_CHECKING:
    from lsst.images import MaskedImage

    from ..imagePsfMatch import ImagePsfMatchConfig


def readOrFail[T](reader: Callable[..., T], path: str, **kwargs: object) -> T:
    """Call ``reader(path, **kwargs)``; turn any failure into one `InputError` naming ``path``.

    A file astropy reports as truncated is refused rather than read padded;
    astropy's other warnings about a file (non-standard header cards it
    fixes, as on the ZTF cutouts) are logged, one line each, and the file
    is read.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = reader(path, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # astropy and lsst.images raise many types for damaged files
        text = " ".join(str(exc).split())
        raise InputError(f"{path}: cannot be read ({type(exc).__name__}: {text})") from exc
    log = logging.getLogger("ipdiffim-subtract")
    for item in caught:
        text = " ".join(str(item.message).split())
        if "truncated" in text.lower():
            raise InputError(f"{path}: cannot be read ({item.category.__name__}: {text})")
        log.warning("%s: %s: %s", path, item.category.__name__, text)
    return value


def fileHasSkyWcs(path: str, hdu: int | None = None) -> bool:
    """Whether ``path`` has a celestial WCS, by the rule `readInput` uses.

    ``lsst.images`` files always carry a sky projection; a plain FITS image
    has one when its image HDU's ``CTYPE1`` is a celestial axis and astropy
    parses the WCS.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(path) as hdul:
        names = [h.name.upper() for h in hdul]
        if "IMAGE" in names and "VARIANCE" in names and "JSON" in names:
            return True
        if hdu is None:
            hdu = next((i for i, h in enumerate(hdul) if h.data is not None and h.data.ndim == 2), 0)
        header = hdul[hdu].header
        if not str(header.get("CTYPE1", "")).startswith("RA"):
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return WCS(header, naxis=2).has_celestial
        except Exception:  # astropy raises several types for broken WCS headers
            return False


def checkPair(
    templatePath: str, template: MaskedImage, sciencePath: str, science: MaskedImage, hdu: int | None = None
) -> None:
    """Refuse a template/science pair with a WCS on one side only, or of different sizes without WCSs.

    Raises
    ------
    InputError
        Naming the science file and the exact reason.
    """
    from ..inputChecks import InvalidImageError, checkRegistration

    try:
        checkRegistration(
            fileHasSkyWcs(templatePath, hdu),
            template.image.array.shape,
            fileHasSkyWcs(sciencePath, hdu),
            science.image.array.shape,
        )
    except InvalidImageError as exc:
        raise InputError(f"{sciencePath}: {exc}") from exc


def checkMemory(config: ImagePsfMatchConfig, image: MaskedImage, path: str) -> None:
    """Refuse, before any work, a configuration whose estimated memory exceeds the machine's.

    Raises
    ------
    MemoryLimitError
        With the estimate, what drives it, and the memory available.
    """
    from ..kernel.memoryEstimate import availableMemory, estimateMemory

    estimate = estimateMemory(config.kernel.active, image.image.array.shape)
    available = availableMemory()
    if available is not None and estimate.total > available:
        raise MemoryLimitError(
            f"{path}: this configuration needs {estimate.describe()}, more than the "
            f"{available / 2**30:.1f} GiB available; lower kernel.active.kernelSize, "
            "spatialKernelOrder or nStarPerCell, or use the Alard-Lupton basis"
        )
