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
"""PSF FWHM from the stars of an image, or from an image of the PSF.

Stars are the most compact sources of an image: galaxies are only ever
broader.  `estimateFwhmFromImage` therefore fits every bright, isolated,
unsaturated detection and takes the lower envelope of the sizes (the
median of those within 15% of the smallest one above ``minFwhm``), not
the median of all detections, which in galaxy-rich fields (a JWST cluster
field) measures the galaxies.  Detection goes down from 20 to 10 to 5
sigma until enough sources are measured, so small cutouts with one or two
stars work.
"""

from __future__ import annotations

__all__ = ["FwhmEstimationError", "estimateFwhmFromImage", "psfImageFwhm", "readPsfImage"]

import itertools
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..math.gaussian import SIGMA2FWHM
from ..math.gaussianStampFit import fitCircularGaussians

if TYPE_CHECKING:
    from astropy.table import Table

    from lsst.images import MaskedImage

#: Detection thresholds (sigma) tried in turn.
THRESHOLDS = (20.0, 10.0, 5.0)

#: Sizes within this factor of the smallest one form the stellar locus.
LOCUS_WIDTH = 1.15

#: Half-size of the fit windows of the second try when the first (8) finds no star: alert cutouts.
SMALL_CUTOUT_HALF = 5

#: Images of more pixels are measured on a mosaic of tiles of this many pixels (`estimateFwhmFromImage`).
MOSAIC_PIXELS = 1 << 21

#: Side of the mosaic's tiles, and the NaN gutter between them (wider than any fit window).
MOSAIC_TILE, MOSAIC_GUTTER = 256, 32


class FwhmEstimationError(ValueError):
    """The PSF FWHM cannot be estimated (no usable star, or an unusable PSF image)."""


def psfImageFwhm(psf: np.ndarray, upsample: int = 8) -> float:
    """Return the FWHM (pixels) of an image of a PSF: the width at half maximum.

    The image around the peak is upsampled (cubic spline) and the area
    ``A`` of the connected region at or above half the peak is measured;
    the FWHM is ``2 sqrt(A / pi)`` (exact for a circular profile, the mean
    width for an elliptical one; diffraction spikes and wings do not
    enter, unlike second moments).

    Raises
    ------
    FwhmEstimationError
        If the image is not 2-d, has no finite positive peak, or the
        half-maximum region touches its border.
    """
    from scipy import ndimage

    data = np.asarray(psf, dtype=float)
    if data.ndim != 2 or data.size == 0:
        raise FwhmEstimationError(f"a PSF image must be a 2-d array, not of shape {data.shape}")
    data = np.where(np.isfinite(data), data, 0.0)
    iy, ix = np.unravel_index(int(np.argmax(data)), data.shape)
    peak = data[iy, ix]
    if not peak > 0:
        raise FwhmEstimationError("the PSF image has no positive peak")
    half = min(iy, ix, data.shape[0] - 1 - iy, data.shape[1] - 1 - ix, 30)
    if half < 2:
        raise FwhmEstimationError("the PSF image peaks at its border")
    window = data[iy - half : iy + half + 1, ix - half : ix + half + 1]
    fine = ndimage.zoom(window, upsample, order=3, mode="nearest", grid_mode=True)
    above = fine >= 0.5 * fine.max()
    labels, _ = ndimage.label(above)
    core = labels == labels[np.unravel_index(int(np.argmax(fine)), fine.shape)]
    if core[0].any() or core[-1].any() or core[:, 0].any() or core[:, -1].any():
        raise FwhmEstimationError("the half-maximum region of the PSF image reaches its border")
    area = float(core.sum()) / upsample**2
    return 2.0 * math.sqrt(area / math.pi)


def readPsfImage(path: str | os.PathLike) -> np.ndarray:
    """Read an image of the PSF from a FITS file (first 2-d HDU), normalized to unit sum.

    Raises
    ------
    FwhmEstimationError
        If the file is missing, unreadable, or holds no usable 2-d image.
    """
    from astropy.io import fits

    if not os.path.exists(path):
        raise FwhmEstimationError(f"{path}: no such PSF file")
    try:
        with fits.open(path) as hdul:
            data = next((h.data for h in hdul if h.data is not None and h.data.ndim == 2), None)
            data = None if data is None else np.asarray(data, dtype=float)
    except OSError as exc:
        raise FwhmEstimationError(f"{path}: not a readable FITS file ({exc})") from exc
    if data is None:
        raise FwhmEstimationError(f"{path}: no 2-d image HDU in the PSF file")
    data = np.where(np.isfinite(data), data, 0.0)
    total = float(data.sum())
    if not total > 0:
        raise FwhmEstimationError(f"{path}: the PSF image does not have a positive sum")
    return data / total


