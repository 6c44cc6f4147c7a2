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
"""A PipelineTask subtracting a template from a science image with ImagePsfMatchTask."""

from __future__ import annotations

__all__ = [
    "SubtractImagesConfig",
    "SubtractImagesConnections",
    "SubtractImagesTask",
    "checkTemplateIsSufficient",
]

from typing import ClassVar, Unpack

import numpy as np

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT
from lsst.images import MaskedImage, VisitImage
from lsst.utils.timer import timeMethod

from .annotatedRun import runAnnotated
from .imagePsfMatch import ImagePsfMatchTask
from .kernelConversion import toImagesKernel
from .math.masks import anyMaskPlaneSet
from .taskArguments import PipelineTaskArguments


class SubtractImagesConnections(
    pipeBase.PipelineTaskConnections,
    dimensions=("instrument", "visit", "detector"),
    defaultTemplates={"coaddName": "", "fakesType": ""},
):
    """Connections of `SubtractImagesTask`: exposures in, difference and matched template out."""

    science = cT.Input(
        doc="Science image to subtract from.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="VisitImage",
        name="{fakesType}science_image",
    )
    template = cT.Input(
        doc="Template image, on or overlapping the science image's pixel grid.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="VisitImage",
        name="{fakesType}template_image",
    )
    difference = cT.Output(
        doc="Difference image (science - PSF-matched template - background), kernel attached.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="DifferenceImage",
        name="{fakesType}difference_image",
    )
    matchedTemplate = cT.Output(
        doc="The template convolved to the science image's PSF.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="VisitImage",
        name="{fakesType}matched_template",
    )
    psfMatchingKernel = cT.Output(
        doc="The spatially varying PSF-matching kernel.",
        dimensions=("instrument", "visit", "detector"),
        storageClass="ConvolutionKernel",
        name="{fakesType}psf_matching_kernel",
    )


class SubtractImagesConfig(pipeBase.PipelineTaskConfig, pipelineConnections=SubtractImagesConnections):
    """Configuration of `SubtractImagesTask`."""

    psfMatch = ImagePsfMatchTask.makeField(doc="PSF matching and subtraction.")
    mode = pexConfig.ChoiceField[str](
        dtype=str,
        doc="Which image to convolve.",
        default="convolveTemplate",
        allowed={
            "convolveTemplate": "convolve the template to the science PSF",
            "convolveScience": "convolve the science image to the template PSF",
            "auto": "convolve the image with the narrower PSF",
        },
    )
    doWarping = pexConfig.Field[bool](
        dtype=bool,
        doc="Warp the template onto the science grid when they differ.",
        default=True,
    )
    requiredTemplateFraction = pexConfig.Field[float](
        dtype=float,
        doc="Raise NoWorkFound if the template covers less than this fraction of the science image.",
        default=0.1,
        check=lambda x: 0.0 <= x <= 1.0,
    )


def checkTemplateIsSufficient(
    template: MaskedImage, science: MaskedImage, requiredTemplateFraction: float
) -> float:
    """Return the fraction of the science image the template covers with data.

    Raises
    ------
    lsst.pipe.base.NoWorkFound
        If the coverage is below ``requiredTemplateFraction``.
    """
    try:
        overlap = science.bbox.intersection(template.bbox)
    except Exception:
        overlap = None
    if overlap is None:
        raise pipeBase.NoWorkFound("Template does not overlap the science image.")
    templateSub = template[overlap]
    good = np.isfinite(templateSub.image.array)
    noData = anyMaskPlaneSet(templateSub.mask, ["NO_DATA"])
    if noData is not None:
        good &= ~noData
    fraction = float(good.sum()) / float(science.bbox.area)
    if fraction < requiredTemplateFraction:
        raise pipeBase.NoWorkFound(
            f"Insufficient template coverage: {100 * fraction:.1f}% of the science image, "
            f"{100 * requiredTemplateFraction:.1f}% required (requiredTemplateFraction)."
        )
    return fraction


