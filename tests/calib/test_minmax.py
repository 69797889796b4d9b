"""Min/max and EMA min/max calibrators vs torch.aminmax and a hand-written EMA loop."""

from __future__ import annotations

import pytest
import torch

from torchquant.calib.minmax import EmaMinMaxCalibrator, MinMaxCalibrator, batch_min_max
from torchquant.errors import ConfigError, EmptyCalibrationError, NonFiniteError
from torchquant.quant.affine import qparams_from_range
from torchquant.quant.spec import QuantSpec


def batches(count: int, shape: tuple[int, ...] = (4, 3, 5), seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen) * (1 + i) + i * 0.1 for i in range(count)]


def test_per_tensor_matches_aminmax() -> None:
    data = batches(6)
    cal = MinMaxCalibrator(QuantSpec(symmetric=False))
    for x in data:
        cal.observe(x)
    want_lo, want_hi = torch.aminmax(torch.cat([x.reshape(-1) for x in data]))
    lo, hi = cal.range()
    assert torch.equal(lo, want_lo) and torch.equal(hi, want_hi)
    scale, zero_point = cal.compute()
    want = qparams_from_range(want_lo, want_hi, cal.spec)
    assert torch.equal(scale, want[0]) and torch.equal(zero_point, want[1])
    assert cal.num_batches == 6


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_per_channel_matches_aminmax_loop(axis: int) -> None:
    data = batches(5)
    cal = MinMaxCalibrator(QuantSpec(axis=axis))
    for x in data:
        cal.observe(x)
    whole = torch.cat(data, dim=0 if axis != 0 else 1)  # concatenate along another axis
    lo, hi = cal.range()
    channels = whole.shape[axis]
    assert lo.shape == hi.shape == (channels,)
    for c in range(channels):
        want_lo, want_hi = torch.aminmax(whole.select(axis, c))
        assert float(lo[c]) == float(want_lo) and float(hi[c]) == float(want_hi)
    scale, _ = cal.compute()
    assert scale.shape == (channels,) and bool((scale > 0).all())


def test_batch_min_max_helper() -> None:
    x = torch.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -6.0]])
    assert [float(v) for v in batch_min_max(x, None)] == [-6.0, 4.0]
    lo, hi = batch_min_max(x, 0)
    assert lo.tolist() == [-2.0, -6.0] and hi.tolist() == [3.0, 4.0]
    lo, hi = batch_min_max(x, 1)
    assert lo.tolist() == [0.5, -2.0, -6.0] and hi.tolist() == [1.0, 4.0, 3.0]


@pytest.mark.parametrize("spec", [QuantSpec(), QuantSpec(axis=1)])
def test_merge_equals_single_stream(spec: QuantSpec) -> None:
    data = batches(7, seed=3)
    single = MinMaxCalibrator(spec)
    for x in data:
        single.observe(x)
    left, right, empty = MinMaxCalibrator(spec), MinMaxCalibrator(spec), MinMaxCalibrator(spec)
    for x in data[:3]:
        left.observe(x)
    for x in data[3:]:
        right.observe(x)
    empty.merge(left)  # merging into an empty calibrator copies
    empty.merge(right)
    left.merge(right)
    left.merge(MinMaxCalibrator(spec))  # merging an empty one changes nothing
    for merged in (left, empty):
        assert merged.num_batches == 7
        for got, want in zip(merged.range(), single.range(), strict=True):
            assert torch.equal(got, want)


def test_merge_rejects_other_class_or_spec() -> None:
    cal = MinMaxCalibrator(QuantSpec())
    cal.observe(torch.ones(3))
    other = MinMaxCalibrator(QuantSpec(bits=4))
    other.observe(torch.ones(3))
    with pytest.raises(ConfigError, match="different specs"):
        cal.merge(other)
    with pytest.raises(ConfigError, match="cannot merge"):
        cal.merge(EmaMinMaxCalibrator(QuantSpec()))


def test_ema_matches_hand_loop() -> None:
    data = batches(6, seed=4)
    c = 0.25
    cal = EmaMinMaxCalibrator(QuantSpec(symmetric=False), averaging_constant=c)
    lo = hi = None
    for x in data:
        cal.observe(x)
        b_lo, b_hi = float(x.min()), float(x.max())
        if lo is None or hi is None:
            lo, hi = b_lo, b_hi
        else:
            lo, hi = lo + c * (b_lo - lo), hi + c * (b_hi - hi)
    got_lo, got_hi = cal.range()
    assert float(got_lo) == pytest.approx(lo, rel=1e-6)
    assert float(got_hi) == pytest.approx(hi, rel=1e-6)


