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

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class DifferenceResult:
    """What `subtract` returns: arrays for quick looks and the full objects.

    Attributes
    ----------
    difference, variance : `numpy.ndarray`
        Difference image and its variance.
    mask : `numpy.ndarray`
        Boolean array, `True` where the difference is unusable (NO_DATA,
        EDGE, saturated).
    matchedTemplate : `numpy.ndarray`
        The convolved image (the template unless the science was convolved).
    kernelSum : `float`
        Flux ratio science / template measured by the kernel.
    kernel : `lsst.images.convolution_kernels.ImageBasisConvolutionKernel`
        The matching kernel (``kernel.compute_kernel_image(x=, y=)``).
    background : `lsst.images.fields.ChebyshevField`
        Differential background.
    differenceImage : `lsst.images.DifferenceImage`
        The full difference object (mask planes, projection, kernel).
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
    data: Any, variance: Any, gain: float | None, readNoise: float | None
) -> tuple[np.ndarray, np.ndarray, Any]:
    wcs = None
    if hasattr(data, "data") and hasattr(data, "wcs"):  # NDData / CCDData
        wcs = data.wcs
        if variance is None and getattr(data, "uncertainty", None) is not None:
            unc = data.uncertainty
            name = type(unc).__name__
            arr = np.asarray(unc.array, dtype=float)
            variance = arr**2 if name == "StdDevUncertainty" else (1.0 / arr if "Inverse" in name else arr)
        data = data.data
    image = np.asarray(data, dtype=np.float32)
    if variance is None:
        if gain is None or readNoise is None:
            raise ValueError("Give a variance array (or an uncertainty), or gain and readNoise.")
        variance = np.maximum(image, 0.0) / gain + (readNoise / gain) ** 2
    variance = np.asarray(variance, dtype=np.float32)
    if variance.shape != image.shape:
        raise ValueError(f"Variance shape {variance.shape} differs from image shape {image.shape}.")
    return image, variance, wcs


def subtract(
    template: Any,
    science: Any,
    *,
    templateVariance: Any = None,
    scienceVariance: Any = None,
    gain: float | None = None,
    readNoise: float | None = None,
    templateFwhm: float | None = None,
    scienceFwhm: float | None = None,
    convolve: str = "auto",
    config: Any = None,
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
        Build the variance as ``max(image, 0)/gain + (readNoise/gain)^2``.
    templateFwhm, scienceFwhm : `float`, optional
        PSF FWHMs in pixels (estimated from the images if absent).
    convolve : `str`, optional
        ``"template"``, ``"science"`` or ``"auto"`` (the narrower PSF).
    config : `lsst.ip.diffim.ImagePsfMatchConfig`, optional
        Task configuration (default: fitForBackground on).
    detect : `bool`, optional
        Also detect and measure the DIA sources (``result.diaSources``;
        see `detectDiaSources`).

    Returns
    -------
    result : `DifferenceResult`
    """
    from .adapters.exposures import makeVisitImage
    from .adapters.psf import estimateFwhmFromImage
    from .imagePsfMatch import ImagePsfMatchTask
    from .kernelConversion import toImagesBackground
    from .math.masks import anyMaskPlaneSet

    tImage, tVar, tWcs = _planes(template, templateVariance, gain, readNoise)
    sImage, sVar, sWcs = _planes(science, scienceVariance, gain, readNoise)
    if tWcs is None or sWcs is None:
        tWcs = sWcs = None
    t = makeVisitImage(tImage, tVar, wcs=tWcs)
    s = makeVisitImage(sImage, sVar, wcs=sWcs)
    tF = templateFwhm or estimateFwhmFromImage(t)
    sF = scienceFwhm or estimateFwhmFromImage(s)
    if config is None:
        config = ImagePsfMatchTask.ConfigClass()
        config.kernel.active.fitForBackground = True
    convolveTemplate = convolve == "template" or (convolve == "auto" and tF <= sF)
    task = ImagePsfMatchTask(config=config)
    result = task.run(t, s, templateFwhmPix=tF, scienceFwhmPix=sF, convolveTemplate=convolveTemplate)
    diff = result.subtractedMaskedImage
    out = DifferenceResult(
        difference=diff.image.array,
        variance=diff.variance.array,
        mask=anyMaskPlaneSet(diff.mask, ["NO_DATA", "EDGE", "SAT"]),
        matchedTemplate=result.matchedImage.image.array,
        kernelSum=float(task.metadata["spatialKernelSum"]),
        kernel=result.difference.kernel,
        background=toImagesBackground(result.backgroundModel, diff.bbox),
        differenceImage=result.difference,
        metadata=task.getFullMetadata().to_dict(),
        _detectionInputs=(result, s, sF if convolveTemplate else tF, convolveTemplate),
    )
    if detect:
        detectDiaSources(out)
    return out


def detectDiaSources(result: DifferenceResult, config: Any = None) -> Any:
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
