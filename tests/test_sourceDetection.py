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
"""The detection primitive and the task that configures it."""

import dataclasses

import numpy as np

from lsst.ip.diffim.detection import SourceDetectionConfig, SourceDetectionTask
from lsst.ip.diffim.math.sourceDetection import DetectionSettings, detectSources
from lsst.ip.diffim.tests import maskedImage


def test_settingsDefaultsAreTheConfigDefaults() -> None:
    """The primitive's defaults (used without a task) are the config's."""
    fromConfig = DetectionSettings.fromConfig(SourceDetectionConfig())
    assert fromConfig == DetectionSettings()
    assert {f.name for f in dataclasses.fields(DetectionSettings)} == set(SourceDetectionConfig()._fields)


def test_taskRunsThePrimitive() -> None:
    """The task's sources are the primitive's with the config's settings; stars at known positions."""
    rng = np.random.default_rng(5)
    image = rng.normal(0.0, 1.0, size=(120, 150)).astype(np.float32)
    yy, xx = np.mgrid[0:120, 0:150]
    truth = [(30.0, 40.0), (80.0, 100.0), (60.0, 20.0)]
    for y, x in truth:
        image += 100.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0)
    mi = maskedImage(image, 1.0)
    task = SourceDetectionTask()
    task.config.thresholdValue = 8.0
    sources = task.run(mi).sources
    direct = detectSources(mi, DetectionSettings(thresholdValue=8.0)).sources
    assert sources.colnames == direct.colnames
    for column in sources.colnames:
        np.testing.assert_array_equal(sources[column], direct[column])
    found = sorted(zip(np.round(sources["y"]), np.round(sources["x"])))
    assert found == sorted(truth)
