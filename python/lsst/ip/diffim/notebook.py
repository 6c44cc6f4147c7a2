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
"""One-call PSF matching and subtraction from numpy arrays or astropy data."""

from __future__ import annotations

__all__ = ["DifferenceResult", "detectDiaSources", "subtract"]

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    from astropy.nddata import NDData
    from astropy.table import Table

    from .detectAndMeasure import DetectAndMeasureConfig
    from .exclusions import ExclusionRegions, PositionSpec
    from .imagePsfMatch import ImagePsfMatchConfig

    #: An input image: an array, or an `astropy.nddata.NDData` (`~astropy.nddata.CCDData`).
    type ImageInput = npt.ArrayLike | NDData


@dataclass
class DifferenceResult:
    """What `subtract` returns: arrays for quick looks and the full objects.

    Attributes
    ----------
    difference, variance : `numpy.ndarray`
        Difference image and its variance.
    mask : `numpy.ndarray`
        Boolean array, `True` where the difference is unusable (NO_DATA,
        EDGE, saturated, BAD).
    matchedTemplate : `numpy.ndarray`
        The convolved image (the template unless the science was convolved).
    kernelSum : `float`
        Flux ratio science / template measured by the kernel.
    kernel : `lsst.images.convolution_kernels.ImageBasisConvolutionKernel`
        The matching kernel (``kernel.compute_kernel_image(x=, y=)``).
    background : `lsst.images.fields.ChebyshevField`
        Differential background.
    differenceImage : `lsst.images.DifferenceImage` or `lsst.images.MaskedImage`
        The full difference object (mask planes, projection, kernel); a
        `~lsst.images.MaskedImage` without a sky projection when the inputs
        have no WCS (none is invented).
    metadata : `dict`
        The task's diagnostic metadata.
    diaSources : `astropy.table.Table` or `None`
        DIA sources (``subtract(..., detect=True)`` or `detectDiaSources`),
        their ``NFalsePositives*`` counts in ``diaSources.meta``.
    """

    difference: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    matchedTemplate: np.ndarray
    kernelSum: float
    kernel: Any
    background: Any
    differenceImage: Any
    metadata: dict
    diaSources: Any = None
    #: What `detectDiaSources` needs: the task result, the science image,
    #: the difference's PSF FWHM and which image was convolved.
    _detectionInputs: Any = None


def _planes(
    data: ImageInput,
    variance: npt.ArrayLike | None,
    gain: float | None,
    readNoise: float | None,
    mask: npt.ArrayLike | None = None,
    name: str = "input",
) -> tuple[np.ndarray, np.ndarray, Any, Any, Any]:
    """Image, variance, WCS, user mask and unit of an array or NDData input."""
    wcs = None
    unit = None
    if hasattr(data, "data") and hasattr(data, "wcs"):  # NDData / CCDData
        nd: NDData = data
        wcs = nd.wcs
        unit = getattr(nd, "unit", None)
        if mask is None and getattr(nd, "mask", None) is not None:
            mask = nd.mask
        if variance is None and getattr(nd, "uncertainty", None) is not None:
            unc = nd.uncertainty
            kind = type(unc).__name__
            arr = np.asarray(unc.array, dtype=float)
            variance = arr**2 if kind == "StdDevUncertainty" else (1.0 / arr if "Inverse" in kind else arr)
        data = data.data
    from .inputChecks import checkImageArray

    image = np.asarray(checkImageArray(data, name), dtype=np.float32)
    if variance is None:
        if gain is None or readNoise is None:
            raise ValueError("Give a variance array (or an uncertainty), or gain and readNoise.")
        from .adapters.noiseModel import modelVariance

        variance = modelVariance(image, float(gain), float(readNoise))
    variance = np.asarray(checkImageArray(variance, f"{name} variance"), dtype=np.float32)
    if variance.shape != image.shape:
        raise ValueError(f"Variance shape {variance.shape} differs from image shape {image.shape}.")
    return image, variance, wcs, mask, unit


