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
"""Overlap-save tiling of the whole-image convolution against direct references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import correlate

from lsst.ip.diffim.math import maskDilation, overlapSave, varianceConvolution
from lsst.ip.diffim.math.convolveImage import convolveSpatiallyVarying


def _polynomialTerms(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the separable factors of a 2nd-order polynomial (6 terms)."""
    u = np.linspace(-1.0, 1.0, nx)
    v = np.linspace(-1.0, 1.0, ny)
    one, oneY = np.ones(nx), np.ones(ny)
    termX = np.array([one, u, one, u * u, u, one])
    termY = np.array([oneY, oneY, v, oneY, v, v * v])
    return termX, termY


def _reference(plane: np.ndarray, kernels: np.ndarray, termX: np.ndarray, termY: np.ndarray) -> np.ndarray:
    """Direct (float64) ``sum_j termY termX (K_j ⋆ plane)`` on the valid region."""
    _, kh, kw = kernels.shape
    rows, cols = overlapSave.goodRegion(plane.shape, (kh, kw))
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start))
    for kernel, tx, ty in zip(kernels, termX, termY):
        # ndimage centres a kernel on (kh // 2, kw // 2), as afw does.
        conv = correlate(plane.astype(float), kernel, mode="constant")[rows, cols]
        out += ty[rows, np.newaxis] * tx[np.newaxis, cols] * conv
    return out


@pytest.fixture
def smallTiles(monkeypatch):
    """Force tiles of at most 64 pixels so that small images have many tiles."""
    monkeypatch.setattr(overlapSave, "_MAX_TILE_LENGTH", 64)


