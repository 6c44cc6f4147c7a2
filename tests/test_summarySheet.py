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
"""The summary sheet: its titles and colour bars, and the drawing process of the command line."""

import dataclasses

import numpy as np
import pytest

from lsst.ip.diffim.cli.sheetWorker import SheetWorker, SummarySheetError
from lsst.ip.diffim.cli.summarySheet import SummarySheetData, buildSheetFigure, drawSummarySheet


def _data(convolved: str = "template", kernelSum: float = 1.3) -> SummarySheetData:
    rng = np.random.default_rng(3)
    n = 64
    sky = rng.normal(100.0, 5.0, (n, n)).astype(np.float32)
    diff = rng.normal(0.0, 5.0, (n, n)).astype(np.float32)
    y, x = np.mgrid[-7:8, -7:8]
    kernel = np.exp(-(x**2 + y**2) / 8.0)
    mosaic = np.full((3 * 15 + 2, 3 * 15 + 2), np.nan)
    for i in range(3):
        for j in range(3):
            mosaic[i * 16 : i * 16 + 15, j * 16 : j * 16 + 15] = kernel / kernel.sum()
    values = rng.normal(size=20000)
    counts, edges = np.histogram(values[np.abs(values) < 8], bins=120)
    panels = {"template": sky, "science": sky * 1.3, "matched": sky * 1.3, "difference": diff}
    panels["normalized"] = diff / 5.0
    limits = {name: (float(a.min()), float(a.max())) for name, a in panels.items()}
    limits["difference"] = (-15.0, 15.0)
    return SummarySheetData(
        panels=panels,
        extent=(-0.5, n - 0.5, -0.5, n - 0.5),
        kernelMosaic=mosaic,
        # A spatially constant kernel sum: flat to rounding.
        kernelSumMap=kernelSum + 1e-15 * rng.normal(size=(48, 48)),
        bbox=(0.0, n - 1.0, 0.0, n - 1.0),
        candidates={
            "used": rng.uniform(0, n, (20, 2)),
            "rejected": rng.uniform(0, n, (3, 2)),
            "not visited": np.zeros((0, 2)),
        },
        cellBoxes=[(-0.5, -0.5, 32.0, 32.0), (31.5, 31.5, 32.0, 32.0)],
        histogramEdges=edges,
        histogramCounts=counts,
        title="science - template\ncandidates: 23",
        limits=limits,
        convolved=convolved,
    )


@pytest.mark.parametrize("convolved", ["template", "science"])
def test_matchedPanelNamesTheConvolvedImage(tmp_path, convolved):
    sheet = buildSheetFigure()
    drawSummarySheet(_data(convolved), tmp_path / "sheet.png", sheet=sheet)
    assert sheet.axes[0, 2].get_title() == f"PSF-matched {convolved}"
    assert sheet.axes[0, 0].get_title() == "Template (input)"
    assert sheet.axes[2, 1].get_legend() is not None and len(sheet.figure.axes) == 16


def test_flatKernelSumMapHasReadableColourbar(tmp_path):
    sheet = buildSheetFigure()
    drawSummarySheet(_data(kernelSum=1.2998), tmp_path / "sheet.png", sheet=sheet)
    axis = sheet.colorbarAxes[2, 0].yaxis
    sheet.figure.canvas.draw()
    labels = [t.get_text() for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
    assert len(labels) >= 3 and len(set(labels)) == len(labels)
    values = [float(label.replace("\N{MINUS SIGN}", "-")) for label in labels]
    assert all(abs(v - 1.2998) < 1e-3 for v in values)
    assert axis.get_offset_text().get_text() == ""


def test_drawingProcessWritesTheSameSheetAndReportsErrors(tmp_path):
    from PIL import Image

    data = _data()
    drawSummarySheet(data, tmp_path / "here.png")
    worker = SheetWorker.start()
    assert worker is not None
    try:
        assert worker.draw(data, tmp_path / "there.png") == tmp_path / "there.png"
        here = np.asarray(Image.open(tmp_path / "here.png"))
        there = np.asarray(Image.open(tmp_path / "there.png"))
        assert here.shape[:2] == (1120, 1200)
        np.testing.assert_array_equal(here, there)
        broken = dataclasses.replace(data, panels={k: v for k, v in data.panels.items() if k != "matched"})
        with pytest.raises(SummarySheetError, match="KeyError"):
            worker.draw(broken, tmp_path / "broken.png")
        assert not (tmp_path / "broken.png").exists()
        worker.draw(data, tmp_path / "again.png")  # the process goes on after an error
        assert (tmp_path / "again.png").exists()
    finally:
        worker.close()
    assert worker._process.poll() is not None
    with pytest.raises(SummarySheetError, match="ended"):
        worker.draw(data, tmp_path / "closed.png")
