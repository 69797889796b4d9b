"""Quantization diagnosis: per-tensor calibrator comparison (SQNR), per-layer sensitivity,
automatic fixes (best calibrator per tensor, float fallback) and an HTML report.

    analysis = analyze(prepared, batches)             # a few batches, 2G + 2 forward passes
    plan = auto_fallback(prepared, analysis, calib_batches, metric, max_drop=1.0)
    plan.save("plan.json"); analysis.save("analysis.json")
    write_report("report.html", analysis, plan)
    apply_plan(fresh_prepared, QuantPlan.load("plan.json"), calib_batches)
"""

from torchquant.analysis.fixes import (
    Metric,
    QuantPlan,
    apply_plan,
    auto_fallback,
    best_calibrators,
    output_sqnr_metric,
    rank_layers,
)
from torchquant.analysis.layerwise import (
    Analysis,
    LayerSensitivity,
    analyze,
    first_tensor,
    output_sqnr,
    quantizer_groups,
    run_batch,
)
from torchquant.analysis.profile import TensorProfile, TensorProfiler, default_candidates, sqnr_db
from torchquant.analysis.report import render_report, write_report

__all__ = [
    "Analysis",
    "LayerSensitivity",
    "Metric",
    "QuantPlan",
    "TensorProfile",
    "TensorProfiler",
    "analyze",
    "apply_plan",
    "auto_fallback",
    "best_calibrators",
    "default_candidates",
    "first_tensor",
    "output_sqnr",
    "output_sqnr_metric",
    "quantizer_groups",
    "rank_layers",
    "render_report",
    "run_batch",
    "sqnr_db",
    "write_report",
]
