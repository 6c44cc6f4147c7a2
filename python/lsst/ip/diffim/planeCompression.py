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
"""Which FITS planes are compressed, for the command line and for a Butler datastore.

Measured on a 4096^2 product: lossless ``GZIP_2`` tile compression of a
float32 noise plane takes 2-5 s and saves about 10 % of its size (noise
hardly compresses); the same plane written plainly takes 0.1 s.  The mask
(integer bits, mostly zero) is where compression pays: ``RICE_1``, lossless
on integers, writes it in about 0.1 s at 1/25 of its size.  ``"mask"``
therefore writes the image and variance planes uncompressed and the mask
with ``RICE_1``; ``"all"`` adds lossless ``GZIP_2`` for the float planes
(``lsst.images``' own default), ``"none"`` writes every plane plainly.

`PlaneCompressionFormatter` makes the same choice in a Butler repository:
the ``lsst.images`` formatter, whose compression recipes cannot leave a
plane uncompressed, with a ``compress`` write parameter.  Configure it in
the repository's datastore for the storage classes it should write, e.g.::

    datastore:
      formatters:
        VisitImage:
          formatter: lsst.ip.diffim.planeCompression.PlaneCompressionFormatter
          parameters:
            compress: mask

(``ipdiffim-make-demo-repo`` does so for ``VisitImage`` and ``DifferenceImage``.)
Its writes also pack the mask planes in one pass
(`lsst.ip.diffim.adapters.maskWriting.fastMaskWrites`, the same bytes as
`lsst.images` writes), which at 4096^2 saves about a second per image.
"""

from __future__ import annotations

__all__ = ["COMPRESSION_CHOICES", "PlaneCompressionFormatter", "planeCompressionOptions"]

from typing import TYPE_CHECKING, Any, ClassVar

from lsst.images.formatters import GenericFormatter

if TYPE_CHECKING:
    from lsst.resources import ResourcePath

#: The choices of plane compression.
COMPRESSION_CHOICES = ("mask", "all", "none")


def planeCompressionOptions(choice: str = "mask") -> dict[str, Any]:
    """Return ``compression_options`` for `lsst.images` FITS writes.

    Parameters
    ----------
    choice : `str`
        ``"mask"`` (lossless ``RICE_1`` for the mask plane only), ``"all"``
        (also lossless ``GZIP_2`` for the image and variance planes) or
        ``"none"``.

    Returns
    -------
    options : `dict`
        Keyed by plane name (``image``, ``mask``, ``variance``); `None`
        writes a plane uncompressed.  Other arrays (PSF, kernel) keep the
        library's default.

    Raises
    ------
    ValueError
        For an unknown choice.
    """
    if choice not in COMPRESSION_CHOICES:
        raise ValueError(f"unknown compression {choice!r}; choose one of {', '.join(COMPRESSION_CHOICES)}")
    from lsst.images.fits import FitsCompressionAlgorithm, FitsCompressionOptions

    rice = FitsCompressionOptions(algorithm=FitsCompressionAlgorithm.RICE_1)
    floats = FitsCompressionOptions(algorithm=FitsCompressionAlgorithm.GZIP_2) if choice == "all" else None
    return {"image": floats, "variance": floats, "mask": None if choice == "none" else rice}


class PlaneCompressionFormatter(GenericFormatter):
    """The `lsst.images` Butler formatter with the plane compression of the command line.

    The ``compress`` write parameter is a `planeCompressionOptions` choice
    (``mask`` if absent); without it, or with the ``recipe`` parameter, the
    formatter behaves as `lsst.images.formatters.GenericFormatter`.
    """

    supported_write_parameters: ClassVar[frozenset[str]] = GenericFormatter.supported_write_parameters | {
        "compress"
    }

    def _get_compression_options(self) -> dict[str, Any]:
        if "recipe" in self.write_parameters:
            return super()._get_compression_options()
        return planeCompressionOptions(self.write_parameters.get("compress", "mask"))

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        """Write the dataset as `GenericFormatter` does, its mask planes packed in one pass."""
        from lsst.images import Mask

        from .adapters.maskWriting import fastMaskWrites

        masked = [in_memory_dataset] if isinstance(getattr(in_memory_dataset, "mask", None), Mask) else []
        with fastMaskWrites(*masked):
            super().write_local_file(in_memory_dataset, uri)

    def read(self, component: str | None = None, expected_size: int = -1, cache_manager: Any = None) -> Any:
        """Read the dataset as `GenericFormatter` does, its mask planes merged in one pass."""
        from .adapters.maskReading import fastMaskReads

        with fastMaskReads():
            return super().read(component, expected_size, cache_manager)