class SubtractImagesTask(pipeBase.PipelineTask):
    """Subtract a PSF-matched template from a science image.

    The PSF matching is done by the retargetable ``psfMatch`` subtask
    (`ImagePsfMatchTask` by default), so every kernel setting is reachable as
    ``psfMatch.kernel.active.<field>``.
    """

    ConfigClass: ClassVar[type[SubtractImagesConfig]] = SubtractImagesConfig
    _DefaultName = "subtractImages"
    config: SubtractImagesConfig
    psfMatch: ImagePsfMatchTask

    def __init__(self, **kwargs: Unpack[PipelineTaskArguments]) -> None:
        super().__init__(**kwargs)
        self.makeSubtask("psfMatch")

    def runQuantum(
        self,
        butlerQC: pipeBase.QuantumContext,
        inputRefs: pipeBase.InputQuantizedConnection,
        outputRefs: pipeBase.OutputQuantizedConnection,
    ) -> None:
        """Read the inputs of one quantum, run, and write the outputs.

        An `lsst.pipe.base.AlgorithmError` is annotated on the partial outputs
        (`lsst.pipe.base.AnnotatedPartialOutputsError`) before it is raised again.

        Parameters
        ----------
        butlerQC : `lsst.pipe.base.QuantumContext`
            The Butler of this quantum.
        inputRefs : `lsst.pipe.base.InputQuantizedConnection`
            The dataset references of the inputs.
        outputRefs : `lsst.pipe.base.OutputQuantizedConnection`
            The dataset references of the outputs.
        """
        from .adapters.maskReading import fastMaskReads
        from .math.frozenHeap import frozenHeap

        with frozenHeap():  # the executor's objects are not walked by the collector during the quantum
            with fastMaskReads():  # whatever formatter wrote the inputs
                inputs = butlerQC.get(inputRefs)
            outputs = runAnnotated(self, inputs)
            butlerQC.put(outputs, outputRefs)

    def _convolveTemplate(self, template: VisitImage, science: VisitImage) -> bool:
        if self.config.mode == "convolveTemplate":
            return True
        if self.config.mode == "convolveScience":
            return False
        from .adapters.psf import getPsfFwhm
        from .fwhmValidation import validateFwhmArguments

        templateFwhm = getPsfFwhm(template.psf)
        scienceFwhm = getPsfFwhm(science.psf)
        validateFwhmArguments(templatePsfFwhm=templateFwhm, sciencePsfFwhm=scienceFwhm)
        self.log.info("PSF FWHM: template %.2f px, science %.2f px", templateFwhm, scienceFwhm)
        return bool(templateFwhm <= scienceFwhm)

    @timeMethod
    def run(self, template: VisitImage, science: VisitImage) -> pipeBase.Struct:
        """Subtract ``template`` from ``science``.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``difference`` : `lsst.images.DifferenceImage`
            ``matchedTemplate`` : `lsst.images.VisitImage`
            ``psfMatchingKernel`` : `lsst.images.convolution_kernels.ImageBasisConvolutionKernel`
            ``backgroundModel`` : `lsst.ip.diffim.math.Function2`

        Raises
        ------
        lsst.pipe.base.NoWorkFound
            If the template covers too little of the science image.
        lsst.ip.diffim.NoKernelCandidatesError
            If no kernel candidate is usable.
        """
        if template.bbox == science.bbox:
            coverage = checkTemplateIsSufficient(template, science, self.config.requiredTemplateFraction)
            self.metadata["templateCoveragePercent"] = 100.0 * coverage
        convolveTemplate = self._convolveTemplate(template, science)
        self.metadata["convolvedExposure"] = "Template" if convolveTemplate else "Science"
        result = self.psfMatch.subtractExposures(
            template, science, doWarping=self.config.doWarping, convolveTemplate=convolveTemplate
        )
        kernel = toImagesKernel(result.psfMatchingKernel, science.bbox)
        matchedTemplate = self._matchedTemplateImage(result, science, convolveTemplate)
        return pipeBase.Struct(
            difference=result.subtractedExposure,
            matchedTemplate=matchedTemplate,
            psfMatchingKernel=kernel,
            backgroundModel=result.backgroundModel,
        )

    @staticmethod
    def _matchedTemplateImage(
        result: pipeBase.Struct, science: VisitImage, convolveTemplate: bool
    ) -> VisitImage:
        from .adapters.exposures import makeMatchedVisitImage

        source = result.matchedImage if convolveTemplate else result.warpedExposure
        return makeMatchedVisitImage(science, source, psf=science.psf if convolveTemplate else None)


# Upstream's Alard & Lupton tasks are importable from this module (implemented in alardLuptonSubtract).
from .alardLuptonSubtract import *  # noqa: E402, F403
from .alardLuptonSubtract import __all__ as _alardLuptonAll  # noqa: E402

__all__ += _alardLuptonAll
