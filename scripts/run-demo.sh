#!/usr/bin/env bash
# Set up the project's virtual environment if needed, then run the main job on the built-in example.
# Extra arguments go to `ipdiffim-demo`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/ensure-venv.sh"
cd "$root"
export MPLBACKEND="${MPLBACKEND:-Agg}"
exec .venv/bin/ipdiffim-demo "$@"
