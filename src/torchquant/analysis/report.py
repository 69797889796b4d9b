"""A self-contained HTML report of a quantization analysis (plots embedded as base64 PNG).

Sections, each present when the analysis has the data:

- the plan the fixes chose: calibrator per tensor and the layers left in float, with the
  metric before and after (`QuantPlan`);
- per-layer sensitivity: model-output SQNR (dB) when only that layer is quantized, and when
  only that layer is left float (AIMET QuantAnalyzer's per-layer enable/disable analysis);
- per-tensor SQNR (dB) of every calibrator, as a heat map;
- each tensor's histogram (log counts) with every calibrator's clipping range marked.

Plots use matplotlib's object API (``Figure`` + Agg canvas): no pyplot global state and no
display or backend selection needed. PNG metadata is stripped so the same analysis gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from torchquant.analysis.fixes import QuantPlan
from torchquant.analysis.layerwise import Analysis, LayerSensitivity
from torchquant.analysis.profile import TensorProfile

__all__ = ["render_report", "write_report"]

_CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #bbb; padding: 3px 8px; text-align: left; }
th { background: #eee; } td.num { text-align: right; font-family: monospace; }
tr.float td { background: #ffe9c7; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; }
.grid figure { margin: 0; } figcaption { font-size: 11px; font-family: monospace; }
img { max-width: 100%; }
"""
# One colour per calibrator, stable across plots (matplotlib's tab10 order).
_COLOURS = (
    *("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"),
    *("tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"),
)


def write_report(
    path: str | os.PathLike[str],
    analysis: Analysis,
    plan: QuantPlan | None = None,
    *,
    title: str = "torchquant quantization report",
) -> Path:
    """Write `render_report`'s page to ``path`` (UTF-8) and return the path."""
    out = Path(path)
    out.write_text(render_report(analysis, plan, title=title), encoding="utf-8")
    return out


def render_report(analysis: Analysis, plan: QuantPlan | None = None, *, title: str = "") -> str:
    """The report as one HTML string (no external resources)."""
    cals = sorted({c for t in analysis.tensors for c in t.ranges})
    colours = {c: _COLOURS[i % len(_COLOURS)] for i, c in enumerate(cals)}
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(analysis.tensors)} tensors, {len(analysis.layers)} layers, "
        f"{analysis.num_batches} batches, {analysis.forward_passes} forward passes.",
    ]
    if analysis.all_quantized_db is not None:
        parts.append(f" Model output SQNR, all quantized: {_db(analysis.all_quantized_db)}.")
    parts.append("</p>")
    if plan is not None:
        parts.append(_plan_section(plan))
    if analysis.layers:
        parts.append("<h2>Per-layer sensitivity (model output SQNR, dB; higher is better)</h2>")
        parts.append(_img(_layer_figure(analysis.layers, plan)))
    if analysis.tensors:
        parts.append("<h2>Per-tensor SQNR by calibrator (dB)</h2>")
        if any(t.sqnr_db for t in analysis.tensors):
            parts.append(_img(_sqnr_figure(analysis.tensors, cals)))
        parts.append(_tensor_table(analysis.tensors, cals))
        parts.append("<h2>Histograms with each calibrator's clipping range</h2>")
        parts.append(_img(_legend_figure(colours)))
        parts.append("<div class='grid'>")
        for t in analysis.tensors:
            caption = html.escape(t.name)
            parts.append(
                f"<figure>{_img(_histogram_figure(t, colours))}"
                f"<figcaption>{caption}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _db(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if math.isinf(v) and v > 0 else f"{v:.2f} dB"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _plan_section(plan: QuantPlan) -> str:
    rows = [
        "<h2>Plan chosen by the automatic fixes</h2><table>",
        f"<tr><th>metric</th><td>{html.escape(plan.metric)}</td></tr>",
        f"<tr><th>float model</th><td class='num'>{_num(plan.float_metric)}</td></tr>",
        f"<tr><th>quantized, before fallback</th><td class='num'>{_num(plan.quantized_metric)}"
        "</td></tr>",
        f"<tr><th>with the plan</th><td class='num'>{_num(plan.final_metric)}</td></tr>",
        f"<tr><th>target</th><td>{html.escape(plan.target)} "
        f"({'met' if plan.target_met else 'NOT met'})</td></tr>",
        "<tr><th>layers left in float</th><td>"
        + (", ".join(f"<b>{html.escape(n)}</b>" for n in plan.float_layers) or "none")
        + "</td></tr></table>",
    ]
    if plan.history:
        rows.append("<table><tr><th>step</th><th>float layers</th><th>metric</th></tr>")
        for i, (layers, value) in enumerate(plan.history):
            names = ", ".join(html.escape(n) for n in layers) or "(none)"
            rows.append(f"<tr><td>{i}</td><td>{names}</td><td class='num'>{_num(value)}</td></tr>")
        rows.append("</table>")
    if plan.calibrators:
        rows.append("<table><tr><th>tensor</th><th>calibrator</th></tr>")
        for name, cal in sorted(plan.calibrators.items()):
            rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(cal)}</td></tr>")
        rows.append("</table>")
    return "\n".join(rows)


