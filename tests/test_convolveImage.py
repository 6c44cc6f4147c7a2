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
"""Whole-image convolution against brute-force per-pixel references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import correlate

from lsst.images import Box
from lsst.ip.diffim.math import Chebyshev1Function2, FixedKernel, LinearCombinationKernel
from lsst.ip.diffim.math.convolve import kernelTermArrays
from lsst.ip.diffim.math.convolveImage import convolveSpatiallyVarying

NO_DATA = np.array([256], dtype=np.int32)
EDGE = np.array([16], dtype=np.int32)


def _brute(image, variance, termKernels, tX, tY):
    nt, kh, kw = termKernels.shape
    ny, nx = image.shape
    cy, cx = kh // 2, kw // 2
    out = np.full((ny, nx), np.nan)
    var = np.full((ny, nx), np.inf)
    for y in range(cy, ny - (kh - 1 - cy)):
        for x in range(cx, nx - (kw - 1 - cx)):
            k = np.tensordot(tY[:, y] * tX[:, x], termKernels, axes=1)
            out[y, x] = (image[y - cy : y - cy + kh, x - cx : x - cx + kw] * k).sum()
            var[y, x] = (variance[y - cy : y - cy + kh, x - cx : x - cx + kw] * k * k).sum()
    return out, var


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    ny, nx = 50, 60
    image = rng.normal(size=(ny, nx)) * 10 + 100
    variance = rng.uniform(1.0, 3.0, size=(ny, nx))
    bbox = Box.factory[7 : 7 + ny, 3 : 3 + nx]
    f = Chebyshev1Function2(2, bbox)
    tX, tY = f.termsXY(bbox.x.arange, bbox.y.arange)
    kernels = rng.normal(size=(6, 7, 9))
    return image, variance, kernels, tX, tY


@pytest.mark.parametrize("nTerms", [1, 3, 6])
def test_image_and_exact_variance(setup, nTerms):
    """The image plane and the exact variance equal a per-pixel brute force."""
    image, variance, kernels, tX, tY = setup
    res = convolveSpatiallyVarying(
        image,
        variance,
        None,
        kernels[:nTerms],
        tX[:nTerms],
        tY[:nTerms],
        varianceMode="exact",
        dtype=np.float64,
    )
    refI, refV = _brute(image, variance, kernels[:nTerms], tX[:nTerms], tY[:nTerms])
    good = np.isfinite(refI)
    np.testing.assert_allclose(res.image[good], refI[good], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(res.variance[good], refV[good], rtol=1e-10)
    assert np.all(np.isnan(res.image[~good])) and np.all(np.isinf(res.variance[~good]))
    res32 = convolveSpatiallyVarying(image, variance, None, kernels[:nTerms], tX[:nTerms], tY[:nTerms])
    np.testing.assert_allclose(res32.image[good], refI[good], rtol=1e-4, atol=1e-3 * np.abs(refI[good]).max())


def test_orientation_is_correlation():
    """A delta kernel at (col, row) reads the input at (x + col - ctrX, y + row - ctrY)."""
    rng = np.random.default_rng(1)
    image = rng.normal(size=(30, 40))
    kernel = np.zeros((1, 5, 7))
    kernel[0, 4, 6] = 1.0
    res = convolveSpatiallyVarying(
        image, None, None, kernel, np.ones((1, 40)), np.ones((1, 30)), dtype=np.float64
    )
    np.testing.assert_allclose(res.image[2:28, 3:37], image[4:30, 6:40])
    gauss = np.exp(-(np.arange(-3, 4)[:, None] ** 2 + np.arange(-4, 5)[None, :] ** 2) / 4.0)
    res = convolveSpatiallyVarying(
        image, None, None, gauss[None], np.ones((1, 40)), np.ones((1, 30)), dtype=np.float64
    )
    np.testing.assert_allclose(res.image[3:27, 4:36], correlate(image, gauss)[3:27, 4:36], atol=1e-10)


def test_mask_dilation_edges_and_preserve():
    """Mask bits spread over the kernel's non-zero footprint; preserved planes do not; border rules."""
    image = np.zeros((30, 30))
    mask = np.zeros((30, 30, 1), np.int32)
    mask[15, 12, 0] = 1 | 4
    kernel = np.zeros((1, 5, 5))
    kernel[0, 0:3, 1:5] = 1.0  # off-centre support: rows 0-2, cols 1-4
    ones = np.ones((1, 30))
    res = convolveSpatiallyVarying(
        image, None, mask, kernel, ones, ones, noDataBitmask=NO_DATA, preserveBitmask=np.array([4], np.int32)
    )
    # out(x, y) sees in(x + col - 2, y + row - 2): the bit at (12, 15) reaches x in 10..13, y in 15..17.
    ys, xs = np.nonzero(res.mask[:, :, 0] & 1)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (15, 17, 10, 13)
    assert np.count_nonzero(res.mask[:, :, 0] & 4) == 1 and res.mask[15, 12, 0] & 4
    assert res.mask[0, 0, 0] == 256 and np.isnan(res.image[0, 0])
    copy = convolveSpatiallyVarying(
        image + 7, np.ones((30, 30)), mask, kernel, ones, ones, edgeMode="copy", edgeBitmask=EDGE
    )
    assert copy.image[0, 0] == 7 and copy.variance[0, 0] == 1 and copy.mask[0, 0, 0] == 16