def _candidateStamps(image: np.ndarray, sources: Table, x0: int, y0: int, half: int) -> Iterator[np.ndarray]:
    """Yield the background-subtracted stamps of the usable sources, the brightest first."""
    ny, nx = image.shape
    xs = np.asarray(sources["x"], dtype=float) - x0
    ys = np.asarray(sources["y"], dtype=float) - y0
    flux = np.asarray(sources["flux"], dtype=float)
    ok = ~np.asarray(sources["flag_saturated"], dtype=bool) & ~np.asarray(sources["flag_badMask"], dtype=bool)
    ok &= (xs >= half) & (xs <= nx - half - 1) & (ys >= half) & (ys <= ny - half - 1)
    for k in np.argsort(-flux):
        if not ok[k]:
            continue
        # A neighbour of more than a tenth of the flux inside the window spoils the fit.
        d = np.hypot(xs - xs[k], ys - ys[k])
        d[k] = np.inf
        if np.any((d < half * math.sqrt(2.0) + 2) & (flux > 0.1 * flux[k])):
            continue
        ix, iy = int(round(xs[k])), int(round(ys[k]))
        stamp = image[iy - half : iy + half + 1, ix - half : ix + half + 1].astype(float)
        if not np.all(np.isfinite(stamp)):
            continue
        border = np.concatenate([stamp[0], stamp[-1], stamp[:, 0], stamp[:, -1]])
        stamp = stamp - np.median(border)
        if stamp.sum() <= 0:
            continue
        yield stamp


def _measure(image: np.ndarray, sources: Table, x0: int, y0: int, half: int, maxStars: int) -> list[float]:
    """Fit the brightest usable sources with windows of ``2 half + 1`` pixels; return their FWHMs.

    The stamps are fitted together (`fitCircularGaussians`), as many at a
    time as sizes are still wanted, until ``maxStars`` are measured.  A
    fitted width of half the window or more says the source is larger than
    the window (not a star): it is dropped and the next source is fitted.
    """
    stamps = _candidateStamps(image, sources, x0, y0, half)
    fwhms: list[float] = []
    while len(fwhms) < maxStars:
        batch = list(itertools.islice(stamps, maxStars - len(fwhms)))
        if not batch:
            break
        for sigma in fitCircularGaussians(np.stack(batch)):
            if np.isfinite(sigma) and sigma < half / 2.0:
                fwhms.append(SIGMA2FWHM * float(sigma))
    return fwhms


def _finalWindow(estimate: float, limit: int) -> int:
    """Return the half-size of the final fit windows: 1.5 x the first estimate (3 to 15, at most `limit`)."""
    return int(min(max(3, math.ceil(1.5 * estimate)), 15, limit))


def _stellarLocus(fwhms: list[float], minFwhm: float, strict: bool = True) -> float | None:
    """Median of the smallest group of sizes within `LOCUS_WIDTH` of each other.

    With five or more sizes a group needs two members and (if ``strict``)
    5% of the sizes, so that a few compact artefacts (hot-pixel clusters,
    cosmic rays) do not set the PSF.
    """
    sizes = np.sort(np.asarray([f for f in fwhms if f >= minFwhm]))
    if sizes.size == 0:
        return None
    need = (max(2, math.ceil(0.05 * sizes.size)) if strict else 2) if sizes.size >= 5 else 1
    group = sizes[sizes <= LOCUS_WIDTH * sizes[0]]
    for low in sizes:
        candidate = sizes[(sizes >= low) & (sizes <= LOCUS_WIDTH * low)]
        if candidate.size >= need:
            group = candidate
            break
    # The densest point of the group (most sizes within 5%): galaxies at its top do not pull it up.
    counts = [int(np.sum(np.abs(group - g) <= 0.05 * g)) for g in group]
    centre = group[int(np.argmax(counts))]
    return float(np.median(group[np.abs(group - centre) <= 0.05 * centre]))


def _mosaicOfTiles(maskedImage: MaskedImage, maxPixels: int | None) -> MaskedImage | None:
    """Return a mosaic of tiles of a large image, NaN between the tiles (`None` for a small image)."""
    from lsst.images import Image, Mask, MaskedImage

    from ..math.tileMosaic import mosaicLayout, tileMosaic

    if maxPixels is None:
        return None
    layout = mosaicLayout(maskedImage.image.array.shape, maxPixels, MOSAIC_TILE, gutter=MOSAIC_GUTTER)
    if layout is None:
        return None
    mask = Mask(tileMosaic(maskedImage.mask.array, layout), schema=maskedImage.mask.schema)
    return MaskedImage(
        Image(tileMosaic(np.asarray(maskedImage.image.array, dtype=np.float32), layout, np.nan)),
        mask=mask,
        variance=Image(tileMosaic(np.asarray(maskedImage.variance.array, dtype=np.float32), layout, np.nan)),
    )