def test_ema_per_channel_and_merge_weights() -> None:
    spec = QuantSpec(axis=0)
    a, b = EmaMinMaxCalibrator(spec, averaging_constant=1.0), EmaMinMaxCalibrator(spec)
    a.observe(torch.tensor([[1.0, -1.0], [2.0, 0.0]]))
    b.observe(torch.tensor([[4.0, -3.0], [6.0, 2.0]]))
    b.observe(torch.tensor([[4.0, -3.0], [6.0, 2.0]]))
    a.merge(b)  # weights 1 : 2 by batch count
    lo, hi = a.range()
    torch.testing.assert_close(lo, torch.tensor([-1 + 2 / 3 * (-3 + 1), 0 + 2 / 3 * 2.0]))
    torch.testing.assert_close(hi, torch.tensor([1 + 2 / 3 * 3, 2 + 2 / 3 * 4.0]))
    assert a.num_batches == 3


@pytest.mark.parametrize("c", [0.0, -0.1, 1.5])
def test_ema_bad_constant(c: float) -> None:
    with pytest.raises(ConfigError, match="averaging_constant"):
        EmaMinMaxCalibrator(QuantSpec(), averaging_constant=c)


@pytest.mark.parametrize("cls", [MinMaxCalibrator, EmaMinMaxCalibrator])
def test_state_dict_round_trip(cls: type[MinMaxCalibrator]) -> None:
    spec = QuantSpec(axis=0, symmetric=False)
    cal = cls(spec, tensor_name="fc.weight")
    for x in batches(3):
        cal.observe(x)
    fresh = cls(spec, tensor_name="fc.weight")
    fresh.load_state_dict(cal.state_dict())
    assert fresh.num_batches == 3
    for got, want in zip(fresh.compute(), cal.compute(), strict=True):
        assert torch.equal(got, want)
    # Resuming continues the same stream.
    extra = batches(1, seed=9)[0]
    cal.observe(extra)
    fresh.observe(extra)
    assert torch.equal(fresh.compute()[0], cal.compute()[0])
    cal.reset()
    assert cal.num_batches == 0 and cal.min_val is None
    with pytest.raises(EmptyCalibrationError):
        cal.compute()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_names_the_tensor(bad: float) -> None:
    cal = MinMaxCalibrator(QuantSpec(), tensor_name="layer3.relu")
    with pytest.raises(NonFiniteError, match=r"layer3\.relu"):
        cal.observe(torch.tensor([1.0, bad]))
    assert cal.num_batches == 0


def test_bad_inputs() -> None:
    cal = MinMaxCalibrator(QuantSpec(), tensor_name="x0")
    with pytest.raises(EmptyCalibrationError, match="x0"):
        cal.compute()
    with pytest.raises(EmptyCalibrationError, match="x0"):
        cal.observe(torch.zeros(0))
    with pytest.raises(ConfigError, match=r"torch\.Tensor"):
        cal.observe([1.0, 2.0])  # type: ignore[arg-type]
    per_channel = MinMaxCalibrator(QuantSpec(axis=2), tensor_name="w")
    with pytest.raises(ConfigError, match=r"'w'.*axis 2"):
        per_channel.observe(torch.zeros(3, 4))
    ok = MinMaxCalibrator(QuantSpec(axis=0), tensor_name="w")
    ok.observe(torch.zeros(3, 4))
    with pytest.raises(ConfigError, match="channel count"):
        ok.observe(torch.zeros(5, 4))


def test_per_channel_spec_on_per_tensor_calibrator() -> None:
    class PerTensorOnly(MinMaxCalibrator):
        supports_per_channel = False

    with pytest.raises(ConfigError, match=r"per-tensor only.*'conv1.input'"):
        PerTensorOnly(QuantSpec(axis=0), tensor_name="conv1.input")


def test_integer_and_half_inputs_are_observed_as_float32() -> None:
    cal = MinMaxCalibrator(QuantSpec(symmetric=False))
    cal.observe(torch.tensor([3, -7], dtype=torch.int32))
    cal.observe(torch.tensor([0.5, 9.0], dtype=torch.float16))
    lo, hi = cal.range()
    assert lo.dtype == torch.float32 and (float(lo), float(hi)) == (-7.0, 9.0)
