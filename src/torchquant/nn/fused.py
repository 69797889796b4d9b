"""Float containers produced by fusion, one per supported pattern.

Like PyTorch's ``torch.ao.nn.intrinsic`` modules: an ``nn.Sequential`` of the original float
modules, so a fused model computes exactly what the unfused one did until it is prepared for
QAT, where each container becomes one QAT module (`torchquant.nn.qat`, `torchquant.nn.qat_bn`).
state_dict keys are the Sequential's (``0.weight``, ``1.running_mean``, ...), as in PyTorch.
"""

from __future__ import annotations

from torch import nn

from torchquant.errors import UnsupportedModelError

__all__ = [
    "BnReLU2d",
    "ConvBn1d",
    "ConvBn2d",
    "ConvBn3d",
    "ConvBnReLU1d",
    "ConvBnReLU2d",
    "ConvBnReLU3d",
    "ConvReLU1d",
    "ConvReLU2d",
    "ConvReLU3d",
    "ConvTransposeBn2d",
    "FusedModule",
    "LinearReLU",
]


class FusedModule(nn.Sequential):
    """Base of the fused containers: checks the member types at construction.

    ``_types`` lists the exact float module type of each member.
    """

    _types: tuple[type[nn.Module], ...] = ()

    def __init__(self, *modules: nn.Module) -> None:
        got = tuple(type(m) for m in modules)
        if got != self._types:
            want = ", ".join(t.__name__ for t in self._types)
            have = ", ".join(t.__name__ for t in got)
            raise UnsupportedModelError(f"{type(self).__name__} takes ({want}), got ({have})")
        super().__init__(*modules)


class ConvBn1d(FusedModule):
    """Conv1d followed by BatchNorm1d."""

    _types = (nn.Conv1d, nn.BatchNorm1d)


class ConvBn2d(FusedModule):
    """Conv2d followed by BatchNorm2d."""

    _types = (nn.Conv2d, nn.BatchNorm2d)


class ConvBn3d(FusedModule):
    """Conv3d followed by BatchNorm3d."""

    _types = (nn.Conv3d, nn.BatchNorm3d)


class ConvBnReLU1d(FusedModule):
    """Conv1d, BatchNorm1d, ReLU."""

    _types = (nn.Conv1d, nn.BatchNorm1d, nn.ReLU)


class ConvBnReLU2d(FusedModule):
    """Conv2d, BatchNorm2d, ReLU."""

    _types = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)


class ConvBnReLU3d(FusedModule):
    """Conv3d, BatchNorm3d, ReLU."""

    _types = (nn.Conv3d, nn.BatchNorm3d, nn.ReLU)


class ConvReLU1d(FusedModule):
    """Conv1d followed by ReLU."""

    _types = (nn.Conv1d, nn.ReLU)


class ConvReLU2d(FusedModule):
    """Conv2d followed by ReLU."""

    _types = (nn.Conv2d, nn.ReLU)


class ConvReLU3d(FusedModule):
    """Conv3d followed by ReLU."""

    _types = (nn.Conv3d, nn.ReLU)


class LinearReLU(FusedModule):
    """Linear followed by ReLU."""

    _types = (nn.Linear, nn.ReLU)


class BnReLU2d(FusedModule):
    """BatchNorm2d followed by ReLU."""

    _types = (nn.BatchNorm2d, nn.ReLU)


class ConvTransposeBn2d(FusedModule):
    """ConvTranspose2d followed by BatchNorm2d (PyTorch folds this pair in eval only;
    torchquant also trains it, see `torchquant.nn.QConvTransposeBn2d`)."""

    _types = (nn.ConvTranspose2d, nn.BatchNorm2d)