def subtract(
    template: ImageInput,
    science: ImageInput,
    *,
    templateVariance: npt.ArrayLike | None = None,
    scienceVariance: npt.ArrayLike | None = None,
    gain: float | None = None,
    readNoise: float | None = None,
    templateFwhm: float | None = None,
    scienceFwhm: float | None = None,
    convolve: str = "auto",
    config: ImagePsfMatchConfig | None = None,
    templateMask: npt.ArrayLike | None = None,
    scienceMask: npt.ArrayLike | None = None,
    saturation: float | None = None,
    templateSaturation: float | None = None,
    scienceSaturation: float | None = None,
    templatePsf: str | os.PathLike[str] | npt.ArrayLike | None = None,
    sciencePsf: str | os.PathLike[str] | npt.ArrayLike | None = None,
    exclude: ExclusionRegions | PositionSpec | None = None,
    stamps: Table | PositionSpec | None = None,
    decorrelate: bool = False,
    detect: bool = False,
) -> DifferenceResult:
    """PSF-match and subtract two images given as arrays, NDData or CCDData.

    Parameters
    ----------
    template, science : `numpy.ndarray`, `astropy.nddata.NDData` or `astropy.nddata.CCDData`
        The images; with NDData, ``uncertainty`` gives the variance and
        ``wcs`` the sky projection (different grids are resampled).
    templateVariance, scienceVariance : `numpy.ndarray`, optional
        Variance planes.
    gain, readNoise : `float`, optional
        Build the variance as the sky variance measured from the image plus
        ``max(image - sky, 0)/gain`` (at least ``(readNoise/gain)^2``;
        `lsst.ip.diffim.adapters.noiseModel.modelVariance`).
    templateFwhm, scienceFwhm : `float`, optional
        PSF FWHMs in pixels, finite and positive (else `InvalidFwhmError`);
        from the PSF images, or estimated from the images, if absent.
    convolve : `str`, optional
        ``"template"``, ``"science"`` or ``"auto"`` (the narrower PSF).
    config : `lsst.ip.diffim.ImagePsfMatchConfig`, optional
        Task configuration (default: fitForBackground on).
    templateMask, scienceMask : `numpy.ndarray`, optional
        Bad-pixel masks (non-zero = bad; default: ``CCDData.mask``); the
        pixels are kept out of the kernel fit and flagged BAD.
    saturation, templateSaturation, scienceSaturation : `float`, optional
        Saturation level of both images, or of each (the specific one wins):
        pixels at or above it, grown by one pixel, are flagged SAT and kept
        out of the kernel fit.  Non-finite pixels are flagged NO_DATA.  All
        these flags are grown by the kernel footprint in the difference mask.
    templatePsf, sciencePsf : `numpy.ndarray`, `str` or `os.PathLike`, optional
        Images of the PSFs (arrays, or FITS file paths); their FWHM (width
        at half maximum) is used when the FWHM is not given.
    exclude : `ExclusionRegions`, `str`, `os.PathLike` or `numpy.ndarray`, optional
        Positions kept out of the kernel fit: ``(x, y)`` or ``(x, y, radius)``
        rows in 0-based array pixels of the science image, a text file of
        ``x y [radius]`` lines (FITS 1-based) or a ds9 region file (sky
        regions need the science WCS), or an `ExclusionRegions`.
    stamps : `astropy.table.Table`, `str`, `os.PathLike` or `numpy.ndarray`, optional
        Positions to use as the kernel candidates (like HOTPANTS' ``-ssf``):
        the same forms as ``exclude`` (radii ignored) or a table with ``x``,
        ``y`` columns.
    decorrelate : `bool`, optional
        Decorrelate the difference's noise (`DecorrelateALKernelTask`, as
        `AlardLuptonSubtractTask` does by default), so that thresholds in
        units of its variance have their Gaussian false-positive rates.
    detect : `bool`, optional
        Also detect and measure the DIA sources (``result.diaSources``;
        see `detectDiaSources`).

    Returns
    -------
    result : `DifferenceResult`

    Raises
    ------
    lsst.ip.diffim.inputChecks.InvalidImageError
        For a complex, non-2-d or empty image; a WCS on one image only
        (`MissingWcsError`); different sizes without WCSs
        (`UnregisteredImagesError`); more than half the variance pixels
        zero, negative or non-finite (`BadVarianceError`; fewer are flagged
        ``NO_DATA``).
    """
    from .adapters.inputMasks import makeInputImage, makeInputMask, parseUnit
    from .exclusions import ExclusionRegions, stampListTable
    from .fwhmValidation import resolveFwhm, validateFwhmArguments
    from .imagePsfMatch import ImagePsfMatchTask
    from .inputChecks import checkRegistration
    from .kernelConversion import toImagesBackground, toImagesKernel
    from .math.frozenHeap import frozenHeap
    from .math.masks import anyMaskPlaneSet

    # The objects that exist by now (the notebook's, the stack's) are not walked by the collector meanwhile.
    with frozenHeap():
        validateFwhmArguments(templateFwhm=templateFwhm, scienceFwhm=scienceFwhm)
        tImage, tVar, tWcs, tMask, tUnit = _planes(
            template, templateVariance, gain, readNoise, templateMask, "template"
        )
        sImage, sVar, sWcs, sMask, sUnit = _planes(
            science, scienceVariance, gain, readNoise, scienceMask, "science"
        )
        checkRegistration(tWcs is not None, tImage.shape, sWcs is not None, sImage.shape)
        if tWcs is None or sWcs is None:
            tWcs = sWcs = None
        tLevel = templateSaturation if templateSaturation is not None else saturation
        sLevel = scienceSaturation if scienceSaturation is not None else saturation
        # Without a WCS the images stay MaskedImages: no sky projection is invented.
        t = makeInputImage(
            tImage,
            tVar,
            makeInputMask(tImage, variance=tVar, badPixels=tMask, saturation=tLevel),
            wcs=tWcs,
            unit=parseUnit(tUnit),
        )
        s = makeInputImage(
            sImage,
            sVar,
            makeInputMask(sImage, variance=sVar, badPixels=sMask, saturation=sLevel),
            wcs=sWcs,
            unit=parseUnit(sUnit),
        )
        from .adapters.sourceFootprints import SourceFootprints, pairFootprints, sharedSourceMask

        footprints: tuple[SourceFootprints | None, SourceFootprints | None] = (None, None)
        if t.image.array.shape == s.image.array.shape:
            from .adapters.streakMask import maskStreaks

            footprints = pairFootprints(t, s)  # one detection for the streaks and the off-source background
            maskStreaks(t, s, footprints=footprints)  # trails in one image only: STREAK, kept out of the fit
            from .adapters.badLines import maskBadLines

            maskBadLines(t, s)  # bad rows/columns in one image only: BAD
        tF = resolveFwhm(t, templateFwhm, templatePsf, name="templateFwhm")
        sF = resolveFwhm(s, scienceFwhm, sciencePsf, name="scienceFwhm")
        if config is None:
            config = ImagePsfMatchTask.ConfigClass()
            config.kernel.active.fitForBackground = True
        convolveTemplate = convolve == "template" or (convolve == "auto" and tF <= sF)
        task = ImagePsfMatchTask(config=config)
        candidateList = stampListTable(stamps, wcs=sWcs) if stamps is not None else None
        excluded = ExclusionRegions.fromSpec(exclude, wcs=sWcs) if exclude is not None else None
        result = task.run(
            t,
            s,
            templateFwhmPix=tF,
            scienceFwhmPix=sF,
            convolveTemplate=convolveTemplate,
            candidateList=candidateList,
            exclude=excluded,
            sourceMask=sharedSourceMask(footprints, t, s),
        )
        del footprints
        from .kernelSumCheck import checkFitKernelSum

        checkFitKernelSum(task, result, t, s, convolveTemplate, max(tF, sF))
        if decorrelate:
            from .imageDecorrelation import decorrelateDifference

            decorrelateDifference(result, t, s)
        diff = result.subtractedMaskedImage
        kernel = getattr(result.difference, "kernel", None)
        if kernel is None:
            kernel = toImagesKernel(result.psfMatchingKernel, diff.bbox)
        badPixels = anyMaskPlaneSet(diff.mask, ["NO_DATA", "EDGE", "SAT", "BAD"])
        assert badPixels is not None  # the difference has a mask
        out = DifferenceResult(
            difference=diff.image.array,
            variance=diff.variance.array,
            mask=badPixels,
            matchedTemplate=result.matchedImage.image.array,
            kernelSum=float(task.metadata["spatialKernelSum"]),
            kernel=kernel,
            background=toImagesBackground(result.backgroundModel, diff.bbox),
            differenceImage=result.difference,
            metadata=task.getFullMetadata().to_dict(),
            _detectionInputs=(result, s, sF if convolveTemplate else tF, convolveTemplate),
        )
        if detect:
            detectDiaSources(out)
        return out


def detectDiaSources(result: DifferenceResult, config: DetectAndMeasureConfig | None = None) -> Table:
    """Detect and measure the DIA sources of a `subtract` result.

    Parameters
    ----------
    result : `DifferenceResult`
        What `subtract` returned; ``result.diaSources`` is set.
    config : `lsst.ip.diffim.detectAndMeasure.DetectAndMeasureConfig`, optional
        Task configuration (threshold, dipole classification ...).

    Returns
    -------
    diaSources : `astropy.table.Table`
        One row per DIA source (documented columns with units); the
        ``NFalsePositives*`` counts are in its ``meta``.
    """
    from .detectAndMeasure import detectOnSubtraction

    if result._detectionInputs is None:
        raise ValueError("This result does not come from lsst.ip.diffim.subtract.")
    taskResult, science, fwhm, convolveTemplate = result._detectionInputs
    detection = detectOnSubtraction(
        taskResult, science, psfFwhm=fwhm, convolveTemplate=convolveTemplate, config=config
    )
    result.diaSources = detection.diaSources
    return result.diaSources
