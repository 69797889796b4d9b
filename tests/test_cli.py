"""The ``torchquant`` CLI, in process: calibrate on arrays and images, error exit codes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from torchquant.cli import main
from torchquant.export import read_amct_record, read_calibration_cache


def _write_model(path: Path, batch: int | str = "N", size: int = 8) -> Path:
    """x (batch, 3, size, size) -> conv1 -> Relu -> conv2 (+ x shortcut) -> GAP -> Flatten -> fc."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32) * 0.3, "w2"),
        numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w3"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "x"], ["a"], name="add"),
        helper.make_node("GlobalAveragePool", ["a"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _outputs(tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    return ["--cache", f"{out}.cache", "--qdq", f"{out}.onnx", "--record", f"{out}.record"]


def _check_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines = Path(f"{out}.cache").read_text().splitlines()
    assert "TRT-" in lines[0]
    scales = read_calibration_cache(f"{out}.cache")
    assert {"x", "r1", "c1", "a", "y"} <= set(scales)  # a cache covers every float tensor
    assert all(f"{k}: {struct.pack('>f', v).hex()}" in lines for k, v in scales.items())
    assert set(read_amct_record(f"{out}.record")) == {"conv1", "conv2", "fc"}
    qdq = onnx.load(f"{out}.onnx")
    onnx.checker.check_model(qdq, full_check=True)
    x = np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32)
    ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )


@pytest.mark.parametrize("profile", ["tensorrt", "onnxruntime"])
def test_calibrate_on_npy(tmp_path: Path, profile: str) -> None:
    model = _write_model(tmp_path / "m.onnx")
    np.save(tmp_path / "data.npy", np.random.default_rng(0).random((10, 3, 8, 8), dtype=np.float32))
    args = ["calibrate", str(model), "--data", str(tmp_path / "data.npy"), "--method", "minmax"]
    result = CliRunner().invoke(
        main, [*args, "--batch-size", "4", "--profile", profile, *_outputs(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "on 10 samples" in result.output
    _check_outputs(tmp_path)


def test_calibrate_on_images_with_amct_config(tmp_path: Path) -> None:
    from PIL import Image

    model = _write_model(tmp_path / "m.onnx", batch=2)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(images / f"{i}.png")
    (images / "notes.txt").write_text("ignored")
    config = tmp_path / "amct.json"
    config.write_text(json.dumps({"activation_offset": False, "skip_layers": ["fc"]}))
    args = [
        "calibrate",
        str(model),
        "--data",
        str(images),
        "--method",
        "minmax",
        "--size",
        "8",
        "8",
    ]
    args += [
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25",
        "--amct-config",
        str(config),
        "--no-progress",
    ]
    result = CliRunner().invoke(
        main, [*args, "--qdq", str(tmp_path / "q.onnx"), "--record", str(tmp_path / "r.record")]
    )
    assert result.exit_code == 0, result.output
    assert "on 4 samples" in result.output  # static batch 2: the incomplete last batch is dropped
    records = read_amct_record(tmp_path / "r.record")
    assert set(records) == {"conv1", "conv2"}
    assert records["conv1"].offset_d == 0 and len(records["conv1"].scale_w) == 3
    onnx.checker.check_model(onnx.load(tmp_path / "q.onnx"), full_check=True)


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_error_exit_codes(tmp_path: Path) -> None:
    model = _write_model(tmp_path / "m.onnx", batch="N")
    empty = tmp_path / "empty"
    empty.mkdir()
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 9, 9), np.float32))
    bad_images = tmp_path / "bad_images"
    bad_images.mkdir()
    (bad_images / "broken.png").write_bytes(b"not a png")
    out = ["--cache", str(tmp_path / "o.cache")]

    code, text = _run(["calibrate", str(tmp_path / "absent.onnx"), "--data", str(empty), *out])
    assert code == 2 and "absent.onnx" in text and "no such ONNX model" in text
    code, text = _run(["calibrate", str(model), "--data", str(empty), *out])
    assert code == 2 and "empty" in text and "no .npy/.npz arrays and no images" in text
    code, text = _run(["calibrate", str(model), "--data", str(tmp_path / "wrong.npy"), *out])
    assert code == 2 and "input 'x'" in text and "(?, 3, 8, 8)" in text and "(4, 3, 9, 9)" in text
    code, text = _run(["calibrate", str(model), "--data", str(bad_images), "--no-progress", *out])
    assert code == 2 and "broken.png" in text and "cannot read image" in text
    code, text = _run(["calibrate", str(model), "--data", str(empty)])
    assert code == 2 and "at least one output" in text
    code, text = _run(["calibrate", str(model), "--data", str(empty), "--method", "kl", *out])
    assert code == 2
    assert _run(["--version"])[0] == 0


def test_non_finite_activation_names_the_tensor(tmp_path: Path) -> None:
    model = _write_model(tmp_path / "m.onnx")
    data = np.zeros((2, 3, 8, 8), np.float32)
    data[0, 0, 0, 0] = np.inf
    np.save(tmp_path / "inf.npy", data)
    code, text = _run(
        [
            "calibrate",
            str(model),
            "--data",
            str(tmp_path / "inf.npy"),
            "--qdq",
            str(tmp_path / "q.onnx"),
        ]
    )
    assert code == 2 and "'x'" in text and "Inf" in text
