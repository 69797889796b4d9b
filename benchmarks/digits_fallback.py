"""4-bit PTQ of the digits CNN with torchquant's automatic fixes: best calibrator per tensor
and float fallback of at most 2 layers, until the accuracy is within 1 point of FP32.

Models (`examples/digits_cnn.py`, seeded): the example's CNN (width 32, 15 epochs) and a
narrower, shorter-trained one (width 16, 4 epochs; the fast variant that
``tests/analysis/test_fixes.py`` runs), which 4-bit PTQ hurts more.

Quantization: ``quantize(model, PrepareConfig(qconfig=...))`` with 4-bit symmetric
activations calibrated by ``entropy`` (TensorRT's choice) and 4-bit per-channel narrow
weights (min/max), BN folded; ``calibrate`` on 512 training images. Fixes:
``analyze`` on 256 of them, ``auto_fallback(max_drop=1.0, max_float_layers=2)`` with the
test accuracy as the metric (the data set has no separate validation split).

Run: ``python benchmarks/digits_fallback.py [--report out.html]`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from digits_cnn import evaluate, load_data, train_fp32

from torchquant._api import quantize
from torchquant._auto import PrepareConfig
from torchquant._calibrate import calibrate
from torchquant.analysis import analyze, auto_fallback, write_report
from torchquant.config import QConfig, QuantizerConfig
from torchquant.quant.spec import QuantSpec

QCONFIG_4BIT = QConfig(
    activation=QuantizerConfig(QuantSpec(bits=4), calibrator="entropy"),
    weight=QuantizerConfig(QuantSpec(bits=4, axis=0, narrow_range=True), calibrator="minmax"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", help="write the width-16 model's report (HTML) here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data()
    x_test, y_test = data[2], data[3]
    calib: list[Tensor] = [data[0][i : i + 128] for i in range(0, 512, 128)]

    def accuracy(model: nn.Module) -> float:
        return evaluate(model, x_test, y_test)

    columns = ["model", "FP32", "4-bit PTQ", "best calibrator per tensor", "with fallback"]
    columns += ["float layers", "analysis passes", "seconds"]
    print(f"| {' | '.join(columns)} |")
    print("|---" * len(columns) + "|")
    for width, epochs in ((32, 15), (16, 4)):
        model = train_fp32(data, epochs=epochs, width=width)
        start = time.perf_counter()
        prepared = quantize(model, PrepareConfig(qconfig=QCONFIG_4BIT), (calib[0][:8],))
        calibrate(prepared, calib, progress=False)
        plain = accuracy(prepared)
        analysis = analyze(prepared, calib[:2])
        plan = auto_fallback(
            prepared, analysis, calib, accuracy, max_drop=1.0, metric_name="test accuracy (%)"
        )
        seconds = time.perf_counter() - start
        layers = ", ".join(plan.float_layers) or "none"
        print(
            f"| width {width}, {epochs} epochs | {plan.float_metric:.2f} | {plain:.2f} "
            f"| {plan.quantized_metric:.2f} | {plan.final_metric:.2f} | {layers} "
            f"| {analysis.forward_passes} | {seconds:.0f} |"
        )
        if args.report and width == 16:
            write_report(args.report, analysis, plan, title="digits CNN, 4-bit PTQ")


if __name__ == "__main__":
    main()
