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
"""``ipdiffim-make-demo-repo``: a Butler repository with the built-in pair, for ``pipetask``.

No obs package is needed: the instrument, filter, detector, day_obs, visit
and visit_detector_region records are inserted by hand, and the images are
put as ``science_image`` / ``template_image`` (storage class ``VisitImage``).
"""

from __future__ import annotations

__all__ = ["DEMO_INSTRUMENT", "demoRepoConfig", "ingestPair", "main", "makeDemoRepo"]

import argparse
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lsst.daf.butler import Butler, Config, DatasetType

if TYPE_CHECKING:
    from lsst.images import VisitImage

DEMO_INSTRUMENT = "DemoCam"
INPUT_RUN = "demo/inputs"


def _ensureRecords(butler: Butler, band: str, visit: int, detector: int, dayObs: int = 20250101) -> None:
    registry = butler.registry
    physicalFilter = f"demo_{band}"
    registry.syncDimensionData("instrument", {"name": DEMO_INSTRUMENT})
    registry.syncDimensionData(
        "physical_filter", {"instrument": DEMO_INSTRUMENT, "name": physicalFilter, "band": band}
    )
    registry.syncDimensionData(
        "detector", {"instrument": DEMO_INSTRUMENT, "id": detector, "full_name": f"D{detector:03d}"}
    )
    registry.syncDimensionData("day_obs", {"instrument": DEMO_INSTRUMENT, "id": dayObs})
    registry.syncDimensionData(
        "visit",
        {
            "instrument": DEMO_INSTRUMENT,
            "id": visit,
            "name": f"v{visit}",
            "physical_filter": physicalFilter,
            "day_obs": dayObs,
        },
    )
    registry.syncDimensionData(
        "visit_detector_region", {"instrument": DEMO_INSTRUMENT, "visit": visit, "detector": detector}
    )


def _registerDatasetTypes(butler: Butler) -> None:
    dims = butler.dimensions.conform(["instrument", "visit", "detector"])
    for name in ("science_image", "template_image"):
        butler.registry.registerDatasetType(DatasetType(name, dims, "VisitImage"))


def ingestPair(
    butler: Butler, visit: int, detector: int, template: VisitImage, science: VisitImage, band: str = "r"
) -> None:
    """Put a template/science pair of `lsst.images.VisitImage` for one data ID."""
    _ensureRecords(butler, band, visit, detector)
    dataId = {"instrument": DEMO_INSTRUMENT, "visit": visit, "detector": detector}
    butler.put(science, "science_image", dataId)
    butler.put(template, "template_image", dataId)


def demoRepoConfig(compress: str = "mask") -> dict[str, Any]:
    """Return the demo repository's configuration: images written with the CLI's plane compression.

    ``VisitImage`` and ``DifferenceImage`` datasets (the inputs and the
    subtraction's outputs) are written by
    `lsst.ip.diffim.planeCompression.PlaneCompressionFormatter`: by default
    the float planes uncompressed and the mask ``RICE_1``, as
    ``ipdiffim-subtract`` writes them (lossless ``GZIP_2`` of float noise
    takes most of a quantum's time and saves about 10 %).
    """
    formatter = {
        "formatter": "lsst.ip.diffim.planeCompression.PlaneCompressionFormatter",
        "parameters": {"compress": compress},
    }
    return {"datastore": {"formatters": {"VisitImage": formatter, "DifferenceImage": dict(formatter)}}}


def makeDemoRepo(path: str, pairs: Iterable[tuple[int, int, VisitImage, VisitImage]] | None = None) -> Butler:
    """Create a Butler repository holding template/science pairs.

    Parameters
    ----------
    path : `str`
        Repository root (created; must not already hold a repository).
    pairs : iterable of ``(visit, detector, template, science)``, optional
        The pairs to ingest; the built-in example pair (visit 15, detector 0)
        if not given.

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        A writeable butler on the new repository (run ``demo/inputs``).
    """
    Butler.makeRepo(path, config=Config(demoRepoConfig()))
    butler = Butler.from_config(path, writeable=True, run=INPUT_RUN)
    _registerDatasetTypes(butler)
    if pairs is None:
        from .builtinData import loadBuiltinPair

        template, science = loadBuiltinPair()
        pairs = [(15, 0, _retag(template, 15, 0), _retag(science, 15, 0))]
    for visit, detector, template, science in pairs:
        ingestPair(butler, visit, detector, template, science, band=getattr(science, "band", "r"))
    return butler


def _retag(image: object, visit: int, detector: int) -> VisitImage:
    """Return a copy of a demo VisitImage re-labelled for the demo instrument."""
    from lsst.images import VisitImage

    from ..adapters.exposures import makeVisitImage

    assert isinstance(image, VisitImage)
    return makeVisitImage(
        image.image.array,
        image.variance.array,
        image.mask,
        psf=image.psf,
        band=image.band,
        instrument=DEMO_INSTRUMENT,
        visit=visit,
        detectorId=detector,
        physicalFilter=f"demo_{image.band}",
        xy0=(image.bbox.x.start, image.bbox.y.start),
    )


def main(argv: list[str] | None = None) -> int:
    """Create the demo repository."""
    parser = argparse.ArgumentParser(
        prog="ipdiffim-make-demo-repo",
        description="Create a Butler repository (SQLite registry, file datastore) holding the built-in "
        "example pair as science_image/template_image VisitImages in the collection demo/inputs, "
        "ready for: pipetask run -b REPO -i demo/inputs -o demo/diff -p pipelines/DifferenceImaging.yaml "
        "--register-dataset-types",
    )
    parser.add_argument("repo", help="repository folder to create")
    args = parser.parse_args(argv)
    try:
        makeDemoRepo(args.repo)
    except Exception as exc:  # report any failure as one line
        print(f"ipdiffim-make-demo-repo: error: {exc}", file=sys.stderr)
        return 1
    print(f"Created Butler repository {args.repo} with the demo pair in collection {INPUT_RUN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
