"""QuantSpec: validation, integer ranges and plain-data round trip."""

from __future__ import annotations

import json

import pytest

from torchquant.errors import ConfigError
from torchquant.quant.spec import QuantSpec


@pytest.mark.parametrize("bits", [0, 1, 17, 32, -8])
def test_bits_out_of_range(bits: int) -> None:
    with pytest.raises(ConfigError, match="bits"):
        QuantSpec(bits=bits)


@pytest.mark.parametrize("bits", [8.0, "8", True])
def test_bits_not_int(bits: object) -> None:
    # bool is an int subclass: True would be a 1-bit grid, rejected by the range check.
    with pytest.raises(ConfigError, match="bits"):
        QuantSpec(bits=bits)  # type: ignore[arg-type]


def test_narrow_unsigned_rejected() -> None:
    with pytest.raises(ConfigError, match="narrow_range"):
        QuantSpec(signed=False, narrow_range=True)


def test_bad_scale_rule_and_axis() -> None:
    with pytest.raises(ConfigError, match="scale_rule"):
        QuantSpec(scale_rule="minmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="axis"):
        QuantSpec(axis=1.0)  # type: ignore[arg-type]


def _reference_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """Integer range written out from the definition, level by level."""
    levels = list(range(2**bits))
    if signed:
        levels = [v - 2 ** (bits - 1) for v in levels]
    if narrow:
        levels = levels[1:]
    return levels[0], levels[-1]


@pytest.mark.parametrize("bits", range(2, 17))
@pytest.mark.parametrize(("signed", "narrow"), [(True, False), (False, False), (True, True)])
def test_qmin_qmax(bits: int, signed: bool, narrow: bool) -> None:
    spec = QuantSpec(bits=bits, signed=signed, narrow_range=narrow)
    assert (spec.qmin, spec.qmax) == _reference_range(bits, signed, narrow)


def test_known_ranges() -> None:
    assert (QuantSpec().qmin, QuantSpec().qmax) == (-128, 127)
    assert (QuantSpec(narrow_range=True).qmin, QuantSpec(narrow_range=True).qmax) == (-127, 127)
    unsigned = QuantSpec(signed=False, symmetric=False)
    assert (unsigned.qmin, unsigned.qmax) == (0, 255)
    int4 = QuantSpec(bits=4)
    assert (int4.qmin, int4.qmax) == (-8, 7)


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(),
        QuantSpec(bits=4, signed=False, symmetric=False),
        QuantSpec(bits=16, narrow_range=True, axis=1, scale_rule="amct"),
        QuantSpec(axis=0),
    ],
)
def test_dict_round_trip(spec: QuantSpec) -> None:
    data = json.loads(json.dumps(spec.to_dict()))
    assert QuantSpec.from_dict(data) == spec
    assert spec.per_channel == (spec.axis is not None)


def test_from_dict_unknown_key() -> None:
    with pytest.raises(ConfigError, match="colour"):
        QuantSpec.from_dict({"bits": 8, "colour": "red"})


def test_with_revalidates() -> None:
    spec = QuantSpec(signed=False)
    assert spec.with_(bits=4).bits == 4
    with pytest.raises(ConfigError):
        spec.with_(narrow_range=True)
    with pytest.raises(ConfigError):
        QuantSpec().with_(bits=1)
