"""Multi-process calibration and QAT on ``torch.distributed``: torchquant brings no runtime of
its own, it merges calibrator states and quantizer buffers across the ranks of a process group
that the user (or ``torchrun`` / DDP) has set up (gloo on CPU, NCCL on GPU).

- `sync_calibrators`: before scales are computed, every rank gathers the state of every
  calibrator from every rank (``all_gather_object``) and merges them with `Calibrator.merge` in
  rank order 0, 1, ..., W-1 on the CPU. Every rank runs the same merges on the same inputs, so
  all ranks end with the same state and bit-identical scales.
- `sync_quantizer_buffers`: for QAT, makes the quantizers' observer statistics and buffers
  identical on all ranks (min/max statistics all-reduced, then qparams recomputed; other
  state broadcast from rank 0).

When the merged result equals a single process that observed all the data (rank 0's batches,
then rank 1's, ...):

- exactly: ``minmax`` (min and max are exact); histograms whose range (``RangeHistogram``:
  ``[lo, hi]``; ``AbsHistogram``: the bin width, set by the first non-zero batch's ``amax``)
  is the same on every rank, e.g. when each rank's first batch spans the full range: the
  bins line up and counts are integer float64 sums, exact below 2^53; ``ifmr`` in its exact
  mode (raw values concatenated in rank order) while the total stays under ``max_samples``.
- within a bound: when the ranks' first batches fix different ranges, merging re-bins
  histograms by proportional splitting (uniform density inside a bin). A value's mass sits
  within its own bin (distance ``D = W``), and each re-binning onto width ``W'`` widens that
  by less than ``W'`` on each side, so after ``k`` re-binnings with final width ``W``,
  ``D <= (k + 1) W`` and the histogram's CDF satisfies ``F(t - D) <= F_hist(t) <= F(t + D)``
  (``F``: the exact CDF of the data). A quantile-type threshold (``percentile``; the range)
  of the merged and of the single-process histogram then differ by at most
  ``D_merged + D_single``. ``AbsHistogram`` never re-bins within a rank (it appends bins of
  the same width), and merging W ranks in order re-bins at most W - 1 times: for 2 ranks
  ``|T_dist - T_single| <= 2 W + W = 3 W``, ``W`` the coarsest first-batch width.
  ``RangeHistogram`` re-bins at every range growth: ``k`` = growths within a rank + 1.
  Search calibrators (``entropy``, ``mse``, ``hfmg``, ``ifmr`` histogram mode) take an argmin
  of a loss over the histogram, which is not Lipschitz in it: no worst-case bound holds.
  Measured on tests/test_distributed.py's growth data (2 ranks, rank 1 twice the spread,
  the spread growing 2x over 3 batches), relative scale difference: percentile 4.6e-4 (0.4
  bins), entropy 6.5e-4 (0.6 bins), mse 2.6e-2 (27 bins: its loss is flat near the
  optimum), hfmg 0; the test asserts the CDF bound, the quantile bound and <= 5% for search.
- ``ema_minmax``: the merge is the batch-weighted mean of the ranks' moving averages, not the
  sequential EMA of all batches (which depends on the order); it lies in the hull of the
  per-batch statistics (tested; on the growth data it differs from the sequential EMA by 50%).
- ``ifmr`` with ``batch_num``: each rank uses its own first ``batch_num`` batches.

Source: PyTorch ``torch.distributed`` documentation (https://pytorch.org/docs/stable/
distributed.html: ``all_gather_object``, ``all_reduce``, ``broadcast``) and the DDP notes
(https://pytorch.org/docs/stable/notes/ddp.html, ``broadcast_buffers``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from torchquant.calib._base import Calibrator
from torchquant.calib.minmax import EmaMinMaxCalibrator, MinMaxCalibrator
from torchquant.errors import ConfigError
from torchquant.quant.quantizer import Quantizer, iter_quantizers

__all__ = ["collect_calibrators", "is_distributed", "sync_calibrators", "sync_quantizer_buffers"]

ProcessGroup = Any  # torch.distributed.ProcessGroup; Any keeps `group=None` simple to type


def is_distributed(group: ProcessGroup | None = None) -> bool:
    """True when a process group is initialised and ``group`` has more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def collect_calibrators(model: nn.Module) -> list[tuple[str, Calibrator]]:
    """``(quantizer name, calibrator)`` of every `Quantizer` in ``model``, in
    ``named_modules`` order (the same on every rank for the same model)."""
    return [(name, q.calibrator) for name, q in iter_quantizers(model)]


