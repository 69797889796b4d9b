#!/usr/bin/env bash
# Runs a Python check of the engine tests in the venv made by scripts/setup_engine_data.sh:
#   run_python_check.sh VENV SCRIPT [ARGS...]
# Exit code 77 (ctest: skipped) with a clear message when the venv or onnxruntime is missing.
set -uo pipefail
venv=$1; script=$2; shift 2
py="$venv/bin/python3"
if [ ! -x "$py" ]; then
  echo "SKIPPED: no Python venv at $venv (run scripts/setup_engine_data.sh to create it)"
  exit 77
fi
if ! "$py" -c "import onnxruntime, numpy, onnx, PIL" 2>/dev/null; then
  echo "SKIPPED: onnxruntime, numpy, onnx or Pillow is not importable in $venv (run scripts/setup_engine_data.sh)"
  exit 77
fi
exec "$py" "$script" "$@"
