"""`analyze`: per-layer sensitivity against a slow per-layer reference, the forward-pass
budget (counted, not timed), state restored, JSON round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from analysis_toy import QLin, ToyMLP, calibrate_minmax
from torch import Tensor, nn

from torchquant.analysis import Analysis, analyze, output_sqnr, quantizer_groups
from torchquant.errors import ConfigError, EmptyCalibrationError, FileFormatError
from torchquant.quant.quantizer import iter_quantizers

CALS = ["minmax", "percentile"]


def _count_forwards(model: nn.Module) -> list[int]:
    calls = [0]

    def hook(module: nn.Module, args: object, output: object) -> None:
        calls[0] += 1

    model.register_forward_hook(hook)
    return calls


def test_groups_are_layers() -> None:
    groups = quantizer_groups(ToyMLP())
    assert groups == {
        f"fc{i}": [f"fc{i}.input_quantizer", f"fc{i}.weight_quantizer"] for i in (1, 2, 3)
    }


def test_forward_passes_within_budget(toy: tuple[ToyMLP, list[Tensor]]) -> None:
    model, batches = toy
    calls = _count_forwards(model)
    analysis = analyze(model, batches, calibrators=CALS)
    n_groups = len(quantizer_groups(model))
    # Acceptance: at most 3 forward passes over the analysis batches per quantizer group.
    assert calls[0] <= 3 * n_groups * len(batches)
    assert calls[0] == analysis.forward_passes * len(batches) == (2 * n_groups + 2) * len(batches)


def test_single_group_budget() -> None:
    model = nn.Sequential(QLin(4, 4, 8)).eval()
    batches = [torch.randn(8, 4, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    calibrate_minmax(model, batches)
    calls = _count_forwards(model)
    analysis = analyze(model, batches, calibrators=CALS)
    assert calls[0] <= 3 * len(batches)
    (layer,) = analysis.layers
    assert layer.only_float_db == math.inf
    assert analysis.all_quantized_db == layer.only_quantized_db


def _reference(model: ToyMLP, batches: list[Tensor], on: set[str]) -> float:
    """Slow reference: output SQNR with only the quantizers in ``on`` enabled."""
    quantizers = dict(iter_quantizers(model))
    with torch.no_grad():
        for q in quantizers.values():
            q.enable_fake_quant(False)
        ref = [model(b) for b in batches]
        for n, q in quantizers.items():
            q.enable_fake_quant(n in on)
        out = [model(b) for b in batches]
        for q in quantizers.values():
            q.enable_fake_quant(True)
    signal = sum(float(r.double().square().sum()) for r in ref)
    noise = sum(float((r - o).double().square().sum()) for r, o in zip(ref, out, strict=True))
    return 10 * math.log10(signal / noise)


def test_sensitivity_matches_per_layer_reference(toy: tuple[ToyMLP, list[Tensor]]) -> None:
    model, batches = toy
    analysis = analyze(model, batches, calibrators=CALS)
    groups = quantizer_groups(model)
    everything = {n for names in groups.values() for n in names}
    for layer in analysis.layers:
        own = set(groups[layer.name])
        assert layer.only_quantized_db == pytest.approx(_reference(model, batches, own), rel=1e-6)
        assert layer.only_float_db == pytest.approx(
            _reference(model, batches, everything - own), rel=1e-6
        )
    assert analysis.all_quantized_db == pytest.approx(_reference(model, batches, everything))
    # Each tensor's current SQNR is measured on the float tensor it sees: for fc1's input
    # that is the model input itself.
    x = torch.cat(batches)
    fc1_in = analysis.tensor("fc1.input_quantizer")
    xq = model.fc1.input_quantizer(x)
    assert fc1_in.current_sqnr_db == pytest.approx(output_sqnr([x], [xq]), rel=1e-6)
    assert fc1_in.current == "minmax" and fc1_in.group == "fc1"
    assert fc1_in.sqnr_db["minmax"] == pytest.approx(fc1_in.current_sqnr_db, rel=1e-6)


def test_model_state_is_restored(toy: tuple[ToyMLP, list[Tensor]]) -> None:
    model, batches = toy
    model.train()
    model.fc2.input_quantizer.enable_fake_quant(False)
    before = {n: (q.observer_enabled, q.fake_quant_enabled) for n, q in iter_quantizers(model)}
    with torch.no_grad():
        expected = model(batches[0])
    analyze(model, batches, calibrators=CALS)
    assert model.training and all(m.training for m in model.modules())
    assert before == {
        n: (q.observer_enabled, q.fake_quant_enabled) for n, q in iter_quantizers(model)
    }
    with torch.no_grad():
        assert torch.equal(model(batches[0]), expected)


def test_errors() -> None:
    with pytest.raises(ConfigError, match="no Quantizer"):
        analyze(nn.Linear(2, 2), [torch.ones(1, 2)])
    model = ToyMLP()
    with pytest.raises(EmptyCalibrationError, match=r"fc1\.input_quantizer"):
        analyze(model, [torch.ones(1, 16)])
    with pytest.raises(EmptyCalibrationError, match="no batches"):
        analyze(model, [])


def test_json_round_trip(toy: tuple[ToyMLP, list[Tensor]], tmp_path: Path) -> None:
    model, batches = toy
    analysis = analyze(model, batches[:2], calibrators=CALS)
    analysis.save(tmp_path / "a.json")
    assert Analysis.load(tmp_path / "a.json") == analysis
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(FileFormatError, match=r"bad\.json"):
        Analysis.load(tmp_path / "bad.json")
