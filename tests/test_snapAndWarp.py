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
"""SnapPsfMatchTask, template warping, and kernel conversion to lsst.images."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

import lsst.ip.diffim as ipDiffim
import lsst.utils.tests
from lsst.images import Box
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.imagePsfMatch import ImagesDoNotOverlapError, MismatchedImagesError
from lsst.ip.diffim.kernelConversion import fromImagesKernel, toImagesKernel
from lsst.ip.diffim.math import Box2D, Chebyshev1Function2, LinearCombinationKernel, PolynomialFunction2
from lsst.ip.diffim.math.warping import lanczosWeights, warpExposure
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair


def _wcs(size: int, crpixShift: tuple[float, float] = (0.0, 0.0)) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [size / 2 + 1 + crpixShift[0], size / 2 + 1 + crpixShift[1]]
    s = 0.2 / 3600
    wcs.wcs.cd = [[-s, 0.0], [0.0, s]]
    return wcs


def test_snap_defaults():
    """Snap configs: constant small kernel, no background, no spatial clipping (AL and DF)."""
    config = ipDiffim.SnapPsfMatchConfig()
    config.validate()
    for name in ("AL", "DF"):
        k = config.kernel[name]
        assert k.spatialKernelOrder == 0 and not k.fitForBackground and k.kernelSize == 7
        assert not k.spatialKernelClipping
    assert config.kernel.name == "AL"
    assert list(config.kernel["AL"].alardSigGauss) == [1.0, 2.5]
    assert not config.kernel["DF"].useRegularization and config.kernel["DF"].usePcaForSpatialKernel


@pytest.mark.parametrize("kernelName", ["AL", "DF"])
def test_snap_subtraction(kernelName):
    """Two snaps (same PSF, flux ratio 1) subtract to noise with a unit-sum kernel."""
    pair = makeSyntheticPair(
        size=256,
        nStars=80,
        seed=9,
        templateFwhm=3.2,
        scienceFwhm=(3.2, 3.2),
        scienceEllipticity=0.0,
        fluxRatio=1.0,
        background=(0.0, 0.0, 0.0),
        templateNoiseFactor=1.0,
        transients=[],
    )
    config = ipDiffim.SnapPsfMatchConfig()
    config.kernel.name = kernelName
    task = ipDiffim.SnapPsfMatchTask(config=config)
    t = makeVisitImage(pair.template, pair.templateVariance)
    s = makeVisitImage(pair.science, pair.scienceVariance)
    result = task.subtractExposures(t, s, templateFwhmPix=3.2, scienceFwhmPix=3.2)
    assert not result.psfMatchingKernel.isSpatiallyVarying()
    assert abs(task.metadata["spatialKernelSum"] - 1.0) < 0.01
    diff = result.subtractedMaskedImage
    norm = diff.image.array / np.sqrt(diff.variance.array)
    assert abs(np.nanstd(norm) - 1.0) < 0.1


def test_lanczos_weights():
    """Lanczos weights are normalized and interpolate exactly at integer offsets."""
    w = lanczosWeights(np.array([0.0, 0.25, 0.5]), 3)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[0], [0, 0, 1, 0, 0, 0], atol=1e-15)


def test_warp_translation_and_subtract():
    """A template offset by (3.4, -2.6) px in WCS is warped back and subtracts cleanly."""
    size = 256
    pair = makeSyntheticPair(size=size, nStars=90, seed=5, transients=[], scienceEllipticity=0.0)
    dx, dy = 3.4, -2.6
    # Template pixel grid shifted: template pixel (x + dx, y + dy) sees the same sky as science (x, y).
    shifted = makeSyntheticPair(size=size, nStars=90, seed=5, transients=[], scienceEllipticity=0.0)
    from lsst.ip.diffim.syntheticPairs import renderStars

    tModel = renderStars((size, size), pair.xs + dx, pair.ys + dy, pair.fluxes, pair.templatePsf) + 200.0
    rng = np.random.default_rng(11)
    tVar = (tModel + 25.0) * 0.25
    template = (tModel + rng.normal(size=tModel.shape) * np.sqrt(tVar)).astype(np.float32)
    tExp = makeVisitImage(template, tVar.astype(np.float32), wcs=_wcs(size, (dx, dy)))
    sExp = makeVisitImage(shifted.science, shifted.scienceVariance, wcs=_wcs(size))
    warped = warpExposure(tExp, sExp)
    assert warped.bbox == sExp.bbox
    inner = (slice(40, 216), slice(40, 216))
    truth = renderStars((size, size), pair.xs, pair.ys, pair.fluxes, pair.templatePsf) + 200.0
    rel = np.abs(warped.image.array[inner] - truth[inner]) / np.sqrt(tVar[inner])
    assert np.median(rel) < 1.0
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.active.fitForBackground = True
    config.kernel.active.spatialKernelOrder = 1
    task = ipDiffim.ImagePsfMatchTask(config=config)
    result = task.run(tExp, sExp, templateFwhmPix=3.0, scienceFwhmPix=4.5)
    assert abs(task.metadata["spatialKernelSum"] / pair.fluxRatio - 1) < 0.01
    with pytest.raises(MismatchedImagesError, match="not registered"):
        task.run(tExp, sExp, templateFwhmPix=3.0, scienceFwhmPix=4.5, doWarping=False)
    assert result.warpedExposure.bbox == sExp.bbox


def test_no_overlap():
    """Images that do not overlap on the sky raise NoWorkFound."""
    size = 128
    a = makeVisitImage(np.ones((size, size), np.float32), wcs=_wcs(size))
    far = _wcs(size)
    far.wcs.crval = [151.0, 2.0]
    b = makeVisitImage(np.ones((size, size), np.float32), wcs=far)
    with pytest.raises(ImagesDoNotOverlapError):
        ipDiffim.ImagePsfMatchTask().run(a, b)


@pytest.mark.parametrize("kind", ["chebyshev", "polynomial", "fixed"])
def test_kernel_conversion_round_trip(kind):
    """Spatial kernels convert to lsst.images ImageBasisConvolutionKernel exactly (and back)."""
    bbox = Box.factory[100:400, 50:300]
    basis = ipDiffim.makeAlardLuptonBasisList(5, 1, [2.0], [2])
    rng = np.random.default_rng(1)
    if kind == "fixed":
        kernel = LinearCombinationKernel(basis, rng.normal(size=len(basis)))
    else:
        func = Chebyshev1Function2(2, Box2D.fromBox(bbox)) if kind == "chebyshev" else PolynomialFunction2(2)
        kernel = LinearCombinationKernel(basis, func)
        scale = [1, 1e-3, 1e-3, 1e-6, 1e-6, 1e-6]
        kernel.setSpatialParameters(rng.normal(size=(len(basis), 6)) * scale)
    converted = toImagesKernel(kernel, bbox)
    back = fromImagesKernel(converted)
    for x, y in [(50, 100), (299, 399), (170, 250)]:
        np.testing.assert_allclose(
            converted.compute_kernel_image(x=x, y=y).array, kernel.getArray(x, y), atol=1e-12
        )
        np.testing.assert_allclose(back.getArray(x, y), kernel.getArray(x, y), atol=1e-12)


class TestMemory(lsst.utils.tests.MemoryTestCase):
    pass


def setup_module(module):
    lsst.utils.tests.init()
