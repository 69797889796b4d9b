"""The ``torchquant`` command line: a thin layer over the public API.

Commands are added to the `main` group with ``@main.command()``. Exit codes:
0 success; 2 usage error or bad input (one line ``error: ...`` naming the culprit file,
tensor or option); 1 internal error (a traceback).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import onnx

from torchquant import __version__
from torchquant.errors import TorchQuantError
from torchquant.export import (
    PROFILES,
    calibrate_onnx,
    insert_qdq,
    load_amct_config,
    load_calibration_data,
    load_onnx_model,
    model_inputs,
    records_from_calibration,
    select_tensors,
    write_amct_record,
    write_calibration_cache,
)

__all__ = ["main"]

METHODS = ("entropy", "minmax", "percentile", "mse", "ifmr", "hfmg")
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
_DEFAULT_BATCH = 8
_F = TypeVar("_F", bound=Callable[..., Any])


def _bad_input_exits(command: _F) -> _F:
    """Turn torchquant and file-system errors into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (TorchQuantError, OSError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return cast(_F, run)


def _floats(text: str | None) -> list[float] | None:
    """``"0.485,0.456,0.406"`` -> floats."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` calibrator options; VALUE is JSON when it parses, else a string."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        try:
            found[key] = json.loads(value)
        except json.JSONDecodeError:
            found[key] = value
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="torchquant")
def main() -> None:
    """torchquant: quantization calibration and deployment files."""


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of images, .npy/.npz file, or folder of .npy/.npz files.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="entropy",
    show_default=True,
    help="Activation calibrator.",
)
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Activation calibrator option (repeatable), e.g. -o num_bins=2048.",
)
@click.option(
    "--per-channel/--per-tensor",
    default=True,
    show_default=True,
    help="Weight scales per output channel or per tensor.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help=f"Samples per batch [default: the model's static batch size, else {_DEFAULT_BATCH}].",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use at most N samples.")
@click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default="tensorrt",
    show_default=True,
    help="QDQ placement (decides which tensors are calibrated).",
)
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a TensorRT calibration cache (all float tensors are calibrated).",
)
@click.option(
    "--qdq", type=click.Path(dir_okay=False, path_type=Path), help="Write the QDQ ONNX model."
)
@click.option(
    "--record", type=click.Path(dir_okay=False, path_type=Path), help="Write an Ascend AMCT record."
)
@click.option(
    "--amct-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="AMCT JSON quant config: per-layer IFMR/HFMG and ARQ settings, skip_layers.",
)
@click.option(
    "--size",
    type=(int, int),
    default=None,
    metavar="H W",
    help="Image size [default: the model input's].",
)
@click.option(
    "--mean", default=None, metavar="M[,M,M]", help="Per-channel mean after scaling to [0, 1]."
)
@click.option(
    "--std", default=None, metavar="S[,S,S]", help="Per-channel std after scaling to [0, 1]."
)
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default="NCHW", show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="ONNX Runtime intra-op threads (0: ONNX Runtime's default).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write an HTML report: each calibrated tensor's histogram with every calibrator's "
    "range, and their SQNR (two more passes over --data).",
)
@_bad_input_exits
def calibrate(
    model: Path,
    data_path: Path,
    method: str,
    options: tuple[str, ...],
    per_channel: bool,
    batch_size: int | None,
    limit: int | None,
    profile: str,
    cache: Path | None,
    qdq: Path | None,
    record: Path | None,
    amct_config: Path | None,
    size: tuple[int, int] | None,
    mean: str | None,
    std: str | None,
    layout: str,
    threads: int,
    progress: bool,
    report_path: Path | None,
) -> None:
    """Calibrate the FP32 ONNX MODEL on --data; write --cache, --qdq, --record and/or
    --report."""
    if cache is None and qdq is None and record is None and report_path is None:
        raise click.UsageError("give at least one output: --cache, --qdq, --record or --report")
    prof = cast(Any, profile)
    onnx_model = load_onnx_model(model)
    inputs = model_inputs(onnx_model)
    static_batch = inputs[0].shape[0] if inputs and inputs[0].shape else None
    data = load_calibration_data(
        data_path,
        inputs,
        batch_size or static_batch or _DEFAULT_BATCH,
        limit=limit,
        size=size,
        mean=_floats(mean),
        std=_floats(std),
        layout=cast(Any, layout),
        drop_last=static_batch is not None,
    )
    overrides = None
    if amct_config is not None:
        selection = select_tensors(onnx_model, prof, all_activations=cache is not None)
        overrides = load_amct_config(amct_config).overrides(selection)
    start = time.perf_counter()
    result = calibrate_onnx(
        onnx_model,
        data,
        method=method,
        profile=prof,
        method_options=_options(options),
        per_channel_weights=per_channel,
        overrides=overrides,
        all_activations=cache is not None,
        num_threads=threads,
        progress=progress,
        check_qdq=qdq is not None,
    )
    seconds = time.perf_counter() - start
    written = []
    if cache is not None:
        write_calibration_cache(cache, result.tensorrt_scales())
        written.append(str(cache))
    if qdq is not None:
        qdq_model = insert_qdq(onnx_model, result.qdq_activations(), result.qdq_weights(), prof)
        onnx.checker.check_model(qdq_model)
        onnx.save(qdq_model, str(qdq))
        written.append(str(qdq))
    if record is not None:
        write_amct_record(record, records_from_calibration(result))
        written.append(str(record))
    if report_path is not None:
        _write_calibration_report(report_path, onnx_model, data, result, method, options, threads)
        written.append(str(report_path))
    click.echo(
        f"calibrated {len(result.activations)} activations and {len(result.weights)} weights "
        f"on {result.num_samples} samples in {seconds:.2f} s; wrote {', '.join(written)}"
    )


def _write_calibration_report(
    path: Path,
    onnx_model: onnx.ModelProto,
    data: Any,
    result: Any,
    method: str,
    options: tuple[str, ...],
    threads: int,
) -> None:
    """``calibrate --report``: profile the calibrated tensors with every calibrator."""
    # Imported here: matplotlib is needed only when a report is asked for.
    from torchquant.analysis.onnx_profile import profile_onnx
    from torchquant.analysis.report import write_report

    analysis = profile_onnx(
        onnx_model, data, result, options={method: _options(options)}, num_threads=threads
    )
    write_report(path, analysis, title=f"Calibration of {onnx_model.graph.name or 'model'}")


@main.command()
@click.argument("analysis", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A plan JSON (QuantPlan.save) to show with the analysis.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write.",
)
@click.option("--title", default="torchquant quantization report", show_default=True)
@_bad_input_exits
def report(analysis: Path, plan_path: Path | None, output: Path, title: str) -> None:
    """Render an ANALYSIS JSON (torchquant.analysis.Analysis.save) as a self-contained HTML
    report: histograms with every calibrator's range, per-tensor SQNR, per-layer
    sensitivity and, with --plan, the fixes chosen."""
    from torchquant.analysis import Analysis, QuantPlan, write_report

    plan = None if plan_path is None else QuantPlan.load(plan_path)
    write_report(output, Analysis.load(analysis), plan, title=title)
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
