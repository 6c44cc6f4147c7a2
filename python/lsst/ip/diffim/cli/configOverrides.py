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
"""``-c KEY=VALUE`` and ``-C FILE`` applied as ``pipetask`` applies them.

The overrides go through `lsst.pipe.base.configOverrides.ConfigOverrides`,
the machinery behind ``pipetask run -c/-C``: the same keys (nested configs,
subtasks such as ``selectDetection.thresholdValue``, ConfigChoiceField
selections such as ``kernel.name=DF``, list and dict values) and the same
value parsing.  Overrides apply in the order given, files first.  Every
failure becomes one `ConfigOverrideError` naming the override or file.
"""

from __future__ import annotations

__all__ = ["applyConfigOverrides"]

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import ConfigOverrideError

if TYPE_CHECKING:
    import lsst.pex.config as pexConfig


def _oneLine(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).split(" For more information see")[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def applyConfigOverrides(
    config: pexConfig.Config, configFiles: Sequence[str], overrides: Sequence[str]
) -> None:
    """Apply ``-C`` files, then ``-c`` overrides, to ``config`` and validate it.

    Parameters
    ----------
    config : `lsst.pex.config.Config`
        Modified in place.
    configFiles : sequence of `str`
        Config override files (Python, ``config.<field> = ...``).
    overrides : sequence of `str`
        ``KEY=VALUE`` strings (``KEY`` dotted, as ``pipetask -c``).

    Raises
    ------
    ConfigOverrideError
        If a file is missing or fails, an override is malformed, names no
        field or has an invalid value, or the final config does not validate.
    """
    from lsst.pex.config import FieldValidationError
    from lsst.pipe.base.configOverrides import ConfigOverrides

    for path in configFiles:
        if not os.path.isfile(path):
            raise ConfigOverrideError(f"{path}: no such config file")
        one = ConfigOverrides()
        one.addFileOverride(os.path.abspath(path))
        try:
            one.applyTo(config)
        except (Exception, SystemExit) as exc:  # a config file is arbitrary Python
            raise ConfigOverrideError(f"{path}: config file failed: {_oneLine(exc)}") from exc
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigOverrideError(f"config override {item!r} is not KEY=VALUE")
        one = ConfigOverrides()
        one.addValueOverride(key, value)
        try:
            one.applyTo(config)
        except AttributeError as exc:
            raise ConfigOverrideError(f"-c {item}: unknown config field {key!r} ({_oneLine(exc)})") from exc
        except (FieldValidationError, TypeError, ValueError, KeyError) as exc:
            raise ConfigOverrideError(f"-c {item}: invalid value for {key!r}: {_oneLine(exc)}") from exc
        except Exception as exc:  # pex_config raises several types from field setters
            raise ConfigOverrideError(f"-c {item}: cannot apply: {_oneLine(exc)}") from exc
    try:
        config.validate()
    except Exception as exc:  # FieldValidationError and the checks of custom validate() methods
        raise ConfigOverrideError(f"config does not validate: {_oneLine(exc)}") from exc
