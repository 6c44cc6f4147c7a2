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
"""Input checks shared by the task and `subtract` (issue 12): named errors, flagged pixels, threads."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import NDData, StdDevUncertainty
from astropy.wcs import WCS

import lsst.ip.diffim as ipDiffim
from lsst.ip.diffim.inputChecks import (
    BadVarianceError,
    InvalidImageError,
    MissingWcsError,
    UnregisteredImagesError,
)
from lsst.ip.diffim.kernel.memoryEstimate import estimateMemory
from lsst.ip.diffim.syntheticPairs import makeSyntheticPair


@pytest.fixture(scope="module")
def pair():
    return makeSyntheticPair(size=200, nStars=60, seed=29)


def _subtract(pair, template=None, science=None, tv=None, sv=None, **kwargs):
    return ipDiffim.subtract(
        pair.template if template is None else template,
        pair.science if science is None else science,
        templateVariance=pair.templateVariance if tv is None else tv,
        scienceVariance=pair.scienceVariance if sv is None else sv,
        templateFwhm=3.0,
        scienceFwhm=4.5,
        **kwargs,
    )


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda a: a[0], "must be 2-d"),
        (lambda a: a[:0, :0], "is empty"),
        (lambda a: a.astype(np.complex64), "is complex"),
        (lambda a: a.astype(str), "non-numeric"),
    ],
)
def test_bad_arrays_are_named_errors(pair, make, message):
    with pytest.raises(InvalidImageError, match=message):
        _subtract(pair, science=make(pair.science), sv=make(pair.scienceVariance))


def test_wcs_on_one_side_and_unregistered_sizes(pair):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [30.0, -10.0]
    wcs.wcs.crpix = [101, 101]
    wcs.wcs.cd = [[-5.5e-5, 0.0], [0.0, 5.5e-5]]
    t = NDData(pair.template, uncertainty=StdDevUncertainty(np.sqrt(pair.templateVariance)), wcs=wcs)
    with pytest.raises(MissingWcsError, match="template has a celestial WCS and the science image has none"):
        _subtract(pair, template=t)
    with pytest.raises(UnregisteredImagesError, match=r"template \(200x200 px\) and science image \(198x198"):
        _subtract(pair, science=pair.science[2:, 2:], sv=pair.scienceVariance[2:, 2:])


def test_bad_variance_flagged_and_kept_out_of_the_fit(pair):
    """Zero, negative and NaN variance pixels: NO_DATA in the result, the fit as good as without them."""
    clean = _subtract(pair)
    sv = pair.scienceVariance.copy()
    sv[10:40, :] = 0.0
    sv[60:70, 50:150] = -4.0
    sv[120:125, :] = np.nan
    flagged = _subtract(pair, sv=sv)
    bad = ~(sv > 0)
    assert flagged.mask[bad].all()
    assert abs(flagged.kernelSum / pair.fluxRatio - 1) < 0.01
    assert abs(flagged.kernelSum - clean.kernelSum) < 0.01  # fewer candidates, same kernel
    ok = ~flagged.mask
    norm = flagged.difference[ok] / np.sqrt(flagged.variance[ok])
    assert np.isfinite(norm).all()
    q25, q75 = np.percentile(norm, [25, 75])
    assert (q75 - q25) / 1.349 < 1.25  # unit residuals (the issue saw 1.55 with bad pixels in the fit)
    sv[:120, :] = 0.0
    with pytest.raises(BadVarianceError, match="of the science variance pixels"):
        _subtract(pair, sv=sv)


def test_bad_variance_in_the_task(pair):
    """The task itself (not only subtract) refuses a mostly invalid variance."""
    from lsst.ip.diffim.adapters.exposures import makeVisitImage

    task = ipDiffim.ImagePsfMatchTask()
    sv = np.zeros_like(pair.scienceVariance)
    t = makeVisitImage(pair.template, pair.templateVariance)
    s = makeVisitImage(pair.science, sv)
    with pytest.raises(BadVarianceError):
        task.run(t, s, templateFwhmPix=3.0, scienceFwhmPix=4.5)


@pytest.mark.parametrize("kernel", ["AL", "DF"])
def test_same_result_for_one_and_two_threads(monkeypatch, kernel):
    """IPDIFFIM_NUM_THREADS=1 and 2 give bitwise identical differences, matched images and kernels.

    (Before the FFTs and BLAS were held to one worker per chunk and tile,
    this pair differed in about 300 (AL) and 750 (DF) pixels.)
    """
    pair = makeSyntheticPair(size=400, nStars=84, seed=5)
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    config.kernel.name = kernel
    config.kernel.active.fitForBackground = True
    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("IPDIFFIM_NUM_THREADS", threads)
        r = _subtract(pair, config=config)
        kernelImage = r.kernel.compute_kernel_image(x=9, y=9).array
        results.append((r.difference, r.variance, r.matchedTemplate, kernelImage))
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


def test_memory_estimate_grows_with_basis_and_image():
    config = ipDiffim.ImagePsfMatchTask.ConfigClass()
    al = estimateMemory(config.kernel.active, (600, 600))
    config.kernel.name = "DF"
    df = estimateMemory(config.kernel.active, (600, 600))
    config.kernel.active.kernelSize = 41
    df41 = estimateMemory(config.kernel.active, (600, 600))
    assert al.total < df.total < df41.total
    assert df41.nBasis == 41 * 41 and "41 px" in df41.describe() and "GiB" in df41.describe()
    assert estimateMemory(config.kernel.active, (4000, 4000)).total > df41.total
