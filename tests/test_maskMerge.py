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
"""Mask planes merged with whole-array bit moves: the same masks as lsst.images' Mask.update."""

import threading

import numpy as np
import pytest

from lsst.images import Box, Image, Mask, MaskedImage, MaskPlane, MaskSchema
from lsst.ip.diffim.adapters.maskReading import fastMaskReads
from lsst.ip.diffim.math.maskMerge import mergeMaskPlanes
from lsst.ip.diffim.math.masks import makeDifferenceMaskSchema

NAMES = [f"P{k}" for k in range(40)]
TARGET_TYPES = [np.uint8, np.uint16, np.int32, np.uint32, np.int64]
SOURCE_TYPES = [np.uint8, np.uint16, np.int32, np.uint32]


def _randomSchema(rng: np.random.Generator, dtype: type) -> MaskSchema:
    names: list[str | None] = list(rng.choice(NAMES, rng.integers(1, 40), replace=False))
    for _ in range(rng.integers(0, 3)):  # placeholders: planes move by different numbers of bits
        names.insert(int(rng.integers(0, len(names) + 1)), None)
    return MaskSchema([None if n is None else MaskPlane(str(n), "test") for n in names], dtype=dtype)


def _randomBits(rng: np.random.Generator, mask: Mask) -> None:
    # Every bit of the array, placeholders' included (those must not be merged).
    info = np.iinfo(mask.array.dtype)
    mask.array[...] = rng.integers(0, info.max, mask.array.shape, endpoint=True).astype(mask.array.dtype)


@pytest.mark.parametrize("seed", range(40))
def test_merge_is_lsst_images_update(seed):
    rng = np.random.default_rng(seed)
    targetSchema = _randomSchema(rng, TARGET_TYPES[seed % len(TARGET_TYPES)])
    sourceSchema = _randomSchema(rng, SOURCE_TYPES[seed % len(SOURCE_TYPES)])
    target = Mask(0, schema=targetSchema, bbox=Box.factory[0:17, 0:23])
    _randomBits(rng, target)
    y0, x0 = rng.integers(-6, 6, 2)  # overlapping boxes, or the same one
    source = Mask(0, schema=sourceSchema, bbox=Box.factory[y0 : y0 + 17, x0 : x0 + 23])
    _randomBits(rng, source)
    expected, merged = target.copy(), target.copy()
    expected.update(source)
    mergeMaskPlanes(merged, source)
    assert np.array_equal(merged.array, expected.array)
    assert not np.array_equal(merged.array, target.array) or not (targetSchema.names & sourceSchema.names)


def test_disjoint_boxes_merge_nothing():
    schema = makeDifferenceMaskSchema()
    target = Mask(0, schema=schema, bbox=Box.factory[0:10, 0:10])
    source = Mask(0, schema=schema, bbox=Box.factory[20:30, 0:10])
    source.set("BAD")
    mergeMaskPlanes(target, source)
    assert not target.array.any()


def test_same_schema_is_a_bitwise_or_of_the_planes():
    schema = makeDifferenceMaskSchema()
    rng = np.random.default_rng(3)
    target, source = (Mask(0, schema=schema, shape=(30, 40)) for _ in range(2))
    for name in ("BAD", "SATURATED", "DETECTED"):
        target.set(name, rng.random((30, 40)) < 0.2)
        source.set(name, rng.random((30, 40)) < 0.2)
    expected = target.array | source.array
    mergeMaskPlanes(target, source)
    assert np.array_equal(target.array, expected)
    assert target.get("BAD").sum() > 0.3 * 30 * 40


def _maskedImage(schema: MaskSchema, seed: int) -> MaskedImage:
    rng = np.random.default_rng(seed)
    shape = (64, 48)
    mask = Mask(0, schema=schema, shape=shape)
    for k, name in enumerate(schema.names):
        mask.set(name, rng.random(shape) < 0.03 * (1 + k % 5))
    image = Image(rng.normal(size=shape).astype(np.float32))
    variance = Image(np.ones(shape, dtype=np.float32))
    return MaskedImage(image, mask=mask, variance=variance)


@pytest.mark.parametrize(
    "schema",
    [
        makeDifferenceMaskSchema(),
        MaskSchema([MaskPlane(n, "test") for n in NAMES], dtype=np.int32),  # two FITS arrays
        MaskSchema([MaskPlane("A", "a"), None, MaskPlane("B", "b"), None, MaskPlane("C", "c")]),
    ],
    ids=["difference", "two-arrays", "gaps"],
)
def test_fits_reads_give_the_written_mask(tmp_path, schema):
    written = _maskedImage(schema, 7)
    path = tmp_path / "masked.fits"
    written.write(path)
    plain = MaskedImage.read(path)
    with fastMaskReads():
        assert vars(Mask)["update"] is mergeMaskPlanes
        fast = MaskedImage.read(path)
    assert fast.mask.schema == written.mask.schema
    assert np.array_equal(fast.mask.array, written.mask.array)
    assert np.array_equal(fast.mask.array, plain.mask.array)


def test_update_is_restored_after_overlapping_contexts():
    original = vars(Mask)["update"]
    inside = threading.Event()
    release = threading.Event()
    seen = []

    def reader():
        with fastMaskReads():
            inside.set()
            release.wait(10)
            seen.append(vars(Mask)["update"])

    thread = threading.Thread(target=reader)
    thread.start()
    inside.wait(10)
    with fastMaskReads():
        assert vars(Mask)["update"] is mergeMaskPlanes
    # The other thread's context still lasts: the fast merge stays installed.
    assert vars(Mask)["update"] is mergeMaskPlanes
    release.set()
    thread.join(10)
    assert seen == [mergeMaskPlanes]
    assert vars(Mask)["update"] is original
    with pytest.raises(RuntimeError), fastMaskReads():
        raise RuntimeError("a failed read")
    assert vars(Mask)["update"] is original
