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
"""Selection of kernel sources from a catalogue (meas_algorithms' ``ScienceSourceSelectorTask``).

The catalogue is an `astropy.table.Table`.  Each enabled criterion reads
its configured columns; a criterion whose columns the table lacks is
skipped with a log message (a plain ``x``/``y`` list passes them all),
and the signal-to-noise criterion falls back to the ``flux``/``fluxErr``
columns of `lsst.ip.diffim.detection.SourceDetectionTask`.
"""

from __future__ import annotations

__all__ = ["ScienceSourceSelectorConfig", "ScienceSourceSelectorTask", "signalToNoise"]

import numpy as np
from astropy.table import Table

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase


class _SignalToNoiseConfig(pexConfig.Config):
    fluxField = pexConfig.Field[str](dtype=str, default="base_PsfFlux_instFlux", doc="Flux column.")
    errField = pexConfig.Field[str](dtype=str, default="base_PsfFlux_instFluxErr", doc="Flux error column.")
    minimum = pexConfig.Field[float](dtype=float, default=None, optional=True, doc="Minimum S/N (inclusive).")
    maximum = pexConfig.Field[float](dtype=float, default=None, optional=True, doc="Maximum S/N (exclusive).")


class _FlagsConfig(pexConfig.Config):
    good = pexConfig.ListField[str](dtype=str, default=[], doc="Columns that must be True.")
    bad = pexConfig.ListField[str](
        dtype=str,
        default=["base_PixelFlags_flag_edge", "base_PixelFlags_flag_saturated", "base_PsfFlux_flag"],
        doc="Columns that must be False.",
    )


class _UnresolvedConfig(pexConfig.Config):
    name = pexConfig.Field[str](
        dtype=str, default="base_ClassificationSizeExtendedness_value", doc="Extendedness column."
    )
    minimum = pexConfig.Field[float](dtype=float, default=None, optional=True, doc="Minimum (inclusive).")
    maximum = pexConfig.Field[float](dtype=float, default=0.5, optional=True, doc="Maximum (exclusive).")


class _IsolatedConfig(pexConfig.Config):
    parentName = pexConfig.Field[str](dtype=str, default="parent", doc="Parent id column (0: no parent).")
    nChildName = pexConfig.Field[str](dtype=str, default="deblend_nChild", doc="Number-of-children column.")


class _RequirePrimaryConfig(pexConfig.Config):
    primaryColName = pexConfig.Field[str](dtype=str, default="detect_isPrimary", doc="Primary flag column.")


class _SkyConfig(pexConfig.Config):
    name = pexConfig.Field[str](dtype=str, default="sky_source", doc="Sky-source flag column.")


class ScienceSourceSelectorConfig(pexConfig.Config):
    """Configuration of `ScienceSourceSelectorTask`."""

    doFlags = pexConfig.Field[bool](dtype=bool, default=False, doc="Apply the flag criteria.")
    doUnresolved = pexConfig.Field[bool](dtype=bool, default=False, doc="Keep unresolved sources only.")
    doSignalToNoise = pexConfig.Field[bool](dtype=bool, default=False, doc="Apply the S/N limits.")
    doIsolated = pexConfig.Field[bool](
        dtype=bool, default=False, doc="Keep isolated (unblended) sources only."
    )
    doRequirePrimary = pexConfig.Field[bool](dtype=bool, default=False, doc="Keep primary sources only.")
    doSkySources = pexConfig.Field[bool](dtype=bool, default=False, doc="Keep sky sources too.")
    flags = pexConfig.ConfigField[_FlagsConfig](dtype=_FlagsConfig, doc="Flag criteria.")
    unresolved = pexConfig.ConfigField[_UnresolvedConfig](
        dtype=_UnresolvedConfig, doc="Star/galaxy criterion."
    )
    signalToNoise = pexConfig.ConfigField[_SignalToNoiseConfig](
        dtype=_SignalToNoiseConfig, doc="S/N criterion."
    )
    isolated = pexConfig.ConfigField[_IsolatedConfig](dtype=_IsolatedConfig, doc="Isolation criterion.")
    requirePrimary = pexConfig.ConfigField[_RequirePrimaryConfig](
        dtype=_RequirePrimaryConfig, doc="Primary criterion."
    )
    skyFlag = pexConfig.ConfigField[_SkyConfig](dtype=_SkyConfig, doc="Sky-source flag.")


def signalToNoise(catalog: Table, config: _SignalToNoiseConfig) -> np.ndarray | None:
    """Return the S/N of every row (configured columns, else ``flux/fluxErr``), or `None`."""
    for flux, err in ((config.fluxField, config.errField), ("flux", "fluxErr")):
        if flux in catalog.colnames and err in catalog.colnames:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.asarray(catalog[flux], dtype=float) / np.asarray(catalog[err], dtype=float)
    return None


class ScienceSourceSelectorTask(pipeBase.Task):
    """Select sources of a catalogue by flags, S/N, extendedness, isolation."""

    ConfigClass = ScienceSourceSelectorConfig
    _DefaultName = "sourceSelector"
    config: ScienceSourceSelectorConfig

    def _column(self, catalog: Table, name: str, criterion: str) -> np.ndarray | None:
        if name in catalog.colnames:
            return np.asarray(catalog[name])
        self.log.debug("Source catalogue has no %r column: %s criterion skipped.", name, criterion)
        return None

    def selectSources(self, catalog: Table) -> pipeBase.Struct:
        """Return ``selected``, a boolean array over the rows of ``catalog``."""
        n = len(catalog)
        selected = np.ones(n, dtype=bool)
        c = self.config
        if c.doFlags:
            for name in c.flags.bad:
                col = self._column(catalog, name, "flag")
                if col is not None:
                    selected &= ~col.astype(bool)
            for name in c.flags.good:
                col = self._column(catalog, name, "flag")
                if col is not None:
                    selected &= col.astype(bool)
        if c.doUnresolved:
            col = self._column(catalog, c.unresolved.name, "unresolved")
            if col is not None:
                v = col.astype(float)
                if c.unresolved.minimum is not None:
                    selected &= v >= c.unresolved.minimum
                if c.unresolved.maximum is not None:
                    selected &= v < c.unresolved.maximum
        if c.doSignalToNoise:
            snr = signalToNoise(catalog, c.signalToNoise)
            if snr is None:
                self.log.debug("Source catalogue has no flux columns: S/N criterion skipped.")
            else:
                if c.signalToNoise.minimum is not None:
                    selected &= snr >= c.signalToNoise.minimum
                if c.signalToNoise.maximum is not None:
                    selected &= snr < c.signalToNoise.maximum
        if c.doIsolated:
            for name in (c.isolated.parentName, c.isolated.nChildName):
                col = self._column(catalog, name, "isolated")
                if col is not None:
                    selected &= col == 0
        if c.doRequirePrimary:
            col = self._column(catalog, c.requirePrimary.primaryColName, "primary")
            if col is not None:
                selected &= col.astype(bool)
        sky = catalog[c.skyFlag.name] if c.skyFlag.name in catalog.colnames else None
        if sky is not None:
            skyRows = np.asarray(sky, dtype=bool)
            selected = (selected & ~skyRows) | (skyRows if c.doSkySources else False)
        return pipeBase.Struct(selected=selected)
