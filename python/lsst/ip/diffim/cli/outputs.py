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
"""Writing a subtraction's products to a folder, all or nothing."""

from __future__ import annotations

__all__ = ["SubtractionSummary", "formatDiaSummary", "summarize", "writeOutputs"]

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lsst.images.serialization import write_archive

from ..kernelConversion import toImagesBackground, toImagesKernel
from ..math.masks import anyMaskPlaneSet
from ..math.spatialCell import SpatialCellCandidateStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    import lsst.pipe.base as pipeBase
    from lsst.images import MaskedImage

    from ..imagePsfMatch import ImagePsfMatchTask
    from .sheetWorker import SheetWorker


@dataclass
class SubtractionSummary:
    """The numbers a user looks at first."""

    nCandidates: int
    nUsed: int
    nRejected: int
    kernelSum: float
    conditionNumber: float
    normalizedStd: float
    normalizedMean: float
    seconds: float

    def format(self) -> str:
        """Return the summary as the lines the command line prints."""
        return (
            f"candidates: {self.nCandidates} ({self.nUsed} used, {self.nRejected} rejected)\n"
            f"kernel sum: {self.kernelSum:.4f}   spatial condition number: {self.conditionNumber:.3g}\n"
            f"difference / sqrt(variance) away from sources: mean {self.normalizedMean:+.3f}, "
            f"robust std {self.normalizedStd:.3f}\n"
            f"time: {self.seconds:.2f} s"
        )