def _tensor_table(tensors: Sequence[TensorProfile], cals: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cals)
    rows = [f"<table><tr><th>tensor</th><th>current</th><th>current SQNR</th>{head}</tr>"]
    for t in tensors:
        best = t.best() if t.sqnr_db else None
        cells = []
        for c in cals:
            lo_hi = t.ranges.get(c)
            text = "-" if lo_hi is None else _range_text(t, *lo_hi)
            if c in t.sqnr_db:
                text += f" {_db(t.sqnr_db[c])}"
            cells.append(f"<td class='num'>{'<b>' + text + '</b>' if c == best else text}</td>")
        rows.append(
            f"<tr><td>{html.escape(t.name)}</td><td>{html.escape(t.current or '-')}</td>"
            f"<td class='num'>{_db(t.current_sqnr_db)}</td>{''.join(cells)}</tr>"
        )
    rows.append(
        "</table><p>Clipping range of each calibrator (±T on symmetric grids, [lo, hi] on "
        "affine ones; per-channel: the envelope over channels) and its SQNR; the best SQNR "
        "per tensor is bold.</p>"
    )
    return "\n".join(rows)


def _clip_range(t: TensorProfile, lo: float, hi: float) -> tuple[float, float]:
    """The range a calibrator's ``(lo, hi)`` really clips to: a symmetric grid uses
    ``[-T, T]`` with ``T = max(|lo|, |hi|)`` whatever the sign of the data."""
    if not t.spec.symmetric:
        return min(lo, 0.0), max(hi, 0.0)
    threshold = max(abs(lo), abs(hi))
    return -threshold, threshold


def _range_text(t: TensorProfile, lo: float, hi: float) -> str:
    a, b = _clip_range(t, lo, hi)
    return f"±{b:.4g}" if t.spec.symmetric else f"[{a:.4g}, {b:.4g}]"


def _img(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img src='data:image/png;base64,{data}'>"


def _finite(v: float) -> float:
    """SQNR of a lossless case is +inf; plot it at a visible 100 dB."""
    return 100.0 if math.isinf(v) and v > 0 else max(v, -20.0)


def _layer_figure(layers: Sequence[LayerSensitivity], plan: QuantPlan | None) -> Figure:
    n = len(layers)
    fig = Figure(figsize=(12, 1.2 + 0.28 * n))
    ax = fig.add_subplot()
    ys = range(n)
    quantized = [_finite(g.only_quantized_db) for g in layers]
    floated = [_finite(g.only_float_db) for g in layers]
    ax.barh(
        [y - 0.2 for y in ys],
        quantized,
        height=0.4,
        color="tab:red",
        label="only this layer quantized",
    )
    ax.barh(
        [y + 0.2 for y in ys],
        floated,
        height=0.4,
        color="tab:green",
        label="only this layer left float",
    )
    floats = set(plan.float_layers) if plan is not None else set()
    ax.set_yticks(list(ys), [("[float] " if g.name in floats else "") + g.name for g in layers])
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("model output SQNR (dB)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _sqnr_figure(tensors: Sequence[TensorProfile], cals: Sequence[str]) -> Figure:
    rows = [[_finite(t.sqnr_db.get(c, math.nan)) for c in cals] for t in tensors]
    fig = Figure(figsize=(12, 1.5 + 0.22 * len(tensors)))
    ax = fig.add_subplot()
    im = ax.imshow(rows, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(cals)), cals)
    ax.set_yticks(range(len(tensors)), [t.name for t in tensors])
    ax.tick_params(axis="y", labelsize=6)
    for i, t in enumerate(tensors):
        if t.sqnr_db:
            ax.text(cals.index(t.best()), i, "*", ha="center", va="center", color="white")
    # A tall map (one row per tensor) keeps a thin colour bar.
    fig.colorbar(im, ax=ax, label="SQNR (dB); * best", aspect=max(20, len(tensors)), pad=0.01)
    fig.tight_layout()
    return fig


def _legend_figure(colours: dict[str, str]) -> Figure:
    fig = Figure(figsize=(12, 0.4))
    for i, (cal, colour) in enumerate(colours.items()):
        fig.text(0.01 + i * 0.14, 0.3, f"— {cal}", color=colour, fontsize=11)
    return fig


def _histogram_figure(t: TensorProfile, colours: dict[str, str]) -> Figure:
    fig = Figure(figsize=(3.6, 2.0))
    ax = fig.add_subplot()
    n = len(t.counts)
    width = (t.hist_hi - t.hist_lo) / n if n else 0.0
    lefts = [t.hist_lo + i * width for i in range(n)]
    ax.bar(lefts, t.counts, width=width or 1.0, align="edge", color="0.6", log=True)
    for cal, (lo, hi) in t.ranges.items():
        for v in _clip_range(t, lo, hi):
            ax.axvline(v, color=colours[cal], linewidth=1.0, alpha=0.8)
    # Show the whole grid: a symmetric one spans [-T, T] even when the data is one-sided.
    lo, hi = _clip_range(t, t.hist_lo, t.hist_hi)
    pad = 0.05 * max(hi - lo, 1e-12)
    ax.set_xlim(lo - pad, hi + pad)
    ax.tick_params(labelsize=6)
    fig.tight_layout(pad=0.3)
    return fig
