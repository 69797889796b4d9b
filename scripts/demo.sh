#!/usr/bin/env bash
# make demo: runs qlib-calibrate with every method on real activations (the digits CNN's,
# examples/data/activations/README.md) and prints one table of the chosen ranges per method
# and tensor, then the int8 weight scales of one conv layer (ARQ, per output channel), and
# the TensorRT cache and AMCT record the tool writes for the KL / HFMG results.
# After the QAT demo is built, it runs too (examples/qat_digits).
set -euo pipefail
build="${1:-build}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tool="$build/tools/qlib-calibrate"
data="$root/examples/data/activations"
out="$build/demo"
mkdir -p "$out"
tensors=(input conv1_relu conv2_bn conv4_relu logits)
args=()
for t in "${tensors[@]}"; do for b in 0 1 2; do args+=("$t=$data/$t.$b.npy"); done; done
methods=(minmax percentile mse kl kl-modelopt kl-ort ifmr hfmg)
echo "qlib-calibrate on real activations of the digits CNN (3 batches of 64 images per tensor)"
for m in "${methods[@]}"; do
  start=$(date +%s%N)
  "$tool" --method "$m" "${args[@]}" -o "$out/$m.json"
  end=$(date +%s%N)
  echo "$(( (end - start) / 1000000 ))" > "$out/$m.ms"
done
python3 - "$out" "${methods[@]}" <<'PY'
import json, sys
out, methods = sys.argv[1], sys.argv[2:]
res = {m: json.load(open(f"{out}/{m}.json"))["tensors"] for m in methods}
names = [t["name"] for t in res[methods[0]]]
print()
print("clip range [min, max] per tensor (int8; symmetric TensorRT grid, AMCT affine grid for ifmr/hfmg)")
print(f"{'tensor':<12}" + "".join(f"{m:>20}" for m in methods))
for i, n in enumerate(names):
    cells = []
    for m in methods:
        t = res[m][i]
        cells.append(f"[{t['clip_min'][0]:.3f}, {t['clip_max'][0]:.3f}]")
    print(f"{n:<12}" + "".join(f"{c:>20}" for c in cells))
print(f"{'ms (all)':<12}" + "".join(f"{open(f'{out}/{m}.ms').read().strip():>20}" for m in methods))
PY
echo
echo "ARQ int8 weight scales of conv2 (per output channel, first 8 of 32):"
"$tool" --method arq "w=$data/conv2_weight.npy" -o "$out/arq.json"
python3 -c "import json,sys; t=json.load(open('$out/arq.json'))['tensors'][0]; print('  ' + ' '.join(f'{s:.3g}' for s in t['scale'][:8]))"
echo
echo "TensorRT calibration cache (kl), as IInt8Calibrator::readCalibrationCache would return it:"
"$tool" --method kl --format trt-cache "${args[@]}" -o "$out/calibration.cache"
sed 's/^/  /' "$out/calibration.cache"
echo
echo "AMCT record (hfmg activations + arq weights are separate runs; first entry shown):"
"$tool" --method hfmg --format amct-record "${args[@]}" -o "$out/activations.record"
head -7 "$out/activations.record" | sed 's/^/  /'
if [ -x "$build/examples/qat_digits" ]; then
  echo
  "$build/examples/qat_digits" "$root/examples/data/digits"
fi
