"""Profile the tensors an ONNX calibration chose (`calibrate_onnx`) with every calibrator.

ONNX Runtime runs the model over the data twice, streaming as `calibrate_onnx` does: the
first pass feeds each calibrated activation to a `TensorProfiler` (every candidate's range
and a histogram), the second measures each candidate's SQNR and that of the qparams
calibration chose. Weights are profiled once from their initializers. The result is an
`Analysis` without layers, for `write_report` (``torchquant calibrate ... --report``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor

from torchquant.analysis.layerwise import Analysis
from torchquant.analysis.profile import TensorProfiler
from torchquant.export.onnx_calibrate import (
    CalibrationResult,
    TensorCalibration,
    _session,
    load_onnx_model,
)
from torchquant.quant.fake import fake_quantize

__all__ = ["profile_onnx"]


def profile_onnx(
    model: onnx.ModelProto | str | os.PathLike[str],
    data: Iterable[Mapping[str, np.ndarray]],
    result: CalibrationResult,
    *,
    calibrators: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    bins: int = 128,
    num_threads: int = 0,
) -> Analysis:
    """Profile ``result``'s activations on ``data`` (iterated twice) and its weights.

    Args:
        model: the FP32 ONNX model ``result`` was calibrated from, or its path.
        data: the calibration batches ``{input name: float32 array}``; must be re-iterable.
        result: `calibrate_onnx`'s result (which tensors, their grids and chosen qparams).
        calibrators: candidates (default: every post-training calibrator).
        options: per calibrator, keyword options (e.g. the ones calibration used).
        bins: histogram bins per tensor.
        num_threads: ONNX Runtime intra-op threads; 0 lets it choose.
    """
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx_model(model)
    shared = set(result.selection.shared)
    chosen = {n: c for n, c in result.activations.items() if n not in shared}
    profilers = {
        n: TensorProfiler(n, c.spec, calibrators=calibrators, options=options, bins=bins)
        for n, c in chosen.items()
    }
    graph_inputs = {i.name for i in model.graph.input}
    fetched = [n for n in chosen if n not in graph_inputs]
    session = _session(model, fetched, num_threads)

    def batches() -> Iterator[dict[str, Tensor]]:
        """One batch's calibrated tensors by name (graph inputs and fetched outputs)."""
        for feed in data:
            outputs = session.run(fetched, dict(feed))
            found = {n: torch.from_numpy(o) for n, o in zip(fetched, outputs, strict=True)}
            for n in chosen.keys() & feed.keys():
                found[n] = torch.from_numpy(np.asarray(feed[n], dtype=np.float32))
            yield found

    num_batches = 0
    for found in batches():
        for name, x in found.items():
            profilers[name].observe(x)
        num_batches += 1
    for found in batches():
        for name, x in found.items():
            profilers[name].evaluate(x, _chosen_fake_quant(x, chosen[name]))
    initializers = {t.name: t for t in model.graph.initializer}
    for name, c in result.weights.items():
        w = torch.from_numpy(numpy_helper.to_array(initializers[name]).astype(np.float32))
        profilers[name] = TensorProfiler(name, c.spec, calibrators=calibrators, bins=bins)
        profilers[name].observe(w)
        profilers[name].evaluate(w, _chosen_fake_quant(w, c))
        chosen[name] = c
    profiles = tuple(p.result(current=chosen[n].method) for n, p in profilers.items())
    return Analysis(profiles, num_batches=num_batches, forward_passes=2 if chosen else 0)


def _chosen_fake_quant(x: Tensor, c: TensorCalibration) -> Tensor:
    """``x`` fake-quantized with the qparams calibration chose."""
    return fake_quantize(x.float(), c.scale, c.zero_point, c.spec)
