"""PSF matching and image subtraction (a pip-installable ``lsst.ip.diffim``).

The flat namespace holds upstream's public names: the tasks and configs, the
basis generators, and the kernel-fitting core (``makeKernelCandidate``,
the visitors, ``KernelCandidateF`` ...).  The afw.math-like primitives
(``SpatialCellSet``, ``FixedKernel`` ...) live in `lsst.ip.diffim.math`.

Imports are lazy
----------------
``import lsst.ip.diffim`` imports nothing heavy: each public name is listed
in the table ``_LAZY`` below under the submodule that defines it, and the
module-level ``__getattr__`` imports that submodule the first time one of
its names is used (``ipDiffim.ImagePsfMatchTask``, ``from lsst.ip.diffim
import subtract``, ``from lsst.ip.diffim import *`` all work).  So
``ipdiffim-subtract --help`` does not pay for lsst.pipe.base, lsst.images,
scipy or matplotlib.

To export a new module's names, add one entry to ``_LAZY``::

    ".myModule": ("MyTask", "MyConfig", "myFunction"),

listing exactly the module's ``__all__`` (``tests/test_lazyImports.py``
checks every entry against its module).  A plain ``from .myModule import *``
line below the table works too, but it is eager: it costs its import time
on every start.
"""

from .version import *