def test_normalize_and_nan():
    """doNormalize divides by the local kernel sum; a NaN input poisons its footprint only."""
    rng = np.random.default_rng(3)
    image = rng.normal(size=(40, 40)) + 5
    image[20, 20] = np.nan
    kernel = np.ones((1, 3, 3)) * 2.0
    ones = np.ones((1, 40))
    res = convolveSpatiallyVarying(image, None, None, kernel, ones, ones, doNormalize=True, dtype=np.float64)
    assert np.isnan(res.image[19:22, 19:22]).all()
    assert np.isfinite(res.image[10, 10])
    np.testing.assert_allclose(res.image[10, 10], image[9:12, 9:12].mean())


def test_tiled_variance_accuracy():
    """Tiled variance vs exact for a realistic kernel whose width changes 20% across 1024 px: < 0.3%."""
    size = 1024
    bbox = Box.from_shape((size, size))
    yy, xx = np.mgrid[-10:11, -10:11]
    gaussians = [
        FixedKernel(np.exp(-(xx**2 + yy**2) / (2 * s * s)) / (2 * np.pi * s * s)) for s in (1.6, 2.0)
    ]
    kernel = LinearCombinationKernel(gaussians, Chebyshev1Function2(1, bbox))
    # weight of the wider Gaussian grows from 0 to 1 along x + y
    kernel.setSpatialParameters([[0.65, -0.325, -0.325], [0.65, 0.325, 0.325]])
    k0, k1 = kernel.getArray(0, 0), kernel.getArray(size - 1, size - 1)

    def width(k):
        return np.sqrt((k * (xx**2 + yy**2)).sum() / k.sum())

    assert abs(width(k1) / width(k0) - 1) > 0.1
    rng = np.random.default_rng(4)
    variance = rng.uniform(50, 150, size=(size, size)).astype(np.float32)
    termKernels, tX, tY = kernelTermArrays(kernel, bbox)
    exact = convolveSpatiallyVarying(
        variance, variance, None, termKernels, tX, tY, varianceMode="exact"
    ).variance
    tiled = convolveSpatiallyVarying(
        variance, variance, None, termKernels, tX, tY, varianceMode="tiled"
    ).variance
    good = np.isfinite(exact)
    rel = np.abs(tiled[good] / exact[good] - 1)
    print(f"tiled variance: max relative error {rel.max():.2e}, median {np.median(rel):.2e}")
    assert rel.max() < 3e-3, rel.max()


def test_kernel_images_at_many_points_match_one_at_a_time():
    """Kernel.getArrays equals getArray point by point, for spatial and fixed kernels."""
    bbox = Box.from_shape((200, 300))
    yy, xx = np.mgrid[-4:5, -4:5]
    gaussians = [FixedKernel(np.exp(-(xx**2 + yy**2) / (2 * s * s))) for s in (1.0, 1.7)]
    spatial = LinearCombinationKernel(gaussians, Chebyshev1Function2(1, bbox))
    spatial.setSpatialParameters([[1.0, 0.2, -0.1], [0.5, -0.3, 0.4]])
    xs, ys = np.array([0.0, 150.5, 299.0]), np.array([10.0, 0.0, 199.0])
    for kernel in (spatial, gaussians[1]):
        images = kernel.getArrays(xs, ys)
        assert images.shape == (3, 9, 9)
        for image, x, y in zip(images, xs, ys, strict=True):
            np.testing.assert_allclose(image, kernel.getArray(x, y), rtol=1e-14, atol=1e-16)
    assert kernel.getArrays([], []).shape == (0, 9, 9)
