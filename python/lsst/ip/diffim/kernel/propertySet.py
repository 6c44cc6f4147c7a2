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
"""Flat key/value configuration of the low-level kernel-fitting objects.

Upstream, the C++ candidates, solutions and visitors receive a
``PropertySet`` made by ``lsst.pex.config.makePropertySet(config)``, and the
peer tests edit keys of it (``ps["fitForBackground"] = True``).  Here the
same objects accept either a `lsst.pex.config.Config` or any mapping keyed
by config field names; `makePropertySet` makes such a mapping.
"""

from __future__ import annotations

__all__ = ["PropertySet", "makePropertySet", "toPropertySet"]

from collections.abc import Mapping
from typing import Any, overload

import lsst.pex.config as pexConfig


class PropertySet(dict):
    """A `dict` of config values with a few ``daf_base.PropertySet`` accessors."""

    def set(self, name: str, value: object) -> None:
        """Set ``name`` to ``value`` (afw's ``PropertySet.set``)."""
        self[name] = value

    def exists(self, name: str) -> bool:
        """Return whether ``name`` is set."""
        return name in self

    def getAsDouble(self, name: str) -> float:
        """Return the value of ``name`` as a `float`.

        Raises
        ------
        KeyError
            If ``name`` is not set.
        """
        return float(self[name])

    def getAsInt(self, name: str) -> int:
        """Return the value of ``name`` as an `int`.

        Raises
        ------
        KeyError
            If ``name`` is not set.
        """
        return int(self[name])

    def getAsBool(self, name: str) -> bool:
        """Return the value of ``name`` as a `bool`.

        Raises
        ------
        KeyError
            If ``name`` is not set.
        """
        return bool(self[name])

    def getAsString(self, name: str) -> str:
        """Return the value of ``name`` as a `str`.

        Raises
        ------
        KeyError
            If ``name`` is not set.
        """
        return str(self[name])

    def getArray(self, name: str) -> list[Any]:
        """Return the value of ``name`` as a list (a scalar becomes one item).

        Raises
        ------
        KeyError
            If ``name`` is not set.
        """
        value = self[name]
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]

    def copy(self) -> PropertySet:
        """Return a shallow copy, itself a `PropertySet`."""
        return PropertySet(self)


def _flatten(prefix: str | None, values: Mapping[str, Any], out: PropertySet) -> None:
    for key, value in values.items():
        name = key if prefix is None else f"{prefix}.{key}"
        if isinstance(value, Mapping):
            _flatten(name, value, out)
            # Also expose nested values of the active kernel config at top
            # level? No: keys are exactly the field names, as upstream.
        elif value is not None:
            out[name] = list(value) if isinstance(value, tuple) else value


@overload
def makePropertySet(config: pexConfig.Config | Mapping[str, Any]) -> PropertySet: ...


@overload
def makePropertySet(config: None) -> None: ...


def makePropertySet(config: pexConfig.Config | Mapping[str, Any] | None) -> PropertySet | None:
    """Return a `PropertySet` (a mutable mapping) equivalent to ``config``.

    Parameters
    ----------
    config : `lsst.pex.config.Config`, mapping, or `None`
        Source of the values; nested configs become dotted keys.

    Returns
    -------
    ps : `PropertySet` or `None`
        `None` if ``config`` is `None`.
    """
    if config is None:
        return None
    out = PropertySet()
    values = config.toDict() if isinstance(config, pexConfig.Config) else dict(config)
    _flatten(None, values, out)
    return out


def toPropertySet(source: pexConfig.Config | Mapping[str, Any]) -> PropertySet:
    """Return an independent `PropertySet` copy of a config or mapping.

    Raises
    ------
    TypeError
        If ``source`` is neither a config nor a mapping.
    """
    if isinstance(source, pexConfig.Config):
        return makePropertySet(source)
    if isinstance(source, Mapping):
        return PropertySet(source)
    raise TypeError(f"Expected a pex_config Config or a mapping of config values; got {type(source)!r}.")
