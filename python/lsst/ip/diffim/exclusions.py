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
"""Positions kept out of the kernel fit, and user stamp lists.

Positions come as ``(x, y)`` pairs (a sequence or an ``(n, 2)`` array, in
the library's 0-based parent pixel coordinates), or as a file:

- a text file of ``x y`` (optionally ``x y radius``) lines, in FITS 1-based
  pixel coordinates like HOTPANTS' ``-ssf`` stamp files and ds9's
  ``image`` system (``#`` starts a comment);
- a ds9 region file (read with astropy's `regions` package): circles and
  points, in ``image``/``physical`` coordinates or in sky coordinates
  (``fk5``, ``icrs``, ...), the latter converted with the image's WCS.

Excluded positions keep every candidate within a kernel half-width of them
(or of their circle) out of the kernel fit (a stamp-wide margin would empty
small cutouts), and their circles, widened by `EXTENT_FWHM` PSF FWHMs, are
replaced by sky in the images the fit sees (`excludedForFit`), so that the
stamps of other stars that cover them (all stamps of an alert cutout do)
are not pulled by the excluded source; a stamp list gives the candidates
themselves (the detection is skipped).
"""

from __future__ import annotations

__all__ = [
    "EXTENT_FWHM",
    "ExclusionRegions",
    "candidateArguments",
    "excludedForFit",
    "PositionListError",
    "PositionSpec",
    "parseExcludeArguments",
    "readFitsWcs",
    "readPositions",
    "stampListTable",
]

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from astropy.table import Table

if TYPE_CHECKING:
    from astropy.wcs import WCS

    from lsst.images import MaskedImage

#: What `readPositions` reads: a file name, or ``(x, y)`` / ``(x, y, radius)`` rows.
type PositionSpec = str | os.PathLike[str] | npt.ArrayLike


class PositionListError(ValueError):
    """A position list (excluded positions or stamps) cannot be read or used."""


def _isRegionFile(text: str) -> bool:
    head = text.lower()
    return any(word in head for word in ("circle(", "point(", "# region file", "image\n", "fk5", "icrs"))


