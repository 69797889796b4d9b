"""ONNX deployment benchmark on a ResNet-18-shaped model (random weights, BatchNorm folded
by the export in eval mode; no torchvision).

(a) Inference: the int8 QDQ model (``onnxruntime`` profile, calibrated with torchquant)
    against the FP32 model on ONNX Runtime's CPU provider, batch 1 and batch 8.
(b) Entropy calibration of every float tensor (what a TensorRT cache needs, and what ONNX
    Runtime's calibrator collects by default), torchquant's streaming path (the API behind
    ``torchquant calibrate --method entropy --cache``) against ONNX Runtime's
    ``create_calibrator(calibrate_method=Entropy, extra_options={"num_bins": 2048})``: wall
    time split into FP32 inference and statistics (of which the range search), and the peak
    RSS of a fresh subprocess per run, at two data-set sizes.

    python benchmarks/export_onnx.py            # 224x224, 16 and 64 samples
    python benchmarks/export_onnx.py --quick    # 112x112, 8 and 32 samples
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from torchquant.export import (
    calibrate_onnx,
    insert_qdq,
    load_calibration_data,
    model_inputs,
    write_calibration_cache,
)

BATCH = 8


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a (possibly projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResNet18(nn.Module):
    """ResNet-18 layout (He et al., 2016): stem, 4 stages of 2 blocks, pooling, 1000-way head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def export_model(path: Path, size: int) -> None:
    """Export ResNet18 with random weights and BatchNorm statistics, dynamic batch."""
    torch.manual_seed(0)
    model = ResNet18().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.3, 0.7)  # keeps activations in range through 8 blocks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(1, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )


def make_data(path: Path, n: int, size: int) -> None:
    """``n`` normalized pseudo-images (N, 3, size, size), fixed seed."""
    rng = np.random.default_rng(n)
    np.save(path, rng.standard_normal((n, 3, size, size), dtype=np.float32))


def time_inference(model: onnx.ModelProto | str, x: np.ndarray, runs: int) -> float:
    """Median seconds per run of ``model`` on ``x`` (ONNX Runtime CPU, default threads)."""
    src = model if isinstance(model, str) else model.SerializeToString()
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def child_torchquant(model: str, data: str, out: str) -> dict[str, float]:
    """The ``torchquant calibrate --method entropy --cache`` path, timed."""
    start = time.perf_counter()
    onnx_model = onnx.load(model)
    batches = load_calibration_data(data, model_inputs(onnx_model), BATCH)
    result = calibrate_onnx(
        onnx_model, batches, method="entropy", all_activations=True, progress=False
    )
    write_calibration_cache(out, result.tensorrt_scales())
    wall = time.perf_counter() - start
    t = result.timings
    return {
        "wall": wall,
        "inference": t["inference"],
        "statistics": t["statistics"] + t["compute"] + t["weights"],
        "search": t["compute"],
        "tensors": len(result.activations),
    }


