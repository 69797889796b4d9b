"""Record the dynamic dataflow graph of one real forward pass (for `torchquant.PrepareConfig`).

The model runs once, for real, on the example inputs. Forward hooks record every call of a
built-in leaf module (``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.ReLU``, ...) and a
`torch.overrides.TorchFunctionMode` records every torch function that user code calls
between them (``+``, ``torch.cat``, ``@``, ``F.relu``, ``x.flatten()``, ...). Edges come
from tensor identity: each recorded call looks up which node produced each of its tensor
inputs. Because it is a real run, Python control flow (an ``if`` on an input's shape) takes
the branch the example inputs take, and a submodule called twice gives two nodes.

Functional calls are located by their call site: the module that executed them (found
from ``self`` in the calling frames), the source file and line, and an occurrence counter
(a line run twice in one forward, in a loop or a reused submodule, gives two sites). The
same `locate` serves the recorder here and the run-time mode in `torchquant._sites`, so
the keys agree.

Calls made from inside torch or torchquant code (the insides of ``nn.MultiheadAttention``,
of a QAT module) are not user call sites and are not recorded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from torchquant.errors import UnsupportedModelError

__all__ = [
    "CallSite",
    "Graph",
    "Node",
    "Owners",
    "library_blocks",
    "locate",
    "record",
    "tensors_in",
]

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TORCHQUANT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# torch's dispatch wrappers between user code and a TorchFunctionMode: skipped, not opaque.
_WRAPPERS = tuple(
    os.path.join(_TORCH_DIR, p)
    for p in ("overrides.py", "_tensor.py", "functional.py", os.path.join("nn", "functional.py"))
)
_SKIP, _LIBRARY, _USER = 0, 1, 2
_FILE_KIND: dict[str, int] = {}
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_MAX_FRAMES = 64  # how far up `locate` looks for the module that owns a call
OperandsFn = Callable[[str, tuple[Any, ...], dict[str, Any]], list[tuple[str, Any]]]


def _file_kind(filename: str) -> int:
    kind = _FILE_KIND.get(filename)
    if kind is None:
        if filename.startswith(_WRAPPERS):
            kind = _SKIP
        elif filename.startswith((_TORCH_DIR, _TORCHQUANT_DIR)):
            kind = _LIBRARY
        else:
            kind = _USER
        _FILE_KIND[filename] = kind
    return kind


class Owners:
    """Maps module objects of one model to their qualified names (root: ``""``)."""

    def __init__(self, root: nn.Module) -> None:
        self.root_id = id(root)
        self.names = {id(m): name for name, m in root.named_modules()}


def locate(frame: FrameType | None, owners: Owners) -> tuple[str, str, int] | None:
    """``(module qualname, file, line)`` of the user code that made a torch call, given the
    frame that called into torch; None when the call comes from inside torch or torchquant
    (the implementation of a library module), which is not a user call site."""
    while frame is not None and _file_kind(frame.f_code.co_filename) == _SKIP:
        frame = frame.f_back
    if frame is None or _file_kind(frame.f_code.co_filename) == _LIBRARY:
        return None
    filename, line = frame.f_code.co_filename, frame.f_lineno
    # The owner is the nearest enclosing method of a module of this model: the module
    # whose forward (or helper) ran the line, also when a plain function sits between.
    walk: FrameType | None = frame
    for _ in range(_MAX_FRAMES):
        if walk is None:
            break
        owner = walk.f_locals.get("self") if "self" in walk.f_code.co_varnames else None
        name = owners.names.get(id(owner)) if owner is not None else None
        if name is not None:
            return name, filename, line
        walk = walk.f_back
    return "", filename, line


@dataclass(frozen=True)
class CallSite:
    """One execution of a functional op in user code: stable across runs that take the same
    path, so it keys the op's quantizers."""

    module: str  # qualified name of the module that executed it ("" for the root)
    file: str
    line: int
    op: str  # "add", "mul", "matmul", "cat", "sdpa"
    occurrence: int  # 0 for the first execution of (module, file, line, op) in a forward

    @property
    def where(self) -> str:
        """``file:line`` for messages."""
        return f"{self.file}:{self.line}"


@dataclass
class Node:
    """One recorded call: a leaf module or a torch function."""

    index: int
    kind: str  # "module" or "function"
    target: str  # module qualname, or the function's name
    module: nn.Module | None  # the module object for module nodes
    inputs: list[int | None]  # producer node of each tensor input (None: graph input/param)
    site: CallSite | None = None  # for functions: where user code called it
    func: Any = None  # the torch function, for function nodes
    operands: dict[str, int | None] = field(default_factory=dict)  # site operand -> producer
    where: str = ""  # "file:line" of a function call
    consumers: list[int] = field(default_factory=list)


@dataclass
class Graph:
    """Nodes in execution order; ``module_calls`` counts calls per module qualname."""

    nodes: list[Node]
    module_calls: dict[str, int]

    def single_consumer(self, node: Node) -> Node | None:
        """The only node that reads ``node``'s output, or None if zero or several do."""
        if len(node.consumers) != 1:
            return None
        return self.nodes[node.consumers[0]]


