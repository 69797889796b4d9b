"""Quantizer: modes, the QAT hot path against the calibrators, LSQ/ULQ, state, errors."""

from __future__ import annotations

import pytest
import torch

from torchquant.calib import create_calibrator
from torchquant.config import QuantizerConfig
from torchquant.errors import EmptyCalibrationError, NonFiniteError
from torchquant.quant.affine import dequantize, qparams_from_range, quantize
from torchquant.quant.quantizer import (
    Quantizer,
    enable_fake_quant,
    enable_observer,
    freeze_observers,
    set_calibration_mode,
    set_quantized_mode,
)
from torchquant.quant.spec import QuantSpec

SPECS = [
    QuantSpec(),
    QuantSpec(narrow_range=True),
    QuantSpec(signed=False),
    QuantSpec(symmetric=False),
    QuantSpec(signed=False, symmetric=False, bits=7),
    QuantSpec(scale_rule="amct"),
    QuantSpec(bits=4, symmetric=False),
]
PER_CHANNEL = [
    QuantSpec(axis=0, narrow_range=True),
    QuantSpec(axis=0, scale_rule="amct"),
    QuantSpec(axis=1, symmetric=False),
]


def _batches(n: int, shape: tuple[int, ...] = (4, 3, 5, 5)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(shape, generator=g) + torch.randn((), generator=g)) * (0.5 + i % 3)
        for i in range(n)
    ]


@pytest.mark.parametrize("spec", SPECS + PER_CHANNEL, ids=str)
def test_qat_ema_matches_calibrator_bit_for_bit(spec: QuantSpec) -> None:
    # The hot path updates the calibrator's own state; a calibrator fed the same batches
    # through observe() must agree exactly, and so must the qparams.
    q = Quantizer(QuantizerConfig(spec, calibrator="ema_minmax"), name="act")
    ref = create_calibrator("ema_minmax", spec)
    for x in _batches(20):
        q(x)
        ref.observe(x)
    assert torch.equal(q.calibrator.min_val, ref.min_val)  # type: ignore[attr-defined]
    assert torch.equal(q.calibrator.max_val, ref.max_val)  # type: ignore[attr-defined]
    scale, zero_point = ref.compute()
    assert torch.equal(q.scale, scale) and torch.equal(q.zero_point, zero_point)


@pytest.mark.parametrize("spec", SPECS + PER_CHANNEL, ids=str)
def test_qat_output_is_dequantize_of_quantize(spec: QuantSpec) -> None:
    q = Quantizer(QuantizerConfig(spec, calibrator="ema_minmax"))
    for x in _batches(3):
        y = q(x)
    expected = dequantize(quantize(x, q.scale, q.zero_point, spec), q.scale, q.zero_point, spec)
    assert torch.equal(y, expected)


def test_minmax_in_qat_follows_the_current_batch() -> None:
    q = Quantizer(QuantizerConfig(QuantSpec(axis=0), calibrator="minmax"))
    batches = _batches(3)
    for x in batches:
        q(x)
    lo, hi = torch.aminmax(batches[-1].reshape(4, -1), dim=1)
    assert torch.equal(q.scale, qparams_from_range(lo, hi, q.spec)[0])


def test_straight_through_gradient_is_masked_outside_the_grid() -> None:
    q = Quantizer(QuantizerConfig(QuantSpec(), calibrator="minmax"))
    q(torch.tensor([-1.0, 1.0]))  # scale 1/127
    q.freeze()
    x = torch.tensor([-2.0, -0.5, 0.3, 0.99, 1.5], requires_grad=True)
    q(x).sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_calibration_mode_is_identity_then_quantized_mode_uses_calibrator() -> None:
    model = torch.nn.Sequential(Quantizer(QuantizerConfig(calibrator="minmax"), name="q"))
    set_calibration_mode(model)
    batches = _batches(4)
    for x in batches:
        assert torch.equal(model(x), x)
    set_quantized_mode(model)
    q = model[0]
    ref = create_calibrator("minmax", QuantSpec())
    for x in batches:
        ref.observe(x)
    assert torch.equal(q.scale, ref.compute()[0])
    assert not q.observer_enabled and q.fake_quant_enabled
    assert not torch.equal(model(batches[0]), batches[0])


def test_quantized_mode_without_data_names_the_quantizer() -> None:
    model = torch.nn.Sequential(Quantizer(QuantizerConfig(), name="layer1.out"))
    with pytest.raises(EmptyCalibrationError, match=r"layer1\.out"):
        set_quantized_mode(model)


def test_eval_does_not_observe_and_helpers_toggle_modes() -> None:
    q = Quantizer(QuantizerConfig(calibrator="ema_minmax"))
    q(torch.ones(3))
    scale = q.scale.clone()
    q.eval()
    q(torch.full((3,), 100.0))
    assert torch.equal(q.scale, scale)
    model = torch.nn.Sequential(q)
    enable_observer(model, False)
    enable_fake_quant(model, False)
    assert not q.observer_enabled and not q.fake_quant_enabled
    freeze_observers(model)
    assert not q.observer_enabled and q.has_qparams


