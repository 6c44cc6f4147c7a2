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
"""Kernel candidates, solutions and visitors (upstream's §6.2, 6.4-6.8 peer tests)."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate

import lsst.ip.diffim as ipDiffim
import lsst.utils.tests
from lsst.images import Box
from lsst.ip.diffim.math import (
    AnalyticKernel,
    Chebyshev1Function2,
    FixedKernel,
    GaussianFunction2,
    KernelSolutionError,
    LinearCombinationKernel,
    PolynomialFunction2,
    Property,
    SpatialCellCandidate,
    SpatialCellSet,
    makeStatistics,
)
from lsst.ip.diffim.tests import makeDeltaPair, maskedImage

RECENT = ipDiffim.KernelCandidateF.RECENT
ORIG = ipDiffim.KernelCandidateF.ORIG
PCA = ipDiffim.KernelCandidateF.PCA


def _dfPropertySet(**overrides):
    config = ipDiffim.PsfMatchConfigDF()
    ps = ipDiffim.makePropertySet(config)
    ps["useRegularization"] = False
    ps["checkConditionNumber"] = False
    ps["useCoreStats"] = False
    for key, value in overrides.items():
        ps[key] = value
    return config, ps


def _deltaCandidate(kSum, x, y, ps):
    t, s = makeDeltaPair(kSum)
    return ipDiffim.makeKernelCandidate(x, y, t, s, ps)


class BuildSingleKernelVisitorTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.config, self.ps = _dfPropertySet()
        self.basis = ipDiffim.makeKernelBasisList(self.config)

    def _runWithOneBasis(self, useRegularization):
        cands = [_deltaCandidate(k, 0.0, 0.0, self.ps) for k in (1, 2, 3)]
        if useRegularization:
            hMat = ipDiffim.makeRegularizationMatrix(self.ps)
            visitor = ipDiffim.BuildSingleKernelVisitorF(self.basis, self.ps, hMat)
        else:
            visitor = ipDiffim.BuildSingleKernelVisitorF(self.basis, self.ps)
        visitor.setSkipBuilt(False)
        for c in cands:
            visitor.processCandidate(c)
        for kSum, c in zip((1, 2, 3), cands, strict=True):
            self.assertTrue(c.isInitialized())
            c.getKernel(RECENT)
            with self.assertRaises(KernelSolutionError):
                c.getKernel(PCA)
            if not useRegularization:
                self.assertAlmostEqual(c.getKsum(RECENT), kSum, 5)
        self.assertEqual(visitor.getNProcessed(), 3)
        self.assertEqual(visitor.getNRejected(), 0)
        visitor.reset()
        visitor.setSkipBuilt(True)
        for c in cands:
            visitor.processCandidate(c)
        self.assertEqual(visitor.getNProcessed(), 0)

    def testWithOneBasis(self):
        """Three delta pairs build, without and with an explicit regularization matrix."""
        self._runWithOneBasis(False)
        self._runWithOneBasis(True)

    def _meanBasis(self, cands):
        pca = ipDiffim.KernelPcaD()
        visitor = ipDiffim.KernelPcaVisitorF(pca)
        for c in cands:
            visitor.processCandidate(c)
        visitor.subtractMean()
        pca.analyze()
        return [visitor.getEigenKernels()[0]]

    def testWithThreeBases(self):
        """Refitting with a PCA basis sets new, unique PCA solution ids."""
        cands = [_deltaCandidate(k, 0.0, 0.0, self.ps) for k in (1, 2, 3)]
        builder = ipDiffim.BuildSingleKernelVisitorF(self.basis, self.ps)
        for c in cands:
            builder.processCandidate(c)
            self.assertEqual(c.getKernelSolution(ORIG).getId(), c.getKernelSolution(RECENT).getId())
        refit = ipDiffim.BuildSingleKernelVisitorF(self._meanBasis(cands), self.ps)
        refit.setSkipBuilt(False)
        origIds = [c.getKernelSolution(ORIG).getId() for c in cands]
        for c in cands:
            refit.processCandidate(c)
        self.assertEqual(refit.getNProcessed(), 3)
        pcaIds = []
        for c, oid in zip(cands, origIds, strict=True):
            self.assertEqual(c.getKernelSolution(PCA).getId(), c.getKernelSolution(RECENT).getId())
            self.assertEqual(c.getKernelSolution(ORIG).getId(), oid)
            self.assertNotEqual(c.getKernelSolution(PCA).getId(), oid)
            pcaIds.append(c.getKernelSolution(PCA).getId())
        for c in cands:
            refit.processCandidate(c)
        for c, pid in zip(cands, pcaIds, strict=True):
            self.assertGreater(c.getKernelSolution(PCA).getId(), pid)

    def testRejection(self):
        """A bogus candidate (flux far from the centre) is rejected on its residuals."""
        cands = [_deltaCandidate(k, 0.0, 0.0, self.ps) for k in (1, 2, 3)]
        builder = ipDiffim.BuildSingleKernelVisitorF(self.basis, self.ps)
        for c in cands:
            builder.processCandidate(c)
        basis = self._meanBasis(cands)
        t = np.zeros((51, 51))
        t[25, 25] = 1.0
        s = np.zeros((51, 51))
        s[17, 17] = 51**2
        sVar = np.full((51, 51), 0.1)
        sVar[17, 17] = 1.0
        bogus = ipDiffim.makeKernelCandidate(0.0, 0.0, maskedImage(t, 0.1), maskedImage(s, sVar), self.ps)
        self.assertEqual(bogus.getStatus(), SpatialCellCandidate.UNKNOWN)
        fresh = [_deltaCandidate(k, 0.0, 0.0, self.ps) for k in (1, 2, 3)] + [bogus]
        visitor = ipDiffim.BuildSingleKernelVisitorF(basis, self.ps)
        for c in fresh:
            visitor.processCandidate(c)
        self.assertEqual(visitor.getNProcessed(), 4)
        self.assertEqual(visitor.getNRejected(), 1)
        for c in fresh[:3]:
            self.assertEqual(c.getStatus(), SpatialCellCandidate.GOOD)
        self.assertEqual(bogus.getStatus(), SpatialCellCandidate.BAD)

    def testVisit(self):
        """A 3x3 cell set with one candidate per cell is fully processed (one per cell)."""
        cellSet = SpatialCellSet(Box.factory[0:384, 0:384], 128, 128)
        for i in range(3):
            for j in range(3):
                kSum = 100.0 if (i, j) == (1, 1) else 1.0
                cellSet.insertCandidate(_deltaCandidate(kSum, 128 * i + 64, 128 * j + 64, self.ps))
        visitor = ipDiffim.BuildSingleKernelVisitorF(self.basis, self.ps)
        cellSet.visitCandidates(visitor, 1)
        self.assertEqual(visitor.getNProcessed(), 9)
        self.assertEqual(visitor.getNRejected(), 0)
        for c in cellSet.allCandidates():
            self.assertEqual(c.getStatus(), SpatialCellCandidate.GOOD)


class KernelSumVisitorTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.config, self.ps = _dfPropertySet()
        self.basis = ipDiffim.makeKernelBasisList(self.config)

    def testAggregate(self):
        """Kernel sums aggregate to afw's clipped mean and std."""
        kSums = [1, 1, 1, 1, 2, 3, 4]
        ksv = ipDiffim.KernelSumVisitorF(self.ps)
        ksv.setMode(ipDiffim.KernelSumVisitorF.AGGREGATE)
        unbuilt = _deltaCandidate(1.0, 0.0, 0.0, self.ps)
        with self.assertRaises(KernelSolutionError):
            ksv.processCandidate(unbuilt)
        for kSum in kSums:
            kc = _deltaCandidate(kSum, 0.0, 0.0, self.ps)
            kc.build(self.basis)
            self.assertAlmostEqual(kSum, kc.getKsum(RECENT), 7)
            ksv.processCandidate(kc)
        for getter in (ksv.getNRejected, ksv.getkSumMean, ksv.getkSumStd, ksv.getdkSumMax, ksv.getkSumNpts):
            self.assertEqual(getter(), 0)
        ksv.processKsumDistribution()
        stats = makeStatistics(np.array(kSums, float), Property.MEANCLIP | Property.STDEVCLIP)
        self.assertEqual(ksv.getNRejected(), 0)
        self.assertAlmostEqual(ksv.getkSumMean(), stats.getValue(Property.MEANCLIP), 7)
        self.assertAlmostEqual(ksv.getkSumStd(), stats.getValue(Property.STDEVCLIP), 7)
        self.assertEqual(ksv.getdkSumMax(), self.ps["maxKsumSigma"] * ksv.getkSumStd())
        self.assertEqual(ksv.getkSumNpts(), len(kSums))

    def _doReject(self, clipping):
        self.ps["kernelSumClipping"] = clipping
        kSums = [1, 1, 1, 1, 2, 3, 4, 50]
        cands = []
        ksv = ipDiffim.KernelSumVisitorF(self.ps)
        ksv.setMode(ipDiffim.KernelSumVisitorF.AGGREGATE)
        for kSum in kSums:
            kc = _deltaCandidate(kSum, 0.0, 0.0, self.ps)
            kc.build(self.basis)
            kc.setStatus(SpatialCellCandidate.GOOD)
            ksv.processCandidate(kc)
            cands.append(kc)
        ksv.processKsumDistribution()
        ksv.setMode(ipDiffim.KernelSumVisitorF.REJECT)
        for kc in cands:
            ksv.processCandidate(kc)
        expected = [SpatialCellCandidate.GOOD] * 7 + [
            SpatialCellCandidate.BAD if clipping else SpatialCellCandidate.GOOD
        ]
        self.assertEqual([c.getStatus() for c in cands], expected)
        self.assertEqual(ksv.getNRejected(), 1 if clipping else 0)

    def testReject(self):
        """The outlying kernel sum (50) is rejected only with clipping."""
        self._doReject(False)
        self._doReject(True)

    def testVisit(self):
        """On a 3x3 cell set, the one deviant kernel sum (100) is rejected (strict >, std 0)."""
        cellSet = SpatialCellSet(Box.factory[0:384, 0:384], 128, 128)
        for i in range(3):
            for j in range(3):
                kSum = 100.0 if (i, j) == (1, 1) else 1.0
                kc = _deltaCandidate(kSum, 128 * i + 64, 128 * j + 64, self.ps)
                kc.build(self.basis)
                cellSet.insertCandidate(kc)
        ksv = ipDiffim.KernelSumVisitorF(self.ps)
        ksv.setMode(ipDiffim.KernelSumVisitorF.AGGREGATE)
        cellSet.visitCandidates(ksv, 1)
        ksv.processKsumDistribution()
        ksv.setMode(ipDiffim.KernelSumVisitorF.REJECT)
        cellSet.visitCandidates(ksv, 1)
        self.assertEqual(ksv.getNRejected(), 1)


class KernelPcaTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.config, self.ps = _dfPropertySet()
        self.basis = ipDiffim.makeKernelBasisList(self.config)

    def testGaussian(self):
        """PCA of noisy Gaussian realizations: mean and first eigen image match the truth (20%)."""
        rng = np.random.default_rng(12)
        ref = AnalyticKernel(51, 51, GaussianFunction2(2, 3)).getArray()
        withMean, without = ipDiffim.KernelPcaD(), ipDiffim.KernelPcaD()
        for _ in range(100):
            image = rng.poisson(ref * 10000 + 10).astype(float)
            withMean.addImage(image.copy(), 1.0)
            without.addImage(image.copy(), 1.0)
        visitor = ipDiffim.KernelPcaVisitorF(withMean)
        visitor.subtractMean()
        withMean.analyze()
        without.analyze()
        evWith, evWithout = withMean.getEigenValues(), without.getEigenValues()
        self.assertGreater(evWithout[0], evWith[0])
        self.assertAlmostEqual(evWith[-1], 0.0, 7)
        self.assertEqual(len(visitor.getEigenKernels()), len(evWith) + 1)
        plain = ipDiffim.KernelPcaVisitorF(without)
        self.assertEqual(len(plain.getEigenKernels()), len(evWithout))
        mean = visitor.returnMean()
        big = ref > 1e-3
        np.testing.assert_array_less(np.abs(mean[big] / (ref[big] * 10000 + 10) - 1), 0.2)
        first = plain.getEigenKernels()[0].getArray()
        refPeak = (ref * 10000 + 10) / (ref * 10000 + 10).max()
        np.testing.assert_array_less(np.abs(first[big] / refPeak[big] - 1), 0.2)

    def _threeCandidates(self):
        cands = [_deltaCandidate(k, 0.0, 0.0, self.ps) for k in (1, 2, 3)]
        for c in cands:
            c.build(self.basis)
        return cands

    def testEigenValues(self):
        """Identical unit-sum kernels: eigenvalues 1, 0, 0."""
        pca = ipDiffim.KernelPcaD()
        visitor = ipDiffim.KernelPcaVisitorF(pca)
        for c in self._threeCandidates():
            visitor.processCandidate(c)
        pca.analyze()
        self.assertEqual(len(pca.getEigenImages()), 3)
        ev = pca.getEigenValues()
        self.assertAlmostEqual(ev[0], 1.0, 7)
        self.assertAlmostEqual(ev[1], 0.0, 7)
        self.assertAlmostEqual(ev[2], 0.0, 7)

    def testMeanSubtraction(self):
        """After mean subtraction all eigenvalues vanish and the mean is the unit delta."""
        pca = ipDiffim.KernelPcaD()
        visitor = ipDiffim.KernelPcaVisitorF(pca)
        for c in self._threeCandidates():
            visitor.processCandidate(c)
        visitor.subtractMean()
        pca.analyze()
        for value in pca.getEigenValues():
            self.assertAlmostEqual(value, 0.0, 7)
        mean = visitor.returnMean()
        expected = np.zeros((21, 21))
        expected[10, 10] = 1.0
        np.testing.assert_allclose(mean, expected, atol=1e-7)


class KernelCandidateTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.config, self.ps = _dfPropertySet(fitForBackground=True)
        self.basis = ipDiffim.makeKernelBasisList(self.config)

    def testGaussian(self):
        """DF fit of a Gaussian(2,3)-convolved delta recovers the kernel pixel by pixel."""
        tsize = 71
        t = np.zeros((tsize, tsize))
        t[35, 35] = 1.0
        gk = AnalyticKernel(21, 21, GaussianFunction2(2, 3)).getArray()
        s = correlate(t, gk, mode="constant")
        gscaling = s[10:61, 10:61].sum()
        tVar = np.full((51, 51), 1e-4)
        tVar[25, 25] = 1.0
        tmi, smi = maskedImage(t[10:61, 10:61], tVar), maskedImage(s[10:61, 10:61], 1e-4)
        kc = ipDiffim.makeKernelCandidate(0.0, 0.0, tmi, smi, self.ps)
        kc.build(self.basis)
        self.assertTrue(kc.isInitialized())
        self.assertAlmostEqual(kc.getKsum(RECENT), gscaling, 7)
        self.assertAlmostEqual(kc.getBackground(RECENT), 0.0, 7)
        image = kc.getKernelImage(RECENT)
        ok = gk > 1e-10
        np.testing.assert_allclose(image[ok] / gk[ok], 1.0, atol=1e-5)

    def testZeroVariance(self):
        """A zero-variance pixel makes per-pixel weighting fail with a named error."""
        self.ps["constantVarianceWeighting"] = False
        t = np.zeros((71, 71))
        t[35, 35] = 1.0
        var = np.ones((71, 71))
        var[35, 35] = 0.0
        kc = ipDiffim.makeKernelCandidate(0.0, 0.0, maskedImage(t, var), maskedImage(t, var), self.ps)
        with self.assertRaisesRegex(KernelSolutionError, "variance"):
            kc.build(self.basis)

    def testDeltaFunctionScaled(self):
        """science = 2.7 template (+ 11.3): delta kernel of 2.7, background 0 (then 11.3)."""
        rng = np.random.default_rng(2)
        yy, xx = np.mgrid[0:61, 0:61]
        template = 100 * np.exp(-((xx - 30.2) ** 2 + (yy - 29.7) ** 2) / 8.0) + rng.normal(size=(61, 61))
        for scale, offset in ((2.7, 0.0), (1.0, 11.3)):
            science = scale * template + offset
            kc = ipDiffim.makeKernelCandidate(
                0.0, 0.0, maskedImage(template, 1.0), maskedImage(science, 1.0), self.ps
            )
            kc.build(self.basis)
            image = kc.getKernelImage(RECENT)
            self.assertAlmostEqual(image[10, 10], scale, 5)
            image[10, 10] = 0.0
            self.assertLess(np.abs(image).max(), 1e-5)
            self.assertAlmostEqual(kc.getBackground(RECENT), offset, 4)

    def testGettersBeforeBuild(self):
        """Every solution getter raises before build; the rating is available."""
        t, s = makeDeltaPair(2.0)
        kc = ipDiffim.makeKernelCandidate(0.0, 0.0, t, s, self.ps)
        self.assertFalse(kc.isInitialized())
        self.assertTrue(math.isfinite(kc.getCandidateRating()))
        for which in (ORIG, PCA, RECENT):
            with self.assertRaises(KernelSolutionError):
                kc.getKernel(which)
        with self.assertRaises(KernelSolutionError):
            kc.getImage()

    def testSourceConstructor(self):
        """A catalog row gives the centre and the PSF-flux rating."""
        t, s = makeDeltaPair(2.0)
        row = {"x": 12.5, "y": 7.25, "psfFlux": 1.0}
        kc = ipDiffim.makeKernelCandidate(row, t, s, self.ps)
        self.assertEqual((kc.getXCenter(), kc.getYCenter()), (12.5, 7.25))
        self.assertEqual(kc.getCandidateRating(), 1.0)
        self.assertIs(kc.getSource(), row)
        kc.build(self.basis)
        self.assertAlmostEqual(kc.getKsum(RECENT), 2.0, 5)

    def testNanStampIsBad(self):
        """A NaN in a stamp makes the candidate BAD in the visitor, not a crash."""
        t, s = makeDeltaPair(2.0)
        t.image.array[3, 3] = np.nan
        kc = ipDiffim.makeKernelCandidate(0.0, 0.0, t, s, self.ps)
        visitor = ipDiffim.BuildSingleKernelVisitorF(self.basis, self.ps)
        visitor.processCandidate(kc)
        self.assertEqual(kc.getStatus(), SpatialCellCandidate.BAD)
        self.assertEqual(visitor.getNRejected(), 1)

    def testInsert(self):
        """A GOOD candidate inserted into a cell set is seen by cell.begin(True)."""
        t, s = makeDeltaPair(1.0, size=10)
        kc = ipDiffim.makeKernelCandidate(0.0, 0.0, t, s, self.ps)
        kc.setStatus(SpatialCellCandidate.GOOD)
        cellSet = SpatialCellSet(Box.factory[0:1, 0:1], 128, 128)
        cellSet.insertCandidate(kc)
        seen = [c for cell in cellSet.getCellList() for c in cell.begin(True)]
        self.assertEqual(len(seen), 1)
        self.assertEqual(seen[0].getStatus(), SpatialCellCandidate.GOOD)


