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
"""Few of the library's function parameters are typed ``Any`` or not typed at all.

Every parameter of every function and method in python/ counts, except
``self`` and ``cls``; ``*args`` and ``**kwargs`` count too. A parameter is
"weak" when it has no annotation or when its annotation is ``Any`` itself
(``Any``, ``typing.Any``, ``"Any"``); ``list[Any]`` and ``Any | None`` are not
counted, they say something about the value. mypy itself runs in
scripts/run-tests.sh. ``python tests/test_typing.py`` prints the figures.
"""

import ast
from pathlib import Path

PYTHON = Path(__file__).resolve().parent.parent / "python"
# Issue 16 asks for 5 %. The package stands at 0.2 % (5 of 2480: the abstract PsfMatchTask._buildCellSet's
# *args/**kwargs, makeKernelCandidate's two upstream call forms and a duck-typed source record); the
# ceiling of 1 % keeps new code typed.
TARGET_WEAK_FRACTION = 0.05
MAX_WEAK_FRACTION = 0.01


def _isAny(annotation: ast.expr | None) -> bool:
    """Return whether an annotation is missing or is ``Any`` itself."""
    if annotation is None:
        return True
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value.strip() in ("Any", "typing.Any")
    if isinstance(annotation, ast.Name):
        return annotation.id == "Any"
    if isinstance(annotation, ast.Attribute):
        return annotation.attr == "Any" and isinstance(annotation.value, ast.Name)
    return False


def countParameters(root: Path = PYTHON) -> tuple[int, int, list[str]]:
    """Count the parameters under ``root`` and the weak ones.

    Parameters
    ----------
    root : `pathlib.Path`
        Folder whose ``*.py`` files are read.

    Returns
    -------
    total : `int`
        Number of parameters (``self`` and ``cls`` excluded).
    weak : `int`
        Number of them unannotated or annotated ``Any``.
    where : `list` [`str`]
        ``file:line function(parameter)`` of each weak parameter.
    """
    total = weak = 0
    where: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Lambda):
                continue  # lambdas cannot be annotated
            args = node.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            params += [a for a in (args.vararg, args.kwarg) if a is not None]
            for i, arg in enumerate(params):
                if i == 0 and arg.arg in ("self", "cls") and arg in (args.posonlyargs + args.args):
                    continue
                total += 1
                if _isAny(arg.annotation):
                    weak += 1
                    where.append(f"{path.relative_to(root)}:{node.lineno} {node.name}({arg.arg})")
    return total, weak, where


def test_anyBelowFivePercent() -> None:
    """No more than MAX_WEAK_FRACTION of the parameters are ``Any`` or unannotated."""
    total, weak, where = countParameters()
    assert total > 1000  # the whole package was read
    assert weak / total < MAX_WEAK_FRACTION, (
        f"{weak} of {total} parameters ({weak / total:.1%}) are Any or unannotated:\n" + "\n".join(where)
    )


def test_countingSeesAnyAndMissingAnnotations(tmp_path: Path) -> None:
    """The counter flags ``Any`` and missing annotations, and nothing else."""
    (tmp_path / "m.py").write_text(
        "from typing import Any\n"
        "import typing\n"
        "class C:\n"
        "    def f(self, a: int, b: Any, c, *args: 'Any', d: list[Any] | None = None,"
        " e: typing.Any = 1, **kw: str) -> None: ...\n"
        "    @classmethod\n"
        "    def g(cls, x: Any | None) -> None: ...\n"
    )
    total, weak, where = countParameters(tmp_path)
    assert (total, weak) == (8, 4)
    assert [w.split("(")[1] for w in where] == ["b)", "c)", "e)", "args)"]


if __name__ == "__main__":
    total, weak, _ = countParameters()
    print(f"{weak} of {total} parameters ({weak / total:.2%}) are Any or unannotated")
    print(f"target {TARGET_WEAK_FRACTION:.0%}, test ceiling {MAX_WEAK_FRACTION:.0%}")