def _flatMetadata(metadata: pipeBase.TaskMetadata | Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    items = metadata.to_dict() if hasattr(metadata, "to_dict") else dict(metadata)

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[prefix] = value

    walk("", items)
    return out


def normalizedResidualStats(
    difference: MaskedImage, sourceMask: np.ndarray | None = None
) -> tuple[float, float]:
    """Return the mean and robust std of ``difference / sqrt(variance)`` off sources."""
    with np.errstate(divide="ignore", invalid="ignore"):
        image, variance = difference.image.array, difference.variance.array
        norm = np.sqrt(variance).astype(np.result_type(image, variance), copy=False)
        np.divide(image, norm, out=norm)
    ok = np.isfinite(norm)
    bad = anyMaskPlaneSet(difference.mask, ["NO_DATA", "EDGE", "SAT", "DETECTED"])
    if bad is not None:
        ok &= ~bad
    if sourceMask is not None:
        ok &= ~sourceMask
    values = norm[ok]
    if values.size == 0:
        return math.nan, math.nan
    del norm, ok, bad  # values is a copy; no image-sized temporaries left
    from ..math.bracketedPercentiles import bracketedPercentiles

    q25, q50, q75 = bracketedPercentiles(values, [25, 50, 75])  # np.percentile's numbers
    return float(q50), float((q75 - q25) / 1.349)


def summarize(
    task: ImagePsfMatchTask, result: pipeBase.Struct, seconds: float, sourceMask: np.ndarray | None = None
) -> SubtractionSummary:
    """Return the summary of a subtraction result."""
    candidates = result.kernelCellSet.allCandidates()
    nUsed = sum(1 for c in candidates if c.getStatus() == SpatialCellCandidateStatus.GOOD)
    nBad = sum(1 for c in candidates if c.getStatus() == SpatialCellCandidateStatus.BAD)
    metadata = task.metadata
    mean, std = normalizedResidualStats(result.subtractedMaskedImage, sourceMask)
    return SubtractionSummary(
        nCandidates=len(candidates),
        nUsed=nUsed,
        nRejected=nBad,
        kernelSum=float(metadata["spatialKernelSum"]),
        conditionNumber=float(metadata["spatialConditionNum"]),
        normalizedStd=std,
        normalizedMean=mean,
        seconds=seconds,
    )


def writeOutputs(
    outDir: str | os.PathLike,
    task: ImagePsfMatchTask,
    result: pipeBase.Struct,
    summary: SubtractionSummary,
    *,
    prefix: str = "",
    sheetTitle: str = "",
    template: MaskedImage | None = None,
    science: MaskedImage | None = None,
    plots: bool = True,
    compression: str = "mask",
    detection: pipeBase.Struct | None = None,
    sheetWorker: SheetWorker | None = None,
) -> list[Path]:
    """Write every product of a subtraction into ``outDir``.

    ``detection`` (from `lsst.ip.diffim.detectAndMeasure.detectOnSubtraction`)
    adds ``dia_sources.fits``, its counts in ``metadata.json`` and the DIA
    sources on the summary sheet.

    Files are written to a temporary folder next to ``outDir`` and moved
    into place only when all succeeded, so a failure leaves nothing behind.
    The FITS files and the summary sheet are written concurrently;
    ``compression`` is a `~lsst.ip.diffim.cli.fitsWriting.planeCompression`
    choice; ``plots=False`` skips the summary sheet, which ``sheetWorker``
    (a `~lsst.ip.diffim.cli.sheetWorker.SheetWorker`) draws if given, else
    a thread of this process.

    Returns
    -------
    paths : `list` [`pathlib.Path`]
        The files written.
    """
    outDir = Path(outDir)
    outDir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=outDir))
    try:
        names: list[str] = []
        difference = result.subtractedExposure
        bbox = result.subtractedMaskedImage.bbox

        def add(name: str) -> Path:
            names.append(prefix + name)
            return staging / (prefix + name)

        from .fitsWriting import planeCompression, runConcurrently

        options = planeCompression(compression)
        matched = result.matchedImage
        if hasattr(difference, "psf"):
            from ..adapters.exposures import makeMatchedVisitImage

            matched = makeMatchedVisitImage(difference, result.matchedImage)
        diffPath, matchedPath = str(add("difference.fits")), str(add("matched_template.fits"))

        # One writer: two writing at once would hold two planes' compression
        # buffers at the same time (peak memory); the sheet is drawn meanwhile.
        def writeImages() -> None:
            from ..adapters.maskWriting import fastMaskWrites

            with fastMaskWrites(difference, matched):
                difference.write(diffPath, compression_options=options)
                matched.write(matchedPath, compression_options=options)

        diaSources = None if detection is None else detection.diaSources
        if detection is not None:
            diaLine = formatDiaSummary(detection).replace("; associated", "\nassociated")
            sheetTitle = (sheetTitle + "\n" if sheetTitle else "") + diaLine
        sheetJob = None
        if plots:
            from concurrent.futures import ThreadPoolExecutor

            from .summarySheet import drawSummarySheet, prepareSummarySheet

            # The sheet's views are copied before the writes start (astropy
            # byte-swaps a plane in place while writing it); it is drawn
            # (by the drawing process, or on a thread) while every file is written.
            sheet = prepareSummarySheet(
                result,
                template=template,
                science=science,
                title=sheetTitle,
                summary=summary,
                diaSources=diaSources,
            )
            draw = drawSummarySheet if sheetWorker is None else sheetWorker.draw
            sheetPool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipdiffim-sheet")
            sheetJob = sheetPool.submit(draw, sheet, staging / (prefix + "summary.png"))
            sheetPool.shutdown(wait=False)
        try:
            kernelPath, backgroundPath = add("kernel.fits"), add("background.fits")
            write_archive(toImagesKernel(result.psfMatchingKernel, bbox), kernelPath)
            write_archive(toImagesBackground(result.backgroundModel, bbox), backgroundPath)
            meta = {"summary": asdict(summary), "metadata": _flatMetadata(task.getFullMetadata())}
            if detection is not None:
                import warnings

                from astropy.io.fits.verify import VerifyWarning

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", VerifyWarning)  # long meta keys become HIERARCH cards
                    detection.diaSources.write(add("dia_sources.fits"), format="fits")
                meta["detectAndMeasure"] = _flatMetadata(detection.task.getFullMetadata())
            add("metadata.json").write_text(json.dumps(meta, indent=2, default=str))
            runConcurrently([writeImages])
        finally:
            # Nothing is removed or moved while the sheet is still being written.
            sheetError = None if sheetJob is None else sheetJob.exception()
        if sheetError is not None:
            raise sheetError
        if plots:
            add("summary.png")
        written = []
        for name in names:
            target = outDir / name
            if target.exists():
                target.unlink()
            shutil.move(str(staging / name), target)
            written.append(target)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def formatDiaSummary(detection: pipeBase.Struct) -> str:
    """Return the one-line summary of a DIA source detection (counts from its task metadata)."""
    md = detection.task.metadata
    return (
        f"DIA sources: {md['NFalsePositivesTotal']} ({md['nPositiveDiaSources']} positive, "
        f"{md['nNegativeDiaSources']} negative, {md['nDipoleDiaSources']} dipoles); "
        f"associated with template sources {md['NFalsePositivesRefAssociated']}, with science sources "
        f"{md['NFalsePositivesSrcAssociated']}, unassociated {md['NFalsePositivesUnassociated']}"
    )
