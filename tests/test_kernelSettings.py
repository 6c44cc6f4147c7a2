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
"""KernelFitSettings, the inert upstream config fields, and useBicForKernelBasis."""

import dataclasses

import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
import lsst.pex.config as pexConfig
from lsst.images import Box, Image, MaskedImage
from lsst.ip.diffim.kernel.settings import KernelFitSettings, asSettings
from lsst.ip.diffim.math.masks import makeDifferenceMaskSchema
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair


def test_settings_defaults_are_the_config_defaults():
    """Every setting's default is its config field's default (AL base, or DF for regularization)."""
    for field in dataclasses.fields(KernelFitSettings):
        cls = ipDiffim.PsfMatchConfig if hasattr(ipDiffim.PsfMatchConfig, field.name) else None
        cls = cls or ipDiffim.PsfMatchConfigDF
        configField = getattr(cls, field.name)
        expected = asSettings({field.name: configField.default})
        assert getattr(KernelFitSettings(), field.name) == getattr(expected, field.name), field.name
    # The AL and DF configs' setDefaults are what fromConfig reads.
    df = KernelFitSettings.fromConfig(ipDiffim.PsfMatchConfigDF())
    assert df.kernelBasisSet == "delta-function" and df.usePcaForSpatialKernel
    assert df.maxConditionNumber == 5.0e6
    assert KernelFitSettings.fromConfig(ipDiffim.PsfMatchConfigAL()).maxConditionNumber == 5.0e7


def test_settings_from_propertyset_and_config_agree():
    """makePropertySet (upstream's entry) and the config give the same settings; edits are typed."""
    config = ipDiffim.PsfMatchConfigDF()
    config.fitForBackground = True
    config.badMaskPlanes = ["SAT"]
    ps = ipDiffim.makePropertySet(config)
    assert KernelFitSettings.fromMapping(ps) == KernelFitSettings.fromConfig(config)
    ps["candidateResidualStdMax"] = 2  # an int where a float is meant, as a hand-edited PropertySet
    ps["badMaskPlanes"] = "EDGE"
    settings = asSettings(ps)
    assert settings.candidateResidualStdMax == 2.0 and isinstance(settings.candidateResidualStdMax, float)
    assert settings.badMaskPlanes == ("EDGE",)
    assert asSettings(settings) is settings


def test_settings_are_frozen_and_checked():
    """Settings cannot be changed in place, misspelt names fail, other inputs are refused."""
    settings = KernelFitSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.spatialKernelOrder = 1
    with pytest.raises(AttributeError):
        settings.spatialKernelOrdr
    assert dataclasses.replace(settings, spatialKernelOrder=1).spatialKernelOrder == 1
    with pytest.raises(TypeError, match="KernelFitSettings"):
        asSettings(42)


@pytest.mark.parametrize(
    "configClass, name, value, match",
    [
        (ipDiffim.PsfMatchConfigAL, "useAfwBackground", True, "fitForBackground"),
        (ipDiffim.PsfMatchConfigAL, "alardNGaussDeconv", 4, "takes alardNGauss"),
        (ipDiffim.PsfMatchConfigAL, "alardDegGaussDeconv", 2, "takes alardDegGauss"),
        (ipDiffim.PsfMatchConfigDF, "useBicForKernelBasis", True, "alard-lupton"),
    ],
)
def test_inert_upstream_fields_refuse_other_values(configClass, name, value, match):
    """Upstream fields this port does not act on load at their defaults and are refused otherwise."""
    config = configClass()
    config.validate()
    setattr(config, name, value)
    with pytest.raises(pexConfig.FieldValidationError, match=match):
        config.validate()


def _maskedImage(image, variance):
    bbox = Box.from_shape(image.shape)
    return MaskedImage(
        Image(np.asarray(image, np.float32), bbox=bbox),
        variance=Image(np.asarray(variance, np.float32), bbox=bbox),
        mask_schema=makeDifferenceMaskSchema(),
    )


def test_useBicForKernelBasis_chooses_degrees():
    """The B.I.C. picks degrees within the configured ones, and the fit uses that basis."""
    pair = makeSyntheticPair(size=256, nStars=80, seed=3, scienceFwhm=(4.5, 4.5), scienceEllipticity=0.0)
    template = _maskedImage(pair.template, pair.templateVariance)
    science = _maskedImage(pair.science, pair.scienceVariance)
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.spatialKernelOrder = 0
    config.kernel.active.fitForBackground = True
    config.kernel.active.alardDegGauss = [2, 2, 1]
    config.kernel.active.useBicForKernelBasis = True
    config.validate()
    task = ipDiffim.ImagePsfMatchTask(config=config)
    result = task.subtractMaskedImages(template, science, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    degrees = list(task.metadata.getArray("ALBasisDegGaussBic"))
    assert len(degrees) == 3 and all(1 <= d <= m for d, m in zip(degrees, [2, 2, 1], strict=True))
    assert list(task.metadata.getArray("ALBasisDegGauss")) == degrees
    nBasis = sum((d + 1) * (d + 2) // 2 for d in degrees)
    assert result.psfMatchingKernel.getNKernelParameters() == nBasis
    # A Gaussian-to-Gaussian match: the kernel sum is the flux ratio whatever the degrees.
    assert abs(result.psfMatchingKernel.getSum(128.0, 128.0) - 1.3) < 0.02
