"""Ascend AMCT deployment files: the quantization record and the JSON quant config.

Record (protobuf text format of AMCT's ``ScaleOffsetRecord``; ../shared/specs/algorithms.md
section 5, hicann/amct ``scale_offset_record.proto``), one entry per quantized layer::

    record {
      key: "conv1"
      value {
        scale_d: 0.0392
        offset_d: -128
        scale_w: 0.0012
        offset_w: 0
      }
    }

``scale_d`` (float) / ``offset_d`` (int32) quantize the layer's input data on AMCT's signed
grid; ``scale_w`` / ``offset_w`` repeat per output channel (``offset_w`` always 0). The
writer and the parser below handle just this message, so no protobuf compiler is needed;
floats are written as the shortest decimal that reads back to the same float32.

Config: AMCT's JSON quant config (``create_quant_config`` output; hiascend.com AMCT
documentation) becomes an `AmctConfig` that says, per layer, which torchquant calibrator,
options and `QuantSpec` reproduce AMCT: IFMR or HFMG for activations, ARQ (min/max,
symmetric, ``scale_rule="amct"``) for weights.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from torchquant.errors import ConfigError, ExportError, FileFormatError
from torchquant.export.onnx_calibrate import CalibrationResult, CalibratorChoice
from torchquant.export.onnx_qdq import TensorSelection
from torchquant.quant.spec import QuantSpec

__all__ = [
    "AmctActivationParams",
    "AmctConfig",
    "AmctLayerConfig",
    "AmctRecord",
    "AmctWeightParams",
    "load_amct_config",
    "read_amct_record",
    "records_from_calibration",
    "write_amct_record",
]


@dataclass(frozen=True)
class AmctRecord:
    """Quantization factors of one layer: input data ``scale_d``/``offset_d`` and weight
    ``scale_w``/``offset_w`` per output channel (float32 scales, int32 offsets)."""

    scale_d: float
    offset_d: int
    scale_w: tuple[float, ...]
    offset_w: tuple[int, ...]


def _fmt_float(value: float, where: str) -> str:
    if not math.isfinite(value) or value <= 0.0:
        raise ConfigError(f"{where}: scale must be finite and > 0, got {value!r}")
    return str(np.float32(value))  # shortest text that reads back to the same float32


def write_amct_record(path: str | os.PathLike[str], records: Mapping[str, AmctRecord]) -> None:
    """Write ``records`` (layer name -> `AmctRecord`) as an AMCT record file."""
    lines: list[str] = []
    for key, rec in records.items():
        if len(rec.scale_w) != len(rec.offset_w) or not rec.scale_w:
            raise ConfigError(
                f"layer {key!r}: needs as many scale_w as offset_w (>= 1), got {len(rec.scale_w)} and {len(rec.offset_w)}"
            )
        lines += ["record {", f"  key: {json.dumps(key)}", "  value {"]
        lines.append(f"    scale_d: {_fmt_float(rec.scale_d, f'layer {key!r} scale_d')}")
        lines.append(f"    offset_d: {int(rec.offset_d)}")
        lines += [f"    scale_w: {_fmt_float(s, f'layer {key!r} scale_w')}" for s in rec.scale_w]
        lines += [f"    offset_w: {int(o)}" for o in rec.offset_w]
        lines += ["  }", "}"]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))


_TOKEN = re.compile(
    r'\s*(?:(?P<comment>#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<punct>[{}:])'
    r"|(?P<word>[A-Za-z0-9_.+\-]+))"
)


def _tokens(text: str, path: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, line) tokens of protobuf text format."""
    pos, line = 0, 1
    while True:
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            rest = text[pos:]
            if not rest.strip():
                return
            bad = pos + len(rest) - len(rest.lstrip())
            line += text.count("\n", pos, bad)
            raise FileFormatError(f"{path}:{line}: unexpected character {text[bad]!r}")
        kind = m.lastgroup
        line += text.count("\n", pos, m.start(kind))
        if kind != "comment":
            yield kind, m.group(kind), line
        pos = m.end()


