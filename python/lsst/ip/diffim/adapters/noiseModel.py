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
"""Variance planes for images that come without one.

A variance built from gain and read noise alone, ``max(image, 0)/gain +
(readNoise/gain)^2``, has no sky term once the sky has been subtracted
(as in most archive products): the noise is then underestimated many
times over and every noise peak looks like a source.  `modelVariance`
measures the sky noise from the image itself and adds the Poisson noise
of the sources above the local background.
"""

from __future__ import annotations

__all__ = [
    "FILL_LIMIT",
    "VarianceFileError",
    "applyVarianceScaling",
    "modelVariance",
    "readVarianceFile",
    "skyLevelAndVariance",
    "usablePixels",
]

import logging
import math
import os
from typing import TYPE_CHECKING

import numpy as np

from ..math.tileMosaic import MOSAIC_PIXELS, mosaicLayout, tileMosaic

if TYPE_CHECKING:
    from lsst.images import MaskedImage

    from ..scaleVariance import ScaleVarianceConfig

_LOG = logging.getLogger(__name__)

#: EXTNAME (or HDUNAME) values of an HDU holding 1-sigma errors / variances.
SIGMA_NAMES = ("ERR", "ERROR", "ERRORS", "SIGMA", "NOISE", "RMS", "STDDEV", "STD", "UNCERTAINTY", "WHT_RMS")
VARIANCE_NAMES = ("VARIANCE", "VAR", "VARIANCES")

#: Side (pixels) of the boxes in which the sky level and noise are measured.
SKY_BOX = 64


#: Values this large are fill values (e.g. -FLT_MAX in ZTF cutouts), not data.
FILL_LIMIT = 1e30


def usablePixels(image: np.ndarray) -> np.ndarray:
    """Return `True` where ``image`` is finite and not a fill value (``|value| < FILL_LIMIT``)."""
    values = np.asarray(image)
    if not np.issubdtype(values.dtype, np.floating):
        return np.abs(values.astype(np.float64)) < FILL_LIMIT
    # NaN compares False: two comparisons give finite and below the limit in one pass each.
    good = values < FILL_LIMIT
    good &= values > -FILL_LIMIT
    return good


class VarianceFileError(ValueError):
    """A variance/error file cannot be used (missing, unreadable, wrong shape, bad values)."""


def skyLevelAndVariance(
    image: np.ndarray, good: np.ndarray | None = None, box: int = SKY_BOX
) -> tuple[np.ndarray, np.ndarray]:
    """Return the local sky level and sky variance of an image, measured from its pixels.

    The level and noise are sigma-clipped estimates in ``box`` x ``box``
    cells (sources are clipped), median-filtered over 3 x 3 cells and
    interpolated (`sep.Background`).

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d image.
    good : `numpy.ndarray`, optional
        Boolean array, `False` for pixels to ignore (NaN/inf and fill
        values are always ignored).
    box : `int`, optional
        Cell size; reduced to the image size for small images.

    Returns
    -------
    level, variance : `numpy.ndarray`
        Float32 images of the sky level and the sky variance (the square of
        the clipped noise per cell).
    """
    import sep

    data = np.ascontiguousarray(image, dtype=np.float32)
    bad = ~usablePixels(data)
    if good is not None:
        bad |= ~good
    if bad.all():
        raise ValueError("no usable pixel to measure the sky noise")
    if bad.any():
        data = np.where(bad, np.float32(np.median(data[~bad])), data)
    bw = max(8, min(box, data.shape[1]))
    bh = max(8, min(box, data.shape[0]))
    background = sep.Background(data, mask=bad if bad.any() else None, bw=bw, bh=bh)
    level = background.back(dtype=np.float32)
    rms = background.rms(dtype=np.float32)
    if not np.all(np.isfinite(rms)) or not (rms > 0).any():
        raise ValueError("the sky noise measured from the image is not positive")
    floor = np.float32(max(background.globalrms, float(np.median(rms[rms > 0]))) * 1e-3)
    rms = np.maximum(rms, floor)
    return level, rms * rms


