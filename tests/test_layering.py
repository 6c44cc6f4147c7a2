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
"""The package's layers: imports never point upwards, and no module imports itself back.

The layers, lowest first (a module may import its own layer's group and
every layer below it, never one above or a sibling group on its level):

0. ``math/``: afw.math-like primitives (convolution engines, threads,
   statistics, spatial cells, detection and object extraction, warping).
   Knows nothing of kernel fitting or tasks.
1. ``kernel/`` (the kernel-fitting core) and, beside it, ``adapters/``
   (conversions to and from `lsst.images` exposures, PSFs, FITS files).
   Each builds on ``math/`` only; neither imports the other.
2. ``display/``: read-only views of kernel and math objects.  The tasks
   call them through their ``lsstDebug`` hooks, so displays sit below the
   tasks and never import one.
3. The package's top-level modules: the tasks and their configs, and the
   helpers of the task API (``inputChecks``, ``presets``, ``notebook`` ...).
4. ``cli/`` (console commands) and ``tests/`` (shared test fixtures): the
   entry points; nothing in the library imports them.

The package ``__init__`` is the lazy public namespace above every layer:
no library module imports it.  Every ``import`` counts, the ones inside
functions (lazy imports) and ``TYPE_CHECKING`` blocks included, as they are
read from the source with `ast`, not from ``sys.modules``.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import lsst.ip.diffim as ipDiffim

PACKAGE = "lsst.ip.diffim"
ROOT = pathlib.Path(ipDiffim.__file__).parent

#: Layer of each subpackage; the top-level modules are ``TASKS``.
TASKS = 3
LAYERS = {"math": 0, "kernel": 1, "adapters": 1, "display": 2, "cli": 4, "tests": 4}
FACADE = 5

#: Upward imports not yet removed, each with the reason it waits; an entry
#: that is no longer needed fails `test_noUpwardImports` too.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    ("adapters.noiseModel", "scaleVariance"): (
        "applyVarianceScaling runs ScaleVarianceTask; adapters/noiseModel.py and scaleVariance.py are "
        "being reworked on the i18-noise branch"
    ),
}


def _moduleName(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _modules() -> dict[str, pathlib.Path]:
    return {_moduleName(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """Return the package modules a module imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from . import x``: the submodule x if there is one, else the package.
            targets = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in known]
            if len(targets) < len(node.names):
                targets.append(module)
        else:
            continue
        found.update(t for t in targets if t == PACKAGE or t.startswith(PACKAGE + "."))
    found.discard(name)
    return found


def _layer(name: str) -> tuple[int, str]:
    """Return the layer of a module and its group (subpackage, or ``tasks``)."""
    parts = name.split(".")[3:]
    if not parts:
        return FACADE, "facade"
    if parts[0] in LAYERS:
        return LAYERS[parts[0]], parts[0]
    return TASKS, "tasks"


def _short(name: str) -> str:
    return name[len(PACKAGE) + 1 :] or PACKAGE


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_layersAreKnown() -> None:
    """Every subpackage has a layer: a new one must be placed in the order above."""
    subpackages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert subpackages <= set(LAYERS), sorted(subpackages - set(LAYERS))


def test_noUpwardImports() -> None:
    """No module imports a layer above its own, or a sibling group on its level."""
    violations = set()
    for name, imported in _graph().items():
        level, group = _layer(name)
        if group == "facade":
            continue
        for target in imported:
            targetLevel, targetGroup = _layer(target)
            if targetLevel > level or (targetLevel == level and targetGroup != group):
                violations.add((_short(name), _short(target)))
    unexpected = sorted(violations - set(KNOWN_VIOLATIONS))
    assert not unexpected, f"upward imports: {unexpected}"
    stale = sorted(set(KNOWN_VIOLATIONS) - violations)
    assert not stale, f"fixed, remove from KNOWN_VIOLATIONS: {stale}"


def test_noImportCycles() -> None:
    """No two modules import each other, directly or through others (lazy imports included)."""
    graph = _graph()
    # A package's __init__ imports its own modules; a module naming its package
    # ("from . import x") is not a cycle through the package's other modules.
    edges = {
        name: {t for t in targets if not name.startswith(t + ".") and _layer(t)[1] != "facade"}
        for name, targets in graph.items()
    }
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([_short(n) for n in stack[stack.index(nxt) :]] + [_short(nxt)])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_theCheckSeesLazyImports(tmp_path: pathlib.Path) -> None:
    """The import reader finds imports inside functions, relative and absolute."""
    source = tmp_path / "probe.py"
    source.write_text(
        "def f():\n"
        "    from ..imagePsfMatch import ImagePsfMatchTask\n"
        "    import lsst.ip.diffim.cli.subtract\n"
        "    from . import threads\n"
    )
    known = {f"{PACKAGE}.imagePsfMatch", f"{PACKAGE}.cli.subtract", f"{PACKAGE}.math.threads"}
    found = _imports(f"{PACKAGE}.math.probe", source, known)
    assert found == known


@pytest.mark.parametrize(
    ("old", "new"), [("objectExtraction", "math.objectExtraction"), ("warping", "math.warping")]
)
def test_movedModulesStillResolve(old: str, new: str) -> None:
    """Modules moved under ``math/`` are still attributes of the package."""
    import importlib

    assert getattr(ipDiffim, old) is importlib.import_module(f"{PACKAGE}.{new}")
