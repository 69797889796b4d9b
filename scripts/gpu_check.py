"""GPU check of torchquant: every calibrator, fake quantization, a QAT step and an ONNX export
on CUDA tensors, with timings, and CUDA results compared with the CPU.

    scripts/gpu_check.sh            (or: python scripts/gpu_check.py)

Exit status: 0 when every check passed, or when there is no CUDA device (it prints
"no CUDA device: skipped"); 1 when a check failed (each failure is printed with its reason).
Throughput is counted as bytes read plus bytes written per second (GB = 1e9 bytes), the
convention of ../shared/specs/algorithms.md section 6.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
try:
    import torchquant  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "examples"))

from torchquant.calib import create_calibrator, list_calibrators  # noqa: E402
from torchquant.errors import ConfigError  # noqa: E402
from torchquant.quant.fake import fake_quantize  # noqa: E402
from torchquant.quant.spec import QuantSpec  # noqa: E402

SPECS = {"sym": QuantSpec(), "affine": QuantSpec(symmetric=False)}
# CUDA and CPU scales may differ in the last bits where a search sums in another order.
REL_TOLERANCE = 1e-5
FAILURES: list[str] = []


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """``(result, seconds per call)``, synchronised on CUDA around the calls."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        result = fn()
    torch.cuda.synchronize()
    return result, (time.perf_counter() - start) / repeat


def check(section: str, fn: Callable[[], None]) -> None:
    """Run one section; record and print a failure instead of stopping."""
    print(f"\n== {section}", flush=True)
    try:
        fn()
    except Exception as exc:  # a check script reports every failure, whatever its type
        FAILURES.append(f"{section}: {type(exc).__name__}: {exc}")
        traceback.print_exc()


def calibrators() -> None:
    """Every registered calibrator on CUDA vs CPU: same scales, time per observe+compute."""
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(1 << 18, generator=g) * (1 + 0.5 * b) for b in range(4)]  # (N,)
    on_gpu = [b.cuda() for b in batches]
    for name in list_calibrators():
        for spec_name, spec in SPECS.items():
            try:
                cpu = create_calibrator(name, spec)
                gpu = create_calibrator(name, spec)
            except ConfigError:
                continue
            for b in batches:
                cpu.observe(b)
            s_cpu, _ = cpu.compute()

            def run(gpu: Any = gpu) -> Any:
                for b in on_gpu:
                    gpu.observe(b)
                return gpu.compute()

            (s_gpu, _), seconds = timed(run)
            rel = float(((s_gpu.cpu() - s_cpu).abs() / s_cpu).max())
            same = "bit-identical" if torch.equal(s_gpu.cpu(), s_cpu) else f"rel diff {rel:.2e}"
            print(f"{name:>12} {spec_name:>6}: {seconds * 1e3:8.1f} ms for 4 x 2^18, {same}")
            if s_gpu.device.type != "cuda":
                FAILURES.append(f"calibrator {name} ({spec_name}): scale on {s_gpu.device}")
            if rel > REL_TOLERANCE:
                FAILURES.append(f"calibrator {name} ({spec_name}): CUDA vs CPU rel diff {rel:.2e}")


def fake_quant_throughput() -> None:
    """Copy vs per-tensor and per-channel fake quantization of a 256 MiB float32 tensor."""
    x = torch.randn(1024, 1 << 16, device="cuda")  # (C, N)
    gb = 2 * x.numel() * 4 / 1e9  # read + write
    spec = QuantSpec()
    scale = x.abs().amax() / 127
    zero = torch.zeros((), dtype=torch.int32, device="cuda")
    channel_spec = QuantSpec(axis=0)
    scales = x.abs().amax(dim=1) / 127  # (C,)
    zeros = torch.zeros(1024, dtype=torch.int32, device="cuda")
    for label, fn in (
        ("copy", lambda: x.clone()),
        ("fake_quantize per tensor", lambda: fake_quantize(x, scale, zero, spec)),
        ("fake_quantize per channel", lambda: fake_quantize(x, scales, zeros, channel_spec)),
    ):
        fn()  # warm-up
        _, seconds = timed(fn, repeat=10)
        print(f"{label:>26}: {gb / seconds:8.1f} GB/s")


def qat_and_export() -> None:
    """The digits CNN prepared for QAT on CUDA: training steps, buffers on CUDA, ONNX export."""
    from digits_cnn import DigitsCNN, load_data

    from torchquant._api import quantize
    from torchquant._auto import PrepareConfig
    from torchquant.export.torch_onnx import export_onnx
    from torchquant.quant.quantizer import iter_quantizers

    x, y, _, _ = load_data("cuda")
    torch.manual_seed(0)
    model = quantize(DigitsCNN(16).cuda(), PrepareConfig(qat=True), (x[:2],))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()

    def step() -> float:
        loss = torch.nn.functional.cross_entropy(model(x[:256]), y[:256])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    step()  # warm-up (first step initialises the quantizers)
    loss, seconds = timed(step, repeat=20)
    print(f"QAT step (batch 256): {seconds * 1e3:.2f} ms, loss {loss:.3f}")
    if not torch.isfinite(torch.tensor(loss)):
        FAILURES.append(f"QAT: loss {loss}")
    for name, q in iter_quantizers(model):
        if q.scale.device.type != "cuda" or q.zero_point.device.type != "cuda":
            FAILURES.append(f"QAT: quantizer {name} buffers on {q.scale.device}")
    result, seconds = timed(lambda: export_onnx(model, x[:4]))
    print(f"ONNX export + ONNX Runtime check: {seconds:.2f} s\n{result.check}")


def quantizer_to_cuda() -> None:
    """A calibrated Quantizer moved with .to('cuda') keeps its qparams and calibrator state."""
    from torchquant.config import QuantizerConfig
    from torchquant.quant.quantizer import Quantizer

    q = Quantizer(QuantizerConfig(QuantSpec(axis=0), calibrator="minmax"), name="w")
    q.enable_fake_quant(False)
    q(torch.randn(8, 16))
    q.compute_qparams()
    before = q.scale.clone()
    q.to("cuda")
    state = q.calibrator.state_dict()
    devices = {q.scale.device.type, q.zero_point.device.type, state["min_val"].device.type}
    print(f"devices after .to('cuda'): {sorted(devices)}")
    if devices != {"cuda"} or not torch.equal(q.scale.cpu(), before):
        FAILURES.append(f"Quantizer.to('cuda'): devices {devices}")


def main() -> int:
    if not torch.cuda.is_available():
        print(f"torch {torch.__version__}: no CUDA device: skipped")
        return 0
    props = torch.cuda.get_device_properties(0)
    print(
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, {props.name}, "
        f"{props.total_memory / 2**30:.0f} GiB"
    )
    check("calibrators: CUDA vs CPU", calibrators)
    check("fake quantization throughput", fake_quant_throughput)
    check("QAT step and ONNX export (digits CNN)", qat_and_export)
    check("Quantizer buffers move with .to('cuda')", quantizer_to_cuda)
    print()
    for failure in FAILURES:
        print(f"FAILED {failure}")
    print("GPU check: " + ("all passed" if not FAILURES else f"{len(FAILURES)} failure(s)"))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
