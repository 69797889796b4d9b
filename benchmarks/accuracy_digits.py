"""Digits accuracy and QAT step time: torchquant's automatic path against FP32 and against
PyTorch's eager ``torch.ao.quantization`` on the same model and data.

Model and data: `examples/digits_cnn.py` (scikit-learn's bundled 8x8 digit scans, fixed
split, seeded). Rows:

- FP32: the trained float model.
- torchquant PTQ int8, one row per registered calibrator: ``quantize(model,
  PrepareConfig(), example_inputs)`` (TensorRT-style: symmetric int8 inputs of every
  Conv/Linear and the residual add's shortcut, per-channel narrow int8 weights, BN folded)
  then ``calibrate(model, batches, method)``; accuracy of the fake-quantized model.
- torchquant QAT int8 / 4-bit: ``PrepareConfig(qat=True)`` from the FP32 weights, a few
  epochs of fine-tuning (moving-average activation ranges, per-step weight min/max; 4-bit:
  LSQ learned scales initialised by calibration).
- torch.ao PTQ / QAT int8: `DigitsCNNForAO` (stubs, FloatFunctional add, explicit fusion
  groups), x86 engine qconfigs, ``convert`` to real int8 kernels for the accuracy.

Step time: median seconds per training step (forward, backward, Adam update) at batch 256,
the three models stepped in turn on the same batches after a warm-up so that they share
the machine's noise. One intra-op thread by default (``--threads``): the tensors are small
(8x8 images), and on a busy 2-core machine a second thread mostly adds contention (a
measured FP32 step: 28 ms with 1 thread, 81 ms with 2, batch 128, load average 9).
Run: ``python benchmarks/accuracy_digits.py`` (under a minute on an idle core).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from digits_cnn import (
    AO_FUSION_GROUPS,
    DigitsCNNForAO,
    batches,
    evaluate,
    load_data,
    train,
    train_fp32,
)

from torchquant._api import quantize
from torchquant._auto import PrepareConfig
from torchquant._calibrate import calibrate
from torchquant.calib import list_calibrators
from torchquant.config import QConfig, QuantizerConfig
from torchquant.quant.spec import QuantSpec

Data = tuple[Tensor, Tensor, Tensor, Tensor]
SEED = 0
QAT_EPOCHS = 3
CALIB_BATCHES = 8  # of 64 training images


def calib_batches(data: Data) -> list[Tensor]:
    return [xb for xb, _ in batches(data[0], data[1], 64)][:CALIB_BATCHES]


def tq_ptq(fp32: nn.Module, data: Data, method: str) -> float:
    model = quantize(fp32, PrepareConfig(), (data[0][:2],))
    calibrate(model, calib_batches(data), method, progress=False)
    return evaluate(model, data[2], data[3])


def tq_qat_model(fp32: nn.Module, data: Data, qconfig: QConfig | None = None) -> nn.Module:
    return quantize(fp32, PrepareConfig(qconfig=qconfig, qat=True), (data[0][:2],)).train()


def tq_qat(fp32: nn.Module, data: Data, qconfig: QConfig | None, epochs: int, lr: float) -> float:
    model = tq_qat_model(fp32, data, qconfig)
    if qconfig is not None:  # learned scales: initialise them from a calibration pass
        calibrate(model, calib_batches(data), progress=False)
    train(model.train(), data[0], data[1], epochs=epochs, lr=lr, seed=SEED)
    return evaluate(model, data[2], data[3])


def lsq_4bit() -> QConfig:
    """4-bit symmetric activations and per-channel weights with LSQ scales (Esser et al. 2020),
    initialised by calibration: MSE-optimal for activations, min/max for weights."""
    act = QuantizerConfig(QuantSpec(bits=4), calibrator="mse", learning="lsq")
    wt = QuantizerConfig(
        QuantSpec(bits=4, narrow_range=True, axis=0), calibrator="minmax", learning="lsq"
    )
    return QConfig(activation=act, weight=wt)


def ao_model(fp32: nn.Module, qat: bool) -> nn.Module:
    model = DigitsCNNForAO(fp32.fc.in_features // 2)
    model.load_state_dict(fp32.state_dict())
    aoq = torch.ao.quantization
    if qat:
        model.train()
        aoq.fuse_modules_qat(model, AO_FUSION_GROUPS, inplace=True)
        model.qconfig = aoq.get_default_qat_qconfig("x86")
        return aoq.prepare_qat(model)
    model.eval()
    aoq.fuse_modules(model, AO_FUSION_GROUPS, inplace=True)
    model.qconfig = aoq.get_default_qconfig("x86")
    return aoq.prepare(model)


def ao_ptq(fp32: nn.Module, data: Data) -> float:
    model = ao_model(fp32, qat=False)
    with torch.no_grad():
        for xb in calib_batches(data):
            model(xb)
    return evaluate(torch.ao.quantization.convert(model), data[2], data[3])


def ao_qat(fp32: nn.Module, data: Data, epochs: int, lr: float) -> float:
    model = ao_model(fp32, qat=True)
    train(model, data[0], data[1], epochs=epochs, lr=lr, seed=SEED)
    return evaluate(torch.ao.quantization.convert(model.eval()), data[2], data[3])


def step_times(
    models: dict[str, nn.Module], data: Data, batch: int = 256, steps: int = 60
) -> dict[str, float]:
    """Median seconds per training step of each model, stepped in turn on the same batches."""
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    xs = [xb for xb, _ in batches(data[0], data[1], batch, seed=SEED)]
    ys = [yb for _, yb in batches(data[0], data[1], batch, seed=SEED)]
    for i in range(steps + 5):
        xb, yb = xs[i % len(xs)], ys[i % len(ys)]
        if xb.shape[0] != batch:
            xb, yb = xs[0], ys[0]
        for key, model in models.items():
            model.train()
            start = time.perf_counter()
            loss = F.cross_entropy(model(xb), yb)
            opts[key].zero_grad(set_to_none=True)
            loss.backward()
            opts[key].step()
            if xb.is_cuda:
                torch.cuda.synchronize()
            if i >= 5:
                times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    # torch.ao's eager API warns about its own deprecation on every prepare and convert.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\.")
    warnings.filterwarnings(
        "ignore", message=r"(?s).*(torchao|quant_min and quant_max|quantize_per)"
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    torch.set_num_threads(parser.parse_args().threads)
    torch.manual_seed(SEED)
    torch.backends.quantized.engine = "x86"
    data = load_data()
    t0 = time.perf_counter()
    fp32 = train_fp32(data, seed=SEED)
    rows: list[tuple[str, float]] = [("FP32", evaluate(fp32, data[2], data[3]))]
    for method in list_calibrators():
        rows.append((f"torchquant PTQ int8, {method}", tq_ptq(fp32, data, method)))
    rows.append(("torch.ao PTQ int8 (x86, HistogramObserver)", ao_ptq(fp32, data)))
    rows.append(
        (f"torchquant QAT int8 ({QAT_EPOCHS} epochs)", tq_qat(fp32, data, None, QAT_EPOCHS, 1e-3))
    )
    rows.append(
        (
            f"torchquant QAT 4-bit W+A, LSQ ({QAT_EPOCHS} epochs)",
            tq_qat(fp32, data, lsq_4bit(), QAT_EPOCHS, 1e-3),
        )
    )
    rows.append(
        (f"torch.ao QAT int8 (x86, {QAT_EPOCHS} epochs)", ao_qat(fp32, data, QAT_EPOCHS, 1e-3))
    )
    timed = step_times(
        {
            "FP32": copy.deepcopy(fp32),
            "torchquant QAT": tq_qat_model(fp32, data),
            "torch.ao QAT": ao_model(fp32, qat=True),
        },
        data,
    )
    base = rows[0][1]
    print(
        f"Digits (sklearn load_digits, 1257 train / 540 test), seed {SEED}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| model | test accuracy (%) | vs FP32 (points) |")
    print("|---|---:|---:|")
    for name, acc in rows:
        print(f"| {name} | {acc:.2f} | {acc - base:+.2f} |")
    print("\n| training step (batch 256, median) | ms | ratio to FP32 |")
    print("|---|---:|---:|")
    for name, seconds in timed.items():
        print(f"| {name} | {1000 * seconds:.2f} | {seconds / timed['FP32']:.2f}x |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
