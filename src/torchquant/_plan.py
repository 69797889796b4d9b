"""`Plan`: the readable record of what automatic preparation did to each layer and op.

A prepared model carries it as ``model.torchquant_plan``; ``print(model.torchquant_plan)``
gives one line per layer or call site::

    conv1              Conv2d       fused+quantized  ConvBnReLU2d (conv1, bn1, relu1); default qconfig
    <root>:model.py:41 add          quantized        input1 (shortcut only: input0 fuses into ...)
    head.fc            Linear       float            skipped (skip_layers)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Plan", "PlanEntry"]


@dataclass
class PlanEntry:
    """One layer or call site: what was done and why."""

    name: str  # module qualname or "<owner>:<file>:<line>" of a call site
    kind: str  # module type or op name
    action: str  # "quantized", "fused+quantized", "fused", "float"
    reason: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """Entries in model order (see the module docstring)."""

    entries: dict[str, PlanEntry] = field(default_factory=dict)

    def add(self, name: str, kind: str, action: str, reason: str) -> None:
        """Record (or replace) the entry for ``name``, keeping notes made earlier."""
        notes = self.entries[name].notes if name in self.entries else []
        self.entries[name] = PlanEntry(name, kind, action, reason, notes)

    def note(self, name: str, text: str) -> None:
        """Attach a remark to ``name`` (its entry is created later if not yet there)."""
        self.entries.setdefault(name, PlanEntry(name, "", "", "")).notes.append(text)

    def by_action(self, action: str) -> list[str]:
        """Names whose action is ``action``."""
        return [e.name for e in self.entries.values() if e.action == action]

    def __str__(self) -> str:
        rows = [
            (e.name or "<root>", e.kind, e.action, e.reason, e.notes) for e in self.entries.values()
        ]
        w0 = max((len(r[0]) for r in rows), default=0)
        w1 = max((len(r[1]) for r in rows), default=0)
        w2 = max((len(r[2]) for r in rows), default=0)
        lines = []
        for name, kind, action, reason, notes in rows:
            extra = "".join(f"; {n}" for n in notes)
            lines.append(f"{name:<{w0}}  {kind:<{w1}}  {action:<{w2}}  {reason}{extra}")
        return "\n".join(lines)
