"""torchquant end to end on real data (`make demo`).

scikit-learn's bundled handwritten digits (1,797 real 8x8 scans) train a small CNN; then:

1. every calibrator's threshold for a few real activation tensors of that CNN;
2. post-training quantization (automatic path, no model edits) with the TensorRT preset;
3. quantization-aware training (int8) from the float model;
4. export of both to ONNX QDQ, checked in ONNX Runtime, plus a TensorRT calibration cache
   for the FP32 graph and an Ascend AMCT record file.

Outputs go to ``runs/demo/``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from digits_cnn import evaluate, load_data, train, train_fp32
from torch import Tensor, nn

import torchquant as tq
from torchquant.export import write_amct_record, write_calibration_cache
from torchquant.export.torch_onnx import amct_records_from_model, strip_qdq, tensorrt_scales

OUT = Path("runs/demo")


def capture_activations(model: nn.Module, x: Tensor, names: list[str]) -> dict[str, Tensor]:
    """The inputs of the named layers of ``model`` on ``x``."""
    seen: dict[str, Tensor] = {}
    hooks = [
        model.get_submodule(n).register_forward_pre_hook(
            lambda _m, args, n=n: seen.__setitem__(n, args[0].detach())
        )
        for n in names
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def threshold_table(activations: dict[str, Tensor]) -> None:
    """Each calibrator's clipping range for each tensor (int8, symmetric and affine)."""
    methods = tq.list_calibrators()
    print(f"{'tensor':<14}{'grid':<10}" + "".join(f"{m:>12}" for m in methods))
    for name, act in activations.items():
        for label, spec in (
            ("sym int8", tq.QuantSpec()),
            ("aff uint8", tq.QuantSpec(signed=False, symmetric=False)),
        ):
            row = f"{name:<14}{label:<10}"
            for m in methods:
                cal = tq.create_calibrator(m, spec, tensor_name=name)
                for chunk in act.split(128):
                    cal.observe(chunk)
                lo, hi = cal.range()
                row += (
                    f"{float(hi):>12.4f}"
                    if spec.symmetric
                    else f"{float(lo):>5.2f}:{float(hi):<6.3f}"
                )
            print(row)


def onnx_accuracy(path: Path, x: Tensor, y: Tensor) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": x.numpy()})[0]
    return float((np.argmax(logits, 1) == y.numpy()).mean() * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="float training epochs")
    parser.add_argument("--qat-epochs", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    data = load_data()
    x_train, y_train, x_test, y_test = data

    start = time.perf_counter()
    fp32 = train_fp32(data, epochs=args.epochs)
    acc_fp32 = evaluate(fp32, x_test, y_test)
    print(f"FP32 digits CNN: test accuracy {acc_fp32:.2f}% ({time.perf_counter() - start:.1f} s)\n")

    print("1. Calibrator thresholds for real activations (max |x| or lo:hi):")
    layers = [n for n, m in fp32.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][1:4]
    threshold_table(capture_activations(fp32, x_train[:512], layers))

    print(
        "\n2. Post-training quantization (TensorRT preset: entropy activations, per-channel weights)"
    )
    example = (x_train[:8],)
    ptq = tq.quantize(fp32, tq.PrepareConfig(), example)
    tq.calibrate(ptq, x_train[:512].split(64), progress=False)
    acc_ptq = evaluate(ptq, x_test, y_test)
    print(f"   int8 PTQ accuracy {acc_ptq:.2f}% (FP32 {acc_fp32:.2f}%)")

    print("\n3. Quantization-aware training, int8")
    qat = tq.quantize(fp32, tq.PrepareConfig(qat=True), example)
    train(qat, x_train, y_train, epochs=args.qat_epochs, lr=5e-4)
    qat.eval()
    acc_qat = evaluate(qat, x_test, y_test)
    print(f"   int8 QAT accuracy {acc_qat:.2f}%")

    print("\n4. Deployment")
    for label, model in (("ptq", ptq), ("qat", qat)):
        path = OUT / f"digits_{label}_int8.onnx"
        result = tq.export_onnx(
            copy.deepcopy(model), example, path, profile="tensorrt", check_inputs=[x_test[:256]]
        )
        print(f"   {path}: ONNX Runtime accuracy {onnx_accuracy(path, x_test, y_test):.2f}%")
        print("   " + str(result.check).replace("\n", "\n   "))
        if label == "ptq":
            fp32_graph = OUT / "digits_fp32.onnx"
            import onnx

            onnx.save(strip_qdq(result.model), fp32_graph)
            write_calibration_cache(OUT / "digits_fp32.cache", tensorrt_scales(result, model))
            write_amct_record(OUT / "digits.record", amct_records_from_model(model))
            print(
                f"   {fp32_graph} + digits_fp32.cache (TensorRT, implicit int8) + digits.record (AMCT)"
            )


if __name__ == "__main__":
    main()
