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
"""Masks written with whole-array bit moves: the same files as lsst.images writes."""

import re

import numpy as np
import pytest

from lsst.images import Image, Mask, MaskedImage, MaskPlane, MaskSchema
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.adapters.maskWriting import fastMaskWrites, packedMaskArrays
from lsst.ip.diffim.math.masks import makeDifferenceMaskSchema
from lsst.ip.diffim.planeCompression import planeCompressionOptions


def _withoutDates(data: bytes) -> bytes:
    return re.sub(rb"DATE    = '[0-9T:.\-]+'", b"DATE    = 'X'", data)


def _randomMask(schema: MaskSchema, shape: tuple[int, int], seed: int) -> Mask:
    rng = np.random.default_rng(seed)
    mask = Mask(0, schema=schema, shape=shape)
    for k, name in enumerate(schema.names):
        mask.set(name, rng.random(shape) < (0.02 + 0.05 * (k % 7)))
    return mask


def _schemas() -> dict[str, MaskSchema]:
    planes = [MaskPlane(f"P{k}", f"plane {k}") for k in range(40)]
    return {
        "difference": makeDifferenceMaskSchema(),
        # uint8 with placeholders: three array elements, planes move by different numbers of bits.
        "uint8-gaps": MaskSchema([planes[0], None, planes[1], *planes[2:9], None, None, *planes[9:14]]),
        # More planes than one int32 holds: two FITS arrays.
        "int32-two-arrays": MaskSchema(planes, dtype=np.int32),
        "int64": MaskSchema(planes[:35], dtype=np.int64),
    }


@pytest.mark.parametrize("name", list(_schemas()))
def test_packed_arrays_match_plane_by_plane_update(name):
    schema = _schemas()[name]
    mask = _randomMask(schema, (37, 53), seed=len(name))
    splits = schema.split(np.int32)
    for split, array in zip(splits, packedMaskArrays(mask, splits), strict=True):
        expected = Mask(0, schema=split, bbox=mask.bbox)
        expected.update(mask)
        assert array.dtype == split.dtype
        np.testing.assert_array_equal(array, expected.array[..., 0])
        assert array.any()


@pytest.mark.parametrize("name", ["difference", "uint8-gaps", "int32-two-arrays"])
def test_files_are_those_lsst_images_writes(tmp_path, name):
    schema = _schemas()[name]
    shape = (64, 48)
    mask = _randomMask(schema, shape, seed=3)
    rng = np.random.default_rng(4)
    bbox = mask.bbox
    image = MaskedImage(
        Image(rng.normal(size=shape).astype(np.float32), bbox=bbox),
        mask=mask,
        variance=Image(np.ones(shape, np.float32), bbox=bbox),
    )
    options = planeCompressionOptions("mask")
    image.write(tmp_path / "plain.fits", compression_options=options)
    with fastMaskWrites(image):
        assert "serialize" in vars(image.mask)
        image.write(tmp_path / "fast.fits", compression_options=options)
    assert "serialize" not in vars(image.mask)  # restored
    plain, fast = ((tmp_path / n).read_bytes() for n in ("plain.fits", "fast.fits"))
    assert _withoutDates(fast) == _withoutDates(plain)
    back = MaskedImage.read(tmp_path / "fast.fits")
    assert back.mask.schema == schema
    np.testing.assert_array_equal(back.mask.array, mask.array)


def test_visit_image_with_sky_projection(tmp_path):
    shape = (40, 60)
    rng = np.random.default_rng(5)
    mask = _randomMask(makeDifferenceMaskSchema(), shape, seed=6)
    visit = makeVisitImage(rng.normal(size=shape).astype(np.float32), np.ones(shape, np.float32), mask)
    for compress in ("mask", "none"):
        options = planeCompressionOptions(compress)
        visit.write(tmp_path / f"plain-{compress}.fits", compression_options=options)
        with fastMaskWrites(visit, visit):  # the same image twice: installed once
            visit.write(tmp_path / f"fast-{compress}.fits", compression_options=options)
        plain = (tmp_path / f"plain-{compress}.fits").read_bytes()
        fast = (tmp_path / f"fast-{compress}.fits").read_bytes()
        assert _withoutDates(fast) == _withoutDates(plain)
    assert "serialize" not in vars(visit.mask)