def tensors_in(obj: Any) -> Iterator[Tensor]:
    """Tensors inside (nested tuples, lists and dicts of) ``obj``."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from tensors_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from tensors_in(item)


def _is_leaf_unit(module: nn.Module) -> bool:
    """Built-in leaf modules are recorded as one node; their insides are not user code."""
    cls = type(module)
    library = cls.__module__.startswith(("torch.nn.", "torchquant."))
    return library and not isinstance(module, _CONTAINERS) and next(module.children(), None) is None


def _is_library(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.", "torchquant."))


def library_blocks(root: nn.Module) -> Iterator[nn.Module]:
    """The outermost submodules made only of torch and torchquant modules (containers
    excepted): no user code runs inside them, so they hold no user call sites."""
    for child in root.children():
        if not isinstance(child, _CONTAINERS) and all(_is_library(m) for m in child.modules()):
            yield child
        else:
            yield from library_blocks(child)


class _Recorder(TorchFunctionMode):
    def __init__(self, owners: Owners, ops: dict[Any, str], operands: OperandsFn) -> None:
        super().__init__()
        self.owners = owners
        self.ops = ops
        self.operands = operands
        self.nodes: list[Node] = []
        self.producer: dict[int, int] = {}
        self.keep_alive: list[Tensor] = []  # ids stay unique while their tensors live
        self.occurrences: dict[tuple[str, str, int, str], int] = {}
        self.leaf_depth = 0
        self.stack: list[str] = []
        self.module_calls: dict[str, int] = {}

    def add_node(self, kind: str, target: str, inputs: Any, **extra: Any) -> Node:
        producers = [self.producer.get(id(t)) for t in tensors_in(inputs)]
        node = Node(len(self.nodes), kind, target, inputs=producers, **extra)
        for p in producers:
            if p is not None and node.index not in self.nodes[p].consumers:
                self.nodes[p].consumers.append(node.index)
        self.nodes.append(node)
        return node

    def set_outputs(self, node: Node, outputs: Any) -> None:
        for t in tensors_in(outputs):
            self.keep_alive.append(t)
            self.producer[id(t)] = node.index

    def __torch_function__(
        self, func: Any, types: Any, args: Any = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # Calls returning no tensor (x.dim(), x.shape) read metadata, not data: no node.
        if self.leaf_depth or next(tensors_in(out), None) is None:
            return out
        where = locate(sys._getframe(1), self.owners)
        if where is None:
            return out
        op = self.ops.get(func)
        site = None
        if op is not None:
            count_key = (*where, op)
            occurrence = self.occurrences.get(count_key, 0)
            self.occurrences[count_key] = occurrence + 1
            site = CallSite(*where, op, occurrence)
        name = getattr(func, "__name__", repr(func))
        node = self.add_node(
            "function", name, (args, kwargs), module=None, site=site, func=func,
            where=f"{where[1]}:{where[2]}",
        )  # fmt: skip
        if op is not None:
            node.operands = {
                n: None if t is None else self.producer.get(id(t))
                for n, t in self.operands(op, tuple(args), kwargs)
            }
        self.set_outputs(node, out)
        return out


def record(
    model: nn.Module, example_inputs: tuple[Any, ...], ops: dict[Any, str], operands: OperandsFn
) -> Graph:
    """Run ``model(*example_inputs)`` once in eval mode without gradients and return its
    dataflow graph. Calls of functions in ``ops`` (function -> op name) get a `CallSite` and
    ``operands(op, args, kwargs)`` -> ``[(operand name, tensor or None)]`` names the
    operands they would quantize, recorded with their producers.

    Raises:
        UnsupportedModelError: the model failed on the example inputs; names the innermost
            module that was running.
    """
    owners = Owners(model)
    rec = _Recorder(owners, ops, operands)
    leaf_nodes: list[Node] = []

    def pre_hook(module: nn.Module, args: Any, kwargs: Any) -> None:
        name = owners.names[id(module)]
        rec.stack.append(name)
        rec.module_calls[name] = rec.module_calls.get(name, 0) + 1
        if _is_leaf_unit(module):
            if rec.leaf_depth == 0:
                leaf_nodes.append(rec.add_node("module", name, (args, kwargs), module=module))
            rec.leaf_depth += 1

    def post_hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        rec.stack.pop()
        if _is_leaf_unit(module):
            rec.leaf_depth -= 1
            if rec.leaf_depth == 0:
                rec.set_outputs(leaf_nodes.pop(), output)

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), rec:
            model(*example_inputs)
    except Exception as exc:
        culprit = rec.stack[-1] if rec.stack else ""
        kind = type(model.get_submodule(culprit)).__name__
        raise UnsupportedModelError(
            f"the model failed on the example inputs in module {culprit or '<root>'!r} "
            f"({kind}): {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.training = flag
    return Graph(rec.nodes, rec.module_calls)
