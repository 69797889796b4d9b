"""Time observe + compute of every registered calibrator on realistic activation tensors,
against ONNX Runtime's HistogramCollector (entropy) and PyTorch's HistogramObserver.

Tensors: ResNet-like ReLU activations N x C x H x W and transformer-like B x T x D
activations (Gaussian with a few large outlier channels), a few MB each, from a fixed seed.
Each tool gets one fresh calibrator per tensor (one batch, then compute). ONNX Runtime runs on
the first ``--ort-tensors`` tensors only (about 0.5 s each); its speed ratio is computed on
exactly those tensors.

    python benchmarks/calibrators.py            # 50 tensors, ONNX Runtime on 10
    python benchmarks/calibrators.py --quick    # 10 tensors, ONNX Runtime on 3
    python benchmarks/calibrators.py --threads 1  # on a shared machine: avoids thread oversubscription
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from collections.abc import Callable

import torch

from torchquant.calib import create_calibrator, list_calibrators
from torchquant.quant.spec import QuantSpec

SHAPES = [
    (8, 64, 56, 56),  # ResNet stage 1, 6.4 MB
    (8, 128, 28, 28),
    (8, 256, 14, 14),
    (8, 512, 7, 7),
    (8, 128, 768),  # BERT-base hidden states, 3.1 MB
    (8, 128, 3072),  # BERT-base MLP, 12.6 MB
]


def make_tensor(index: int) -> torch.Tensor:
    """The ``index``-th benchmark tensor (float32, deterministic)."""
    gen = torch.Generator().manual_seed(1000 + index)
    shape = SHAPES[index % len(SHAPES)]
    x = torch.randn(shape, generator=gen)
    if len(shape) == 4:
        return (x * 0.5 + 0.2).relu_()
    outliers = torch.randint(0, shape[-1], (4,), generator=gen)
    x[..., outliers] *= 20.0  # transformer activations have a few outlier channels
    return x


def time_each(tensors: list[torch.Tensor], run: Callable[[torch.Tensor], object]) -> list[float]:
    """Seconds of ``run`` per tensor (after one warm-up call on the first tensor)."""
    run(tensors[0])
    times = []
    for x in tensors:
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return times


def torchquant_runner(name: str, **options: object) -> Callable[[torch.Tensor], object]:
    def run(x: torch.Tensor) -> object:
        cal = create_calibrator(name, QuantSpec(), tensor_name="bench", **options)
        cal.observe(x)
        return cal.compute()

    return run


def ort_entropy(x: torch.Tensor) -> object:
    from onnxruntime.quantization.calibrate import HistogramCollector

    collector = HistogramCollector(
        method="entropy",
        symmetric=True,
        num_bins=2048,
        num_quantized_bins=128,
        percentile=99.999,
        scenario="same",
    )
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress lines
        collector.collect({"bench": [x.numpy()]})
        return collector.compute_collection_result()


def torch_histogram_observer(x: torch.Tensor) -> object:
    from torch.ao.quantization import HistogramObserver

    obs = HistogramObserver()
    obs(x)
    return obs.calculate_qparams()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tensors", type=int, default=50, help="number of tensors (default 50)")
    parser.add_argument(
        "--ort-tensors", type=int, default=10, help="tensors given to ONNX Runtime (default 10)"
    )
    parser.add_argument("--quick", action="store_true", help="10 tensors, ONNX Runtime on 3")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    n = 10 if args.quick else args.tensors
    n_ort = min(n, 3 if args.quick else args.ort_tensors)
    warnings.filterwarnings("ignore")
    tensors = [make_tensor(i) for i in range(n)]
    mb = sum(x.numel() * 4 for x in tensors) / 2**20
    print(
        f"{n} tensors, {mb:.0f} MB in all; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    runners: dict[str, Callable[[torch.Tensor], object]] = {}
    for name in list_calibrators():
        runners[name] = torchquant_runner(name)
    runners["entropy[modelopt]"] = torchquant_runner("entropy", variant="modelopt")
    runners["torch HistogramObserver"] = torch_histogram_observer

    results: dict[str, list[float]] = {}
    for label, run in runners.items():
        try:
            results[label] = time_each(tensors, run)
        except Exception as exc:  # a colleague's calibrator may not be implemented yet
            print(f"skipped {label}: {type(exc).__name__}: {exc}")
    results["onnxruntime HistogramCollector entropy"] = time_each(tensors[:n_ort], ort_entropy)

    print(f"\n{'calibrator':40s} {'tensors':>7s} {'total s':>9s} {'ms/tensor':>10s}")
    for label, times in results.items():
        print(
            f"{label:40s} {len(times):7d} {sum(times):9.3f} {1e3 * sum(times) / len(times):10.2f}"
        )

    ours = results["entropy"]
    ort = results["onnxruntime HistogramCollector entropy"]
    observer = results["torch HistogramObserver"]
    ratio_ort = sum(ort) / sum(ours[:n_ort])
    ratio_obs = sum(observer) / sum(ours)
    print(
        f"\ntorchquant entropy vs onnxruntime entropy (same {n_ort} tensors): {ratio_ort:.0f}x faster"
    )
    print(f"torchquant entropy vs torch HistogramObserver ({n} tensors): {ratio_obs:.1f}x faster")


if __name__ == "__main__":
    main()