def sync_calibrators(
    calibrators: Sequence[Calibrator] | nn.Module, group: ProcessGroup | None = None
) -> None:
    """Merge every calibrator's state across the ranks of ``group``, in place.

    Args:
        calibrators: the calibrators, in the same order on every rank, or a model whose
            quantizers' calibrators are collected by module name (`collect_calibrators`).
        group: the process group; ``None`` is the default (world) group.

    All ranks must call this (it is a collective). A no-op when ``torch.distributed`` is not
    initialised or the group has one rank. State tensors travel as pickled CPU tensors
    (``all_gather_object`` pickles, so use it only within a trusted group; with NCCL, call
    ``torch.cuda.set_device(local_rank)`` first, as its documentation requires) and come back
    on the device each calibrator's state was on. Memory, transiently: every rank's state
    of every calibrator (``ifmr``'s exact mode holds raw values) and one copy of each.
    """
    if isinstance(calibrators, nn.Module):
        named = collect_calibrators(calibrators)
    else:
        named = [(c.tensor_name, c) for c in calibrators]
    if not is_distributed(group):
        return
    mine = [_describe(name, cal) for name, cal in named]
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, mine, group=group)
    _check_same_calibrators(gathered, dist.get_rank(group))
    for i, (_, cal) in enumerate(named):
        device = _state_device(cal.state_dict())
        template = copy.deepcopy(cal)
        template.reset()
        merged = copy.deepcopy(template)
        for per_rank in gathered:  # rank order: every rank merges identically
            other = copy.deepcopy(template)
            other.load_state_dict(per_rank[i]["state"])
            merged.merge(other)
        cal.load_state_dict(_to_device(merged.state_dict(), device))


def sync_quantizer_buffers(model: nn.Module, group: ProcessGroup | None = None) -> None:
    """Make every `Quantizer`'s statistics, qparams and state identical on all ranks (QAT).

    - ``minmax`` / ``ema_minmax`` quantizers with calibrated (not learned) qparams, the QAT hot
      path: the calibrator's ``min_val``/``max_val`` (per tensor, or (C,) per channel) are
      all-reduced. ``ema_minmax`` takes the mean over ranks: the moving average is linear, so
      from a common start the mean of the ranks' averages is the moving average of the
      rank-mean batch statistics. ``minmax`` follows the current batch in QAT, so it takes
      the global batch range (MIN and MAX). ``scale``/``zero_point`` are then recomputed from
      the common range (`Quantizer.compute_qparams`) and agree bit for bit; averaging the
      ``scale`` buffers instead would not match the integer ``zero_point``.
    - every other quantizer (histogram calibrators, whose cumulative state cannot be merged
      twice without counting the shared history twice; LSQ/ULQ, whose learned parameters
      are initialised from the first local batch): rank 0's whole state (buffers,
      parameters and the calibrator's state in ``_extra_state``) is broadcast.

    Why not DDP's ``broadcast_buffers`` (on by default): it broadcasts rank 0's *buffers* at
    every forward, but a quantizer's statistics live in its calibrator (``_extra_state``, not
    a buffer) and each QAT step recomputes ``scale``/``zero_point`` from them, so it neither
    keeps the statistics identical nor lets the other ranks' data count. Call this after the
    optimizer step (three small all-reduces and one broadcast), or at least before
    evaluating or saving. A no-op without an initialised process group of several ranks; a
    collective, so every rank must call it.
    """
    named = list(iter_quantizers(model))
    if not named or not is_distributed(group):
        return
    device = named[0][1].zero_point.device
    streaming = [(q, c) for _, q in named if (c := _streaming_calibrator(q)) is not None]
    ready = torch.tensor(
        [c.min_val is not None for _, c in streaming], dtype=torch.int32, device=device
    )
    dist.all_reduce(ready, op=dist.ReduceOp.MIN, group=group)  # synced only if all ranks have one
    synced = [(q, c) for (q, c), ok in zip(streaming, ready.tolist(), strict=True) if ok]
    ema = [c for _, c in synced if isinstance(c, EmaMinMaxCalibrator)]
    plain = [c for _, c in synced if not isinstance(c, EmaMinMaxCalibrator)]
    world = dist.get_world_size(group)
    _all_reduce([c.min_val for c in ema] + [c.max_val for c in ema], "mean", world, group)
    _all_reduce([c.min_val for c in plain], "min", world, group)
    _all_reduce([c.max_val for c in plain], "max", world, group)
    for q, _ in synced:
        q.compute_qparams()
    rest = [q for _, q in named if not any(q is s for s, _ in synced)]
    if not rest:
        return
    cpu = torch.device("cpu")
    states = [[_to_device(q.state_dict(), cpu) for q in rest]]
    src = 0 if group is None else dist.get_global_rank(group, 0)
    dist.broadcast_object_list(states, src=src, group=group)
    if dist.get_rank(group) != 0:
        for q, state in zip(rest, states[0], strict=True):
            q.load_state_dict(state)