def _parse_float(text: str) -> float:
    """A protobuf text-format float: ``1.5``, ``1e-3``, ``2.5f``, ``inf``."""
    try:
        return float(text)
    except ValueError:
        if text[-1:] in ("f", "F"):
            return float(text[:-1])
        raise


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.toks = list(_tokens(text, path))
        self.i = 0

    def error(self, message: str) -> FileFormatError:
        line = self.toks[min(self.i, len(self.toks) - 1)][2] if self.toks else 1
        return FileFormatError(f"{self.path}:{line}: {message}")

    def next(self, literal: str | None = None, what: str = "more") -> tuple[str, str, int]:
        """The next token; it must be ``literal`` when given (``what`` describes it)."""
        if self.i >= len(self.toks):
            raise self.error(f"unexpected end of file (expected {literal or what})")
        tok = self.toks[self.i]
        if literal is not None and tok[1] != literal:
            raise self.error(f"expected {literal!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def open_message(self) -> None:
        if self.i < len(self.toks) and self.toks[self.i][1] == ":":
            self.i += 1
        self.next("{")

    def scalar(self, field_name: str, integer: bool) -> float | int:
        self.next(":")
        kind, text, _ = self.next(what="a value")
        try:
            if kind != "word":
                raise ValueError
            value: float | int = int(text, 0) if integer else _parse_float(text)
        except ValueError:
            self.i -= 1
            raise self.error(
                f"{field_name}: {text!r} is not {'an integer' if integer else 'a number'}"
            ) from None
        if not integer and not math.isfinite(value):
            self.i -= 1
            raise self.error(f"{field_name}: {text!r} is not finite")
        if integer and not -(2**31) <= value < 2**31:
            self.i -= 1
            raise self.error(f"{field_name}: {text!r} is out of int32 range")
        return value

    def record(self) -> tuple[str, AmctRecord]:
        self.open_message()
        key: str | None = None
        rec: AmctRecord | None = None
        while self.toks[self.i : self.i + 1] and self.toks[self.i][1] != "}":
            _, name, _ = self.next()
            if name == "key" and key is None:
                self.next(":")
                kind, text, _ = self.next(what="a string")
                if kind != "string":
                    self.i -= 1
                    raise self.error(f"key must be a quoted string, got {text!r}")
                key = json.loads(text)
            elif name == "value" and rec is None:
                rec = self.layer(key or "?")
            else:
                self.i -= 1
                raise self.error(f"unexpected field {name!r} in record")
        _, _, line = self.next("}")
        if key is None or rec is None:
            raise FileFormatError(f"{self.path}:{line}: record needs a key and a value")
        return key, rec

    def layer(self, key: str) -> AmctRecord:
        self.open_message()
        values: dict[str, list[float | int]] = {
            "scale_d": [],
            "offset_d": [],
            "scale_w": [],
            "offset_w": [],
        }
        while self.toks[self.i : self.i + 1] and self.toks[self.i][1] != "}":
            _, name, _ = self.next()
            if name not in values:
                self.i -= 1
                raise self.error(f"layer {key!r}: unknown field {name!r}")
            if name in ("scale_d", "offset_d") and values[name]:
                self.i -= 1
                raise self.error(f"layer {key!r}: {name} given twice")
            values[name].append(self.scalar(name, integer=name.startswith("offset")))
        _, _, line = self.next("}")
        for name in ("scale_d", "offset_d", "scale_w"):
            if not values[name]:
                raise FileFormatError(f"{self.path}:{line}: layer {key!r}: missing {name}")
        if len(values["offset_w"]) != len(values["scale_w"]):
            raise FileFormatError(
                f"{self.path}:{line}: layer {key!r}: {len(values['scale_w'])} scale_w but "
                f"{len(values['offset_w'])} offset_w"
            )
        return AmctRecord(
            float(np.float32(values["scale_d"][0])),
            int(values["offset_d"][0]),
            tuple(float(np.float32(s)) for s in values["scale_w"]),
            tuple(int(o) for o in values["offset_w"]),
        )


def read_amct_record(path: str | os.PathLike[str]) -> dict[str, AmctRecord]:
    """Read an AMCT record file into ``{layer name: AmctRecord}`` (scales as float32 values).

    Raises `FileFormatError` naming the file and line for syntax errors, unknown fields,
    missing fields, mismatched scale_w/offset_w counts and duplicated layers.
    """
    p = os.fspath(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError(f"{p}: no such AMCT record file") from None
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{p}: not a text file ({e.reason})") from None
    parser = _Parser(text, p)
    records: dict[str, AmctRecord] = {}
    while parser.i < len(parser.toks):
        parser.next("record")
        start = parser.i
        key, rec = parser.record()
        if key in records:
            parser.i = start
            raise parser.error(f"layer {key!r} is recorded twice")
        records[key] = rec
    return records


def records_from_calibration(result: CalibrationResult) -> dict[str, AmctRecord]:
    """AMCT records of the calibrated layers (Conv/Gemm/MatMul node names).

    ``scale_d``/``offset_d`` come from the layer's input quantizer, moved to AMCT's signed
    grid (an unsigned zero point z becomes ``z - 2^(b-1)``); ``scale_w`` per output channel.
    """
    records: dict[str, AmctRecord] = {}
    for layer in result.selection.layers:
        act, wts = result.activations.get(layer.input), result.weights.get(layer.weight)
        if act is None or wts is None:
            continue
        if act.scale.dim() != 0:
            raise ExportError(f"layer {layer.name!r}: AMCT records need a per-tensor input scale")
        if bool((wts.zero_point != 0).any()):
            raise ExportError(f"layer {layer.name!r}: AMCT weights are symmetric (offset_w 0)")
        shift = 0 if act.spec.signed else 2 ** (act.spec.bits - 1)
        scales = tuple(float(s) for s in wts.scale.reshape(-1).tolist())
        records[layer.name] = AmctRecord(
            float(act.scale), int(act.zero_point) - shift, scales, (0,) * len(scales)
        )
    return records


_HFMG_BINS = (1024, 2048, 4096, 8192)
_ARQ_BITS = (4, 6, 7, 8)


@dataclass(frozen=True)
class AmctActivationParams:
    """``activation_quant_params`` of an AMCT config (defaults: AMCT's IFMR/HFMG defaults).

    ``asymmetric`` None follows the config's ``activation_offset``.
    """

    act_algo: str = "ifmr"
    num_bits: int = 8
    max_percentile: float = 0.999999
    min_percentile: float = 0.999999
    search_range: tuple[float, float] = (0.7, 1.3)
    search_step: float = 0.01
    asymmetric: bool | None = None
    num_of_bins: int = 4096

    def __post_init__(self) -> None:
        if self.act_algo not in ("ifmr", "hfmg"):
            raise ConfigError(f"act_algo must be 'ifmr' or 'hfmg', got {self.act_algo!r}")
        for name in ("max_percentile", "min_percentile"):
            if not 0.5 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0.5, 1], got {getattr(self, name)!r}")
        lo, hi = self.search_range
        if not 0.0 < lo < hi:
            raise ConfigError(
                f"search_range must be [lo, hi] with 0 < lo < hi, got {list(self.search_range)}"
            )
        if not 0.0 < self.search_step <= hi - lo:
            raise ConfigError(f"search_step must be in (0, {hi - lo}], got {self.search_step!r}")
        if self.num_of_bins not in _HFMG_BINS:
            raise ConfigError(f"num_of_bins must be one of {_HFMG_BINS}, got {self.num_of_bins!r}")


@dataclass(frozen=True)
class AmctWeightParams:
    """``weight_quant_params`` of an AMCT config: ARQ, per channel by default."""

    wts_algo: str = "arq_quantize"
    channel_wise: bool = True
    num_bits: int = 8

    def __post_init__(self) -> None:
        if self.wts_algo != "arq_quantize":
            raise ConfigError(f"wts_algo must be 'arq_quantize', got {self.wts_algo!r}")
        if self.num_bits not in _ARQ_BITS:
            raise ConfigError(f"weight num_bits must be one of {_ARQ_BITS}, got {self.num_bits!r}")


@dataclass(frozen=True)
class AmctLayerConfig:
    """One layer's entry: enabled or not, and its activation and weight parameters."""

    quant_enable: bool = True
    activation_quant_params: AmctActivationParams = field(default_factory=AmctActivationParams)
    weight_quant_params: AmctWeightParams = field(default_factory=AmctWeightParams)


@dataclass(frozen=True)
class AmctConfig:
    """An AMCT JSON quant config (knobs: ../shared/specs/algorithms.md section 5).

    Top-level ``activation_quant_params``/``weight_quant_params`` are the defaults of layers
    not listed in ``layers``. ``do_fusion`` and ``skip_fusion_layers`` are kept for round
    trips; BatchNorm is already folded in an ONNX model exported in eval mode.
    """

    batch_num: int = 1
    activation_offset: bool = True
    weight_offset: bool = False
    do_fusion: bool = True
    skip_layers: tuple[str, ...] = ()
    skip_fusion_layers: tuple[str, ...] = ()
    version: int = 1
    activation_quant_params: AmctActivationParams = field(default_factory=AmctActivationParams)
    weight_quant_params: AmctWeightParams = field(default_factory=AmctWeightParams)
    layers: Mapping[str, AmctLayerConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_num < 1:
            raise ConfigError(f"batch_num must be >= 1, got {self.batch_num!r}")
        if self.weight_offset:
            raise ConfigError("weight_offset must be false: AMCT's ARQ weights are symmetric")

    def layer(self, name: str) -> AmctLayerConfig | None:
        """The layer's settings, or None when it is skipped or ``quant_enable`` is false."""
        if name in self.skip_layers:
            return None
        cfg = self.layers.get(name) or AmctLayerConfig(
            True, self.activation_quant_params, self.weight_quant_params
        )
        return cfg if cfg.quant_enable else None

    def activation_choice(self, name: str) -> CalibratorChoice | None:
        """Calibrator, options and spec for the input of layer ``name`` (None if skipped)."""
        cfg = self.layer(name)
        if cfg is None:
            return None
        p = cfg.activation_quant_params
        asymmetric = self.activation_offset if p.asymmetric is None else p.asymmetric
        spec = QuantSpec(bits=p.num_bits, signed=True, symmetric=not asymmetric, scale_rule="amct")
        if p.act_algo == "hfmg":
            return CalibratorChoice("hfmg", spec, {"num_of_bins": p.num_of_bins})
        options = {
            "max_percentile": p.max_percentile,
            "min_percentile": p.min_percentile,
            "search_range": p.search_range,
            "search_step": p.search_step,
            "batch_num": self.batch_num,
        }
        return CalibratorChoice("ifmr", spec, options)

    def weight_choice(self, name: str, axis: int) -> CalibratorChoice | None:
        """ARQ (symmetric min/max, ``scale_rule="amct"``) for layer ``name``'s weight."""
        cfg = self.layer(name)
        if cfg is None:
            return None
        p = cfg.weight_quant_params
        spec = QuantSpec(bits=p.num_bits, axis=axis if p.channel_wise else None, scale_rule="amct")
        return CalibratorChoice("minmax", spec)

    def overrides(self, selection: TensorSelection) -> dict[str, CalibratorChoice | None]:
        """`calibrate_onnx` overrides for the selection's layers (inputs and weights).

        An input read by several layers takes the first enabled layer's settings; it stays
        float only when every layer reading it is skipped. Names the config gives that are
        not layers of the model are a `ConfigError`.
        """
        known = {layer.name for layer in selection.layers}
        unknown = sorted((set(self.layers) | set(self.skip_layers)) - known)
        if unknown:
            raise ConfigError(
                f"AMCT config names layers that are not Conv/Gemm/MatMul nodes of the model: {unknown}"
            )
        found: dict[str, CalibratorChoice | None] = {}
        for layer in selection.layers:
            if found.get(layer.input) is None:  # absent, or so far read by skipped layers only
                found[layer.input] = self.activation_choice(layer.name)
            found[layer.weight] = self.weight_choice(layer.name, layer.axis)
        return found


# JSON kind of every knob, at any level of the config (top level, layer, parameter group).
_KINDS = {
    **dict.fromkeys(("batch_num", "version", "num_bits", "num_of_bins"), "int"),
    **dict.fromkeys(("max_percentile", "min_percentile", "search_step"), "float"),
    **dict.fromkeys(("act_algo", "wts_algo"), "str"),
    **dict.fromkeys(
        ("activation_offset", "weight_offset", "do_fusion", "quant_enable", "channel_wise"), "bool"
    ),
    "asymmetric": "bool",
    "search_range": "range",
    "skip_layers": "names",
    "skip_fusion_layers": "names",
    "activation_quant_params": "activation",
    "weight_quant_params": "weight",
}


def _build(cls: type[Any], data: Any, where: str) -> Any:
    """``cls(**data)`` with unknown keys and wrong types reported as ``where.key``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {data!r}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in cls.__dataclass_fields__ or key == "layers":
            raise ConfigError(f"{where}.{key}: unknown key")
        kwargs[key] = _value(_KINDS[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _is(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    # JSON true/false decode to bools, which Python also counts as ints.
    number = (int, float) if kind == "float" else int
    return isinstance(value, number) and not isinstance(value, bool)


def _value(kind: str, value: Any, where: str) -> Any:
    """``value`` checked against ``kind`` (see `_KINDS`) and converted."""
    if kind in ("activation", "weight"):
        return _build(
            AmctActivationParams if kind == "activation" else AmctWeightParams, value, where
        )
    if kind == "names":
        if not isinstance(value, list) or not all(_is(v, "str") for v in value):
            raise ConfigError(f"{where}: expected a list of layer names, got {value!r}")
        return tuple(value)
    if kind == "range":
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(_is(v, "float") for v in value)
        ):
            raise ConfigError(f"{where}: expected [lo, hi], got {value!r}")
        return (float(value[0]), float(value[1]))
    if not _is(value, kind):
        raise ConfigError(f"{where}: expected {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def load_amct_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> AmctConfig:
    """Parse an AMCT JSON quant config (a path or the decoded dict) into an `AmctConfig`.

    Top-level keys other than AMCT's knobs are layer names whose value is an object with
    ``quant_enable``, ``activation_quant_params`` and ``weight_quant_params``.

    Raises:
        FileFormatError: a missing file or invalid JSON (file and line).
        ConfigError: unknown keys or bad values, named by their path (``conv1.weight_quant_params.x``).
    """
    if isinstance(source, Mapping):
        data, where = dict(source), "config"
    else:
        where = os.fspath(source)
        try:
            data = json.loads(Path(where).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileFormatError(f"{where}: no such AMCT config file") from None
        except json.JSONDecodeError as e:
            raise FileFormatError(f"{where}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the AMCT config must be a JSON object")
    knobs = {
        k: v for k, v in data.items() if k in AmctConfig.__dataclass_fields__ and k != "layers"
    }
    layer_entries = {k: v for k, v in data.items() if k not in knobs}
    layers: dict[str, AmctLayerConfig] = {}
    for name, entry in layer_entries.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}.{name}: unknown key")
        layers[name] = _build(AmctLayerConfig, entry, f"{where}.{name}")
    base = _build(AmctConfig, knobs, where)
    defaults = {
        "activation_quant_params": base.activation_quant_params,
        "weight_quant_params": base.weight_quant_params,
    }
    # A layer that omits a parameter group inherits the top-level one.
    merged = {
        name: AmctLayerConfig(
            cfg.quant_enable,
            *(getattr(cfg, g) if g in layer_entries[name] else defaults[g] for g in defaults),
        )
        for name, cfg in layers.items()
    }
    return AmctConfig(**{**{k: getattr(base, k) for k in knobs}, "layers": merged})
