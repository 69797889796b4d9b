"""Which QAT module replaces which float module or fused container (exact types, as in
PyTorch's ``DEFAULT_QAT_MODULE_MAPPINGS``); shared by the eager and the automatic path."""

from __future__ import annotations

from torch import nn

from torchquant.nn import fused, qat, qat_bn

__all__ = ["QAT_MODULE_MAPPINGS", "QATModuleType"]

QATModuleType = type[qat.QuantizedWeightModule] | type[qat_bn.QBnReLU2d]

QAT_MODULE_MAPPINGS: dict[type[nn.Module], QATModuleType] = {
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