def _streaming_calibrator(q: Quantizer) -> MinMaxCalibrator | None:
    """The calibrator of a quantizer whose QAT statistics are its min/max (no learned
    qparams), else None."""
    cal = q.calibrator
    return cal if q.config.learning == "none" and isinstance(cal, MinMaxCalibrator) else None


def _all_reduce(
    tensors: list[Tensor | None], op: str, world: int, group: ProcessGroup | None
) -> None:
    """All-reduce ``tensors`` in place as one flat buffer: ``mean``, ``min`` or ``max``."""
    present = [t for t in tensors if t is not None]
    if not present:
        return
    flat = torch.cat([t.reshape(-1) for t in present])  # (sum of numels,)
    # gloo has no AVG: sum, then divide (every rank receives the same sum).
    reduce_op = {"mean": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    dist.all_reduce(flat, op=reduce_op[op], group=group)
    if op == "mean":
        flat /= world
    offset = 0
    for t in present:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def _describe(name: str, cal: Calibrator) -> dict[str, Any]:
    """What a rank sends for one calibrator: identity for the checks, and its CPU state."""
    return {
        "name": name,
        "class": type(cal).__qualname__,
        "spec": cal.spec.to_dict(),
        "state": _to_device(cal.state_dict(), torch.device("cpu")),
    }


def _check_same_calibrators(gathered: list[Any], rank: int) -> None:
    """Raise `ConfigError` naming the first calibrator that differs between ranks."""
    mine = gathered[rank]
    for other_rank, theirs in enumerate(gathered):
        if len(theirs) != len(mine):
            raise ConfigError(
                f"sync_calibrators: rank {other_rank} has {len(theirs)} calibrators, "
                f"rank {rank} has {len(mine)}"
            )
        for a, b in zip(mine, theirs, strict=True):
            for key in ("name", "class", "spec"):
                if a[key] != b[key]:
                    raise ConfigError(
                        f"sync_calibrators: calibrator {a['name']!r} differs between ranks "
                        f"{rank} and {other_rank} in {key}: {a[key]!r} vs {b[key]!r}"
                    )


def _state_device(state: Any) -> torch.device:
    """Device of the first non-CPU tensor in a (nested) state; CPU when it holds none."""
    if isinstance(state, Tensor):
        return state.device
    items = state.values() if isinstance(state, dict) else state
    if isinstance(state, dict | list | tuple):
        for item in items:
            device = _state_device(item)
            if device.type != "cpu":
                return device
    return torch.device("cpu")


def _to_device(state: Any, device: torch.device) -> Any:
    """A copy of a (nested) state with every tensor on ``device``."""
    if isinstance(state, Tensor):
        return state.to(device)
    if isinstance(state, dict):
        return {k: _to_device(v, device) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_to_device(v, device) for v in state)
    return state
