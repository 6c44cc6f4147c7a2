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
"""Kernel basis generation from a kernel configuration."""

from __future__ import annotations

__all__ = ["BasisMetadata", "generateAlardLuptonBasisList", "makeKernelBasisList", "sigma2fwhm"]

import logging
import math
from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, cast

from lsst.pipe.base import TaskMetadata

from .fwhmValidation import validateFwhmArguments
from .kernel.basisLists import makeAlardLuptonBasisList, makeDeltaFunctionBasisList
from .math.gaussian import SIGMA2FWHM
from .math.kernels import Kernel

if TYPE_CHECKING:
    from .psfMatch import PsfMatchConfig, PsfMatchConfigAL

#: Where the ``ALBasis*`` keys go: a task's metadata or a plain mapping.
type BasisMetadata = TaskMetadata | MutableMapping[str, object]

#: Upstream's name of `lsst.ip.diffim.math.gaussian.SIGMA2FWHM`.
sigma2fwhm = SIGMA2FWHM

_log = logging.getLogger("lsst.ip.diffim.makeKernelBasisList")


def makeKernelBasisList(
    config: PsfMatchConfig,
    targetFwhmPix: float | None = None,
    referenceFwhmPix: float | None = None,
    basisDegGauss: Sequence[int] | None = None,
    basisSigmaGauss: Sequence[float] | None = None,
    metadata: BasisMetadata | None = None,
    minSigmaDeconv: float | None = None,
) -> list[Kernel]:
    """Return the kernel basis configured by ``config``.

    Parameters
    ----------
    config : `PsfMatchConfig`
        Kernel configuration (``kernelBasisSet`` selects the basis).
    targetFwhmPix : `float`, optional
        FWHM (pixels) of the PSF of the image that is convolved.
    referenceFwhmPix : `float`, optional
        FWHM (pixels) of the PSF that is matched to.
    basisDegGauss, basisSigmaGauss : sequence, optional
        Override the configured Alard-Lupton degrees or sigmas.
    metadata : `lsst.pipe.base.TaskMetadata` or `dict`, optional
        Receives the ``ALBasis*`` keys.
    minSigmaDeconv : `float`, optional
        Overrides ``alardMinSigDeconv`` (the smallest sigma of a
        deconvolution basis).

    Raises
    ------
    ValueError
        For an unknown ``kernelBasisSet``.
    InvalidFwhmError
        If a FWHM is given but is not finite and positive.
    """
    validateFwhmArguments(targetFwhmPix=targetFwhmPix, referenceFwhmPix=referenceFwhmPix)
    if config.kernelBasisSet == "alard-lupton":
        return generateAlardLuptonBasisList(
            cast("PsfMatchConfigAL", config),
            targetFwhmPix=targetFwhmPix,
            referenceFwhmPix=referenceFwhmPix,
            basisDegGauss=basisDegGauss,
            basisSigmaGauss=basisSigmaGauss,
            metadata=metadata,
            minSigmaDeconv=minSigmaDeconv,
        )
    if config.kernelBasisSet == "delta-function":
        return makeDeltaFunctionBasisList(config.kernelSize, config.kernelSize)
    raise ValueError(f"Cannot generate {config.kernelBasisSet!r} basis set")


def _calculateBasisSigmas(
    largerSigma: float, smallerSigma: float, minSig: float, nGauss: int, beta: float
) -> list[float]:
    """Return ``nGauss`` geometric sigmas scaled to the matching width."""
    kernelSigma = math.sqrt(largerSigma**2 - smallerSigma**2)
    if kernelSigma < minSig:
        kernelSigma = minSig
    first = max(minSig, kernelSigma / beta) if nGauss > 1 else kernelSigma
    sigmas = [first]
    for _ in range(1, nGauss):
        sigmas.append(sigmas[-1] * beta)
    return sigmas


def _addMetadata(metadata: BasisMetadata | None, key: str, value: object) -> None:
    if metadata is None:
        return
    if hasattr(metadata, "add"):
        metadata.add(key, value)
    else:
        metadata[key] = value


