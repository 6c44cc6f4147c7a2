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
"""The batched fitting machinery agrees with the one-candidate-at-a-time definitions.

Separable basis correlations, stamp stacks, batched solves and batched
spatial constraints are speed devices: each must reproduce, to round-off,
what the plain per-candidate code computes.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import correlate

import lsst.ip.diffim as ipDiffim
from lsst.images import Box
from lsst.ip.diffim.kernel.basisLists import makeAlardLuptonBasisList, renormalizeKernelList
from lsst.ip.diffim.kernel.batch import batchNormalEquations
from lsst.ip.diffim.kernel.candidate import KernelCandidate, makeKernelCandidate
from lsst.ip.diffim.kernel.imageStatistics import ImageStatistics
from lsst.ip.diffim.kernel.separableBasis import SeparableBasis
from lsst.ip.diffim.kernel.solution import (
    KernelSolvedBy,
    SpatialKernelSolution,
    solveSymmetricSystem,
    solveSymmetricSystems,
)
from lsst.ip.diffim.kernel.stampStack import StampPlane, StampStack, gatherStamps
from lsst.ip.diffim.math import FixedKernel, InvalidParameterError, kernelListToArray, makeSpatialFunction
from lsst.ip.diffim.tests import maskedImage

SIGMAS = [1.05, 2.25, 4.5]
DEGREES = [4, 2, 2]


def _alBasis(halfWidth=10):
    return makeAlardLuptonBasisList(halfWidth, 3, SIGMAS, DEGREES)


def test_al_basis_is_separable():
    basisList = _alBasis()
    plan = SeparableBasis.forBasis(basisList)
    assert plan is not None
    # 3 Gaussians of degrees 4, 2, 2 need 5 + 3 + 3 distinct 1-d vectors, and one
    # product per raw kernel (the renormalization only mixes them).
    assert plan.columns.shape == (11, 21) and plan.rows.shape == (11, 21)
    assert plan.pairs.shape == (27, 2)
    basis = kernelListToArray(basisList)
    assert np.abs(plan.images() - basis).max() < 1e-14 * np.abs(basis).max()
    # Cached per list of kernel objects.
    assert SeparableBasis.forBasis(basisList) is plan


def test_non_separable_basis_has_no_plan():
    rng = np.random.default_rng(3)
    assert SeparableBasis.forBasis([FixedKernel(rng.normal(size=(5, 5))) for _ in range(4)]) is None
    assert SeparableBasis.forBasis(ipDiffim.makeDeltaFunctionBasisList(5, 5)) is None
    # Wrong separable terms are caught by the reconstruction check.
    wrong = FixedKernel(rng.normal(size=(5, 5)), FixedKernel(np.ones((5, 5))).separableTerms)
    assert SeparableBasis.forBasis([wrong]) is None
    good = _alBasis(2)
    # Renormalizing a list whose kernels lack terms gives no terms.
    assert all(k.separableTerms is None for k in renormalizeKernelList([FixedKernel(k.array) for k in good]))


def test_separable_correlation_matches_direct():
    """The products are the valid correlations of each distinct separable product."""
    plan = SeparableBasis.forBasis(_alBasis())
    rng = np.random.default_rng(5)
    stamps = rng.normal(size=(3, 35, 41))
    products = plan.correlate(stamps)
    assert products.shape == (3, 27, 15 * 21)
    for p, (c, r) in enumerate(plan.pairs):
        kernel = np.outer(plan.columns[c], plan.rows[r])
        for n in range(3):
            direct = correlate(stamps[n], kernel, mode="constant")[10:-10, 10:-10]
            np.testing.assert_allclose(products[n, p].reshape(15, 21), direct, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fitForBackground", [False, True])
def test_separable_normal_equations_match_fft(fitForBackground):
    basisList = _alBasis()
    basis = kernelListToArray(basisList)
    plan = SeparableBasis.forBasis(basisList)
    rng = np.random.default_rng(7)
    templates = rng.normal(size=(40, 43, 43)).astype(np.float32)
    sciences = rng.normal(size=(40, 43, 43)).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, size=40)
    mFft, bFft = batchNormalEquations(templates, sciences, weights, basis, fitForBackground)
    mSep, bSep = batchNormalEquations(templates, sciences, weights, basis, fitForBackground, plan)
    assert mSep.shape == mFft.shape == (40, 27 + fitForBackground, 27 + fitForBackground)
    assert np.abs(mSep - mFft).max() < 1e-12 * np.abs(mFft).max()
    assert np.abs(bSep - bFft).max() < 1e-12 * np.abs(bFft).max()


def test_solve_symmetric_systems_match_one_by_one():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(6, 8, 8))
    mats = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(8)
    mats[2] = np.outer(a[2, 0], a[2, 0])  # rank 1: eigen pseudo-inverse
    mats[4, 0, 0] = np.nan  # not finite: NaN solution
    vecs = rng.normal(size=(6, 8))
    solutions, solvedBy = solveSymmetricSystems(mats, vecs)
    for i in range(6):
        expected, how = solveSymmetricSystem(mats[i], vecs[i])
        assert solvedBy[i] == how
        np.testing.assert_array_equal(solutions[i], expected)
    assert solvedBy[2] == KernelSolvedBy.EIGENVECTOR and solvedBy[4] == KernelSolvedBy.NONE


@pytest.mark.parametrize(
    "modelType,basisSet,fitForBackground",
    [
        ("chebyshev1", "alard-lupton", True),
        ("polynomial", "delta-function", True),
        ("polynomial", "alard-lupton", False),
    ],
)
def test_add_constraints_matches_add_constraint(modelType, basisSet, fitForBackground):
    basisList = _alBasis()
    box = Box.factory[0:2000, 0:3000]
    ps = {"fitForBackground": fitForBackground, "kernelBasisSet": basisSet, "usePcaForSpatialKernel": False}
    kFunc = makeSpatialFunction(modelType, 2, box)
    bgFunc = makeSpatialFunction(modelType, 1, box)
    one = SpatialKernelSolution(basisList, kFunc, bgFunc, ps)
    many = SpatialKernelSolution(basisList, kFunc, bgFunc, ps)
    rng = np.random.default_rng(13)
    nloc = 27 + fitForBackground
    n = 30
    xs, ys = rng.uniform(0, 3000, n), rng.uniform(0, 2000, n)
    q = rng.normal(size=(n, nloc, nloc))
    q = q @ q.transpose(0, 2, 1)
    w = rng.normal(size=(n, nloc))
    for i in range(n):
        one.addConstraint(xs[i], ys[i], q[i], w[i])
    many.addConstraints(xs, ys, q, w)
    assert many.getNConstraints() == one.getNConstraints() == n
    assert np.abs(many.getM() - one.getM()).max() < 1e-13 * np.abs(one.getM()).max()
    assert np.abs(many.getB() - one.getB()).max() < 1e-13 * np.abs(one.getB()).max()
    with pytest.raises(InvalidParameterError):
        many.addConstraints(xs, ys, q[:, :5, :5], w[:, :5])


def _maskedPair(seed=17, size=120):
    rng = np.random.default_rng(seed)
    template = rng.normal(100.0, 5.0, size=(size, size)).astype(np.float32)
    science = rng.normal(130.0, 6.0, size=(size, size)).astype(np.float32)
    tVar = rng.uniform(20.0, 30.0, size=(size, size)).astype(np.float32)
    sVar = rng.uniform(30.0, 40.0, size=(size, size)).astype(np.float32)
    tmi = maskedImage(template, tVar)
    smi = maskedImage(science, sVar)
    return tmi, smi


def test_stamp_stack_matches_candidates():
    """Stamps, flags, weights and ratings of a stack equal the per-candidate ones."""
    tmi, smi = _maskedPair()
    bad = np.zeros(smi.image.array.shape, dtype=bool)
    bad[60, 90] = True
    smi.mask.set("SATURATED", bad)
    tmi.variance.array[20, 95] = np.inf
    rows = np.array([5, 40, 50, 70, 3])
    cols = np.array([10, 15, 80, 60, 70])
    stack = StampStack.fromParents(tmi, smi, rows, cols, (31, 31))
    ps = ipDiffim.makePropertySet(ipDiffim.PsfMatchConfigAL())
    planes = list(ps["badMaskPlanes"])
    stats = ImageStatistics(ps)
    ratings, ok = stack.coreRatings(3, planes)
    weights = stack.constantWeights(np.arange(len(rows)))
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        box = Box.factory[r : r + 31, c : c + 31]
        np.testing.assert_array_equal(stack.template[i], tmi[box].image.array)
        np.testing.assert_array_equal(stack.scienceVariance[i], smi[box].variance.array)
        kc = makeKernelCandidate(float(c + 15), float(r + 15), tmi[box], smi[box], ps)
        # The weight build() uses: 1 / median of the variances summed in float32.
        summed = np.add(tmi[box].variance.array, smi[box].variance.array, dtype=np.float32)
        expectedWeight = 1.0 / float(np.median(summed[np.isfinite(summed)]))
        assert weights[i] == pytest.approx(expectedWeight, rel=1e-15)
        stats.apply(smi[box], 3)
        assert ok[i]
        assert ratings[i] == pytest.approx(stats.getMean(), rel=1e-12)
        assert ratings[i] == pytest.approx(kc.getCandidateRating(), rel=1e-12)
        expectBad = bool(
            ipDiffim.math.anyMaskPlaneSet(tmi[box].mask, planes).any()
            or ipDiffim.math.anyMaskPlaneSet(smi[box].mask, planes).any()
        )
        assert stack.hasBadPixels(planes)[i] == expectBad
        assert stack.finiteAll[i] == bool(np.isfinite(tmi[box].variance.array).all())
    assert stack.hasBadPixels(planes)[2]  # the BAD pixel at (y, x) = (60, 90) lies in stamp 2
    assert not stack.finiteAll[4]


def test_candidate_from_stack_is_lazy_and_equivalent():
    tmi, smi = _maskedPair(seed=19)
    ps = ipDiffim.makePropertySet(ipDiffim.PsfMatchConfigAL())
    stack = StampStack.fromParents(tmi, smi, np.array([10]), np.array([20]), (41, 41))
    box = Box.factory[10:51, 20:61]
    kc = KernelCandidate.fromStack(40.0, 30.0, stack, 0, tmi, smi, box, ps, 7.5)
    assert kc._templateMaskedImage is None  # nothing cut yet
    assert kc.getCandidateRating() == 7.5
    assert kc.getStampStack() == (stack, 0)
    np.testing.assert_array_equal(kc.getTemplateMaskedImage().image.array, tmi[box].image.array)
    assert kc.getScienceMaskedImage().bbox == box


@pytest.mark.parametrize("modelType", ["chebyshev1", "polynomial"])
def test_function_add_to_matches_render(modelType):
    box = Box.factory[100:700, 50:1000]
    function = makeSpatialFunction(modelType, 2, box)
    function.setParameters(np.array([3.0, -1.0, 0.5, 0.25, -0.75, 2.0]))
    image = np.full(box.shape, 10.0)
    function.addTo(image, box, scale=-1.0, rowsPerBlock=64)
    np.testing.assert_allclose(image, 10.0 - function.render(box), rtol=0, atol=1e-12)


def test_detection_grows_pixel_stack_when_needed(monkeypatch):
    """A small sep pixel stack is retried larger: same sources as a large stack from the start."""
    from lsst.ip.diffim import detection
    from lsst.ip.diffim.math import sourceDetection

    rng = np.random.default_rng(23)
    image = rng.normal(0.0, 1.0, size=(300, 300)).astype(np.float32)
    yy, xx = np.mgrid[0:300, 0:300]
    for y, x in rng.uniform(20, 280, size=(40, 2)):
        image += 200.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)
    mi = maskedImage(image, 1.0)
    task = detection.SourceDetectionTask()
    monkeypatch.setattr(sourceDetection, "_PIXSTACK", 10_000_000)
    expected = task.run(mi).sources
    monkeypatch.setattr(sourceDetection, "_PIXSTACK", 50)
    grown = task.run(mi).sources
    assert len(grown) == len(expected) > 10
    np.testing.assert_allclose(grown["x"], expected["x"])
    np.testing.assert_allclose(grown["flux"], expected["flux"])


def test_stamp_plane_cut_from_parent_matches_stacked_stamps():
    """A StampPlane reading its parent gives the stacked stamps for every kind of index."""
    rng = np.random.default_rng(4)
    parent = rng.normal(size=(60, 70, 2)).astype(np.float32)
    rows = np.array([0, 10, 29, 5])
    cols = np.array([3, 38, 0, 39])
    lazy = StampPlane(parent=parent, rows=rows, cols=cols, shape=(31, 31))
    stacked = gatherStamps(parent, rows, cols, (31, 31))
    assert lazy.shape == stacked.shape and lazy.dtype == stacked.dtype and len(lazy) == 4
    for key in (2, np.int64(-1), slice(1, 3), np.array([3, 0]), (slice(None), slice(12, 19), slice(5, None))):
        np.testing.assert_array_equal(lazy[key], stacked[key])
    np.testing.assert_array_equal(lazy[np.array([1, 2]), 3:9, :4], stacked[[1, 2], 3:9, :4])
    with pytest.raises(IndexError):
        lazy[0, 3]  # stamps are indexed by slices of rows and columns only
    np.testing.assert_array_equal(lazy.all(), stacked)
