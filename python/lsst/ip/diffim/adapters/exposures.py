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
"""Construction of `lsst.images` exposures from arrays, without afw.

This is the one place that builds `lsst.images.VisitImage` and
`lsst.images.DifferenceImage` objects; the detector geometry uses the
AST bridge of `lsst.images` (private API, isolated here because
`lsst.images` is still moving).
"""

from __future__ import annotations

__all__ = [
    "VisitImageOptions",
    "makeDetector",
    "makeDifferenceImage",
    "makeMatchedVisitImage",
    "makeSkyProjection",
    "makeVisitImage",
]

from typing import TYPE_CHECKING, TypedDict

import astropy.units as u
import numpy as np
from astro_metadata_translator import ObservationInfo
from astropy.wcs import WCS

from lsst.images import (
    Box,
    DifferenceImage,
    Image,
    Mask,
    MaskSchema,
    SkyProjection,
    VisitImage,
    get_legacy_visit_image_mask_planes,
)
from lsst.images.cameras import Detector, DetectorAttributes, DetectorType, Orientation

from ..math.masks import makeDifferenceMaskSchema, maskBitsPresent, resolveMaskPlane

if TYPE_CHECKING:
    from lsst.images import MaskedImage
    from lsst.images.convolution_kernels import ConvolutionKernel
    from lsst.images.psfs import PointSpreadFunction


def makeDetector(instrument: str, detectorId: int, bbox: Box, pixelSize: float = 0.01) -> Detector:
    """Return a minimal `lsst.images.cameras.Detector` for a pixel box.

    The camera has a focal plane (mm), a field-angle frame and one detector
    frame; pixels map to the focal plane by a shift and a zoom of
    ``pixelSize`` mm.
    """
    from lsst.images._transforms import _ast as ast
    from lsst.images.cameras import CameraFrameSet

    focal = ast.Frame(2, "Ident=FOCAL_PLANE")
    focal.setUnit(1, "mm")
    focal.setUnit(2, "mm")
    frameSet = ast.FrameSet(focal)
    fieldAngle = ast.Frame(2, "Ident=FIELD_ANGLE")
    frameSet.addFrame(1, ast.ZoomMap(2, 1e-4), fieldAngle)
    det = ast.Frame(
        2,
        f"Ident=DETECTOR_{detectorId:03d},Bottom(1)={bbox.x.start},Top(1)={bbox.x.stop},"
        f"Bottom(2)={bbox.y.start},Top(2)={bbox.y.stop}",
    )
    pixToFp = ast.CmpMap(ast.ShiftMap([-bbox.x.center, -bbox.y.center]), ast.ZoomMap(2, pixelSize), True)
    frameSet.addFrame(1, pixToFp.inverted(), det)
    frames = CameraFrameSet(instrument, frameSet)
    attributes = DetectorAttributes(
        name=f"D{detectorId:03d}",
        id=detectorId,
        type=DetectorType.SCIENCE,
        serial=f"SN{detectorId:03d}",
        bbox=bbox,
        orientation=Orientation(
            focal_plane_x=0.0,
            focal_plane_y=0.0,
            focal_plane_z=0.0,
            pixel_reference_x=0.5,
            pixel_reference_y=0.5,
        ),
        pixel_size=pixelSize,
        physical_type="CCD",
    )
    return Detector(attributes, [], frames)


def makeSkyProjection(
    detector: Detector, bbox: Box, wcs: WCS | None = None, visit: int | None = None
) -> SkyProjection:
    """Return a sky projection for a detector, from an astropy WCS.

    Without a WCS a plain TAN projection at (RA, Dec) = (150, 2) deg with
    0.2 arcsec pixels centred on the box is used (for images without
    astrometry, so that an `lsst.images.VisitImage` can still be built).
    """
    if wcs is None:
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [150.0, 2.0]
        wcs.wcs.crpix = [bbox.x.center + 1.0, bbox.y.center + 1.0]
        scale = 0.2 / 3600.0
        wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    frame = detector.frame if visit is None else detector.frame.model_copy(update={"visit": visit})
    return SkyProjection.from_fits_wcs(wcs, frame, pixel_bounds=bbox)


def _visitMaskSchema() -> MaskSchema:
    # The visit planes, plus STREAK (trails found on the inputs, `lsst.ip.diffim.adapters.streakMask`).
    from ..math.masks import DIFFERENCE_MASK_PLANES

    planes = list(get_legacy_visit_image_mask_planes().values())
    if "STREAK" not in {p.name for p in planes} and "STREAK" in DIFFERENCE_MASK_PLANES:
        planes.append(DIFFERENCE_MASK_PLANES["STREAK"])
    return MaskSchema(planes, dtype=np.int32)


