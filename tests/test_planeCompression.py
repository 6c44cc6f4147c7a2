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
"""Plane compression in a Butler repository: the demo repository writes as the command line does."""

import numpy as np
import pytest
from astropy.io import fits

from lsst.daf.butler import Butler
from lsst.ip.diffim.adapters.exposures import makeVisitImage
from lsst.ip.diffim.cli.makeDemoRepo import INPUT_RUN, makeDemoRepo
from lsst.ip.diffim.planeCompression import planeCompressionOptions


def _image(seed: int):
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 5.0, (64, 80)).astype(np.float32)
    variance = np.full_like(image, 25.0)
    kw = dict(instrument="DemoCam", visit=7, detectorId=0, band="r", physicalFilter="demo_r")
    return makeVisitImage(image, variance, **kw)


def test_demoRepositoryStoresFloatPlanesPlainAndMaskCompressed(tmp_path):
    template, science = _image(1), _image(2)
    science.mask.array[5, 6] = 1
    # Several planes at once, through the formatter's packed mask writes: read back bit for bit.
    names = list(science.mask.schema.names)
    science.mask.set(names[-1], np.arange(64 * 80).reshape(64, 80) % 7 == 0)
    science.mask.set(names[2], np.arange(64 * 80).reshape(64, 80) % 5 == 0)
    makeDemoRepo(str(tmp_path / "repo"), pairs=[(7, 0, template, science)])
    butler = Butler.from_config(str(tmp_path / "repo"), collections=[INPUT_RUN])
    dataId = {"instrument": "DemoCam", "visit": 7, "detector": 0}
    uri = butler.getURI("science_image", dataId)
    with fits.open(uri.ospath) as hdul:
        kinds = {h.name: type(h).__name__ for h in hdul}
    assert kinds["IMAGE"] == "ImageHDU" and kinds["VARIANCE"] == "ImageHDU"
    assert kinds["MASK"] == "CompImageHDU"
    back = butler.get("science_image", dataId)
    np.testing.assert_array_equal(back.image.array, science.image.array)
    np.testing.assert_array_equal(back.variance.array, science.variance.array)
    np.testing.assert_array_equal(back.mask.array, science.mask.array)


def test_compressionChoices():
    assert planeCompressionOptions("none") == {"image": None, "variance": None, "mask": None}
    options = planeCompressionOptions("all")
    assert {options[k].algorithm for k in ("image", "variance")} == {"GZIP_2"}
    assert planeCompressionOptions("mask")["mask"].algorithm == "RICE_1"
    with pytest.raises(ValueError, match="unknown compression"):
        planeCompressionOptions("lossy")


def test_formatterPacksTheMask(tmp_path, monkeypatch):
    from lsst.ip.diffim.adapters import maskWriting

    calls = []
    original = maskWriting._serializeMask
    monkeypatch.setattr(maskWriting, "_serializeMask", lambda *a, **k: calls.append(1) or original(*a, **k))
    template, science = _image(3), _image(4)
    science.mask.array[7, 8] = 5
    makeDemoRepo(str(tmp_path / "repo"), pairs=[(7, 0, template, science)])
    assert len(calls) == 2  # template and science, each written once through the packed path
    butler = Butler.from_config(str(tmp_path / "repo"), collections=[INPUT_RUN])
    back = butler.get("science_image", {"instrument": "DemoCam", "visit": 7, "detector": 0})
    np.testing.assert_array_equal(back.mask.array, science.mask.array)
