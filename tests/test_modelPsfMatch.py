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
"""ModelPsfMatchTask: matching an image to a model PSF (upstream's test_modelPsfMatch)."""

from __future__ import annotations

import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
import lsst.utils.tests
from lsst.images import Box
from lsst.images.psfs import GaussianPointSpreadFunction
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.adapters.psf import getPsfFwhm
from lsst.ip.diffim.modelPsfMatch import nextOddInteger


def _makeExposure(sigma: float = 2.0, size: int = 256, stamp: int = 11):
    bbox = Box.from_shape((size, size))
    rng = np.random.default_rng(7)
    image = rng.normal(size=(size, size)).astype(np.float32)
    psf = GaussianPointSpreadFunction(sigma, bounds=bbox, stamp_size=stamp)
    return makeVisitImage(image, np.ones_like(image), psf=psf)


def _config(kernelSize: int = 9):
    config = ipDiffim.ModelPsfMatchTask.ConfigClass()
    config.kernel.active.scaleByFwhm = False
    config.kernel.active.kernelSize = kernelSize
    config.kernel.active.kernelSizeMin = kernelSize
    return config


class ModelPsfMatchTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.exposure = _makeExposure()
        self.bbox = self.exposure.bbox
        self.reference = GaussianPointSpreadFunction(3.7, bounds=self.bbox, stamp_size=11)

    def testTooBig(self):
        """A kernel too large for the PSF stamps is refused."""
        config = _config()
        config.doAutoPadPsf = False
        config.kernel.active.kernelSize = 11
        task = ipDiffim.ModelPsfMatchTask(config=config)
        with self.assertRaisesRegex(ValueError, "too big"):
            task.run(self.exposure, self.reference)

    def testMatch(self):
        """The kernel sum is the requested one, for spatial orders 0 and 1."""
        for order in (0, 1):
            for kernelSum in (0.5, 1.0, 2.7):
                config = _config()
                config.kernel.active.spatialKernelOrder = order
                task = ipDiffim.ModelPsfMatchTask(config=config)
                result = task.run(self.exposure, self.reference, kernelSum=kernelSum)
                self.assertAlmostEqual(result.psfMatchingKernel.getSum(0.0, 0.0), kernelSum, 7)

    def testMatchedPsf(self):
        """The science PSF convolved with the kernel reproduces the model PSF to 1% of its peak."""
        from scipy.ndimage import correlate

        config = _config(21)
        exposure = _makeExposure(stamp=41)
        reference = GaussianPointSpreadFunction(3.7, bounds=exposure.bbox, stamp_size=41)
        task = ipDiffim.ModelPsfMatchTask(config=config)
        result = task.run(exposure, reference)
        kernel = result.psfMatchingKernel.getArray(128.0, 128.0)
        science = exposure.psf.compute_kernel_image(x=128, y=128).array
        target = reference.compute_kernel_image(x=128, y=128).array
        matched = correlate(science, kernel, mode="constant")
        inner = (slice(10, 31), slice(10, 31))
        self.assertLess(np.abs(matched[inner] - target[inner]).max() / target.max(), 0.01)

    def testAdjustModelSize(self):
        """A 13x13 model is resized to the 11x11 science PSF stamps."""
        config = _config()
        config.doAutoPadPsf = False
        reference = GaussianPointSpreadFunction(3.7, bounds=self.bbox, stamp_size=13)
        task = ipDiffim.ModelPsfMatchTask(config=config)
        result = task.run(self.exposure, reference)
        psf = result.psfMatchedExposure.psf
        self.assertEqual(psf.compute_kernel_image(x=128, y=128).array.shape, (11, 11))
        self.assertEqual(psf.sigma, 3.7)

    def testPadPsf(self):
        """Auto padding gives 13x13 stamps; manual even padding adds its value; odd is refused."""
        config = _config()
        task = ipDiffim.ModelPsfMatchTask(config=config)
        result = task.run(self.exposure, self.reference)
        width = result.psfMatchedExposure.psf.compute_kernel_image(x=128, y=128).array.shape[1]
        self.assertEqual(width, nextOddInteger(9 * 1.4))
        for pad, expected in ((0, 11), (2, 13), (4, 15)):
            config = _config()
            config.doAutoPadPsf = False
            config.padPsfBy = pad
            result = ipDiffim.ModelPsfMatchTask(config=config).run(self.exposure, self.reference)
            width = result.psfMatchedExposure.psf.compute_kernel_image(x=128, y=128).array.shape[1]
            self.assertEqual(width, expected)
        for pad in (1, 3, 5):
            config = _config()
            config.doAutoPadPsf = False
            config.padPsfBy = pad
            with self.assertRaises(ValueError):
                ipDiffim.ModelPsfMatchTask(config=config).run(self.exposure, self.reference)

    def testPropagateVisitInfo(self):
        """The output keeps the input's observation metadata and band."""
        result = ipDiffim.ModelPsfMatchTask(config=_config()).run(self.exposure, self.reference)
        self.assertEqual(result.psfMatchedExposure.obs_info, self.exposure.obs_info)
        self.assertEqual(result.psfMatchedExposure.band, self.exposure.band)

    def testNoPsf(self):
        """An input without a PSF is refused."""
        from lsst.images import Image, MaskedImage

        mi = MaskedImage(Image(np.zeros((64, 64), np.float32)), mask_schema=self.exposure.mask.schema)
        with pytest.raises(RuntimeError, match="PSF"):
            ipDiffim.ModelPsfMatchTask(config=_config()).run(mi, self.reference)


def test_next_odd_integer():
    """nextOddInteger rounds up to odd."""
    assert [nextOddInteger(x) for x in (12.6, 13.0, 14.0, 1.0)] == [13, 13, 15, 1]


def test_fwhm_of_gaussian_psf():
    """getPsfFwhm of a Gaussian PSF model is 2.3548 sigma within 1%."""
    bbox = Box.from_shape((64, 64))
    for sigma in (1.0, 1.23456, 2.1):
        psf = GaussianPointSpreadFunction(sigma, bounds=bbox, stamp_size=25)
        assert abs(getPsfFwhm(psf) / (2.35482 * sigma) - 1) < 0.01


class TestMemory(lsst.utils.tests.MemoryTestCase):
    pass


def setup_module(module):
    lsst.utils.tests.init()