def estimateFwhmFromImage(
    maskedImage: MaskedImage,
    maxStars: int = 60,
    half: int | None = None,
    minFwhm: float = 1.0,
    maxPixels: int | None = MOSAIC_PIXELS,
) -> float:
    """Estimate the PSF FWHM (pixels) of an image without a PSF model.

    Bright, isolated, unsaturated detections are fitted with a circular
    Gaussian plus constant in ``(2 half + 1)^2`` windows, the brightest
    first, all together (`lsst.ip.diffim.math.gaussianStampFit`); the
    estimate is the median FWHM of the stellar locus, the fitted sizes
    within 15% of the smallest one of at least ``minFwhm`` (smaller ones
    are hot pixels or cosmic rays), around its densest point.  Detection
    tries 20, 10 and 5 sigma until three sources are measured (or at 5
    sigma, one).  Without ``half`` the window is 8 pixels and then refitted
    at 1.5 times the first estimate (3 to 15 pixels; less in small images);
    if that finds no star, windows of ``SMALL_CUTOUT_HALF`` (5) pixels are
    tried (small cutouts, whose few stars lie near an edge or each other).

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage`
        The image (with a meaningful variance plane).
    maxStars : `int`, optional
        Most sources fitted per threshold.
    half : `int`, optional
        Half-size of the fit windows.
    minFwhm : `float`, optional
        Smallest FWHM (pixels) taken for a star.
    maxPixels : `int` or `None`, optional
        An image of more pixels is measured on a mosaic of tiles spread
        over it, about this many pixels (`lsst.ip.diffim.math.tileMosaic`;
        `NaN` gutters between the tiles keep every fit window inside one
        tile); `None` measures the whole image.

    Raises
    ------
    FwhmEstimationError
        If no usable star is found; the message says what was found.
    """
    from ..math.sourceDetection import DetectionSettings, detectSources

    mosaic = _mosaicOfTiles(maskedImage, maxPixels)
    if mosaic is not None:
        return estimateFwhmFromImage(mosaic, maxStars, half, minFwhm, maxPixels=None)
    image = np.asarray(maskedImage.image.array)
    ny, nx = image.shape
    x0, y0 = maskedImage.bbox.x.start, maskedImage.bbox.y.start
    limit = max(2, (min(nx, ny) - 1) // 4)
    fixedHalf = half is not None
    window = min(half if fixedHalf else 8, limit)
    summary = []
    fwhms: list[float] = []
    sources = None
    nBest = -1
    for threshold in THRESHOLDS:
        # Sizes need whole detections: the peaks of a split galaxy (its knots) look like stars.
        settings = DetectionSettings(thresholdValue=threshold, splitFootprintsAtPeaks=False)
        found = detectSources(maskedImage, settings).sources
        measured = _measure(image, found, x0, y0, window, maxStars)
        nGood = sum(1 for f in measured if f >= minFwhm)
        summary.append(f"{len(found)} detections at {threshold:g} sigma, {nGood} measured")
        # Lower thresholds add faint stars but also merge neighbours: keep the best-measured set.
        if nGood > nBest:
            nBest, fwhms, sources = nGood, measured, found
        if nGood >= 3:
            break
    # The first, lenient pass only sets the fit window of the final one.
    estimate = _stellarLocus(fwhms, minFwhm, strict=fixedHalf)
    if estimate is None and not fixedHalf and window > SMALL_CUTOUT_HALF:
        # On a small cutout the stars lie near an edge or within a window of each other: smaller windows.
        return estimateFwhmFromImage(
            maskedImage, maxStars, half=SMALL_CUTOUT_HALF, minFwhm=minFwhm, maxPixels=None
        )
    if estimate is None:
        raise FwhmEstimationError(
            f"No isolated unsaturated star to estimate the PSF FWHM ({'; '.join(summary)}; fit windows "
            f"of {2 * window + 1} px, stars at least {minFwhm:g} px wide); give the FWHM "
            "(--template-fwhm/--science-fwhm; templateFwhm=/scienceFwhm= of subtract()) or an image "
            "of the PSF (--template-psf/--science-psf) explicitly."
        )
    if not fixedHalf and sources is not None:
        final = _measure(image, sources, x0, y0, _finalWindow(estimate, limit), maxStars)
        again = _stellarLocus(final, minFwhm)
        if again is not None:
            estimate = again
    return float(estimate)
