"""Real activations of a small trained CNN, for qlib's calibration demo.

PROVENANCE ONLY: this script needs the Python package torchquant's example model
(examples/digits_cnn.py, deleted with the Python package after the C++ port), PyTorch and
scikit-learn. It does not run in CI; it documents how examples/data/activations/ was made.

Run from the repository root:

    OMP_NUM_THREADS=1 python examples/data/activations/make_activations.py

It trains `DigitsCNN` (width 32) on scikit-learn's digits with `train_fp32` (15 epochs,
Adam lr 3e-3, cosine decay, batch 64, seed 0, one CPU thread), then feeds the first 192
training images (the order of `load_data`'s fixed stratified split) in 3 batches of 64 through
the float model in eval mode and saves, per batch ``b``:

- ``input.<b>.npy``       (64, 1, 8, 8)  pixels / 16, in [0, 1]
- ``conv1_relu.<b>.npy``  (64, 32, 8, 8) relu1(bn1(conv1(x)))
- ``conv2_bn.<b>.npy``    (64, 32, 8, 8) bn2(conv2(.)) before relu2 (signed; what the
                                          BN-folded conv2 outputs)
- ``conv4_relu.<b>.npy``  (64, 64, 4, 4) relu4(bn4(conv4(.)))
- ``logits.<b>.npy``      (64, 10)       the fc output

and once ``conv2_weight.npy`` (32, 32, 3, 3), conv2's trained weight (OIHW, before BN
folding). All float32, C order (NCHW).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from digits_cnn import evaluate, load_data, train_fp32  # noqa: E402

from torchquant.calib import create_calibrator  # noqa: E402
from torchquant.quant.spec import QuantSpec  # noqa: E402

BATCH = 64
NUM_BATCHES = 3


def main() -> None:
    torch.set_num_threads(1)
    for old in HERE.glob("*.npy"):
        old.unlink()
    data = load_data()
    model = train_fp32(data, epochs=15, seed=0)
    accuracy = evaluate(model, data[2], data[3])
    print(f"FP32 test accuracy: {accuracy:.2f}%")

    captured: dict[str, list[np.ndarray]] = {}

    def keep(name: str):  # type: ignore[no-untyped-def]
        def hook(module, inputs, output):  # type: ignore[no-untyped-def]
            captured.setdefault(name, []).append(output.detach().numpy().copy())
        return hook

    model.relu1.register_forward_hook(keep("conv1_relu"))
    model.bn2.register_forward_hook(keep("conv2_bn"))
    model.relu4.register_forward_hook(keep("conv4_relu"))
    model.fc.register_forward_hook(keep("logits"))
    x_train = data[0]
    with torch.no_grad():
        for b in range(NUM_BATCHES):
            xb = x_train[b * BATCH : (b + 1) * BATCH]
            captured.setdefault("input", []).append(xb.numpy().copy())
            model(xb)

    summary = {}
    for name, batches in captured.items():
        for b, arr in enumerate(batches):
            np.save(HERE / f"{name}.{b}.npy", np.ascontiguousarray(arr, dtype=np.float32))
        allv = np.concatenate([a.reshape(-1) for a in batches])
        # What torchquant computes on the 3 batches (per tensor, int8 symmetric).
        ranges = {}
        for cname, options in (("entropy_tensorrt", {"calibrator": "entropy"}),
                               ("percentile_99.99", {"calibrator": "percentile",
                                                     "percentile": 99.99}),
                               ("minmax", {"calibrator": "minmax"})):
            options = dict(options)
            cal = create_calibrator(options.pop("calibrator"), QuantSpec(), tensor_name=name,
                                    **options)
            for a in batches:
                cal.observe(torch.from_numpy(a))
            lo, hi = cal.range()
            ranges[cname] = {"lo": float(lo), "hi": float(hi), "scale": float(cal.compute()[0])}
        summary[name] = {"shape": list(batches[0].shape), "batches": len(batches),
                         "min": float(allv.min()), "max": float(allv.max()),
                         "zero_fraction": float((allv == 0).mean()), "torchquant": ranges}
    weight = model.conv2.weight.detach().numpy().astype(np.float32)
    np.save(HERE / "conv2_weight.npy", np.ascontiguousarray(weight))
    commit = subprocess.run(["git", "log", "-1", "--format=%H", "--", "src/torchquant",
                             "examples/digits_cnn.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    print(json.dumps({"accuracy": accuracy, "torch": torch.__version__, "commit": commit,
                      "tensors": summary}, indent=1))


if __name__ == "__main__":
    main()
