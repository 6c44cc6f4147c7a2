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
"""afw.math-like primitives, configs, and PsfMatchTask._solve end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lsst.ip.diffim as ipDiffim
import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.utils.tests
from lsst.images import Box
from lsst.ip.diffim.math import (
    Box2D,
    CandidateVisitor,
    Chebyshev1Function2,
    PolynomialFunction2,
    SpatialCellCandidate,
    SpatialCellSet,
    clippedMeanStd,
)
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair
from lsst.ip.diffim.tests import maskedImage


class _Rated(SpatialCellCandidate):
    def __init__(self, x, y, rating):
        super().__init__(x, y)
        self._rating = rating

    def getCandidateRating(self):
        return self._rating


class _Recorder(CandidateVisitor):
    def __init__(self, badIds=(), raiseIds=()):
        self.seen, self.badIds, self.raiseIds, self.resets = [], set(badIds), set(raiseIds), 0

    def reset(self):
        self.resets += 1

    def processCandidate(self, candidate):
        self.seen.append(candidate.getId())
        if candidate.getId() in self.raiseIds:
            raise ArithmeticError("boom")
        if candidate.getId() in self.badIds:
            candidate.setStatus(SpatialCellCandidate.BAD)


def test_cell_layout():
    """Cells tile the region row by row; the last column/row end at the region edge."""
    cells = SpatialCellSet(Box.factory[10:310, 5:205], 128, 100).getCellList()
    assert [c.getLabel() for c in cells[:3]] == ["Cell 0x0", "Cell 1x0", "Cell 0x1"]
    assert len(cells) == 2 * 3
    assert cells[1].getBBox() == Box.factory[10:110, 133:205]
    assert cells[-1].getBBox() == Box.factory[210:310, 133:205]
    with pytest.raises(ValueError):
        SpatialCellSet(Box.factory[0:10, 0:10], 0)


def test_insertion_order_and_visiting():
    """Candidates sort by decreasing rating, newest first among ties; top-N visits skip BAD lazily."""
    cellSet = SpatialCellSet(Box.factory[0:100, 0:100], 100)
    a, b, c, d = _Rated(5, 5, 1.0), _Rated(6, 6, 3.0), _Rated(7, 7, 2.0), _Rated(8, 8, 2.0)
    for cand in (a, b, c, d):
        cellSet.insertCandidate(cand)
    order = [x.getId() for x in cellSet.getCellList()[0].begin(False)]
    assert order == [b.getId(), d.getId(), c.getId(), a.getId()]
    rec = _Recorder(badIds={b.getId()})
    cellSet.visitCandidates(rec, 2)
    # b turns BAD during its own visit but still counts toward the limit of 2.
    assert rec.seen == [b.getId(), d.getId()] and rec.resets == 1
    rec = _Recorder()
    cellSet.visitCandidates(rec, 2)
    assert rec.seen == [d.getId(), c.getId()]
    rec = _Recorder(raiseIds={d.getId()})
    cellSet.visitCandidates(rec, 2, ignoreExceptions=True)
    assert rec.seen == [d.getId(), c.getId(), a.getId()]
    with pytest.raises(ArithmeticError):
        cellSet.visitCandidates(_Recorder(raiseIds={d.getId()}), 2)
    rec = _Recorder()
    cellSet.visitAllCandidates(rec)
    assert len(rec.seen) == 4
    with pytest.raises(LookupError):
        cellSet.insertCandidate(_Rated(150, 5, 1.0))


def test_function_layouts():
    """Parameters run x^n, x^(n-1) y, ..., y^n per order; Chebyshev maps Box2D(bbox) onto [-1, 1]."""
    f = PolynomialFunction2(2, [1, 2, 3, 4, 5, 6])
    x, y = 1.5, -0.5
    assert f(x, y) == pytest.approx(1 + 2 * x + 3 * y + 4 * x * x + 5 * x * y + 6 * y * y)
    bbox = Box.factory[0:11, 0:21]
    assert Box2D.fromBox(bbox) == Box2D(-0.5, -0.5, 20.5, 10.5)
    c = Chebyshev1Function2(2, bbox, [0, 1, 0, 0, 0, 0])
    assert c(-0.5, 3.0) == pytest.approx(-1.0) and c(20.5, 3.0) == pytest.approx(1.0)
    c2 = Chebyshev1Function2(2, bbox, [0, 0, 0, 1, 0, 0])
    assert c2(10.0, 5.0) == pytest.approx(-1.0)  # T2(0) = -1
    termX, termY = c.termsXY(np.arange(21), np.arange(11))
    full = c.terms(*np.meshgrid(np.arange(21), np.arange(11)))
    np.testing.assert_allclose(termY[:, :, None] * termX[:, None, :], full)


def test_clipped_statistics():
    """MEANCLIP/STDEVCLIP: IQR-seeded 3-sigma clipping with unbiased variance."""
    values = np.array([1, 1, 1, 1, 2, 3, 4, 50, np.nan], dtype=float)
    mean, std, n = clippedMeanStd(values)
    kept = np.array([1, 1, 1, 1, 2, 3, 4], dtype=float)
    assert n == 8
    assert mean == pytest.approx(kept.mean())
    assert std == pytest.approx(kept.std(ddof=1))
    rng = np.random.default_rng(1)
    gauss = rng.normal(size=20000)
    mean, std, _ = clippedMeanStd(np.concatenate([gauss, np.full(200, 40.0)]))
    assert abs(mean) < 0.03 and abs(std - 0.987) < 0.02  # 3-sigma clipped unit Gaussian


class ConfigValidationTestCase(lsst.utils.tests.TestCase):
    def testDefaultsValidate(self):
        """The default configs validate; DF turns on PCA."""
        for cls in (
            ipDiffim.PsfMatchConfigAL,
            ipDiffim.PsfMatchConfigDF,
            ipDiffim.ImagePsfMatchConfig,
            ipDiffim.SnapPsfMatchConfig,
            ipDiffim.ModelPsfMatchConfig,
        ):
            cls().validate()
        self.assertTrue(ipDiffim.PsfMatchConfigDF().usePcaForSpatialKernel)
        config = ipDiffim.PsfMatchConfig()
        config.detectionConfig.fpGrowPix = 10
        config.validate()

    def testInvalid(self):
        """Invalid values name their field."""
        config = ipDiffim.PsfMatchConfigAL()
        config.kernelSize = 20
        with self.assertRaisesRegex(pexConfig.FieldValidationError, "kernelSize"):
            config.validate()
        config = ipDiffim.PsfMatchConfigAL()
        config.alardDegGauss = [4, 2]
        with self.assertRaisesRegex(pexConfig.FieldValidationError, "alardDegGauss"):
            config.validate()
        config = ipDiffim.PsfMatchConfigDF()
        config.lambdaType = "minimizeBiasedRisk"
        with self.assertRaisesRegex(pexConfig.FieldValidationError, "lambdaType.*not supported"):
            config.validate()
        with self.assertRaises(pexConfig.FieldValidationError):
            ipDiffim.PsfMatchConfigAL().maxSpatialIterations = 6
        with self.assertRaises(pexConfig.FieldValidationError):
            ipDiffim.PsfMatchConfigAL().kernelBasisSet = "foo"


class _CellSetTask(ipDiffim.PsfMatchTask):
    ConfigClass = ipDiffim.PsfMatchConfigAL

    def _buildCellSet(self, template, science, positions, half=21):
        cellSet = SpatialCellSet(template.bbox, self.kConfig.sizeCellX, self.kConfig.sizeCellY)
        ps = ipDiffim.makePropertySet(self.kConfig)
        for x, y in positions:
            box = Box.factory[int(y) - half : int(y) + half + 1, int(x) - half : int(x) + half + 1]
            if not template.bbox.contains(box):
                continue
            cellSet.insertCandidate(ipDiffim.makeKernelCandidate(x, y, template[box], science[box], ps))
        return cellSet


def _pairCellSet(task, variable=None):
    pair = makeSyntheticPair(size=384, nStars=120, seed=8, transients=[])
    science = pair.science.copy()
    bright = np.argsort(pair.fluxes)[::-1][:40]
    positions = [(pair.xs[k], pair.ys[k]) for k in bright]
    if variable is not None:
        k = bright[variable]
        yy, xx = np.mgrid[0:384, 0:384]
        science += (
            0.8
            * pair.fluxes[k]
            * np.exp(-((xx - pair.xs[k]) ** 2 + (yy - pair.ys[k]) ** 2) / 8.0)
            / (8 * math.pi)
        )
    template = maskedImage(pair.template, pair.templateVariance)
    sci = maskedImage(science, pair.scienceVariance)
    return task._buildCellSet(template, sci, positions), pair, bright


class PsfMatchTaskTestCase(lsst.utils.tests.TestCase):
    def _task(self, **overrides):
        config = ipDiffim.PsfMatchConfigAL()
        config.fitForBackground = True
        config.spatialKernelOrder = 1
        for key, value in overrides.items():
            setattr(config, key, value)
        return _CellSetTask(config=config)

    def testSolveMetadata(self):
        """_solve recovers the flux ratio and writes every diagnostic key."""
        task = self._task()
        cellSet, pair, _ = _pairCellSet(task)
        basis = ipDiffim.makeKernelBasisList(task.kConfig, 3.0, 4.5, metadata=task.metadata)
        solution, kernel, background = task._solve(cellSet, basis)
        md = task.metadata
        self.assertLess(abs(md["spatialKernelSum"] / pair.fluxRatio - 1), 0.01)
        self.assertGreater(md["spatialConditionNum"], 0)
        for key in ("ALBasisNGauss", "ALBasisDegGauss", "ALBasisSigGauss", "ALKernelSize", "ALBasisMode"):
            self.assertIn(key, md)
        for kind in ("LOCAL", "SPATIAL"):
            for stat in ("MEAN", "MEDIAN", "STDEV"):
                self.assertTrue(math.isfinite(md[f"KCDiffimStDev_{kind}_{stat}"]))
        self.assertLess(abs(md["KCDiffimStDev_SPATIAL_MEDIAN"] - 1.0), 0.15)
        self.assertEqual(md["spatialKernelOrder"], 1)
        self.assertIn("_solveEndUtc", task.getFullMetadata()[task.getFullName()])

    def testVariableStarRejected(self):
        """A candidate whose science flux is 80% higher is rejected by kernel-sum clipping."""
        task = self._task()
        cellSet, pair, bright = _pairCellSet(task, variable=3)
        basis = ipDiffim.makeKernelBasisList(task.kConfig, 3.0, 4.5)
        task._solve(cellSet, basis)
        k = bright[3]
        cand = [c for c in cellSet.allCandidates() if abs(c.getXCenter() - pair.xs[k]) < 1e-3]
        self.assertEqual(len(cand), 1)
        self.assertEqual(cand[0].getStatus(), SpatialCellCandidate.BAD)
        self.assertLess(abs(task.metadata["spatialKernelSum"] / pair.fluxRatio - 1), 0.01)

    def testNoCandidates(self):
        """Empty cells and all-BAD candidates raise NoKernelCandidatesError (an AlgorithmError)."""
        task = self._task()
        basis = ipDiffim.makeKernelBasisList(task.kConfig)
        empty = SpatialCellSet(Box.factory[0:256, 0:256], 128)
        with self.assertRaises(ipDiffim.NoKernelCandidatesError) as info:
            task._solve(empty, basis)
        self.assertIsInstance(info.exception, pipeBase.AlgorithmError)
        self.assertIn("nBadCandidates", info.exception.metadata)
        cellSet, _, _ = _pairCellSet(task)
        for cand in cellSet.allCandidates():
            cand.setStatus(SpatialCellCandidate.BAD)
        with self.assertRaises(ipDiffim.NoKernelCandidatesError):
            task._solve(cellSet, basis)

    def testDeltaFunctionWithRegularizationAndPca(self):
        """DF basis with regularization and a PCA spatial basis solves and conserves flux."""
        config = ipDiffim.PsfMatchConfigDF()
        config.kernelSize = 11
        config.fitForBackground = True
        config.spatialKernelOrder = 1
        config.numPrincipalComponents = 3

        class _DfTask(_CellSetTask):
            ConfigClass = ipDiffim.PsfMatchConfigDF

        task = _DfTask(config=config)
        self.assertIsNotNone(task.hMat)
        cellSet, pair, _ = _pairCellSet(task)
        basis = ipDiffim.makeKernelBasisList(task.kConfig)
        _, kernel, _ = task._solve(cellSet, basis)
        self.assertEqual(len(kernel.getKernelList()), 3)
        self.assertLess(abs(task.metadata["spatialKernelSum"] / pair.fluxRatio - 1), 0.02)

    def testTaskPlumbing(self):
        """makeField/makeSubtask and full names work as in pipe_base."""

        class ParentConfig(pexConfig.Config):
            psfMatch = ipDiffim.ImagePsfMatchTask.makeField(doc="matching")

        class Parent(pipeBase.Task):
            ConfigClass = ParentConfig
            _DefaultName = "parent"

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.makeSubtask("psfMatch")

        parent = Parent()
        self.assertEqual(parent.psfMatch.getFullName(), "parent.psfMatch")
        self.assertIsInstance(parent.psfMatch, ipDiffim.ImagePsfMatchTask)


class TestMemory(lsst.utils.tests.MemoryTestCase):
    pass


def setup_module(module):
    lsst.utils.tests.init()


@pytest.mark.parametrize("useCoreStats", [False, True])
def test_batched_visitors_match_one_at_a_time(useCoreStats):
    """Batched single-kernel fits and assessments give the same statuses, chi2 and fit as one at a time."""
    results = []
    for batched in (True, False):
        config = ipDiffim.PsfMatchConfigAL()
        config.fitForBackground = True
        config.spatialKernelOrder = 1
        config.useCoreStats = useCoreStats
        task = _CellSetTask(config=config)
        cellSet, _, _ = _pairCellSet(task)
        basis = ipDiffim.makeKernelBasisList(task.kConfig, 3.0, 4.5)
        _, kernel, _ = task._solve(cellSet, basis, batched=batched)
        cands = cellSet.allCandidates()
        results.append(
            (
                np.array(kernel.getSpatialParameters()),
                [c.getStatus() for c in cands],
                np.array([c.getChi2() for c in cands]),
                {k: task.metadata[k] for k in task.metadata.names() if k.startswith("KCDiffim")},
            )
        )
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-8)
    assert results[0][1] == results[1][1]
    # Residual metrics: from the residuals the batched visitors kept, or computed afresh.
    assert len(results[0][3]) == 30 and results[0][3].keys() == results[1][3].keys()
    assert all(np.isfinite(v) for v in results[0][3].values())
    for key, value in results[0][3].items():
        np.testing.assert_allclose(value, results[1][3][key], rtol=1e-5, atol=1e-7, err_msg=key)
    # The one-at-a-time difference stamps are float32 (as afw MaskedImageF): chi2 agree to ~1e-7.
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=2e-6)


def test_trace_loggers_under_lsst_ip_diffim(caplog):
    """``trace_set_at("lsst.ip.diffim", 4)`` shows the per-candidate and spatial-fit trace lines."""
    import logging

    from lsst.utils.logging import trace_set_at

    config = ipDiffim.PsfMatchConfigAL()
    config.spatialKernelOrder = 1
    task = _CellSetTask(config=config)
    assert ipDiffim.ImagePsfMatchTask().log.name == "lsst.psfMatch"  # task loggers keep their names
    cellSet, _, _ = _pairCellSet(task)
    basis = ipDiffim.makeKernelBasisList(task.kConfig, 3.0, 4.5)
    task._solve(cellSet, basis)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        assert not [r for r in caplog.records if r.name.startswith("TRACE")]  # off by default
    caplog.clear()
    trace_set_at("lsst.ip.diffim", 4)
    try:
        task._solve(_pairCellSet(task)[0], basis)
    finally:
        for level in range(6):
            logging.getLogger(f"TRACE{level}.lsst.ip.diffim").setLevel(logging.NOTSET)
    names = {r.name for r in caplog.records}
    assert "TRACE4.lsst.ip.diffim.BuildSingleKernelVisitor" in names
    assert "TRACE4.lsst.ip.diffim.AssessSpatialKernelVisitor" in names
    assert "TRACE2.lsst.ip.diffim.BuildSpatialKernelVisitor" in names
    assert "TRACE2.lsst.ip.diffim.psfMatch" in names
    perCandidate = [
        r.getMessage() for r in caplog.records if r.name == "TRACE4.lsst.ip.diffim.BuildSingleKernelVisitor"
    ]
    assert len(perCandidate) >= 20 and all("own-fit residual mean" in m for m in perCandidate)
    spatialName = "TRACE2.lsst.ip.diffim.BuildSpatialKernelVisitor"
    spatial = [r.getMessage() for r in caplog.records if r.name == spatialName]
    assert spatial and all("unknowns" in m for m in spatial)
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name.startswith("TRACE"))
