"""Ascend AMCT: record file round trip and errors, JSON config mapping."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from torchquant.errors import ConfigError, FileFormatError
from torchquant.export import (
    AmctRecord,
    load_amct_config,
    read_amct_record,
    select_tensors,
    write_amct_record,
)
from torchquant.quant import QuantSpec

RECORD = """\
record {
  key: "conv1"
  value {
    scale_d: 0.0392
    offset_d: -128
    scale_w: 0.0012
    scale_w: 0.0009
    offset_w: 0
    offset_w: 0
  }
}
"""


def _bits(values: tuple[float, ...]) -> list[bytes]:
    return [struct.pack("<f", v) for v in values]


def test_reads_the_spec_example(tmp_path: Path) -> None:
    path = tmp_path / "r.record"
    path.write_text(RECORD)
    rec = read_amct_record(path)["conv1"]
    assert rec.offset_d == -128 and rec.offset_w == (0, 0)
    assert _bits((rec.scale_d, *rec.scale_w)) == _bits((0.0392, 0.0012, 0.0009))


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    records = {}
    for i in range(20):
        c = int(rng.integers(1, 9))
        bits = rng.integers(0x00800000, 0x7F000000, size=c + 1, dtype=np.uint32)
        scales = bits.view(np.float32).astype(np.float64).tolist()
        records[f'layer "{i}"\\x'] = AmctRecord(
            scales[0], int(rng.integers(-128, 128)), tuple(scales[1:]), (0,) * c
        )
    path = tmp_path / "r.record"
    write_amct_record(path, records)
    back = read_amct_record(path)
    assert list(back) == list(records)
    for key, rec in records.items():
        got = back[key]
        assert _bits((got.scale_d, *got.scale_w)) == _bits((rec.scale_d, *rec.scale_w))
        assert (got.offset_d, got.offset_w) == (rec.offset_d, rec.offset_w)


def test_accepts_comments_and_one_line_layout(tmp_path: Path) -> None:
    path = tmp_path / "r.record"
    path.write_text(
        '# made by hand\nrecord { key: "a" value: { scale_d: 1e-3 offset_d: 0 scale_w: 2.5f offset_w: 0 } }\n'
    )
    assert read_amct_record(path) == {"a": AmctRecord(float(np.float32(1e-3)), 0, (2.5,), (0,))}


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        (RECORD.replace("scale_d: 0.0392", "scale_d: abc"), 4, "not a number"),
        (RECORD.replace("offset_d: -128", "offset_d: 1.5"), 5, "not an integer"),
        (
            RECORD.replace("offset_w: 0\n    offset_w: 0", "offset_w: 0"),
            9,
            "2 scale_w but 1 offset_w",
        ),
        (RECORD.replace("scale_d: 0.0392\n", ""), 9, "missing scale_d"),
        (RECORD.replace("scale_d", "scale_x"), 4, "unknown field 'scale_x'"),
        (RECORD + RECORD, 12, "recorded twice"),
        (RECORD[:-3], 10, "end of file"),
        (RECORD.replace("key: ", "key: conv1 "), 2, "quoted string"),
        (RECORD.replace("{", "[", 1), 1, "unexpected character"),
        (RECORD.replace("scale_d: 0.0392", "scale_d: inf"), 4, "not finite"),
    ],
)
def test_corrupt_record_names_file_and_line(
    tmp_path: Path, text: str, line: int, what: str
) -> None:
    path = tmp_path / "bad.record"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=rf"bad\.record:{line}: .*{what}"):
        read_amct_record(path)


def _model() -> onnx.ModelProto:
    """x -> conv1 -> Relu -> conv2 -> Gemm-free; two Conv layers with weights."""
    w1 = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


CONFIG = {
    "version": 1,
    "batch_num": 3,
    "activation_offset": True,
    "weight_offset": False,
    "do_fusion": True,
    "skip_layers": ["conv2"],
    "conv1": {
        "quant_enable": True,
        "activation_quant_params": {
            "act_algo": "ifmr",
            "num_bits": 8,
            "max_percentile": 0.99999,
            "min_percentile": 0.9999,
            "search_range": [0.8, 1.2],
            "search_step": 0.02,
        },
        "weight_quant_params": {"wts_algo": "arq_quantize", "channel_wise": True, "num_bits": 8},
    },
}


def test_config_maps_to_calibrators(tmp_path: Path) -> None:
    path = tmp_path / "amct.json"
    path.write_text(json.dumps(CONFIG))
    cfg = load_amct_config(path)
    assert cfg.batch_num == 3 and cfg.skip_layers == ("conv2",)
    act = cfg.activation_choice("conv1")
    assert act is not None and act.method == "ifmr"
    assert act.spec == QuantSpec(bits=8, signed=True, symmetric=False, scale_rule="amct")
    assert dict(act.options) == {
        "max_percentile": 0.99999,
        "min_percentile": 0.9999,
        "search_range": (0.8, 1.2),
        "search_step": 0.02,
        "batch_num": 3,
    }
    wts = cfg.weight_choice("conv1", axis=0)
    assert wts is not None and wts.method == "minmax"
    assert wts.spec == QuantSpec(bits=8, axis=0, scale_rule="amct")
    assert cfg.activation_choice("conv2") is None and cfg.weight_choice("conv2", 0) is None
    overrides = cfg.overrides(select_tensors(_model(), "onnxruntime"))
    assert overrides["w2"] is None and overrides["r1"] is None
    assert overrides["x"] == act and overrides["w1"] == wts


def test_config_defaults_hfmg_and_symmetric() -> None:
    cfg = load_amct_config(
        {
            "activation_offset": False,
            "activation_quant_params": {"act_algo": "hfmg", "num_of_bins": 2048},
            "weight_quant_params": {"channel_wise": False, "num_bits": 4},
            "conv2": {"quant_enable": False},
        }
    )
    act = cfg.activation_choice("any_layer")
    assert act is not None and act.method == "hfmg" and dict(act.options) == {"num_of_bins": 2048}
    assert act.spec.symmetric
    wts = cfg.weight_choice("any_layer", axis=0)
    assert wts is not None and wts.spec.axis is None and wts.spec.bits == 4
    assert cfg.layer("conv2") is None


@pytest.mark.parametrize(
    ("config", "culprit"),
    [
        ({"batch_nums": 2}, r"config\.batch_nums: unknown key"),
        ({"conv1": {"quant_enabled": True}}, r"config\.conv1\.quant_enabled: unknown key"),
        (
            {"conv1": {"activation_quant_params": {"algo": "ifmr"}}},
            r"conv1\.activation_quant_params\.algo",
        ),
        ({"activation_quant_params": {"act_algo": "kl"}}, "act_algo"),
        ({"weight_quant_params": {"num_bits": 5}}, "num_bits"),
        ({"weight_offset": True}, "weight_offset"),
        ({"batch_num": "2"}, r"batch_num: expected int"),
        ({"batch_num": True}, r"batch_num: expected int"),
        ({"activation_quant_params": {"search_range": [1.3, 0.7]}}, "search_range"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, object], culprit: str) -> None:
    with pytest.raises(ConfigError, match=culprit):
        load_amct_config(config)


def test_config_unknown_layer_and_bad_json(tmp_path: Path) -> None:
    cfg = load_amct_config({"skip_layers": ["conv9"]})
    with pytest.raises(ConfigError, match="conv9"):
        cfg.overrides(select_tensors(_model(), "tensorrt"))
    path = tmp_path / "bad.json"
    path.write_text('{\n  "batch_num": 1,\n  oops\n}')
    with pytest.raises(FileFormatError, match=r"bad\.json:3"):
        load_amct_config(path)
