"""Module fusion: Conv+BN(+ReLU), Conv+ReLU, Linear+ReLU, BN+ReLU, ConvTranspose2d+BN.

``fuse_modules`` has the signature and semantics of PyTorch's eager
``torch.quantization.fuse_modules``: each group of named, consecutive modules is replaced by
one module (in the first name's place; the others become ``nn.Identity``). As in PyTorch
1.7 (the seed's version), the mode decides what the group becomes:

- training mode (QAT): a fused float container from `torchquant.nn` (``ConvBn2d``, ...),
  which `prepare_qat` turns into a QAT module that folds BN into the quantized weight;
- eval mode: BN folded into the conv weights now (``w * gamma / sqrt(var + eps)``; PyTorch's
  ``fuse_conv_bn_weights``), and a ReLU kept in a ``ConvReLU*`` container.

`fuse_modules_qat` always builds QAT containers (PyTorch's name); `fuse_module_groups` is the
shared worker that the automatic path calls with the groups it discovered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from torchquant.errors import ConfigError, UnsupportedModelError
from torchquant.nn import fused

__all__ = ["fuse_known_modules", "fuse_module_groups", "fuse_modules", "fuse_modules_qat"]

Fuser = Callable[[list[nn.Module], bool], list[nn.Module]]

_BN: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: nn.BatchNorm1d,
    nn.Conv2d: nn.BatchNorm2d,
    nn.Conv3d: nn.BatchNorm3d,
    nn.ConvTranspose2d: nn.BatchNorm2d,
}
_CONV_BN = {
    nn.Conv1d: fused.ConvBn1d,
    nn.Conv2d: fused.ConvBn2d,
    nn.Conv3d: fused.ConvBn3d,
    nn.ConvTranspose2d: fused.ConvTransposeBn2d,
}
_CONV_BN_RELU = {
    nn.Conv1d: fused.ConvBnReLU1d,
    nn.Conv2d: fused.ConvBnReLU2d,
    nn.Conv3d: fused.ConvBnReLU3d,
}
_CONV_RELU = {nn.Conv1d: fused.ConvReLU1d, nn.Conv2d: fused.ConvReLU2d, nn.Conv3d: fused.ConvReLU3d}
SUPPORTED = (
    "Conv{1,2,3}d+BatchNorm, Conv{1,2,3}d+BatchNorm+ReLU, Conv{1,2,3}d+ReLU, Linear+ReLU, "
    "BatchNorm2d+ReLU, ConvTranspose2d+BatchNorm2d"
)


def _fold(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``conv`` with ``bn``'s running statistics folded into its weight and bias."""
    assert isinstance(conv, nn.modules.conv._ConvNd) and isinstance(
        bn, nn.modules.batchnorm._BatchNorm
    )
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedModelError("BatchNorm without running statistics cannot be folded")
    folded = copy.deepcopy(conv)
    folded.weight, folded.bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias,
        transpose=conv.transposed,
    )  # fmt: skip
    return folded


def _fuse(mods: list[nn.Module], qat: bool) -> nn.Module | None:
    """The fused module for ``mods``, or None if the sequence is not supported."""
    types = tuple(type(m) for m in mods)
    first = types[0]
    if len(mods) == 2 and types[1] is nn.ReLU:
        if first in _CONV_RELU:
            return _CONV_RELU[first](*mods)
        if first is nn.Linear:
            return fused.LinearReLU(*mods)
        if first is nn.BatchNorm2d:
            return fused.BnReLU2d(*mods)
        return None
    bn_type = _BN.get(first)
    if bn_type is None or len(mods) not in (2, 3) or types[1] is not bn_type:
        return None
    conv, bn = mods[0], mods[1]
    if bn.num_features != conv.out_channels:
        raise UnsupportedModelError(
            f"BatchNorm has {bn.num_features} features but the conv has {conv.out_channels} outputs"
        )
    if len(mods) == 2:
        return _CONV_BN[first](conv, bn) if qat else _fold(conv, bn)
    if types[2] is not nn.ReLU or first not in _CONV_BN_RELU:
        return None
    if qat:
        return _CONV_BN_RELU[first](*mods)
    return _CONV_RELU[first](_fold(conv, bn), mods[2])


def fuse_known_modules(mod_list: list[nn.Module], is_qat: bool = False) -> list[nn.Module]:
    """PyTorch's fuser function: the fused module followed by ``nn.Identity`` for the
    others. Raises `UnsupportedModelError` for an unsupported sequence."""
    fused_mod = _fuse(mod_list, is_qat) if len(mod_list) >= 2 else None
    if fused_mod is None:
        names = ", ".join(type(m).__name__ for m in mod_list)
        raise UnsupportedModelError(f"cannot fuse ({names}); supported: {SUPPORTED}")
    fused_mod.train(mod_list[0].training)
    identities: list[nn.Module] = [nn.Identity().train(m.training) for m in mod_list[1:]]
    return [fused_mod, *identities]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, leaf, module)


def fuse_module_groups(
    model: nn.Module,
    groups: Sequence[Sequence[str]],
    qat: bool | None,
    fuser_func: Fuser = fuse_known_modules,
) -> nn.Module:
    """Fuse each group of qualified module names of ``model`` in place and return it.

    Args:
        groups: e.g. ``[["conv1", "bn1", "relu1"], ["layer1.0.conv", "layer1.0.bn"]]``.
        qat: True builds QAT containers, False folds BN now, None decides per group from
            the first module's training flag (PyTorch 1.7).
        fuser_func: ``fuser_func(modules, is_qat) -> modules`` (PyTorch's hook).

    Raises `UnsupportedModelError` naming the group for an unsupported sequence, and
    `ConfigError` for a name that is not a submodule.
    """
    for group in groups:
        try:
            mods = [model.get_submodule(name) for name in group]
        except AttributeError as exc:
            raise ConfigError(f"cannot fuse {list(group)}: {exc}") from None
        is_qat = mods[0].training if qat is None else qat
        try:
            new_mods = fuser_func(mods, is_qat)
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"cannot fuse modules {list(group)}: {exc}") from None
        for name, new in zip(group, new_mods, strict=True):
            _set_submodule(model, name, new)
    return model


def _groups(modules_to_fuse: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    if all(isinstance(m, str) for m in modules_to_fuse):
        return [[str(m) for m in modules_to_fuse]]
    return [list(g) for g in modules_to_fuse]


def fuse_modules(
    model: nn.Module,
    modules_to_fuse: Sequence[str] | Sequence[Sequence[str]],
    inplace: bool = False,
    fuser_func: Fuser = fuse_known_modules,
) -> nn.Module:
    """Fuse named module groups (PyTorch's ``fuse_modules``): a list of names for one group
    or a list of lists; QAT containers in training mode, BN folded in eval mode."""
    target = model if inplace else copy.deepcopy(model)
    return fuse_module_groups(target, _groups(modules_to_fuse), None, fuser_func)


def fuse_modules_qat(
    model: nn.Module,
    modules_to_fuse: Sequence[str] | Sequence[Sequence[str]],
    inplace: bool = False,
    fuser_func: Fuser = fuse_known_modules,
) -> nn.Module:
    """`fuse_modules` that always builds QAT containers (PyTorch's ``fuse_modules_qat``)."""
    target = model if inplace else copy.deepcopy(model)
    return fuse_module_groups(target, _groups(modules_to_fuse), True, fuser_func)