@pytest.mark.parametrize("kernelShape", [(9, 11), (8, 7)])
@pytest.mark.parametrize("workers", [1, 2])
def test_tiled_image_plane_matches_direct(smallTiles, kernelShape, workers):
    """Many tiles (including partial edge tiles) reproduce the direct correlation in float64."""
    rng = np.random.default_rng(10)
    ny, nx = 203, 231
    image = rng.normal(size=(ny, nx)) * 10 + 100
    kernels = rng.normal(size=(6,) + kernelShape)
    termX, termY = _polynomialTerms(ny, nx)
    rows, cols = overlapSave.goodRegion((ny, nx), kernelShape)
    fy, fx = overlapSave.fftTileShape((rows.stop - rows.start, cols.stop - cols.start), kernelShape)
    assert fy <= 64 and fx <= 64
    res = convolveSpatiallyVarying(
        image, None, None, kernels, termX, termY, dtype=np.float64, workers=workers
    )
    ref = _reference(image, kernels, termX, termY)
    np.testing.assert_allclose(res.image[rows, cols], ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    assert np.isnan(res.image[: rows.start]).all() and np.isnan(res.image[:, cols.stop :]).all()


def test_float32_accuracy_and_nan_across_tiles(smallTiles):
    """Float32 stays within 1e-5 of the image maximum; NaNs poison their footprint across tile edges."""
    rng = np.random.default_rng(11)
    ny, nx = 180, 190
    image = rng.normal(size=(ny, nx)) * 10 + 100
    kernels = np.abs(rng.normal(size=(6, 9, 9)))
    termX, termY = _polynomialTerms(ny, nx)
    bad = [(60, 60), (61, 120), (100, 4)]
    for y, x in bad:
        image[y, x] = np.nan
    res = convolveSpatiallyVarying(image, None, None, kernels, termX, termY, workers=2)
    assert res.image.dtype == np.float32
    rows, cols = overlapSave.goodRegion((ny, nx), (9, 9))
    ref = _reference(np.nan_to_num(image), kernels, termX, termY)
    poisoned = np.zeros((ny, nx), dtype=bool)
    for y, x in bad:
        poisoned[y - 4 : y + 5, x - 4 : x + 5] = True
    poisoned = poisoned[rows, cols]
    good = res.image[rows, cols]
    assert np.array_equal(np.isnan(good), poisoned)
    err = np.abs(good[~poisoned] - ref[~poisoned]).max() / np.abs(ref[~poisoned]).max()
    assert err < 1e-5, err


def test_shared_factors_are_grouped_and_merged(smallTiles):
    """Terms sharing a column factor, or both factors, give the same result as distinct ones."""
    rng = np.random.default_rng(12)
    ny, nx = 150, 170
    image = rng.normal(size=(ny, nx))
    kernels = rng.normal(size=(5, 7, 7))
    u, v = np.linspace(0, 1, nx), np.linspace(0, 1, ny)
    termX = np.array([np.ones(nx), u, np.ones(nx), u, u])
    termY = np.array([np.ones(ny), np.ones(ny), v, v, np.ones(ny)])  # terms 1 and 4 coincide
    res = convolveSpatiallyVarying(image, None, None, kernels, termX, termY, dtype=np.float64)
    rows, cols = overlapSave.goodRegion((ny, nx), (7, 7))
    ref = _reference(image, kernels, termX, termY)
    np.testing.assert_allclose(res.image[rows, cols], ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_exact_variance_matches_direct(smallTiles):
    """The exact variance correlates the variance with ``K(x, y)^2`` at every pixel."""
    rng = np.random.default_rng(13)
    ny, nx = 120, 140
    image = rng.normal(size=(ny, nx))
    variance = rng.uniform(1.0, 2.0, size=(ny, nx))
    kernels = rng.normal(size=(6, 7, 9))
    termX, termY = _polynomialTerms(ny, nx)
    res = convolveSpatiallyVarying(
        image, variance, None, kernels, termX, termY, varianceMode="exact", dtype=np.float64
    )
    rows, cols = overlapSave.goodRegion((ny, nx), (7, 9))
    for y, x in [(rows.start, cols.start), (60, 70), (rows.stop - 1, cols.stop - 1), (rows.start, 100)]:
        k = np.tensordot(termY[:, y] * termX[:, x], kernels, axes=1)
        expected = (variance[y - 3 : y + 4, x - 4 : x + 5] * k * k).sum()
        np.testing.assert_allclose(res.variance[y, x], expected, rtol=1e-10)


@pytest.mark.parametrize(
    "ny, nx, tileSize, rtol",
    [(161, 209, 37, 1e-12), (161, 211, 64, 1e-12), (260, 300, 500, 1e-12), (260, 300, 37, 1e-5)],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_tiled_variance_exact_for_bilinear_squared_kernel(ny, nx, tileSize, rtol, workers):
    """Bilinear node blending reproduces ``K^2`` exactly when it is bilinear in x and y.

    With ``K(x, y) = sqrt(a(x) b(y)) K_0`` for linear ``a`` and ``b``, the
    squared kernel is bilinear, so the tiled variance equals the exact one
    to rounding when the nodes fall on pixels.  Between pixels the spatial
    factors are interpolated linearly, which is not exact for a square root
    (hence the looser tolerance of the last case).
    """
    rng = np.random.default_rng(14)
    variance = rng.uniform(1.0, 2.0, size=(ny, nx))
    kernel = np.abs(rng.normal(size=(1, 11, 11)))
    termX = np.sqrt(1.0 + np.arange(nx) / nx)[np.newaxis]
    termY = np.sqrt(2.0 - np.arange(ny) / ny)[np.newaxis]
    if rtol < 1e-6:
        for g in (ny - 10, nx - 10):
            nCells = max(1, int(np.ceil(g / tileSize)))
            assert (g - 1) % nCells == 0, "nodes must fall on pixels"
    kwargs = dict(dtype=np.float64, tileSize=tileSize, workers=workers)
    tiled = convolveSpatiallyVarying(
        variance, variance, None, kernel, termX, termY, varianceMode="tiled", **kwargs
    )
    exact = convolveSpatiallyVarying(
        variance, variance, None, kernel, termX, termY, varianceMode="exact", **kwargs
    )
    good = np.isfinite(exact.variance)
    np.testing.assert_allclose(tiled.variance[good], exact.variance[good], rtol=rtol)
    assert np.array_equal(good, np.isfinite(tiled.variance))


def test_cells_partition_and_weights():
    """Cells cover every pixel once, with hat weights that sum to one and peak at the nodes."""
    for n, nNodes in [(100, 5), (1, 2), (7, 3), (4076, 17)]:
        nodes = np.linspace(0, n - 1, nNodes)
        cells = varianceConvolution._cells(nodes, n)
        covered = np.concatenate([np.arange(c.start, c.stop) for c in cells])
        assert np.array_equal(covered, np.arange(n))
        for i, cell in enumerate(cells):
            np.testing.assert_allclose(cell.weights.sum(axis=0), 1.0)
            pos = np.arange(cell.start, cell.stop)
            if len(pos) and nodes[i + 1] > nodes[i]:
                expected = np.interp(pos, nodes[i : i + 2], [1.0, 0.0])
                np.testing.assert_allclose(cell.weights[0], expected, atol=1e-12)


def test_tile_shape():
    """Small regions get one tile; large ones tiles of at most the maximum length."""
    assert overlapSave.fftTileShape((30, 52), (7, 9)) == (36, 60)
    fy, fx = overlapSave.fftTileShape((4076, 4076), (21, 21))
    assert 2 * 21 <= fy <= overlapSave._MAX_TILE_LENGTH and 2 * 21 <= fx <= overlapSave._MAX_TILE_LENGTH
    fy, fx = overlapSave.fftTileShape((1, 1), (21, 21))
    assert fy >= 21 and fx >= 21


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 21])
def test_sliding_or(size):
    """The doubling sliding OR equals a direct OR over every window."""
    rng = np.random.default_rng(15)
    array = rng.integers(0, 2**16, size=(5, 40)) & rng.integers(0, 2**16, size=(5, 40))
    for axis in (0, 1):
        if array.shape[axis] < size:
            continue
        out = maskDilation.slidingOr(array, size, axis)
        moved = np.moveaxis(array, axis, 0)
        expected = [np.bitwise_or.reduce(moved[i : i + size], axis=0) for i in range(len(moved) - size + 1)]
        np.testing.assert_array_equal(np.moveaxis(out, axis, 0), expected)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64])
@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (21, 21), (8, 3)])
def test_box_mask_dilation_matches_bit_planes(dtype, shape):
    """Dilating all bits at once (in bands of rows) equals dilating each bit plane."""
    rng = np.random.default_rng(16)
    ny, nx = 600, 130
    plane = np.zeros((ny, nx), dtype=dtype)
    for bit in (0, 1, 5, 14):
        idx = rng.integers(0, (ny, nx), size=(40, 2))
        plane[idx[:, 0], idx[:, 1]] |= dtype(1 << bit)
    plane[0, :] |= dtype(2)
    plane[250:262, -1] |= dtype(8)  # across the boundary of two bands
    footprint = np.ones(shape, dtype=np.uint8)
    expected = np.zeros_like(plane)
    for bit in (0, 1, 3, 5, 14):
        dilated = maskDilation.dilate(((plane >> bit) & 1).astype(np.uint8), footprint, isBox=True)
        expected |= dilated.astype(dtype) << dtype(bit)
    for workers in (1, 2):
        np.testing.assert_array_equal(maskDilation.dilateBits(plane, shape, workers), expected)
