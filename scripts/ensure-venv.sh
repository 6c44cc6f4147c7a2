#!/usr/bin/env bash
# Create or refresh the project's own virtual environment (.venv) with Python 3.13.
#
# Finds Python 3.13 as `python3.13` on PATH, or through pyenv (the project's
# .python-version selects 3.13.0; PYENV_VERSION also works).  Re-installs the
# project whenever pyproject.toml changes.  Safe to run repeatedly.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${IPDIFFIM_VENV:-$root/.venv}"

find_python() {
    if [ -n "${IPDIFFIM_PYTHON:-}" ]; then echo "$IPDIFFIM_PYTHON"; return 0; fi
    local cand
    # pyenv shims honour .python-version in $root; a bare python3.13 may not exist.
    for cand in python3.13 "$(command -v pyenv >/dev/null 2>&1 && (cd "$root" && pyenv which python3.13 2>/dev/null) || true)" \
                "$HOME/.pyenv/versions/3.13.0/bin/python3.13"; do
        [ -n "$cand" ] || continue
        if (cd "$root" && "$cand" -c 'import sys; assert sys.version_info[:2] >= (3, 12)') >/dev/null 2>&1; then
            (cd "$root" && command -v "$cand") 2>/dev/null || echo "$cand"
            return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        local v
        v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[3-9]' | sort -V | tail -n 1 || true)
        if [ -n "$v" ]; then echo "$(pyenv root)/versions/$v/bin/python3"; return 0; fi
    fi
    return 1
}

stamp="$venv/.ipdiffim-installed"
want=$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

py=$(find_python) || {
    echo "error: Python 3.13 (or >= 3.12) not found: install it, or put python3.13 on PATH, or set IPDIFFIM_PYTHON" >&2
    exit 1
}
if [ ! -x "$venv/bin/python" ]; then
    echo "Creating virtual environment $venv with $py" >&2
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
echo "Installing lsst-ip-diffim and its dependencies into $venv" >&2
"$venv/bin/python" -m pip install --quiet -e "$root[test,doc]"
echo "$want" > "$stamp"
