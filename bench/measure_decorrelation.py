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
"""Print the decorrelation truth figures (with and without) of tests/test_imageDecorrelation.py.

Usage::

    python bench/measure_decorrelation.py

A pure-noise 2048^2 pair (science variance 1, template variance 4, PSF
sigmas 3.3 / 2.2, the true Gaussian matching kernel): lag-1/lag-2
autocorrelation, variance plane against the pixel variance, and the
false-positive counts of a PSF matched filter at 3 and 5 sigma (5 sigma:
expected from the measured S/N distribution, as a few pixels are too few to
count) against the Gaussian expectation.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "tests"))

from test_imageDecorrelation import Q, autocorr, gauss, matchedFilterSnr, noisePair

from lsst.ip.diffim.imageDecorrelation import DecorrelateALKernelTask
from lsst.ip.diffim.math.kernels import FixedKernel


def main() -> int:
    science, template, difference, kappa = noisePair(2048, 1.0, 4.0, 3.3, 2.2, seed=5)
    before, beforeVar = difference.image.array.copy(), difference.variance.array.copy()
    DecorrelateALKernelTask().run(science, template, difference, FixedKernel(kappa))
    after, afterVar = difference.image.array, difference.variance.array
    psf = gauss(3.3, 12)
    for label, image, var in (("without", before, beforeVar), ("with", after, afterVar)):
        snr = matchedFilterSnr(image, var, psf)
        n = snr.size
        print(
            f"{label:8s} decorrelation: lag1 {autocorr(image, 1):.4f} lag2 {autocorr(image, 2):.4f}; "
            f"pixel var / plane {image[50:-50, 50:-50].var() / var.mean():.4f}; "
            f"3 sigma: {int((snr > 3).sum())} px (Gaussian {n * Q(3):.0f}); "
            f"5 sigma: {int((snr > 5).sum())} px counted, {n * Q(5 / snr.std()):.3g} expected from the "
            f"S/N std {snr.std():.4f} (Gaussian {n * Q(5):.3g})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
