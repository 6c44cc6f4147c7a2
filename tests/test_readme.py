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
"""The README's code blocks run as written.

Every ``.. code-block:: python`` of README.rst runs, each on its own in a
fresh interpreter, in an empty folder (as a user's first session in a fresh
clone would, with the package installed).  Every ``.. code-block:: bash``
block must parse (``bash -n``) and name only commands that exist (on
``PATH`` with the project's ``.venv/bin`` first, shell builtins, or files of
the repository); bash blocks that are cheap to run carry the marker
``.. readme-test: run`` and are run in a scratch folder that links the
repository's top-level entries (so the outputs they write land there).

A block that cannot run on a test machine (it needs your own files, a
cluster, network...) is skipped if the line ``.. readme-test: skip`` (an
RST comment: invisible in the rendered README) is among the three lines
before its ``.. code-block::`` directive.  Outputs the README's commands
write in the checkout must be ignored by git (checked below).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
VENV_BIN = Path(sys.executable).parent
#: Commands the README tells users to have before the project exists (not on every test machine).
PREREQUISITES = {"python3.13", "pyenv"}
#: Folders and files the README's commands create in the checkout.
README_OUTPUTS = ["debug_displays/", "demo_repo/", "demo_output/", "out/", "venv/", "submit/", "runinfo/"]


def readmeBlocks() -> list[tuple[str, str, str, set[str]]]:
    """Return ``(id, language, code, markers)`` of every code block of the README."""
    lines = README.read_text().splitlines()
    blocks = []
    section = "top"
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r"[=\-~^]{3,}", lines[i + 1]) and line.strip():
            section = line.strip()
        match = re.match(r"^(\s*)\.\. code-block::\s*(\S+)", line)
        if not match:
            continue
        indent = len(match.group(1))
        markers = {
            m for prev in lines[max(0, i - 3) : i] for m in re.findall(r"\.\. readme-test:\s*(\w+)", prev)
        }
        body: list[str] = []
        for follow in lines[i + 1 :]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                break
            body.append(follow)
        code = "\n".join(body)
        depth = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
        code = "\n".join(b[depth:] for b in body).strip("\n") + "\n"
        n = sum(1 for b in blocks if b[0].startswith(section + " #"))
        blocks.append((f"{section} #{n + 1}", match.group(2), code, markers))
    return blocks


BLOCKS = readmeBlocks()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    env.pop("IPDIFFIM_DEBUG_DIR", None)
    return env


def _params(language: str):
    return [
        pytest.param(code, markers, id=name, marks=[pytest.mark.skip("marked readme-test: skip")])
        if "skip" in markers
        else pytest.param(code, markers, id=name)
        for name, lang, code, markers in BLOCKS
        if lang == language
    ]


def test_readme_has_blocks():
    """The extraction finds the README's blocks (a broken parser would pass every test below)."""
    languages = [lang for _, lang, _, _ in BLOCKS]
    assert languages.count("python") >= 3 and languages.count("bash") >= 4, BLOCKS


@pytest.mark.parametrize("code,markers", _params("python"))
def test_python_block_runs(code, markers, tmp_path):
    """A Python block runs to the end in a fresh interpreter in an empty folder."""
    script = tmp_path / "snippet.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{code}\n--- stderr ---\n{proc.stderr[-3000:]}"


def _commands(code: str) -> list[list[str]]:
    """The simple commands of a bash block (continuations joined, split at ``&& || ; |``)."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in lexer:
            if token in ("&&", "||", ";", "|", "&"):
                if words:
                    out.append(words)
                words = []
            else:
                words.append(token)
        if words:
            out.append(words)
    return out


_BUILTINS = {".", "source", "cd", "export", "set", "echo", "exit", "true", "false"}


@pytest.mark.parametrize("code,markers", _params("bash"))
def test_bash_block(code, markers, tmp_path):
    """A bash block parses and names existing commands; the ones marked ``run`` run."""
    proc = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    created: set[str] = set()
    for words in _commands(code):
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]  # VAR=value prefixes
        if not words:
            continue
        command = words[0]
        if command in ("bash", "sh"):
            assert (ROOT / words[1]).is_file(), f"{words[1]} is not a file of the repository"
        elif command in _BUILTINS:
            if command in (".", "source"):
                assert words[1].split("/")[0] in created | {".venv"}, words
        elif "/" in command:
            assert (ROOT / command).exists() or command.split("/")[0] in created, command
        else:
            found = shutil.which(command, path=_env()["PATH"]) or command in PREREQUISITES
            assert found, f"command {command!r} of the README is not installed"
        if command.startswith("python") and words[1:3] == ["-m", "venv"]:
            created.add(words[3])
        if command == "python" and len(words) > 2 and words[1] == "-c":
            compile(words[2], "<README python -c>", "exec")
    if "run" not in markers:
        return
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv") and not (tmp_path / entry.name).exists():
            (tmp_path / entry.name).symlink_to(entry)
    proc = subprocess.run(
        ["bash", "-e", "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{code}\n--- stderr ---\n{proc.stderr[-3000:]}"


def test_readme_outputs_are_ignored():
    """What the README's commands write in the checkout is ignored by git."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    proc = subprocess.run(
        ["git", "check-ignore", "--no-index", *README_OUTPUTS], cwd=ROOT, capture_output=True, text=True
    )
    ignored = set(proc.stdout.split())
    assert ignored == set(README_OUTPUTS), set(README_OUTPUTS) - ignored