def child_ort(model: str, data: str, out: str) -> dict[str, float]:
    """ONNX Runtime's entropy calibrator (2048 bins, symmetric), timed by phase."""
    from onnxruntime.quantization import calibrate as ort_calib

    arr = np.load(data)
    timed = {"inference": 0.0}

    class Reader(ort_calib.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": arr[i : i + BATCH]} for i in range(0, len(arr), BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    start = time.perf_counter()
    cal = ort_calib.create_calibrator(
        model,
        augmented_model_path=out + ".augmented.onnx",
        calibrate_method=ort_calib.CalibrationMethod.Entropy,
        extra_options={"num_bins": 2048, "symmetric": True},
    )
    run = cal.infer_session.run

    def timed_run(*args: object, **kwargs: object) -> object:
        t0 = time.perf_counter()
        outputs = run(*args, **kwargs)
        timed["inference"] += time.perf_counter() - t0
        return outputs

    cal.infer_session.run = timed_run
    cal.collect_data(Reader())
    search_start = time.perf_counter()
    ranges = cal.compute_data()
    search = time.perf_counter() - search_start
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "inference": timed["inference"],
        "statistics": wall - timed["inference"],
        "search": search,
        "tensors": len(ranges.data),
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux's VmHWM belongs to the address space exec created, whereas ``ru_maxrss`` (also
    through ``wait4``/``RUSAGE_CHILDREN``) keeps the high-water mark of the parent the child
    was forked from, which would hide the child's own growth.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(tool: str, model: Path, data: Path, out: Path) -> dict[str, float]:
    """Run one calibration in a fresh interpreter; it reports timings and peak RSS."""
    cmd = [sys.executable, __file__, "--child", tool, str(model), str(data), str(out)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{tool} calibration failed ({proc.returncode})")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="112x112 images, 8 and 32 samples")
    parser.add_argument(
        "--size", type=int, default=None, help="image size (default 224, quick 112)"
    )
    parser.add_argument("--samples", type=int, nargs=2, default=None, metavar=("SMALL", "LARGE"))
    parser.add_argument(
        "--child", nargs=4, metavar=("TOOL", "MODEL", "DATA", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        tool, model, data, out = args.child
        run = child_torchquant if tool == "torchquant" else child_ort
        print(json.dumps({**run(model, data, out), "peak_mib": peak_rss_mib()}))
        return
    size = args.size or (112 if args.quick else 224)
    small, large = args.samples or ((8, 32) if args.quick else (16, 64))
    tmp = Path(tempfile.mkdtemp(prefix="tq_bench_"))
    fp32 = tmp / "resnet18.onnx"
    export_model(fp32, size)
    print(f"ResNet-18 at {size}x{size}, ONNX Runtime {ort.__version__}, {os.cpu_count()} CPUs")

    # (a) int8 QDQ vs FP32 inference.
    make_data(tmp / "calib.npy", small, size)
    model = onnx.load(fp32)
    batches = load_calibration_data(tmp / "calib.npy", model_inputs(model), BATCH)
    result = calibrate_onnx(model, batches, method="minmax", profile="onnxruntime", progress=False)
    qdq = insert_qdq(model, result.qdq_activations(), result.qdq_weights(), "onnxruntime")
    onnx.checker.check_model(qdq)
    print("\n(a) inference, ms per batch (median)   FP32     int8 QDQ   speed-up")
    for batch, runs in ((1, 10 if args.quick else 20), (BATCH, 3 if args.quick else 5)):
        x = np.random.default_rng(7).standard_normal((batch, 3, size, size), dtype=np.float32)
        t_fp32 = time_inference(str(fp32), x, runs)
        t_int8 = time_inference(qdq, x, runs)
        print(
            f"    batch {batch:<2}                      {t_fp32 * 1e3:8.1f}  {t_int8 * 1e3:8.1f}   {t_fp32 / t_int8:5.2f}x"
        )

    # (b) entropy calibration of every float tensor, one subprocess per run.
    print("\n(b) entropy calibration, all float tensors, batch 8")
    print(
        "    tool        samples tensors  wall s  inference s  statistics s (search)  peak RSS MiB"
    )
    rows = {}
    for n in (small, large):
        data = tmp / f"data_{n}.npy"
        make_data(data, n, size)
        for tool in ("torchquant", "onnxruntime"):
            r = run_child(tool, fp32, data, tmp / f"{tool}_{n}.cache")
            rows[tool, n] = r
            print(
                f"    {tool:<11} {n:7d} {int(r['tensors']):7d} {r['wall']:7.2f} {r['inference']:12.2f}"
                f" {r['statistics']:13.2f} ({r['search']:6.2f}) {r['peak_mib']:13.0f}"
            )
    for n in (small, large):
        tq, ox = rows["torchquant", n], rows["onnxruntime", n]
        print(
            f"    {n} samples: torchquant wall = {tq['wall'] / ox['wall']:.3f} x ONNX Runtime's "
            f"(statistics {tq['statistics'] / ox['statistics']:.3f} x)"
        )
    for tool in ("torchquant", "onnxruntime"):
        grow = rows[tool, large]["peak_mib"] - rows[tool, small]["peak_mib"]
        print(f"    {tool} peak RSS growth from {small} to {large} samples: {grow:+.0f} MiB")


if __name__ == "__main__":
    main()
