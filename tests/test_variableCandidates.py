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
"""Variable kernel candidates and unconstrained kernel sums on real ZTF cutouts (tests/data/ztfVariable)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lsst.ip.diffim.cli.subtract import main
from lsst.ip.diffim.syntheticPairs import PsfModel, renderStars
from lsst.ip.diffim.tests import maskedImage
from lsst.ip.diffim.variableCandidates import flagVariableCandidates

DATA = Path(__file__).parent / "data" / "ztfVariable"
NOISE = ["--gain", "6.2", "--read-noise", "8"]


def _ztf(candid: str) -> list[str]:
    return [str(DATA / f"{candid}_ref.fits"), str(DATA / f"{candid}_sci.fits")]


def test_a_variable_star_is_flagged_and_the_constant_ones_kept():
    shape = (80, 80)
    xs = np.array([15.0, 60.0, 20.0, 62.0, 40.0, 40.0])
    ys = np.array([15.0, 18.0, 62.0, 60.0, 40.0, 25.0])
    fluxes = np.array([2e4, 3e4, 1.5e4, 2.5e4, 1e4, 2e4])
    rng = np.random.default_rng(3)
    science = fluxes * 0.8
    science[4] *= 0.5  # the variable: ratio 0.4 where the others have 0.8
    t = renderStars(shape, xs, ys, fluxes, PsfModel(2.0, 2.0, 0.0, shape), half=10) + 50.0
    s = renderStars(shape, xs, ys, science, PsfModel(2.5, 2.5, 0.0, shape), half=10) + 50.0
    tMi = maskedImage(t + rng.normal(0, 3.0, shape), 9.0)
    sMi = maskedImage(s + rng.normal(0, 3.0, shape), 9.0)
    found = flagVariableCandidates(Table({"x": xs, "y": ys}), tMi, sMi, 2.5)
    assert found.variable.tolist() == [False, False, False, False, True, False]
    assert found.reference == pytest.approx(0.8, rel=0.03)
    assert found.ratios[4] == pytest.approx(0.4, rel=0.05)


def test_ztf_variable_at_the_centre_no_longer_carries_the_kernel_sum(tmp_path):
    # At 20cccdd the faded central star was a kernel candidate and carried the sum: 0.692 with the
    # template convolved, 1.489 with the science image convolved (exit 0, warned), against a
    # photometric scaling of 1.005 / 0.993 from the five constant stars.
    for direction, scaling in (("template", 1.005), ("science", 0.993)):
        out = tmp_path / direction
        rc = main([*_ztf("1660293514215020000"), "-o", str(out), "-q", "--no-plots", "--convolve",
                   direction, *NOISE])  # fmt: skip
        assert rc == 0
        meta = json.loads(next(out.glob("*/metadata.json")).read_text())
        assert meta["summary"]["kernelSum"] == pytest.approx(scaling, rel=0.05), direction
        # The fading is left in the difference: ZTF's own difference, which for a negative alert
        # (isdiffpos f) is reference minus science, has +6998 DN within 4 px of the centre.
        diff = fits.getdata(next(out.glob("*/*difference*.fits")), "IMAGE")
        yy, xx = np.mgrid[0:63, 0:63]
        centre = float(np.nansum(diff[np.hypot(xx - 31, yy - 31) <= 4]))
        ztf = fits.getdata(DATA / "1660293514215020000_diff.fits")
        ztfCentre = float(np.nansum(ztf[np.hypot(xx - 31, yy - 31) <= 4]))
        assert ztfCentre == pytest.approx(6998, rel=0.001)
        assert -centre == pytest.approx(ztfCentre, rel=0.1), direction


def test_ztf_kernel_fitted_to_noise_is_refused(tmp_path, capsys):
    # The convolved science image holds no star but the transient; at 20cccdd the fit gave a kernel
    # sum of 0.025 and exited 0.
    rc = main([*_ztf("472263571115115008"), "-o", str(tmp_path / "o"), "-q", "--no-plots",
               "--convolve", "science", *NOISE])  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert "KernelSumMismatchError" in err and "unconstrained" in err and "--convolve" in err
    assert not list((tmp_path / "o").glob("*/*difference*"))


def test_ztf_constant_candidates_on_a_one_image_structure_are_refused_with_the_cause(tmp_path, capsys):
    # The bogus alert ZTF18aagqxtf: a 20 DN depression of the science image around the only bright
    # star pulls the kernel sum to 0.75 while the stars' flux ratio is 1.00; the candidates themselves
    # are constant, and the refusal says that light of one image only in their stamps is the cause.
    rc = main([*_ztf("396522680015020000"), "-o", str(tmp_path / "o"), "-q", "--no-plots",
               "--exclude", "32", "32", *NOISE])  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    found = re.search(r"kernel sum ([0-9.]+) from .* the flux ratio ([0-9.]+) of", err)
    assert "KernelSumMismatchError" in err and found is not None
    assert float(found.group(1)) == pytest.approx(0.75, abs=0.03)
    assert float(found.group(2)) == pytest.approx(1.0, abs=0.02)
    assert "candidates themselves are constant" in err and "light of one image only" in err
    assert "--stamps" in err and "--exclude-radius" in err
    assert not list((tmp_path / "o").glob("*/*difference*"))
