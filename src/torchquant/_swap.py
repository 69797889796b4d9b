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
from torchquant.nn import fused, qat, qat_bn

__all__ = ["QAT_CLASSES", "swap_layers"]

QAT_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: qat.QConv1d,
    nn.Conv2d: qat.QConv2d,
    nn.Conv3d: qat.QConv3d,
    nn.ConvTranspose2d: qat.QConvTranspose2d,
    nn.Linear: qat.QLinear,
    fused.ConvReLU1d: qat.QConvReLU1d,
    fused.ConvReLU2d: qat.QConvReLU2d,
    fused.ConvReLU3d: qat.QConvReLU3d,
    fused.LinearReLU: qat.QLinearReLU,
    fused.ConvBn1d: qat_bn.QConvBn1d,
    fused.ConvBn2d: qat_bn.QConvBn2d,
    fused.ConvBn3d: qat_bn.QConvBn3d,
    fused.ConvBnReLU1d: qat_bn.QConvBnReLU1d,
    fused.ConvBnReLU2d: qat_bn.QConvBnReLU2d,
    fused.ConvBnReLU3d: qat_bn.QConvBnReLU3d,
    fused.ConvTransposeBn2d: qat_bn.QConvTransposeBn2d,
    fused.BnReLU2d: qat_bn.QBnReLU2d,
}


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
        cls = QAT_CLASSES.get(type(module))
        if cls is None:
            raise UnsupportedModelError(
                f"layer {name!r}: no QAT module for {type(module).__name__}"
            )
        new = cls.from_float(module, qconfig, input_quant=qconfig.activation is not None)  # type: ignore[attr-defined]
        _replace(model, name, new)