_LAZY: dict[str, tuple[str, ...]] = {
    ".detectAndMeasure": (
        "DIA_SOURCE_COLUMNS", "DetectAndMeasureConfig", "DetectAndMeasureConnections",
        "DetectAndMeasureTask", "detectOnSubtraction",
    ),
    ".dipoleFit": (
        "DipoleFitConfig", "DipoleFitTask", "PsfStampModel", "fitDipole", "fitPointSource",
    ),
    ".exclusions": (
        "ExclusionRegions", "PositionListError", "candidateArguments", "parseExcludeArguments",
        "readFitsWcs", "readPositions", "stampListTable", "EXTENT_FWHM", "excludedForFit", "PositionSpec",
    ),
    ".fwhmValidation": (
        "InvalidFwhmError", "resolveFwhm", "validateFwhm", "validateFwhmArguments",
    ),
    ".imageDecorrelation": (
        "DecorrelateALKernelConfig", "DecorrelateALKernelSpatialConfig",
        "DecorrelateALKernelSpatialTask", "DecorrelateALKernelTask", "decorrelateDifference",
    ),
    ".imagePsfMatch": (
        "ImagePsfMatchConfig", "ImagePsfMatchTask", "ImagesDoNotOverlapError",
        "MismatchedImagesError", "subtractAlgorithmRegistry",
    ),
    ".inputChecks": (
        "BadVarianceError", "InvalidImageError", "MAX_BAD_VARIANCE_FRACTION", "MissingWcsError",
        "UnregisteredImagesError", "checkImageArray", "checkRegistration", "flagBadVariance",
    ),
    ".kernel": (
        "AssessSpatialKernelVisitor", "AssessSpatialKernelVisitorF", "BuildSingleKernelVisitor",
        "BuildSingleKernelVisitorF", "BuildSpatialKernelVisitor", "BuildSpatialKernelVisitorF",
        "CANDIDATE_ERRORS", "CandidateSwitch", "ImageStatistics", "ImageStatisticsD",
        "ImageStatisticsF", "ImageStatisticsI", "KernelCandidate", "KernelCandidateF", "KernelPca",
        "KernelPcaD", "KernelPcaVisitor", "KernelPcaVisitorF", "KernelSolution", "KernelSumVisitor",
        "KernelSumVisitorF", "PropertySet", "RegularizedKernelSolution", "RegularizedKernelSolutionF",
        "SpatialKernelSolution", "StaticKernelSolution", "StaticKernelSolutionF", "basisDesignMatrix",
        "convolveAndSubtract", "convolveMaskedStamp", "correlateValid", "goodSlices",
        "makeAlardLuptonBasisList", "makeAssessSpatialKernelVisitor", "makeBuildSingleKernelVisitor",
        "makeBuildSpatialKernelVisitor", "makeCentralDifferenceMatrix", "makeDeltaFunctionBasisList",
        "makeForwardDifferenceMatrix", "makeKernelCandidate", "makeKernelPcaVisitor",
        "makeKernelSumVisitor", "makePropertySet", "makeRegularizationMatrix",
        "renormalizeKernelList", "solveSymmetricSystem", "solveSymmetricSystems", "toPropertySet",
        "KernelFitSettings", "RESIDUAL_METRIC_NAMES", "asSettings", "bicPreferredDegrees",
        "makeKernelCellSet", "residualMetrics",
    ),
    ".planeCompression": (
        "COMPRESSION_CHOICES", "PlaneCompressionFormatter", "planeCompressionOptions",
    ),
    ".kernelConversion": (
        "fromImagesKernel", "toImagesBackground", "toImagesField", "toImagesKernel",
    ),
    ".makeKernel": (
        "MakeKernelConfig", "MakeKernelTask", "measurePsfFlux",
    ),
    ".makeKernelBasisList": (
        "BasisMetadata", "generateAlardLuptonBasisList", "makeKernelBasisList", "sigma2fwhm",
    ),
    ".modelPsfMatch": (
        "ModelPsfMatchConfig", "ModelPsfMatchTask", "PsfComputeShapeError",
        "WarpedPsfTransformTooBigError", "nextOddInteger",
    ),
    ".notebook": (
        "DifferenceResult", "detectDiaSources", "subtract",
    ),
    ".presets": (
        "PRESETS", "UnknownPresetError", "applyPreset",
    ),
    ".psfMatch": (
        "DetectionConfig", "NoKernelCandidatesError", "PsfMatchConfig", "PsfMatchConfigAL",
        "PsfMatchConfigDF", "PsfMatchTask",
    ),
    ".scaleVariance": (
        "ExceedsMaxVarianceScaleError", "ScaleVarianceConfig", "ScaleVarianceTask",
    ),
    ".snapPsfMatch": (
        "SnapPsfMatchConfig", "SnapPsfMatchConfigAL", "SnapPsfMatchConfigDF", "SnapPsfMatchTask",
    ),
    ".subtractImages": (
        "AlardLuptonPreconvolveSubtractConfig", "AlardLuptonPreconvolveSubtractConnections",
        "AlardLuptonPreconvolveSubtractTask", "AlardLuptonSubtractBaseConfig",
        "AlardLuptonSubtractConfig", "AlardLuptonSubtractConnections", "AlardLuptonSubtractTask",
        "InsufficientKernelSourcesError", "SimplifiedSubtractConfig", "SimplifiedSubtractConnections",
        "SimplifiedSubtractTask", "SubtractImagesConfig", "SubtractImagesConnections",
        "SubtractImagesTask", "checkTemplateIsSufficient", "computeDifferenceImageMetrics",
    ),
    ".utils": (
        "angleMean", "computePSFNoiseEquivalentArea", "computeRobustStatistics",
        "evaluateMeanPsfFwhm", "getKernelCenterDisplacement", "getPsfFwhm",
    ),
}

_WHERE = {name: module for module, names in _LAZY.items() for name in names}
__all__ = sorted(_WHERE) + ["__version__"]

# Modules that moved under a subpackage: ``ipDiffim.warping`` is still the module.
_MOVED: dict[str, str] = {
    "objectExtraction": ".math.objectExtraction",
    "warping": ".math.warping",
}


def __getattr__(name: str):
    import importlib

    module = _WHERE.get(name)
    if module is None and name in _MOVED:
        return importlib.import_module(_MOVED[name], __name__)
    if module is None:
        try:  # a submodule, e.g. ``ipDiffim.math``
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


def _keepNamesOverSubmodules() -> None:
    # Importing a submodule sets it as an attribute of this package; where a
    # public name is also a submodule's name (``makeKernelBasisList``), the
    # name wins, as it did with eager ``from .x import *`` lines.
    import sys
    import types

    shadowed = {name for name, module in _WHERE.items() if module.lstrip(".") == name}

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: object) -> None:
            if name in shadowed and isinstance(value, types.ModuleType):
                value = getattr(value, name)
            super().__setattr__(name, value)

    sys.modules[__name__].__class__ = _Package


_keepNamesOverSubmodules()
