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
"""Typed, frozen settings of the kernel-fitting core.

The candidates, solutions and visitors of `lsst.ip.diffim.kernel` read
their configuration from one `KernelFitSettings`: attribute access, so a
misspelt name fails at once and every default is written down once, here
(checked against the config defaults by the tests).  The
upstream-compatible entries still work: any object that takes settings also
takes a `lsst.pex.config.Config` or a mapping such as the one
`makePropertySet` returns (``ps["fitForBackground"] = True`` as in
upstream's tests); `asSettings` converts them.
"""

from __future__ import annotations

__all__ = ["KernelFitSettings", "asSettings"]

import dataclasses
from collections.abc import Mapping
from typing import Any

import lsst.pex.config as pexConfig


@dataclasses.dataclass(frozen=True, slots=True)
class KernelFitSettings:
    """The configuration values the kernel-fitting core reads.

    Field names and defaults are those of `lsst.ip.diffim.PsfMatchConfig`
    (and, for regularization, `lsst.ip.diffim.PsfMatchConfigDF`); see
    those configs for their meaning.  Build one with `fromConfig` or
    `fromMapping`; derive a variant with `dataclasses.replace`.
    """

    fitForBackground: bool = False
    kernelBasisSet: str = "alard-lupton"
    kernelSize: int = 21
    spatialModelType: str = "chebyshev1"
    spatialKernelOrder: int = 2
    spatialBgOrder: int = 1
    usePcaForSpatialKernel: bool = False
    singleKernelClipping: bool = True
    kernelSumClipping: bool = True
    spatialKernelClipping: bool = True
    checkConditionNumber: bool = False
    badMaskPlanes: tuple[str, ...] = ("NO_DATA", "EDGE", "SAT")
    candidateResidualMeanMax: float = 0.25
    candidateResidualStdMax: float = 1.50
    useCoreStats: bool = False
    candidateCoreRadius: int = 3
    maxKsumSigma: float = 3.0
    maxConditionNumber: float = 5.0e7
    conditionNumberType: str = "EIGENVALUE"
    iterateSingleKernel: bool = False
    constantVarianceWeighting: bool = True
    varianceWeightingFloor: float = 0.0
    regularizationType: str = "centralDifference"
    centralRegularizationStencil: int = 9
    forwardRegularizationOrders: tuple[int, ...] = (1, 2)
    regularizationBorderPenalty: float = 3.0
    lambdaType: str = "absolute"
    lambdaValue: float = 0.2
    lambdaScaling: float = 1.0e-4

    def __post_init__(self) -> None:
        # Normalize the types, so that settings built from a hand-edited
        # mapping (an int where a float is meant, a list of planes, one
        # plane name) compare and behave like those built from a config.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "tuple[str, ...]":
                value = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
            elif field.type == "tuple[int, ...]":
                value = (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)
            elif field.type in ("bool", "int", "float", "str"):
                value = {"bool": bool, "int": int, "float": float, "str": str}[field.type](value)
            object.__setattr__(self, field.name, value)

    @classmethod
    def fieldNames(cls) -> tuple[str, ...]:
        """Return the names of the settings (config field names)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def fromConfig(cls, config: pexConfig.Config) -> KernelFitSettings:
        """Return the settings of a kernel config (`PsfMatchConfigAL`, `PsfMatchConfigDF`, ...).

        Fields the config does not have (the regularization fields of an
        Alard-Lupton config) keep their defaults.
        """
        values = {name: getattr(config, name) for name in cls.fieldNames() if hasattr(config, name)}
        return cls(**values)

    @classmethod
    def fromMapping(cls, mapping: Mapping[str, Any]) -> KernelFitSettings:
        """Return the settings of a mapping keyed by config field names.

        Keys that are not settings (other config fields, dotted sub-config
        keys) are ignored; missing ones keep their defaults.
        """
        names = cls.fieldNames()
        return cls(**{name: mapping[name] for name in names if name in mapping})


def asSettings(source: KernelFitSettings | pexConfig.Config | Mapping[str, Any]) -> KernelFitSettings:
    """Return ``source`` as `KernelFitSettings` (itself if it already is).

    Raises
    ------
    TypeError
        If ``source`` is neither settings, a config nor a mapping.
    """
    if isinstance(source, KernelFitSettings):
        return source
    if isinstance(source, pexConfig.Config):
        return KernelFitSettings.fromConfig(source)
    if isinstance(source, Mapping):
        return KernelFitSettings.fromMapping(source)
    raise TypeError(
        "Expected KernelFitSettings, a pex_config Config or a mapping of config values; "
        f"got {type(source)!r}."
    )