def modelVariance(
    image: np.ndarray,
    gain: float,
    readNoise: float,
    good: np.ndarray | None = None,
    measureSky: bool = True,
) -> np.ndarray:
    """Return a variance plane for an image that has none.

    The variance is the Poisson variance of the signal above the local sky,
    ``max(image - sky, 0) / gain``, plus a sky term.  On an image with its
    sky still in (median sky level above 3 times the measured sky noise)
    the sky term is the sky's own Poisson variance, ``sky / gain +
    (readNoise / gain)^2``, so the whole is the gain/read-noise model; on a
    sky-subtracted image it is the measured sky variance
    (`skyLevelAndVariance`; at least ``(readNoise / gain)^2``), which keeps
    the sky noise the gain/read-noise model loses.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-d image in ADU (or any unit in which ``gain`` is e-/unit).
    gain : `float`
        Electrons per image unit (finite, positive).
    readNoise : `float`
        Read noise in electrons (finite, non-negative).
    good : `numpy.ndarray`, optional
        Pixels usable for the sky measurement.
    measureSky : `bool`, optional
        If `False`, return the plain ``max(image, 0)/gain +
        (readNoise/gain)^2`` model (HOTPANTS' and the former behaviour).

    Returns
    -------
    variance : `numpy.ndarray`
        Float32 array of the image's shape.
    """
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be finite and positive, not {gain}")
    if not (math.isfinite(readNoise) and readNoise >= 0):
        raise ValueError(f"read noise must be finite and non-negative, not {readNoise}")
    data = np.asarray(image, dtype=np.float32)
    readVariance = np.float32((readNoise / gain) ** 2)
    if not measureSky:
        return (np.maximum(data, 0.0) / np.float32(gain) + readVariance).astype(np.float32)
    level, skyVariance = skyLevelAndVariance(data, good)
    signal = np.maximum(np.nan_to_num(data - level, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    variance = signal / np.float32(gain)
    # With its sky still in (a sky level well above the measured sky noise) the image's own Poisson
    # sky variance is the sky term: the measured scatter of a crowded field is mostly unresolved
    # stars, not noise (4x the noise on the SAAO bulge frames).  A sky-subtracted image (level near
    # zero) has lost that information, and the measured sky variance is the sky term.
    medianLevel = float(np.nanmedian(level))
    medianSkySigma = math.sqrt(max(float(np.nanmedian(skyVariance)), 0.0))
    if medianLevel > 3.0 * medianSkySigma:
        variance += np.maximum(level, 0.0).astype(np.float32) / np.float32(gain) + readVariance
    else:
        variance += np.maximum(skyVariance, readVariance)
    return variance.astype(np.float32, copy=False)


def _kindFromHeader(header: object, extname: str) -> str | None:
    name = extname.upper()
    if name in SIGMA_NAMES:
        return "sigma"
    if name in VARIANCE_NAMES:
        return "variance"
    get = getattr(header, "get", None)
    if get is None:
        return None
    for key in ("HDUNAME", "IMAGETYP", "BUNIT"):
        value = str(get(key, "")).upper()
        if any(v in value for v in ("VARIANCE", "^2", "**2")):
            return "variance"
        if value in SIGMA_NAMES or "SIGMA" in value or "ERROR" in value:
            return "sigma"
    return None


def _kindFromData(values: np.ndarray, image: np.ndarray | None) -> str:
    """Compare the file's median with the image's noise: sigma if closer to it, variance if to its square."""
    if image is None:
        return "variance"
    finite = np.isfinite(image)
    if finite.sum() < 10:
        return "variance"
    sample = image[finite]
    q1, q3 = np.percentile(sample, (25.0, 75.0))
    # Pixel-to-pixel noise from neighbour differences is insensitive to sources and sky gradients.
    diffs = np.diff(np.where(finite, image, np.nan), axis=1)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size > 10:
        d1, d3 = np.percentile(diffs, (25.0, 75.0))
        noise = 0.7413 * float(d3 - d1) / math.sqrt(2.0)
    else:
        noise = 0.7413 * float(q3 - q1)
    positive = values[np.isfinite(values) & (values > 0)]
    if not noise > 0 or positive.size == 0:
        return "variance"
    median = float(np.median(positive))
    asSigma = abs(math.log(median / noise))
    asVariance = abs(math.log(median / noise**2))
    return "sigma" if asSigma < asVariance else "variance"


def readVarianceFile(
    path: str | os.PathLike, shape: tuple[int, int], kind: str = "auto", image: np.ndarray | None = None
) -> np.ndarray:
    """Read a separate variance (or 1-sigma error) image.

    Parameters
    ----------
    path : `str` or path-like
        FITS file; its first 2-d image HDU is used.
    shape : `tuple` [`int`, `int`]
        Shape the plane must have (that of the image).
    kind : `str`, optional
        ``"variance"``, ``"sigma"`` (1-sigma errors, squared on reading) or
        ``"auto"``: from the HDU's EXTNAME/HDUNAME/BUNIT (``ERR``,
        ``SIGMA``, ``NOISE``, ``RMS`` ... are errors; ``VARIANCE``/``VAR``
        variances), else from the data (errors if the file's median is
        closer to the image's pixel noise than to its square).
    image : `numpy.ndarray`, optional
        The image, for the data-based guess.

    Returns
    -------
    variance : `numpy.ndarray`
        Float32 variance; non-finite or non-positive entries are NaN (the
        caller masks them).

    Raises
    ------
    VarianceFileError
        If the file is missing, unreadable, has no 2-d image or the wrong shape.
    """
    from astropy.io import fits

    if kind not in ("auto", "variance", "sigma"):
        raise VarianceFileError(f"variance kind must be auto, variance or sigma, not {kind!r}")
    if not os.path.exists(path):
        raise VarianceFileError(f"{path}: no such variance file")
    try:
        with fits.open(path) as hdul:
            index = next((i for i, h in enumerate(hdul) if h.data is not None and h.data.ndim == 2), None)
            if index is None:
                raise VarianceFileError(f"{path}: no 2-d image HDU in the variance file")
            values = np.asarray(hdul[index].data, dtype=np.float64)
            header = hdul[index].header
            extname = hdul[index].name
    except OSError as exc:
        raise VarianceFileError(f"{path}: not a readable FITS file ({exc})") from exc
    if values.shape != tuple(shape):
        raise VarianceFileError(f"{path}: variance shape {values.shape} differs from image shape {shape}")
    chosen = kind
    how = "as asked"
    if kind == "auto":
        fromHeader = _kindFromHeader(header, extname)
        chosen = fromHeader or _kindFromData(values, image)
        how = "from its header" if fromHeader else "from its values against the image noise"
    what = "1-sigma errors (squared)" if chosen == "sigma" else "variance"
    _LOG.info("%s: read as %s %s.", path, what, how)
    variance = values * values if chosen == "sigma" else values
    variance = np.where(np.isfinite(variance) & (variance > 0), variance, np.nan).astype(np.float32)
    if np.isnan(variance).all():
        raise VarianceFileError(f"{path}: no finite positive value in the variance file")
    return variance


def applyVarianceScaling(
    maskedImage: MaskedImage,
    name: str = "scaleVariance",
    config: ScaleVarianceConfig | None = None,
    maxPixels: int | None = MOSAIC_PIXELS,
) -> float:
    """Rescale the variance of a masked image to its measured noise (`ScaleVarianceTask`).

    Sources are found first (3 sigma, grown by 2 pixels) and set as
    DETECTED in a copy of the mask, so that the noise is measured on the
    sky; the input's mask is not changed.  The factor is one number for the
    whole image: an image of more than ``maxPixels`` pixels is measured on a
    mosaic of that many pixels, tiles spread evenly over it
    (`lsst.ip.diffim.math.tileMosaic`; a deviation from upstream, which
    measures every pixel: at 4096^2 the factor agrees to 0.1% in a tenth of
    the time and memory).

    Parameters
    ----------
    maskedImage : `lsst.images.MaskedImage` or `lsst.images.VisitImage`
        Image whose variance is rescaled in place.
    name : `str`, optional
        Task name (the logger shows it).
    config : `lsst.ip.diffim.scaleVariance.ScaleVarianceConfig`, optional
        Task configuration.
    maxPixels : `int` or `None`, optional
        Largest image measured whole; `None` measures every image whole
        (upstream's behaviour).

    Returns
    -------
    factor : `float`
        The factor applied to the variance.
    """
    from lsst.images import Image, Mask, MaskedImage

    from ..math.masks import resolveMaskPlane
    from ..scaleVariance import ScaleVarianceTask

    image = np.asarray(maskedImage.image.array, dtype=np.float32)
    variance = np.asarray(maskedImage.variance.array, dtype=np.float32)
    mask = maskedImage.mask
    layout = None if maxPixels is None else mosaicLayout(image.shape, maxPixels)
    if layout is None:
        tmpMask = mask.copy()
        tmpImage, tmpVariance = image.copy(), variance.copy()
        detected, _ = _sourcesAndSky(tmpImage, tmpVariance)
        bbox = maskedImage.bbox
    else:
        # Each tile's own sky level is subtracted, so that the seams of the mosaic do not add steps of the
        # sky (a gradient of a sigma per tile on the bench's science image) to the measured scatter.
        _LOG.debug("Variance factor of a %s image measured on a %s mosaic.", image.shape, layout.shape)
        tmpMask = Mask(tileMosaic(mask.array, layout), schema=mask.schema)
        tmpImage = np.empty(layout.shape, dtype=np.float32)
        tmpVariance = tileMosaic(variance, layout)
        detected = np.zeros(layout.shape, dtype=bool)
        for source, destination in layout.pieces():
            tile = image[source].copy()
            detected[destination], level = _sourcesAndSky(tile, tmpVariance[destination])
            tmpImage[destination] = tile if level is None else tile - level
        bbox = tmpMask.bbox
    plane = resolveMaskPlane(tmpMask.schema, "DETECTED")
    if plane is not None:
        tmpMask.set(plane, detected | tmpMask.get(plane))
    tmp = MaskedImage(Image(tmpImage, bbox=bbox), mask=tmpMask, variance=Image(tmpVariance, bbox=bbox))
    task = ScaleVarianceTask(config=config, name=name)
    factor = task.run(tmp)
    maskedImage.variance.array[...] *= np.float32(factor)
    return factor


def _sourcesAndSky(image: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the sources of an image (3 sigma, grown by 2 pixels) and its sky level (`None` if unusable)."""
    import sep

    from ..math.crossDilation import dilateCross

    good = usablePixels(image) & np.isfinite(variance) & (variance > 0)
    detected = np.zeros(image.shape, dtype=bool)
    if good.sum() <= 10:
        return detected, None
    level, _ = skyLevelAndVariance(image, good)
    residual = np.where(good, image - level, 0.0).astype(np.float32)
    err = np.sqrt(np.where(good, variance, np.median(variance[good]))).astype(np.float32)
    try:
        _, segmentation = sep.extract(
            residual, 3.0, err=err, mask=~good, minarea=5, segmentation_map=True, deblend_nthresh=1
        )
        detected = dilateCross(segmentation > 0, 2)
    except Exception as exc:  # sep raises plain Exceptions (e.g. too many objects)
        _LOG.warning("Source detection before variance scaling failed (%s); sources not masked.", exc)
    return detected, level