def _makeSpatialKernel(order=2):
    basis = ipDiffim.renormalizeKernelList(
        [
            AnalyticKernel(21, 21, GaussianFunction2(2, 2)),
            AnalyticKernel(21, 21, GaussianFunction2(5, 3, 0.5 * np.pi)),
        ]
    )
    kernel = LinearCombinationKernel(basis, PolynomialFunction2(order))
    kernel.setSpatialParameters([[1, 0, 0, 0, 0, 0], [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]])
    return kernel


class AssessSpatialKernelVisitorTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.config = ipDiffim.PsfMatchConfigAL()
        self.ps = ipDiffim.makePropertySet(self.config)
        self.basis = ipDiffim.makeKernelBasisList(self.config)
        self.kernel = _makeSpatialKernel()
        t = np.zeros((100, 100))
        t[50, 50] = 1.0
        var = np.full((100, 100), 0.1)
        var[50, 50] = 1.0
        image = correlate(t, self.kernel.getArray(0, 0, doNormalize=True), mode="constant")
        self.tmi = maskedImage(t[25:76, 25:76], var[25:76, 25:76])
        self.smi = maskedImage(image[25:76, 25:76], var[25:76, 25:76])

    def _candidate(self):
        kc = ipDiffim.makeKernelCandidate(50.0, 50.0, self.tmi, self.smi, self.ps)
        kc.build(self.basis)
        self.assertTrue(kc.isInitialized())
        return kc

    def testGood(self):
        """The generating kernel passes the assessment."""
        kc = self._candidate()
        bg = PolynomialFunction2(1)
        visitor = ipDiffim.AssessSpatialKernelVisitorF(self.kernel, bg, self.ps)
        visitor.processCandidate(kc)
        self.assertEqual(visitor.getNProcessed(), 1)
        self.assertEqual(visitor.getNRejected(), 0)
        self.assertEqual(kc.getStatus(), SpatialCellCandidate.GOOD)

    def testBad(self):
        """A wrong kernel and background fail the assessment."""
        kc = self._candidate()
        wrong = LinearCombinationKernel(
            [AnalyticKernel(21, 21, GaussianFunction2(1, 1))], PolynomialFunction2(0)
        )
        wrong.setSpatialParameters([[1.0]])
        bg = PolynomialFunction2(1, [10, 10, 10])
        visitor = ipDiffim.AssessSpatialKernelVisitorF(wrong, bg, self.ps)
        visitor.processCandidate(kc)
        self.assertEqual(visitor.getNProcessed(), 1)
        self.assertEqual(visitor.getNRejected(), 1)
        self.assertEqual(kc.getStatus(), SpatialCellCandidate.BAD)


class BuildSpatialKernelVisitorTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.config = ipDiffim.PsfMatchConfigAL()
        self.basis = ipDiffim.makeKernelBasisList(self.config)
        self.bbox = Box.factory[0:510, 0:510]

    def _run(self, sko, bgo, fitBg):
        ps = ipDiffim.makePropertySet(self.config)
        ps["spatialKernelOrder"] = sko
        ps["spatialBgOrder"] = bgo
        ps["fitForBackground"] = fitBg
        single = ipDiffim.BuildSingleKernelVisitorF(self.basis, ps)
        spatial = ipDiffim.BuildSpatialKernelVisitorF(self.basis, self.bbox, ps)
        for x in (1, 11, 21, 31, 41):
            for y in (1, 11, 21, 31, 41):
                kc = _deltaCandidate(1.0, x, y, ps)
                single.processCandidate(kc)
                spatial.processCandidate(kc)
        spatial.solveLinearEquation()
        kernel, background = spatial.getSolutionPair()
        nterm = (sko + 1) * (sko + 2) // 2
        if sko == 0:
            self.assertEqual(len(kernel.getKernelParameters()), len(self.basis))
            self.assertFalse(kernel.isSpatiallyVarying())
        else:
            params = kernel.getSpatialParameters()
            self.assertEqual(len(params), len(self.basis))
            for row in params:
                self.assertEqual(len(row), nterm)
            self.assertTrue(all(v == 0.0 for v in params[0][1:]))
        expectedBg = (bgo + 1) * (bgo + 2) // 2 if fitBg else 1
        self.assertEqual(len(background.getParameters()), expectedBg)
        self.assertTrue(np.all(np.isfinite(kernel.getArray(100, 100))))

    def testNoBg(self):
        """Spatial orders 0-2 without background: layout and a constant first term."""
        for sko in (0, 1, 2):
            self._run(sko, 0, False)

    def testAlSpatialModel(self):
        """Kernel and background orders together, on a degenerate geometry (finite solution)."""
        for sko, bgo in ((0, 0), (1, 0), (0, 1), (1, 1), (2, 2)):
            self._run(sko, bgo, True)

    def testModelType(self):
        """polynomial and chebyshev1 build; anything else is refused."""
        ps = ipDiffim.makePropertySet(self.config)
        for mt in ("polynomial", "chebyshev1"):
            ps["spatialModelType"] = mt
            ipDiffim.BuildSpatialKernelVisitorF(self.basis, self.bbox, ps)
        ps["spatialModelType"] = "foo"
        with self.assertRaises(ValueError):
            ipDiffim.BuildSpatialKernelVisitorF(self.basis, self.bbox, ps)

    def testKnownSpatialVariation(self):
        """Candidates whose science stamps follow a linearly varying kernel give back that variation."""
        basis = ipDiffim.makeAlardLuptonBasisList(7, 2, [1.0, 2.5], [2, 1])
        truth = LinearCombinationKernel(basis, Chebyshev1Function2(1, self.bbox))
        params = np.zeros((len(basis), 3))
        params[0, 0] = 1.3
        params[1, 1] = 0.02
        params[6, :] = [0.05, 0.03, -0.04]
        truth.setSpatialParameters(params)
        ps = ipDiffim.makePropertySet(self.config)
        ps["spatialKernelOrder"] = 1
        ps["fitForBackground"] = True
        ps["spatialBgOrder"] = 1
        bg = Chebyshev1Function2(1, self.bbox, [5.0, 1.0, -2.0])
        single = ipDiffim.BuildSingleKernelVisitorF(basis, ps)
        spatial = ipDiffim.BuildSpatialKernelVisitorF(basis, self.bbox, ps)
        rng = np.random.default_rng(0)
        for x in np.linspace(40, 470, 5):
            for y in np.linspace(40, 470, 5):
                t = rng.normal(size=(45, 45)) * 50 + 100
                s = correlate(t, truth.getArray(x, y), mode="constant") + bg(x, y)
                kc = ipDiffim.makeKernelCandidate(x, y, maskedImage(t, 1.0), maskedImage(s, 1.0), ps)
                single.processCandidate(kc)
                spatial.processCandidate(kc)
        spatial.solveLinearEquation()
        kernel, background = spatial.getSolutionPair()
        np.testing.assert_allclose(np.array(kernel.getSpatialParameters()), params, atol=1e-6)
        np.testing.assert_allclose(background.getParameters(), [5.0, 1.0, -2.0], atol=1e-4)


