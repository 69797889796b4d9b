"""The MiniLM benchmark's pipeline on a small randomly initialised BERT of the same
architecture (transformers ``BertConfig`` with tiny sizes): what the automatic path
quantizes, calibration with every calibrator, and the analysis' forward-pass budget."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

pytest.importorskip("transformers")
pytest.importorskip("scipy")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from minilm import (
    SentenceEncoder,
    embed,
    make_sentences,
    mean_cosine,
    pair_spearman,
    prepare,
)
from transformers import BertConfig, BertModel

from torchquant._calibrate import calibrate
from torchquant.analysis import analyze, quantizer_groups
from torchquant.config import get_default_qconfig
from torchquant.quant.quantizer import iter_quantizers

LAYERS = 2


def _encoder() -> SentenceEncoder:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        attn_implementation="eager",
    )
    return SentenceEncoder(BertModel(config, add_pooling_layer=False)).eval()


def _batches(n: int) -> list[tuple[Tensor, Tensor]]:
    """Random token ids; half of each batch padded to half length."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 64, (8, 12), generator=gen)
        mask = torch.ones(8, 12, dtype=torch.int64)
        mask[4:, 6:] = 0
        out.append((ids, mask))
    return out


def test_sentences_are_deterministic_and_varied() -> None:
    sentences = make_sentences()
    assert sentences == make_sentences() and len(sentences) == len(set(sentences)) >= 640
    assert sum(s.endswith("?") for s in sentences) > 50


def test_small_bert_pipeline() -> None:
    encoder = _encoder()
    data = _batches(4)
    prepared = prepare(encoder, data[0], get_default_qconfig("tensorrt"))
    groups = quantizer_groups(prepared)
    linears = [n for n, m in encoder.named_modules() if isinstance(m, nn.Linear)]
    # Every Linear (q, k, v, attention output, intermediate, output) and the two attention
    # matmuls per layer; LayerNorm, softmax, GELU and the adds stay float.
    assert len(linears) == 6 * LAYERS and set(linears) <= set(groups)
    sites = [g for g in groups if "matmul" in g]
    assert len(sites) == 2 * LAYERS and all(len(groups[g]) == 2 for g in sites)
    assert len(groups) == 8 * LAYERS
    assert not any("LayerNorm" in n or "softmax" in n for n, _ in iter_quantizers(prepared))

    reference = embed(encoder, data)
    # The benchmark runs every calibrator; these three keep the test fast (HFMG and IFMR
    # searches take about a second per tensor on a busy 2-core machine).
    for method in ("entropy", "minmax", "percentile"):
        calibrate(prepared, data, method, num_inputs=2, progress=False)
        quantized = embed(prepared, data)
        assert mean_cosine(reference, quantized) > 0.99, method
        assert pair_spearman(reference, quantized) > 0.9, method

    calls = [0]
    prepared.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    analysis = analyze(prepared, data[:2], calibrators=["minmax", "percentile"])
    assert calls[0] == analysis.forward_passes * 2 <= 3 * len(groups) * 2
    assert {t.group for t in analysis.tensors} == set(groups)
