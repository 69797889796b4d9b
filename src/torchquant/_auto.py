"""The automatic path: `PrepareConfig` prepares an unmodified model for PTQ or QAT.

``torchquant.quantize(model, PrepareConfig(...), example_inputs)``:

1. **Record** (`torchquant._trace`): the model runs once, for real, on ``example_inputs``
   (eval mode, no gradients). Module forward hooks and a `torch.overrides.TorchFunctionMode`
   record which module or function produced and consumed each tensor, by tensor identity.
   A real run means Python control flow (``if x.dim() == 4:``) and reused submodules need
   no rewriting: the graph is the path these inputs take.
2. **Fuse**: Conv→BN(→ReLU), Conv→ReLU, ConvTranspose2d→BN, Linear→ReLU and BN→ReLU,
   where each module runs once and the intermediate tensor has a single consumer (for PTQ
   BN is folded into the conv now; for QAT it is folded during training by the QAT
   Conv-BN modules); ReLU must be an ``nn.ReLU``
   module (a functional ``F.relu`` after a conv stays a separate op: nothing to fuse into,
   and TensorRT fuses it at build time anyway; the plan notes it). A shared ``nn.ReLU``
   (one module called in several places) is left unfused, the Conv→BN before it still fuses.
3. **Swap** Conv/Linear modules that ran (exactly these types; subclasses stay float) for
   torchquant QAT modules with an input quantizer
   and a per-channel weight quantizer (TensorRT explicit quantization: the inputs and
   weights of Conv/Gemm/MatMul, ../shared/specs/algorithms.md section 4).
4. **Functional ops** in forward code (add, mul of two tensors, matmul/bmm/@, cat,
   ``F.scaled_dot_product_attention``) get quantizers on their inputs (`torchquant._sites`),
   keyed by call site. ``profile="tensorrt"`` quantizes only the shortcut input of a residual
   add: the other input, produced by a Conv/Linear/BN whose output only feeds the add, is
   the one TensorRT fuses into the convolution as its epilogue (when both are, the one
   computed last is the fused branch). ``profile="all"`` quantizes every input.
   At run time a forward pre-hook on the root enters a TorchFunctionMode that finds each
   op's call site and applies its quantizers; hooks suspend the mode inside library blocks
   (QAT layers, ``nn`` modules with children), where no user call site can be, because an
   active mode routes every torch call through Python.

The result is in calibration mode for PTQ (observe, no fake quantization: run `calibrate`)
or in QAT mode (observe and fake-quantize; train it). ``model.torchquant_plan`` lists what
was quantized, fused, skipped or left float, and why.

Limits: only the path the example inputs take is prepared (an op on another path raises
`UnsupportedModelError` naming its file and line when it runs); call-site keys are the
owner module, the op and its ordinal in the owner's forward (``layer1_add_0``), so a
state_dict survives source edits that keep the order of the ops; modules
that are not called (``nn.MultiheadAttention``'s ``out_proj``) stay float; the owner of a
call site is found from ``self`` in the calling frames; an in-place op whose first operand
is quantized runs out of place (right for ``a += b``, not for a bare ``a.add_(b)``); under
``torch.compile`` or ``torch.jit`` tracing the mode is not supported (eager models only).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from torchquant._api import register_quantize_handler
from torchquant._plan import Plan
from torchquant._sites import OPS, FunctionalQuantizers, SiteSpec, site_operands
from torchquant._swap import swap_layers
from torchquant._trace import Graph, Node, record
from torchquant.config import QConfig, get_default_qat_qconfig, get_default_qconfig
from torchquant.errors import ConfigError
from torchquant.quant.quantizer import Quantizer, name_quantizers, set_calibration_mode

__all__ = ["FUNCTIONAL_OPS", "PrepareConfig"]

Profile = Literal["tensorrt", "all"]
FUNCTIONAL_OPS = ("add", "mul", "matmul", "cat", "sdpa")
FUNCTIONAL_ATTR = "torchquant_functional"  # stable state_dict prefix of the site quantizers
PLAN_ATTR = "torchquant_plan"

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_BN = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))
# The fusable module sequences: those `torchquant.nn.fused` has a container for.
_PATTERNS: frozenset[tuple[type[nn.Module], ...]] = frozenset(
    [(c, b, nn.ReLU) for c, b in _CONV_BN]
    + [(c, b) for c, b in _CONV_BN]
    + [(c, nn.ReLU) for c in _CONVS]
    + [(nn.ConvTranspose2d, nn.BatchNorm2d), (nn.Linear, nn.ReLU), (nn.BatchNorm2d, nn.ReLU)]
)
_SWAPPABLE = (*_CONVS, nn.ConvTranspose2d, nn.Linear)
# Producers whose output TensorRT fuses with a following residual add.
_ADD_FUSABLE = (*_CONVS, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class PrepareConfig:
    """Automatic preparation of an unmodified model (see the module docstring).

    Attributes:
        qconfig: quantizers of every quantized layer and op; ``None`` takes the TensorRT
            preset, `get_default_qconfig("tensorrt")`, or `get_default_qat_qconfig("tensorrt")`
            when ``qat``.
        qat: prepare for quantization-aware training (BN folded during training) instead
            of calibration.
        overrides: ``{layer name, glob or call-site key: QConfig or None}``; None leaves it
            float. A name covers the layers and call sites under it; the longest match wins.
        skip_layers: layer names, globs or call-site keys to leave float.
        fuse: fuse Conv-BN-ReLU, Conv-ReLU, Linear-ReLU and BN-ReLU patterns.
        functional_ops: which functional ops to quantize, among `FUNCTIONAL_OPS`.
        profile: ``"tensorrt"``: only the shortcut input of a residual add; ``"all"``: all
            inputs of every functional op.
    """

    qconfig: QConfig | None = None
    qat: bool = False
    overrides: Mapping[str, QConfig | None] = field(default_factory=dict)
    skip_layers: tuple[str, ...] = ()
    fuse: bool = True
    functional_ops: tuple[str, ...] = FUNCTIONAL_OPS
    profile: Profile = "tensorrt"

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip_layers", tuple(self.skip_layers))
        object.__setattr__(self, "functional_ops", tuple(self.functional_ops))
        unknown = set(self.functional_ops) - set(FUNCTIONAL_OPS)
        if unknown:
            raise ConfigError(
                f"unknown functional op(s) {sorted(unknown)}; known: {FUNCTIONAL_OPS}"
            )
        if self.profile not in ("tensorrt", "all"):
            raise ConfigError(
                f"PrepareConfig.profile must be 'tensorrt' or 'all', got {self.profile!r}"
            )
        for name, qc in self.overrides.items():
            if qc is not None and not isinstance(qc, QConfig):
                raise ConfigError(
                    f"override for {name!r} must be a QConfig or None, got {type(qc).__name__}"
                )

    def resolved_qconfig(self) -> QConfig:
        """The qconfig in force (the preset when ``qconfig`` is None)."""
        if self.qconfig is not None:
            return self.qconfig
        return get_default_qat_qconfig("tensorrt") if self.qat else get_default_qconfig("tensorrt")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON recipes."""
        return {
            "qconfig": None if self.qconfig is None else self.qconfig.to_dict(),
            "qat": self.qat,
            "overrides": {k: None if v is None else v.to_dict() for k, v in self.overrides.items()},
            "skip_layers": list(self.skip_layers),
            "fuse": self.fuse,
            "functional_ops": list(self.functional_ops),
            "profile": self.profile,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrepareConfig:
        """Inverse of `to_dict`."""
        data = dict(data)
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ConfigError(f"unknown PrepareConfig field(s): {sorted(unknown)}")
        if data.get("qconfig") is not None:
            data["qconfig"] = QConfig.from_dict(data["qconfig"])
        overrides = data.get("overrides", {})
        data["overrides"] = {
            k: None if v is None else QConfig.from_dict(v) for k, v in overrides.items()
        }
        return cls(**data)

    def qconfig_for(self, *names: str) -> tuple[QConfig | None, str]:
        """``(QConfig or None, reason)`` for a layer or call site known by ``names``."""
        for name in names:
            if any(_covers(p, name) for p in self.skip_layers):
                return None, "skipped (skip_layers)"
        best = max(
            ((p, len(p)) for p in self.overrides for n in names if _covers(p, n)),
            key=lambda item: item[1],
            default=None,
        )
        if best is not None:
            qc = self.overrides[best[0]]
            return (
                qc,
                f"override {best[0]!r}" if qc is not None else f"float (override {best[0]!r})",
            )
        return self.resolved_qconfig(), "default qconfig"


def _covers(pattern: str, name: str) -> bool:
    return name == pattern or name.startswith(pattern + ".") or fnmatch.fnmatchcase(name, pattern)


def _ran_once(graph: Graph, node: Node) -> bool:
    return graph.module_calls.get(node.target, 0) == 1


def _chain(graph: Graph, node: Node) -> list[Node]:
    """The longest fusable chain from ``node``: each link the single consumer of the one
    before, each module run once, the types a prefix of a `_PATTERNS` entry."""
    chain = [node]
    best: list[Node] = []
    while True:
        types = tuple(type(n.module) for n in chain)
        if types in _PATTERNS:
            best = list(chain)
        nxt = graph.single_consumer(chain[-1])
        if nxt is None or nxt.kind != "module" or not _ran_once(graph, nxt):
            return best
        longer = (*types, type(nxt.module))
        if not any(p[: len(longer)] == longer for p in _PATTERNS):
            return best
        chain.append(nxt)


def find_fusions(graph: Graph, plan: Plan) -> list[list[str]]:
    """Fusion groups (module qualnames) found in the recorded graph, in execution order."""
    groups: list[list[str]] = []
    taken: set[str] = set()
    for node in graph.nodes:
        if node.kind != "module" or node.target in taken or not _ran_once(graph, node):
            continue
        chain = _chain(graph, node)
        if chain and not any(n.target in taken for n in chain):
            groups.append([n.target for n in chain])
            taken.update(groups[-1])
        nxt = graph.single_consumer(chain[-1] if chain else node)
        if nxt is not None and nxt.kind == "function" and nxt.target == "relu":
            plan.note(node.target, f"functional relu at {nxt.where} not fused (not a module)")
    return groups


def _site_operands(graph: Graph, node: Node, profile: Profile) -> tuple[tuple[str, ...], str]:
    """Which operands of a call site to quantize, and why."""
    names = tuple(node.operands)
    if node.site is None or node.site.op != "add" or profile == "all" or len(names) < 2:
        return names, "all inputs" if names else "no float tensor pair: nothing to quantize"
    fusable = []
    for name, producer in node.operands.items():
        p = graph.nodes[producer] if producer is not None else None
        if p is not None and isinstance(p.module, _ADD_FUSABLE) and p.consumers == [node.index]:
            fusable.append((producer, name))
    if not fusable:
        return names, "residual add without a fusable branch: all inputs"
    _, fused = max(fusable)
    return tuple(n for n in names if n != fused), f"shortcut only ({fused} fuses into its producer)"


def _as_inputs(example_inputs: Any) -> tuple[Any, ...]:
    if example_inputs is None:
        raise ConfigError("PrepareConfig runs the model: pass example_inputs (a tuple of inputs)")
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def _plan_layers(
    model: nn.Module, graph: Graph, config: PrepareConfig, plan: Plan
) -> dict[str, QConfig]:
    """QConfig of every Conv/Linear to swap; the others get a plan entry saying why not."""
    chosen: dict[str, QConfig] = {}
    for name, module in model.named_modules():
        if type(module) not in _SWAPPABLE:
            continue
        kind = type(module).__name__
        if graph.module_calls.get(name, 0) == 0:
            plan.add(name, kind, "float", "not executed on the example inputs")
            continue
        qconfig, reason = config.qconfig_for(name)
        if qconfig is None:
            plan.add(name, kind, "float", reason)
        else:
            chosen[name] = qconfig
            plan.add(name, kind, "quantized", reason)
    return chosen


def _plan_sites(
    graph: Graph, config: PrepareConfig, plan: Plan
) -> tuple[list[SiteSpec], dict[str, dict[str, nn.Module]]]:
    """Site specs and their quantizers, per the profile and the overrides."""
    specs: list[SiteSpec] = []
    quantizers: dict[str, dict[str, nn.Module]] = {}
    ordinals: dict[tuple[str, str], int] = {}
    for node in graph.nodes:
        site = node.site
        if site is None:
            continue
        label = (
            f"{site.module or '<root>'}:{os.path.basename(site.file)}:{site.line}#{site.occurrence}"
        )
        ordinal = ordinals.get((site.module, site.op), 0)
        ordinals[(site.module, site.op)] = ordinal + 1
        raw = f"{site.module or 'root'}_{site.op}_{ordinal}"
        key = "".join(c if c.isalnum() or c == "_" else "_" for c in raw)
        operands, why = _site_operands(graph, node, config.profile)
        qconfig, reason = config.qconfig_for(key, site.module)
        if qconfig is None or qconfig.activation is None or not operands:
            specs.append(SiteSpec(site, (), key))
            plan.add(label, site.op, "float", reason if operands else why)
            continue
        specs.append(SiteSpec(site, operands, key))
        quantizers[key] = {name: Quantizer(qconfig.activation) for name in operands}
        detail = f"{', '.join(operands)} ({why}) in {FUNCTIONAL_ATTR}.sites.{key}"
        plan.add(label, site.op, "quantized", f"{detail}; {reason}")
    return specs, quantizers


@register_quantize_handler(PrepareConfig)
def _prepare(model: nn.Module, config: PrepareConfig, example_inputs: Any) -> nn.Module:
    """Record, fuse, swap and attach site quantizers (module docstring)."""
    inputs = _as_inputs(example_inputs)
    if hasattr(model, FUNCTIONAL_ATTR):
        raise ConfigError("this model is already prepared (it has torchquant_functional)")
    ops = {func: op for func, op in OPS.items() if op in config.functional_ops}
    graph = record(model, inputs, ops, site_operands)
    plan = Plan()
    chosen = _plan_layers(model, graph, config, plan)
    groups = []
    for group in find_fusions(graph, plan) if config.fuse else []:
        head = model.get_submodule(group[0])
        if isinstance(head, nn.BatchNorm2d):
            groups.append(group)
            # TensorRT runs BN as a float scale layer: its input is quantized only in "all".
            qconfig, reason = config.qconfig_for(group[0])
            if config.profile == "all" and qconfig is not None:
                chosen[group[0]] = qconfig
                plan.add(group[0], type(head).__name__, "quantized", reason)
        elif group[0] in chosen:
            groups.append(group)
    swap_layers(model, chosen, groups, qat=config.qat, plan=plan)
    specs, quantizers = _plan_sites(graph, config, plan)
    table = FunctionalQuantizers(specs, quantizers, frozenset(config.functional_ops))
    setattr(model, FUNCTIONAL_ATTR, table)
    table.attach(model)
    name_quantizers(model)
    if not config.qat:
        set_calibration_mode(model)
    object.__setattr__(model, PLAN_ATTR, plan)  # a plain attribute, not a submodule
    return model