class ImageStatisticsTestCase(lsst.utils.tests.TestCase):
    def setUp(self):
        self.ps = ipDiffim.makePropertySet(ipDiffim.PsfMatchConfigDF())

    def _stats(self, image, var, core=0, mask=None):
        mi = maskedImage(image, var)
        if mask is not None:
            plane, cols = mask
            flags = np.zeros(image.shape, bool)
            flags[:, cols] = True
            mi.mask.set(plane, flags)
        stats = ipDiffim.ImageStatisticsF(self.ps)
        stats.apply(mi, core)
        return stats

    def testImageStatistics(self):
        """The spec's cases: zero variance skipped, constants, ramp, core and masked pixels."""
        zeros = np.zeros((20, 20))
        self.assertEqual(self._stats(zeros, 0.0).getNpix(), 0)
        self.assertEqual(self._stats(zeros, 0.0, core=3).getNpix(), 0)
        s = self._stats(zeros, 1.0)
        self.assertEqual((s.getMean(), s.getRms(), s.getNpix()), (0.0, 0.0, 400))
        s = self._stats(np.ones((20, 20)), 1.0)
        self.assertEqual((s.getMean(), s.getRms(), s.getNpix()), (1.0, 0.0, 400))
        self.assertEqual(self._stats(np.ones((20, 20)), 1.0, core=3).getNpix(), 49)
        jj, ii = np.mgrid[0:20, 0:20]
        ramp = (ii + 2.3 * jj).astype(np.float32).astype(float)
        s = self._stats(ramp, 1.0)
        self.assertAlmostEqual(s.getMean(), ramp.mean(), 7)
        self.assertAlmostEqual(s.getRms(), ramp.std(), 1)
        self.assertAlmostEqual(s.getRms(), ramp.std(ddof=1), 7)
        s = self._stats(ramp, 1.0, mask=("NO_DATA", 19))
        self.assertEqual(s.getNpix(), 380)
        self.assertAlmostEqual(s.getMean(), ramp[:, :19].mean(), 7)
        s = self._stats(ramp, 1.0, mask=("BAD", 19))
        self.assertEqual(s.getNpix(), 400)


def test_fixed_kernel_sum():
    """FixedKernel keeps its image and sum."""
    k = FixedKernel(np.arange(9.0).reshape(3, 3))
    assert k.getSum() == 36.0 and k.getArray()[2, 1] == 7.0


class TestMemory(lsst.utils.tests.MemoryTestCase):
    pass


def setup_module(module):
    lsst.utils.tests.init()
