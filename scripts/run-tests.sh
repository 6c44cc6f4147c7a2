#!/usr/bin/env bash
# Set up the project's virtual environment if needed, lint, then run the test suite.
# Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/ensure-venv.sh"
cd "$root"
export MPLBACKEND=Agg
.venv/bin/ruff check python tests bench
.venv/bin/mypy  # python/, configured in pyproject.toml [tool.mypy]
exec .venv/bin/python -m pytest -n 2 -q "$@"