def generateAlardLuptonBasisList(
    config: PsfMatchConfigAL,
    targetFwhmPix: float | None = None,
    referenceFwhmPix: float | None = None,
    basisDegGauss: Sequence[int] | None = None,
    basisSigmaGauss: Sequence[float] | None = None,
    metadata: BasisMetadata | None = None,
    minSigmaDeconv: float | None = None,
) -> list[Kernel]:
    """Return an Alard-Lupton basis, scaled to the PSF widths if configured.

    With ``scaleByFwhm`` and both FWHMs known, the Gaussian widths follow the
    width of the matching kernel ``sqrt(sigma_ref^2 - sigma_target^2)``
    (convolution) or its reverse (deconvolution), growing geometrically by
    ``alardGaussBeta``, and the kernel size is ``kernelSizeFwhmScaling`` times
    the largest sigma (made odd) clamped to
    ``[kernelSizeMin, kernelSizeMax]``.  Otherwise the configured sigmas and
    ``kernelSize`` are used.  ``minSigmaDeconv``, if given, replaces
    ``alardMinSigDeconv``.

    Raises
    ------
    RuntimeError
        If the config is not an Alard-Lupton one.
    ValueError
        If the degree or sigma lists do not have ``alardNGauss`` entries, or
        ``kernelSize`` is even.
    """
    if config.kernelBasisSet != "alard-lupton":
        raise RuntimeError(
            f"Cannot generate {config.kernelBasisSet} basis within generateAlardLuptonBasisList"
        )
    degs = list(config.alardDegGauss if basisDegGauss is None else basisDegGauss)
    sigs = list(config.alardSigGauss if basisSigmaGauss is None else basisSigmaGauss)
    nGauss = config.alardNGauss
    if len(degs) != nGauss:
        raise ValueError(f"len(alardDegGauss)={len(degs)} != alardNGauss={nGauss}")
    if len(sigs) != nGauss:
        raise ValueError(f"len(alardSigGauss)={len(sigs)} != alardNGauss={nGauss}")
    if config.kernelSize % 2 == 0:
        raise ValueError(f"Only odd-sized Alard-Lupton bases allowed; kernelSize={config.kernelSize}")

    if targetFwhmPix is None or referenceFwhmPix is None or not config.scaleByFwhm:
        _log.info("PSF sigmas are not available or scaling by FWHM is disabled: using the config values")
        _addMetadata(metadata, "ALBasisNGauss", nGauss)
        _addMetadata(metadata, "ALBasisDegGauss", degs)
        _addMetadata(metadata, "ALBasisSigGauss", sigs)
        _addMetadata(metadata, "ALKernelSize", config.kernelSize)
        _addMetadata(metadata, "ALBasisMode", "config")
        return makeAlardLuptonBasisList(config.kernelSize // 2, nGauss, sigs, degs)

    targetSigma = targetFwhmPix / sigma2fwhm
    referenceSigma = referenceFwhmPix / sigma2fwhm
    _log.debug("Target sigma: %.2f px, reference sigma: %.2f px", targetSigma, referenceSigma)
    if targetSigma == referenceSigma:
        mode = "config"
    elif referenceSigma > targetSigma:
        mode = "convolution"
        sigs = _calculateBasisSigmas(
            referenceSigma, targetSigma, config.alardMinSig, nGauss, config.alardGaussBeta
        )
    else:
        mode = "deconvolution"
        minSig = config.alardMinSigDeconv if minSigmaDeconv is None else minSigmaDeconv
        sigs = _calculateBasisSigmas(targetSigma, referenceSigma, minSig, nGauss, config.alardGaussBeta)
    kernelSize = int(config.kernelSizeFwhmScaling * sigs[-1])
    if kernelSize % 2 == 0:
        kernelSize += 1
    kernelSize = min(config.kernelSizeMax, max(kernelSize, config.kernelSizeMin))
    _log.debug("Alard-Lupton basis (%s): sigmas %s, degrees %s, size %d", mode, sigs, degs, kernelSize)
    _addMetadata(metadata, "ALBasisNGauss", len(sigs))
    _addMetadata(metadata, "ALBasisDegGauss", degs)
    _addMetadata(metadata, "ALBasisSigGauss", sigs)
    _addMetadata(metadata, "ALKernelSize", kernelSize)
    _addMetadata(metadata, "ALBasisMode", mode)
    return makeAlardLuptonBasisList(kernelSize // 2, len(sigs), sigs, degs)
