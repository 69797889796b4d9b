"""Fuse the groups found by the automatic path and swap float layers for QAT modules.

Fusion uses `torchquant._fuse.fuse_module_groups` (``torch.ao.quantization.fuse_modules``
semantics: the first member's name holds the result, the others become ``nn.Identity``):
for PTQ, BN is folded into the conv weights now (Conv+BN+ReLU becomes a ``ConvReLU``); for
QAT, the group becomes a float container of `torchquant.nn.fused`. Each container or float Conv/Linear then becomes its QAT
module (`torchquant.nn.qat`, `torchquant.nn.qat_bn`) with an input quantizer and a
per-channel weight quantizer: TensorRT explicit quantization quantizes the inputs and the
weights of Conv/Gemm (../shared/specs/algorithms.md section 4); a fused BN-ReLU gets an
input quantizer only in the "all inputs" profile (TensorRT runs BN as a float scale layer).
QAT Conv+BN modules fold BN into the quantized weight during training (`torchquant.nn.qat_bn`).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from torchquant._fuse import fuse_module_groups
from torchquant._plan import Plan
from torchquant.config import QConfig
from torchquant.errors import UnsupportedModelError
from torchquant.nn.mappings import QAT_MODULE_MAPPINGS

__all__ = ["swap_layers"]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, new)


def swap_layers(
    model: nn.Module,
    chosen: Mapping[str, QConfig],
    groups: list[list[str]],
    *,
    qat: bool,
    plan: Plan,
) -> None:
    """Fuse ``groups`` (module qualnames, head first; BN folded now unless ``qat``), then
    swap every layer of ``chosen`` (name -> QConfig; a fused group under its head's name)
    for its QAT module, in place."""
    kinds = {n: type(model.get_submodule(n)).__name__ for group in groups for n in group}
    if groups:
        fuse_module_groups(model, groups, qat=qat)
    for group in groups:
        container = type(model.get_submodule(group[0])).__name__
        if not qat and kinds[group[1]].startswith("BatchNorm") and kinds[group[0]] != "BatchNorm2d":
            container = f"{container}, BN folded"
        for member in group[1:]:
            plan.add(member, kinds[member], "fused", f"into {group[0]} ({container})")
        head = plan.entries.get(group[0])
        detail = f"{container} ({', '.join(group)})"
        if group[0] in chosen and head is not None:
            plan.add(group[0], kinds[group[0]], "fused+quantized", f"{detail}; {head.reason}")
        else:
            plan.add(group[0], kinds[group[0]], "fused", f"{detail}; float")
    for name, qconfig in chosen.items():
        module = model.get_submodule(name)
        cls = QAT_MODULE_MAPPINGS.get(type(module))
        if cls is None:
            raise UnsupportedModelError(
                f"layer {name!r}: no QAT module for {type(module).__name__}"
            )
        new = cls.from_float(module, qconfig, input_quant=qconfig.activation is not None)
        _replace(model, name, new)
