"""Quantizers for functional ops in forward code (``a + b``, ``torch.cat``, ``@``, ...).

A prepared model keeps these quantizers in an `nn.ModuleDict` on its root
(``torchquant_functional.sites.<site key>.<operand>``), so they move with ``.to(device)``,
round-trip through ``state_dict`` and have stable names. Around every root forward (a
forward pre-hook enters, an always-called forward hook leaves) a
`torch.overrides.TorchFunctionMode` intercepts the ops, finds their call site with
`torchquant._trace.locate` (the same rule that keyed them at preparation) and quantizes
their operands:

- ``add`` / ``mul`` (``+``, ``torch.add``, ``Tensor.add``, ``+=``, ``*``, ...; both operands
  tensors): ``input0`` and/or ``input1``;
- ``matmul`` (``@``, ``torch.matmul``, ``torch.bmm``, ``torch.mm``): ``input0``, ``input1``;
- ``sdpa`` (``F.scaled_dot_product_attention``): ``query``, ``key``, ``value``;
- ``cat`` (``torch.cat``, ``torch.concat``): one shared quantizer, ``output``. An int8 concat
  needs one scale for all inputs; fake-quantizing the concatenated tensor with that scale is
  elementwise identical to fake-quantizing every input with it.

An in-place op (``a += b``) whose first operand is quantized is computed out of place and the
new tensor returned, which is what ``a += b`` binds; a bare ``a.add_(b)`` statement that
relies on the in-place update is therefore not supported in that case.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from torchquant._trace import CallSite, Owners, library_blocks, locate
from torchquant.errors import UnsupportedModelError

__all__ = ["OPS", "FunctionalQuantizers", "SiteSpec", "operand_names", "site_operands"]

OPS: dict[Any, str] = {
    **dict.fromkeys(
        (torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__, Tensor.add_, Tensor.__iadd__),
        "add",
    ),
    **dict.fromkeys(
        (torch.mul, Tensor.mul, Tensor.__mul__, Tensor.__rmul__, Tensor.mul_, Tensor.__imul__),
        "mul",
    ),
    **dict.fromkeys(
        (
            torch.matmul,
            Tensor.matmul,
            Tensor.__matmul__,
            Tensor.__rmatmul__,
            torch.bmm,
            Tensor.bmm,
            torch.mm,
            Tensor.mm,
        ),
        "matmul",
    ),
    **dict.fromkeys((torch.cat, torch.concat, torch.concatenate), "cat"),
    F.scaled_dot_product_attention: "sdpa",
}
_OUT_OF_PLACE = {
    Tensor.add_: torch.add,
    Tensor.__iadd__: torch.add,
    Tensor.mul_: torch.mul,
    Tensor.__imul__: torch.mul,
}
_BINARY = (("input0", "input"), ("input1", "other"))
_SDPA = (("query", "query"), ("key", "key"), ("value", "value"))


def _slots(op: str, args: tuple[Any, ...]) -> list[tuple[str, int | str]]:
    """(operand name, positional index or keyword) of each quantizable operand."""
    if op == "cat":
        return []
    names = _SDPA if op == "sdpa" else _BINARY
    return [(name, i if i < len(args) else kw) for i, (name, kw) in enumerate(names)]


def _operand(args: tuple[Any, ...], kwargs: Mapping[str, Any], slot: int | str) -> Any:
    return args[slot] if isinstance(slot, int) else kwargs.get(slot)


def _is_float_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) and x.is_floating_point()


def operand_names(op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
    """Names of the operands of this call that can be quantized: ``["output"]`` for a cat of
    float tensors; both inputs of add/mul/matmul when both are float tensors (``x + 1`` has
    none); the float tensors among query, key and value of sdpa."""
    if op == "cat":
        inputs = args[0] if args else kwargs.get("tensors", ())
        return ["output"] if any(_is_float_tensor(t) for t in inputs) else []
    found = [(n, _operand(args, kwargs, s)) for n, s in _slots(op, args)]
    floats = [n for n, x in found if _is_float_tensor(x)]
    if op == "sdpa":
        return floats
    return floats if len(floats) == 2 else []


def site_operands(
    op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> list[tuple[str, Any]]:
    """`operand_names` with each operand's tensor (None for a cat's ``output``)."""
    names = operand_names(op, args, kwargs)
    slots = dict(_slots(op, args))
    return [(n, None if n == "output" else _operand(args, kwargs, slots[n])) for n in names]


@dataclass(frozen=True)
class SiteSpec:
    """A call site seen at preparation, the operands it quantizes (may be none) and its
    key in ``torchquant_functional.sites``: owner module, op and the ordinal of that op in
    the owner's forward (``layer1_0_add_0``). Keys hold no line numbers, so that state
    dicts survive edits of the source that keep the order of the ops."""

    site: CallSite
    operands: tuple[str, ...]
    key: str

    @property
    def lookup(self) -> tuple[str, str, int, str, int]:
        s = self.site
        return (s.module, s.file, s.line, s.op, s.occurrence)


class FunctionalQuantizers(nn.Module):
    """The quantizers of all functional call sites of a prepared model (see module doc).

    Args:
        specs: every call site of a selected op seen at preparation.
        quantizers: site key -> operand name -> quantizer module.
        ops: the op names being quantized; other ops pass through.
    """

    def __init__(
        self,
        specs: list[SiteSpec],
        quantizers: Mapping[str, Mapping[str, nn.Module]],
        ops: frozenset[str],
    ) -> None:
        super().__init__()
        self.sites = nn.ModuleDict({k: nn.ModuleDict(dict(q)) for k, q in quantizers.items()})
        self.specs = {s.lookup: s for s in specs}
        self.ops = ops
        self._owners: Owners | None = None
        self._modes: list[_SiteMode] = []
        self._suspended = 0  # depth of library blocks running inside the current forward

    def forward(self, x: Any) -> Any:
        """Identity: the table is not a layer, but an ``nn.Sequential`` root calls every
        child in order, this one (registered last) included."""
        return x

    def attach(self, root: nn.Module) -> None:
        """Register the hooks on ``root`` that enter and leave the mode around its forward,
        and those that suspend it inside library blocks (`library_blocks`: QAT layers,
        pooling, ...). With a mode active every torch call, down to the ``sqrt`` inside a
        QAT Conv-BN, detours through Python; suspending it there took a digits-CNN QAT
        step (width 16, batch 128, one CPU thread) from 1.90x to 1.65x the FP32 step."""
        root.register_forward_pre_hook(self._enter)
        root.register_forward_hook(self._leave, always_call=True)
        for block in library_blocks(root):
            # A childless block (ReLU, pooling) makes a call or two: cheaper to dispatch
            # them than to run two hooks; blocks with children are QAT layers and the like.
            if block is not self and next(block.children(), None) is not None:
                block.register_forward_pre_hook(self._suspend)
                block.register_forward_hook(self._resume, always_call=True)

    def _enter(self, root: nn.Module, args: Any) -> None:
        # Rebuilt after a deepcopy or a module swap: the map is keyed by object identity.
        if self._owners is None or self._owners.root_id != id(root):
            self._owners = Owners(root)
        mode = _SiteMode(self, self._owners)
        mode.__enter__()
        self._modes.append(mode)
        self._suspended = 0

    def _leave(self, root: nn.Module, args: Any, output: Any) -> None:
        self._modes.pop().__exit__(None, None, None)

    def _suspend(self, module: nn.Module, args: Any) -> None:
        # Counted: a block may run inside another (or be called from a site's quantizer).
        if self._modes and self._suspended == 0:
            self._modes[-1].__exit__(None, None, None)
        self._suspended += 1

    def _resume(self, module: nn.Module, args: Any, output: Any) -> None:
        self._suspended = max(self._suspended - 1, 0)
        if self._modes and self._suspended == 0:
            self._modes[-1].__enter__()

    def run_site(
        self, spec: SiteSpec, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``func`` with the site's operands quantized."""
        table = self.sites._modules.get(spec.key)
        quantizers = (
            {} if table is None else {k: q for k, q in table._modules.items() if q is not None}
        )
        if spec.site.op == "cat":
            out = func(*args, **kwargs)
            return quantizers["output"](out) if "output" in quantizers else out
        new_args, new_kwargs = list(args), dict(kwargs)
        for name, slot in _slots(spec.site.op, args):
            if name not in quantizers:
                continue
            if isinstance(slot, int):
                new_args[slot] = quantizers[name](new_args[slot])
            else:
                new_kwargs[slot] = quantizers[name](new_kwargs[slot])
            if slot in (0, "input"):
                func = _OUT_OF_PLACE.get(func, func)
        return func(*new_args, **new_kwargs)


class _SiteMode(TorchFunctionMode):
    """Active during one root forward: counts occurrences and dispatches to `run_site`."""

    def __init__(self, table: FunctionalQuantizers, owners: Owners) -> None:
        super().__init__()
        self.table = table
        self.owners = owners
        self.occurrences: dict[tuple[str, str, int, str], int] = {}

    def __torch_function__(
        self, func: Any, types: Any, args: Any = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        op = OPS.get(func)
        if op is None or op not in self.table.ops:
            return func(*args, **kwargs)
        where = locate(sys._getframe(1), self.owners)
        if where is None:
            return func(*args, **kwargs)
        count_key = (*where, op)
        occurrence = self.occurrences.get(count_key, 0)
        self.occurrences[count_key] = occurrence + 1
        spec = self.table.specs.get((*where, op, occurrence))
        if spec is None:
            if not operand_names(op, tuple(args), kwargs):
                return func(*args, **kwargs)
            module, file, line = where
            raise UnsupportedModelError(
                f"{op} at {file}:{line} (module {module or '<root>'!r}, occurrence "
                f"{occurrence}) did not run when the model was prepared, so it has no "
                "quantizers; prepare with example inputs that take this branch"
            )
        return self.table.run_site(spec, func, tuple(args), kwargs)