def test_observer_frozen_after_n_steps() -> None:
    q = Quantizer(QuantizerConfig(calibrator="ema_minmax", freeze_observer_after=3))
    for x in _batches(3):
        q(x)
    assert not q.observer_enabled
    scale = q.scale.clone()
    q(torch.full((4,), 50.0))
    assert torch.equal(q.scale, scale) and q.steps == 3


def test_histogram_calibrators_refresh_every_n_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    q = Quantizer(QuantizerConfig(calibrator="minmax", refresh_every=3))
    q._streaming = False  # stand in for a histogram calibrator: the generic path
    calls: list[int] = []
    original = q.compute_qparams
    monkeypatch.setattr(q, "compute_qparams", lambda: (calls.append(q.steps), original())[1])
    for x in _batches(7):
        q(x)
    assert calls == [0, 3, 6]


@pytest.mark.parametrize("spec", [QuantSpec(), QuantSpec(axis=0)], ids=str)
def test_nan_in_qat_names_the_quantizer(spec: QuantSpec) -> None:
    q = Quantizer(QuantizerConfig(spec, calibrator="ema_minmax"), name="conv1.output_quantizer")
    q(torch.randn(4, 3))
    x = torch.randn(4, 3)
    x[1, 2] = float("nan")
    with pytest.raises(NonFiniteError, match=r"conv1\.output_quantizer"):
        q(x)


def test_nan_in_calibration_names_the_quantizer() -> None:
    q = Quantizer(QuantizerConfig(), name="stem.input").enable_fake_quant(False)
    with pytest.raises(NonFiniteError, match=r"stem\.input"):
        q(torch.tensor([1.0, float("inf")]))


def test_lsq_scale_gets_gradients_and_learns() -> None:
    torch.manual_seed(0)
    q = Quantizer(QuantizerConfig(QuantSpec(bits=4), learning="lsq"))
    x = torch.randn(4096) * torch.rand(4096).pow(4) * 8  # heavy tails: min/max is a poor scale
    q(x)  # first batch initialises the scale from min/max
    assert q.scale.requires_grad
    initial = q.scale.item()
    opt = torch.optim.Adam(q.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        loss = (q(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        assert q.scale.grad is not None and q.scale.grad.abs() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0] and q.scale.item() < initial


def test_ulq_clip_range_learns() -> None:
    torch.manual_seed(0)
    q = Quantizer(QuantizerConfig(QuantSpec(bits=4, symmetric=False), learning="ulq"))
    x = torch.randn(4096) * torch.rand(4096).pow(4) * 8
    q(x)
    initial = (q.clip_min.item(), q.clip_max.item())
    assert initial == pytest.approx((x.min().item(), x.max().item()))
    opt = torch.optim.Adam(q.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = (q(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]
    assert q.clip_max.item() < initial[1] and q.clip_min.item() > initial[0]
    q.freeze()  # qparams follow the learned range
    assert q.scale.item() == pytest.approx((q.clip_max - q.clip_min).item() / 15, rel=1e-5)


@pytest.mark.parametrize("learning", ["none", "lsq"])
def test_state_dict_round_trip_adopts_per_channel_size(learning: str) -> None:
    cfg = QuantizerConfig(QuantSpec(axis=0), calibrator="ema_minmax", learning=learning)  # type: ignore[arg-type]
    q = Quantizer(cfg)
    for x in _batches(3):
        q(x)
    fresh = Quantizer(cfg)
    assert fresh.scale.shape == (0,)
    fresh.load_state_dict(q.state_dict())
    assert fresh.scale.shape == (4,) and fresh.has_qparams and fresh.steps == 3
    q.eval()
    fresh.eval()
    x = _batches(1)[0]
    assert torch.equal(q(x), fresh(x))
    for y in _batches(2):  # training continues from the same moving average
        q.train()(y)
        fresh.train()(y)
    assert torch.equal(q.scale, fresh.scale)


def test_deepcopy_and_to_keep_calibrator_state() -> None:
    import copy

    q = Quantizer(QuantizerConfig(calibrator="ema_minmax"))
    q(torch.randn(10))
    twin = copy.deepcopy(q).to(torch.device("cpu"))
    assert torch.equal(twin.calibrator.min_val, q.calibrator.min_val)  # type: ignore[attr-defined]
    assert twin.calibrator is not q.calibrator


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_qat_and_move() -> None:
    q = Quantizer(QuantizerConfig(QuantSpec(axis=0), calibrator="ema_minmax")).cuda()
    x = torch.randn(4, 8, device="cuda", requires_grad=True)
    q(x).sum().backward()
    assert q.scale.is_cuda and q.calibrator.min_val.is_cuda  # type: ignore[attr-defined]
    q.cpu()
    assert q.calibrator.min_val.device.type == "cpu"  # type: ignore[attr-defined]