def _parseText(text: str, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, rs = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.replace(",", " ").split()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            message = f"{path}:{number}: expected 'x y' or 'x y radius', got {line!r}"
            raise PositionListError(message) from None
        if len(values) not in (2, 3):
            raise PositionListError(f"{path}:{number}: expected 'x y' or 'x y radius', got {line!r}")
        # FITS 1-based pixel centres -> 0-based parent coordinates.
        xs.append(values[0] - 1.0)
        ys.append(values[1] - 1.0)
        rs.append(values[2] if len(values) == 3 else 0.0)
    return np.array(xs, dtype=float), np.array(ys, dtype=float), np.array(rs, dtype=float)


def _parseRegions(text: str, path: str, wcs: WCS | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        import regions
    except ImportError as exc:  # a declared dependency; guard against broken installs
        raise PositionListError(f"{path}: reading ds9 region files needs the 'regions' package") from exc
    try:
        parsed = regions.Regions.parse(text, format="ds9")
    except Exception as exc:  # regions raises several types for malformed files
        raise PositionListError(f"{path}: not a readable ds9 region file ({exc})") from exc
    xs, ys, rs = [], [], []
    for region in parsed:
        if isinstance(region, regions.SkyRegion):
            if wcs is None:
                raise PositionListError(
                    f"{path}: sky-coordinate regions need an image WCS; the image has none (use 'image' "
                    "coordinates)"
                )
            region = region.to_pixel(wcs)
        if isinstance(region, regions.CirclePixelRegion):
            radius = float(region.radius)
        elif isinstance(region, regions.PointPixelRegion):
            radius = 0.0
        else:
            raise PositionListError(
                f"{path}: only circle and point regions are supported, not {type(region).__name__}"
            )
        # regions already gives 0-based pixel coordinates.
        xs.append(float(region.center.x))
        ys.append(float(region.center.y))
        rs.append(radius)
    return np.array(xs, dtype=float), np.array(ys, dtype=float), np.array(rs, dtype=float)


def readPositions(
    spec: PositionSpec, *, wcs: WCS | None = None, x0: int = 0, y0: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read positions as 0-based parent pixel coordinates with radii.

    Parameters
    ----------
    spec : `str`, `os.PathLike`, sequence of pairs or `numpy.ndarray`
        A file (text list or ds9 region file, see the module docs) or
        ``(x, y)`` / ``(x, y, radius)`` rows in 0-based pixel coordinates
        of the image array.
    wcs : `astropy.wcs.WCS`, optional
        Converts sky regions to pixels.
    x0, y0 : `int`, optional
        Origin of the image's parent coordinates (added to array and file
        positions, which count from the first pixel of the image).

    Returns
    -------
    x, y, radius : `numpy.ndarray`
        Parent pixel coordinates and radii (pixels; 0 for points).

    Raises
    ------
    PositionListError
        For a missing or malformed file, or rows that are not pairs.
    """
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        if not os.path.exists(path):
            raise PositionListError(f"{path}: no such position or region file")
        with open(path, encoding="utf-8", errors="replace") as stream:
            text = stream.read()
        x, y, r = _parseRegions(text, path, wcs) if _isRegionFile(text) else _parseText(text, path)
    else:
        rows = np.asarray(spec, dtype=float)
        if rows.size == 0:
            rows = rows.reshape(0, 2)
        if rows.ndim == 1 and rows.size in (2, 3):
            rows = rows.reshape(1, -1)
        if rows.ndim != 2 or rows.shape[1] not in (2, 3):
            raise PositionListError(
                f"positions must be (x, y) or (x, y, radius) rows, got shape {rows.shape}"
            )
        x, y = rows[:, 0].copy(), rows[:, 1].copy()
        r = rows[:, 2].copy() if rows.shape[1] == 3 else np.zeros(len(rows))
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(r))):
        raise PositionListError("positions must be finite")
    if np.any(r < 0):
        raise PositionListError("radii must not be negative")
    return x + x0, y + y0, r


@dataclass(frozen=True)
class ExclusionRegions:
    """Circles (parent pixel coordinates) kept out of the kernel fit.

    Attributes
    ----------
    x, y : `numpy.ndarray`
        Centres (0-based parent pixel coordinates).
    radius : `numpy.ndarray`
        Radii in pixels (0: a point).
    """

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray

    @classmethod
    def fromSpec(
        cls,
        spec: ExclusionRegions | PositionSpec,
        *,
        wcs: WCS | None = None,
        x0: int = 0,
        y0: int = 0,
        radius: float = 0.0,
    ) -> ExclusionRegions:
        """Build from what `readPositions` reads (or several such, in a list of files).

        ``radius`` is the smallest radius given to every position.
        """
        if isinstance(spec, ExclusionRegions):
            return spec
        specs: Sequence[PositionSpec]
        if isinstance(spec, (list, tuple)) and spec and all(isinstance(s, (str, os.PathLike)) for s in spec):
            specs = spec
        else:
            specs = [spec]
        parts = [readPositions(s, wcs=wcs, x0=x0, y0=y0) for s in specs]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        r = np.maximum(np.concatenate([p[2] for p in parts]), float(radius))
        return cls(x, y, r)

    def __len__(self) -> int:
        return len(self.x)

    def nearCandidates(self, candidates: Table, margin: float = 0.0) -> np.ndarray:
        """Return, per candidate, whether an excluded circle lies within ``margin`` of its centre.

        A candidate (``x``, ``y`` parent pixels) is excluded when its centre
        is within ``radius + margin`` of an excluded position; with the
        kernel half-width as the margin, no kernel fitted on a kept
        candidate reaches an excluded position from the candidate's star.
        """
        n = len(candidates)
        if n == 0 or len(self) == 0:
            return np.zeros(n, dtype=bool)
        cx = np.asarray(candidates["x"], dtype=float)[:, None]
        cy = np.asarray(candidates["y"], dtype=float)[:, None]
        distance = np.hypot(cx - self.x[None, :], cy - self.y[None, :])
        return np.any(distance <= self.radius[None, :] + margin, axis=1)


def stampListTable(spec: Table | PositionSpec, *, wcs: WCS | None = None, x0: int = 0, y0: int = 0) -> Table:
    """Return a user stamp list as a candidate table (``x``, ``y`` columns).

    Parameters
    ----------
    spec : `astropy.table.Table`, `str`, `os.PathLike`, sequence of pairs or `numpy.ndarray`
        As `readPositions` (radii are ignored); a table is returned as it is.

    Raises
    ------
    PositionListError
        If the list is empty or unreadable.
    """
    if isinstance(spec, Table):
        return spec
    x, y, _ = readPositions(spec, wcs=wcs, x0=x0, y0=y0)
    if len(x) == 0:
        raise PositionListError("the stamp list is empty")
    return Table({"id": np.arange(1, len(x) + 1, dtype=np.int64), "x": x, "y": y})


def readFitsWcs(path: str, hdu: int | None = None) -> WCS | None:
    """Return the celestial `astropy.wcs.WCS` of a FITS image, or `None` if it has none."""
    from astropy.io import fits
    from astropy.wcs import WCS

    try:
        with fits.open(path) as hdul:
            index = hdu
            if index is None:
                index = next((i for i, h in enumerate(hdul) if h.data is not None and h.data.ndim == 2), 0)
            header = hdul[index].header
            if not str(header.get("CTYPE1", "")).upper().startswith(("RA", "GLON", "ELON")):
                return None
            return WCS(header, naxis=2)
    except Exception:  # astropy raises several types for broken files/headers
        return None


def parseExcludeArguments(
    values: Sequence[Sequence[str]], *, wcs: WCS | None = None, x0: int = 0, y0: int = 0, radius: float = 0.0
) -> ExclusionRegions:
    """Turn command-line ``--exclude`` values into `ExclusionRegions`.

    Each value is ``X Y`` (FITS 1-based pixel coordinates, as ds9 shows
    them) or one file name (a text list or a ds9 region file).

    Raises
    ------
    PositionListError
        For a value that is neither.
    """
    rows: list[tuple[float, float, float]] = []
    files: list[str] = []
    for value in values:
        if len(value) == 1:
            files.append(value[0])
            continue
        try:
            numbers = [float(v) for v in value]
        except ValueError:
            message = f"--exclude takes 'X Y' or a file name, got {' '.join(value)!r}"
            raise PositionListError(message) from None
        if len(numbers) != 2:
            raise PositionListError(f"--exclude takes 'X Y' or a file name, got {' '.join(value)!r}")
        rows.append((numbers[0] - 1.0, numbers[1] - 1.0, 0.0))
    parts = [readPositions(np.array(rows).reshape(-1, 3), x0=x0, y0=y0)] if rows else []
    parts += [readPositions(path, wcs=wcs, x0=x0, y0=y0) for path in files]
    if not parts:
        return ExclusionRegions(np.zeros(0), np.zeros(0), np.zeros(0))
    return ExclusionRegions(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.maximum(np.concatenate([p[2] for p in parts]), float(radius)),
    )


def candidateArguments(
    args: argparse.Namespace, sciencePath: str, science: MaskedImage
) -> tuple[Table | None, ExclusionRegions | None]:
    """Return the stamp list and exclusions of ``ipdiffim-subtract``'s ``--stamps``/``--exclude``.

    Positions are on the science image's grid (``sciencePath`` gives its WCS
    for sky regions).

    Raises
    ------
    PositionListError
        For unreadable lists (a `ValueError`, reported by the CLI).
    """
    if not getattr(args, "stamps", None) and not getattr(args, "exclude", None):
        return None, None
    wcs = readFitsWcs(sciencePath, getattr(args, "hdu", None))
    x0, y0 = science.bbox.x.start, science.bbox.y.start
    stamps = stampListTable(args.stamps, wcs=wcs, x0=x0, y0=y0) if args.stamps else None
    exclude = None
    if args.exclude:
        exclude = parseExcludeArguments(args.exclude, wcs=wcs, x0=x0, y0=y0, radius=args.exclude_radius)
    return stamps, exclude


#: Without a user radius, an excluded position covers this many PSF FWHMs (its source's light).
EXTENT_FWHM = 3.0


def excludedForFit(
    template: MaskedImage, science: MaskedImage, regions: ExclusionRegions | None, extent: float
) -> tuple[MaskedImage, MaskedImage]:
    """Return copies of two masked images with the excluded circles replaced by sky, for the kernel fit.

    Every stamp of a small image (a 63x63 alert cutout) covers the excluded
    source, so dropping the candidates near it is not enough: in the images
    the fit sees, the pixels within ``radius + extent`` of each excluded
    position are set, in both images, to the local sky (median of the
    annulus 4 px wide around the circle) plus Gaussian noise of the pixel's
    variance (seeded by the position, so runs repeat).  Where both images
    hold only sky, any kernel fits, so the excluded source does not pull
    the solution; the convolution and the difference use the original
    images.

    Parameters
    ----------
    template, science : `lsst.images.MaskedImage`
        The images of the fit (same box).
    regions : `ExclusionRegions` or `None`
        Excluded circles (parent pixel coordinates); `None` or empty
        returns the inputs unchanged.
    extent : `float`
        Pixels added to each radius (the excluded source's light, e.g.
        `EXTENT_FWHM` times the PSF FWHM).

    Returns
    -------
    template, science : `lsst.images.MaskedImage`
        The patched copies (or the inputs).
    """
    if regions is None or len(regions) == 0:
        return template, science
    from lsst.images import Image, MaskedImage

    bbox = template.bbox
    ny, nx = template.image.array.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    xx = xx + bbox.x.start
    yy = yy + bbox.y.start
    out = []
    for mi in (template, science):
        image = np.array(mi.image.array, dtype=np.float32, copy=True)
        variance = np.asarray(mi.variance.array, dtype=np.float32)
        for x, y, radius in zip(regions.x, regions.y, regions.radius, strict=True):
            outer = float(radius) + float(extent)
            distance = np.hypot(xx - x, yy - y)
            inside = distance <= outer
            if not inside.any():
                continue
            ring = (distance > outer) & (distance <= outer + 4.0) & np.isfinite(image)
            sky = float(np.median(image[ring])) if ring.sum() >= 10 else float(np.nanmedian(image))
            rng = np.random.default_rng([int(round(x * 10)) % 2**31, int(round(y * 10)) % 2**31])
            pixelVariance = variance[inside]
            sigma = np.sqrt(np.where(np.isfinite(pixelVariance) & (pixelVariance > 0), pixelVariance, 0))
            image[inside] = sky + sigma * rng.standard_normal(int(inside.sum())).astype(np.float32)
        patched = Image(image, bbox=bbox, unit=mi.image.unit)
        out.append(MaskedImage(patched, mask=mi.mask, variance=mi.variance))
    return out[0], out[1]