def _toMask(mask: Mask | np.ndarray | None, bbox: Box, schema: MaskSchema) -> Mask:
    if mask is None:
        return Mask(0, schema=schema, bbox=bbox)
    if isinstance(mask, Mask):
        if mask.schema == schema:
            return Mask(mask.array.copy(), schema=schema, bbox=bbox)
        out = Mask(0, schema=schema, bbox=bbox)
        # Only the planes set somewhere are converted (one pass finds them):
        # each conversion reads and writes image-sized planes.
        present = maskBitsPresent(mask.array)
        for name in mask.schema.names:
            if not np.any(present & mask.schema.bitmask(name)):
                continue
            target = resolveMaskPlane(schema, name)
            if target is not None:
                out.set(target, mask.get(name))
        return out
    return Mask(np.asarray(mask), schema=schema, bbox=bbox)


class VisitImageOptions(TypedDict, total=False):
    """The keyword-only options of `makeVisitImage` besides ``wcs`` and ``unit`` (to forward them)."""

    psf: PointSpreadFunction | None
    skyProjection: SkyProjection | None
    detector: Detector | None
    band: str
    physicalFilter: str | None
    instrument: str
    visit: int
    detectorId: int
    xy0: tuple[int, int]


def makeVisitImage(
    image: np.ndarray,
    variance: np.ndarray | None = None,
    mask: Mask | np.ndarray | None = None,
    *,
    psf: PointSpreadFunction | None = None,
    wcs: WCS | None = None,
    skyProjection: SkyProjection | None = None,
    detector: Detector | None = None,
    band: str = "r",
    physicalFilter: str | None = None,
    instrument: str = "DemoCam",
    visit: int = 1,
    detectorId: int = 0,
    xy0: tuple[int, int] = (0, 0),
    unit: u.UnitBase = u.nJy,
) -> VisitImage:
    """Return an `lsst.images.VisitImage` built from arrays.

    Parameters
    ----------
    image : `numpy.ndarray`
        Image plane.
    variance : `numpy.ndarray`, optional
        Variance plane (1.0 if absent).
    mask : `lsst.images.Mask` or `numpy.ndarray`, optional
        Mask; planes are mapped by name onto the visit-image schema.
    psf : `lsst.images.psfs.PointSpreadFunction`, optional
        PSF model; a 2 px sigma Gaussian if absent.
    wcs : `astropy.wcs.WCS`, optional
        Celestial WCS (see `makeSkyProjection` for the default).
    """
    from lsst.images.psfs import GaussianPointSpreadFunction

    ny, nx = image.shape
    bbox = Box.factory[xy0[1] : xy0[1] + ny, xy0[0] : xy0[0] + nx]
    if detector is None:
        detector = makeDetector(instrument, detectorId, bbox)
    if skyProjection is None:
        skyProjection = makeSkyProjection(detector, bbox, wcs, visit=visit)
    if psf is None:
        psf = GaussianPointSpreadFunction(2.0, bounds=bbox, stamp_size=21)
    obsInfo = ObservationInfo(
        instrument=instrument, detector_num=detectorId, physical_filter=physicalFilter or f"{band}_demo"
    )
    var = np.ones_like(image, dtype=np.float32) if variance is None else np.asarray(variance, np.float32)
    return VisitImage(
        Image(np.asarray(image, dtype=np.float32), bbox=bbox, unit=unit),
        mask=_toMask(mask, bbox, _visitMaskSchema()),
        variance=Image(var, bbox=bbox, unit=unit**2),
        sky_projection=skyProjection,
        obs_info=obsInfo,
        psf=psf,
        detector=detector,
        band=band,
    )


def makeDifferenceImage(
    science: VisitImage,
    image: np.ndarray,
    variance: np.ndarray,
    mask: Mask | np.ndarray | None,
    *,
    kernel: ConvolutionKernel | None = None,
    psf: PointSpreadFunction | None = None,
) -> DifferenceImage:
    """Return a `lsst.images.DifferenceImage` on the science image's grid.

    The mask uses the legacy difference-image planes; the science image's
    projection, observation metadata, detector and band are kept, with the
    given PSF (default: the science PSF) and matching kernel attached.
    """
    bbox = science.bbox
    unit = science.unit
    return DifferenceImage(
        Image(np.asarray(image, dtype=np.float32), bbox=bbox, unit=unit),
        mask=_toMask(mask, bbox, makeDifferenceMaskSchema()),
        variance=Image(np.asarray(variance, dtype=np.float32), bbox=bbox, unit=unit**2),
        sky_projection=science.sky_projection,
        obs_info=science.obs_info,
        psf=science.psf if psf is None else psf,
        detector=science.detector,
        band=science.band,
        kernel=kernel,
    )


def makeMatchedVisitImage(
    science: VisitImage, maskedImage: MaskedImage, psf: PointSpreadFunction | None = None
) -> VisitImage:
    """Return a masked image on the science grid as a `VisitImage` (e.g. a matched template)."""
    bbox = science.bbox
    unit = science.unit
    return VisitImage(
        Image(np.asarray(maskedImage.image.array, dtype=np.float32), bbox=bbox, unit=unit),
        mask=_toMask(maskedImage.mask, bbox, _visitMaskSchema()),
        variance=Image(np.asarray(maskedImage.variance.array, dtype=np.float32), bbox=bbox, unit=unit**2),
        sky_projection=science.sky_projection,
        obs_info=science.obs_info,
        psf=science.psf if psf is None else psf,
        detector=science.detector,
        band=science.band,
    )
