#!/usr/bin/env bash
# GPU check of torchquant: runs scripts/gpu_check.py with the repository's .venv python when
# there is one, else the system python3. Exits 0 with "no CUDA device: skipped" without a GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$root/.venv/bin/python"
if [[ ! -x "$python" ]]; then
    python="$(command -v python3 || command -v python)"
fi
exec "$python" "$root/scripts/gpu_check.py" "$@"
