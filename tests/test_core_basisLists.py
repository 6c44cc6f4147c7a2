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
"""Basis lists and regularization matrices (upstream's test_basisLists)."""

from __future__ import annotations

import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
import lsst.utils.tests
from lsst.ip.diffim.math import AnalyticKernel, DeltaFunctionKernel, GaussianFunction2


def _checkAlardLupton(testCase, basisList, expected):
    testCase.assertEqual(len(basisList), expected)
    images = [k.getArray() for k in basisList]
    testCase.assertAlmostEqual(images[0].sum(), 1.0, 7)
    for image in images[1:]:
        testCase.assertAlmostEqual(image.sum(), 0.0, 7)
        testCase.assertAlmostEqual((image**2).sum(), 1.0, 7)


def _checkDeltaFunction(testCase, basisList, size):
    testCase.assertEqual(len(basisList), size * size)
    for n, kernel in enumerate(basisList):
        image = kernel.getArray()
        row, col = divmod(n, size)
        testCase.assertEqual(image.sum(), 1.0)
        testCase.assertEqual(image[row, col], 1.0)
        image[row, col] = 0.0
        testCase.assertEqual(np.count_nonzero(image), 0)


class BasisListsTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.configAL = ipDiffim.PsfMatchConfigAL()
        self.configDF = ipDiffim.PsfMatchConfigDF()
        self.ps = ipDiffim.makePropertySet(self.configDF)
        self.ps["useRegularization"] = True

    def testMakeDeltaFunction(self):
        """The delta basis has one unit pixel per kernel, row-major."""
        _checkDeltaFunction(self, ipDiffim.makeDeltaFunctionBasisList(21, 21), 21)
        with self.assertRaises(ValueError):
            ipDiffim.makeDeltaFunctionBasisList(0, 3)

    def testMakeAlardLupton(self):
        """27 renormalized Gaussian-polynomial kernels for degrees (4, 2, 2)."""
        basis = ipDiffim.makeAlardLuptonBasisList(10, 3, [0.7, 1.5, 3.0], [4, 2, 2])
        _checkAlardLupton(self, basis, 27)
        with self.assertRaises(ValueError):
            ipDiffim.makeAlardLuptonBasisList(10, 3, [0.7, 1.5], [4, 2, 2])
        with self.assertRaises(ValueError):
            ipDiffim.makeAlardLuptonBasisList(0, 1, [1.0], [1])

    def testAlardLuptonTermOrder(self):
        """Term n of a Gaussian is the Gaussian times x^a y^b in afw order (x, y, x^2, xy, y^2 ...)."""
        basis = ipDiffim.makeAlardLuptonBasisList(5, 1, [2.0], [2])
        offsets = np.arange(-5, 6) / 5.0
        v, u = np.meshgrid(offsets, offsets, indexing="ij")
        g = np.exp(-((u * 5) ** 2 + (v * 5) ** 2) / 8.0)
        g /= g.sum()
        # Odd terms (sum 0) are only normalized: x term is proportional to g*u.
        xTerm = basis[1].getArray()
        np.testing.assert_allclose(xTerm, g * u / np.sqrt(((g * u) ** 2).sum()), atol=1e-12)
        yTerm = basis[2].getArray()
        np.testing.assert_allclose(yTerm, g * v / np.sqrt(((g * v) ** 2).sum()), atol=1e-12)
        xyTerm = basis[4].getArray()
        np.testing.assert_allclose(xyTerm, g * u * v / np.sqrt(((g * u * v) ** 2).sum()), atol=1e-12)

    def testGenerateAlardLupton(self):
        """Config-driven and FWHM-scaled AL bases are renormalized."""
        _checkAlardLupton(self, ipDiffim.generateAlardLuptonBasisList(self.configAL), 27)
        basis = ipDiffim.generateAlardLuptonBasisList(self.configAL, targetFwhmPix=3.0, referenceFwhmPix=4.0)
        _checkAlardLupton(self, basis, 27)

    def testSigmaRules(self):
        """The worked examples of the spec: sigmas and kernel size from the FWHMs."""
        md = {}
        fwhm = ipDiffim.sigma2fwhm
        basis = ipDiffim.generateAlardLuptonBasisList(
            self.configAL, targetFwhmPix=2.0 * fwhm, referenceFwhmPix=2.4 * fwhm, metadata=md
        )
        np.testing.assert_allclose(md["ALBasisSigGauss"], [0.7, 1.4, 2.8])
        self.assertEqual(md["ALKernelSize"], 21)
        self.assertEqual(md["ALBasisMode"], "convolution")
        self.assertEqual(basis[0].getWidth(), 21)
        md = {}
        ipDiffim.generateAlardLuptonBasisList(self.configAL, 3.0 * fwhm, 3.0 * fwhm, metadata=md)
        np.testing.assert_allclose(md["ALBasisSigGauss"], [0.7, 1.5, 3.0])
        self.assertEqual(md["ALBasisMode"], "config")
        md = {}
        ipDiffim.generateAlardLuptonBasisList(self.configAL, 5.0 * fwhm, 2.0 * fwhm, metadata=md)
        k = np.sqrt(25 - 4)
        np.testing.assert_allclose(md["ALBasisSigGauss"], [k / 2, k, 2 * k])
        self.assertEqual(md["ALBasisMode"], "deconvolution")
        self.assertEqual(md["ALKernelSize"], 35)

    def testMakeKernelBasisList(self):
        """makeKernelBasisList dispatches on kernelBasisSet."""
        _checkAlardLupton(self, ipDiffim.makeKernelBasisList(self.configAL), 27)
        _checkDeltaFunction(self, ipDiffim.makeKernelBasisList(self.configDF), 21)

    def testRenormalize(self):
        """Renormalized Gaussians: sums 1, 0, 0 and unit norms after the first."""
        kernels = [
            AnalyticKernel(21, 21, GaussianFunction2(2, 2)),
            AnalyticKernel(21, 21, GaussianFunction2(3, 4)),
            AnalyticKernel(21, 21, GaussianFunction2(0.2, 0.25)),
        ]
        out = ipDiffim.renormalizeKernelList(kernels)
        sums = [k.getArray().sum() for k in out]
        self.assertAlmostEqual(sums[0], 1.0, 7)
        self.assertAlmostEqual(sums[1], 0.0, 7)
        self.assertAlmostEqual(sums[2], 0.0, 7)
        for k in out[1:]:
            self.assertAlmostEqual((k.getArray() ** 2).sum(), 1.0, 7)

    def testCentralRegularization(self):
        """Stencils 5 and 9 work, 1 fails; negative border penalties fail."""
        self.ps["regularizationType"] = "centralDifference"
        for stencil, ok in ((1, False), (5, True), (9, True)):
            self.ps["centralRegularizationStencil"] = stencil
            if ok:
                h = ipDiffim.makeRegularizationMatrix(self.ps)
                self.assertEqual(h.shape, (441, 441))
            else:
                with self.assertRaises(ValueError):
                    ipDiffim.makeRegularizationMatrix(self.ps)
        self.ps["centralRegularizationStencil"] = 9
        for penalty, ok in ((-1.0, False), (0.0, True)):
            self.ps["regularizationBorderPenalty"] = penalty
            if ok:
                ipDiffim.makeRegularizationMatrix(self.ps)
            else:
                with self.assertRaises(ValueError):
                    ipDiffim.makeRegularizationMatrix(self.ps)

    def testCentralRegularizationValues(self):
        """H = B^T B: a constant kernel interior has zero Laplacian; H is symmetric PSD."""
        h = ipDiffim.makeCentralDifferenceMatrix(7, 7, 5, 0.0, False)
        np.testing.assert_allclose(h, h.T)
        self.assertGreaterEqual(np.linalg.eigvalsh(h).min(), -1e-10)
        flat = np.ones(49)
        # B @ 1 = 0 for interior rows (stencil sums to 0) and 0 on the border (penalty 0).
        self.assertAlmostEqual(float(flat @ h @ flat), 0.0, 10)
        withBg = ipDiffim.makeCentralDifferenceMatrix(7, 7, 5, 3.0, True)
        self.assertEqual(withBg.shape, (50, 50))
        self.assertEqual(np.count_nonzero(withBg[-1]), 0)

    def testForwardRegularization(self):
        """Orders 1 and [1, 2] work; 0 and 4 fail; a scalar order is accepted."""
        self.ps["regularizationType"] = "forwardDifference"
        for orders, ok in ((0, False), (1, True), (4, False), ([1, 2], True)):
            self.ps["forwardRegularizationOrders"] = orders
            if ok:
                ipDiffim.makeRegularizationMatrix(self.ps)
            else:
                with self.assertRaises(ValueError):
                    ipDiffim.makeRegularizationMatrix(self.ps)

    def testForwardDifferenceValues(self):
        """First-order forward differences: H 1 = penalty terms only at the last row/column."""
        h = ipDiffim.makeForwardDifferenceMatrix(4, 4, [1], 0.0, False)
        np.testing.assert_allclose(h @ np.ones(16), 0.0, atol=1e-12)
        ramp = np.tile(np.arange(4.0), 4)
        # Slope 1 in x: B_x ramp = 1 except the last column (penalty 0) -> 12 ones.
        self.assertAlmostEqual(float(ramp @ h @ ramp), 12.0, 10)

    def testBadRegularization(self):
        """An unknown regularization type is refused."""
        self.ps["regularizationType"] = "foo"
        with self.assertRaises(ValueError):
            ipDiffim.makeRegularizationMatrix(self.ps)


def test_delta_function_kernel_pixel():
    """DeltaFunctionKernel puts its 1 at (col, row)."""
    k = DeltaFunctionKernel(5, 3, (4, 1))
    image = k.getArray()
    assert image.shape == (3, 5) and image[1, 4] == 1.0 and image.sum() == 1.0
    with pytest.raises(ValueError):
        DeltaFunctionKernel(5, 3, (5, 1))


class TestMemory(lsst.utils.tests.MemoryTestCase):
    pass


def setup_module(module):
    lsst.utils.tests.init()
