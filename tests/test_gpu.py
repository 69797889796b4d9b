"""CUDA checks: calibrators on CUDA tensors match the CPU, a QAT step runs on CUDA, and a
Quantizer's buffers and calibrator state move with ``.to("cuda")``. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from torchquant.calib import create_calibrator, list_calibrators
from torchquant.config import QuantizerConfig
from torchquant.errors import ConfigError
from torchquant.quant.quantizer import Quantizer
from torchquant.quant.spec import QuantSpec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SPECS = {"sym": QuantSpec(), "affine": QuantSpec(symmetric=False)}


def _batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1 << 14, generator=g) * (1 + 0.5 * b) + 0.1 for b in range(3)]


@pytest.mark.parametrize("name", list_calibrators())
@pytest.mark.parametrize("spec_name", list(SPECS))
def test_calibrator_on_cuda_matches_cpu(name: str, spec_name: str) -> None:
    try:
        cpu = create_calibrator(name, SPECS[spec_name])
        gpu = create_calibrator(name, SPECS[spec_name])
    except ConfigError:
        pytest.skip(f"{name} does not support the {spec_name} spec")
    for x in _batches():
        cpu.observe(x)
        gpu.observe(x.cuda())
    (s_cpu, z_cpu), (s_gpu, z_gpu) = cpu.compute(), gpu.compute()
    assert s_gpu.device.type == "cuda"
    # Searches may sum in another order on CUDA: equal up to float32 rounding.
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, rtol=1e-5, atol=0.0)
    assert torch.equal(z_gpu.cpu(), z_cpu)


@pytest.mark.parametrize("calibrator", ["minmax", "ema_minmax"])
def test_qat_step_on_cuda(calibrator: str) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 4).cuda()
    act = Quantizer(QuantizerConfig(calibrator=calibrator), name="act").cuda().train()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(32, 16, device="cuda")
    for _ in range(3):
        loss = layer(act(x)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert act.has_qparams and act.scale.device.type == "cuda"
    assert bool(torch.isfinite(loss)) and layer.weight.grad is not None
    # The CUDA quantizer's scale is the one its (CUDA) calibrator state implies.
    expected, _ = act.calibrator.compute()
    torch.testing.assert_close(act.scale, expected, rtol=0.0, atol=0.0)


def test_quantizer_buffers_move_with_to() -> None:
    q = Quantizer(QuantizerConfig(QuantSpec(axis=0)), name="w").enable_fake_quant(False)
    q(torch.randn(8, 16))
    q.compute_qparams()
    scale, zero_point = q.scale.clone(), q.zero_point.clone()
    q.to("cuda")
    assert q.scale.device.type == "cuda" and q.zero_point.device.type == "cuda"
    assert q.calibrator.state_dict()["min_val"].device.type == "cuda"
    assert torch.equal(q.scale.cpu(), scale) and torch.equal(q.zero_point.cpu(), zero_point)
    q.to("cpu")
    assert q.calibrator.state_dict()["max_val"].device.type == "cpu"
