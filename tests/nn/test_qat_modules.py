"""QAT modules against slow references written here: BN folding (Krishnamoorthi 2018),
running statistics, freeze_bn, train/eval, every mapping's from_float."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchquant.config import QConfig, QuantizerConfig, get_default_qat_qconfig
from torchquant.nn import (
    QAT_MODULE_MAPPINGS,
    BnReLU2d,
    ConvBn2d,
    ConvBnReLU2d,
    ConvTransposeBn2d,
    FloatFunctional,
    QConv2d,
    QConvBn2d,
    QConvBnReLU2d,
    QConvTransposeBn2d,
    QFunctional,
    freeze_bn,
    unfreeze_bn,
)
from torchquant.quant.affine import dequantize, qparams_from_range, quantize
from torchquant.quant.spec import QuantSpec

WEIGHT = QuantSpec(narrow_range=True, axis=0)
QCONFIG = QConfig(
    activation=QuantizerConfig(QuantSpec(), calibrator="ema_minmax"),
    weight=QuantizerConfig(WEIGHT, calibrator="minmax"),
)


def _fq_weight(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Slow reference: per-channel min/max fake quantization of a weight."""
    axis = spec.axis if spec.axis is not None else 0
    flat = w.detach().movedim(axis, 0).reshape(w.shape[axis], -1)
    scale, zp = qparams_from_range(flat.min(1).values, flat.max(1).values, spec)
    return dequantize(quantize(w, scale, zp, spec), scale, zp, spec)


def _conv_bn(train: bool) -> ConvBn2d:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return ConvBn2d(conv, bn).train(train)


def test_qconv2d_uses_fake_quantized_weight() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    q = QConv2d.from_float(conv, QCONFIG)
    x = torch.randn(2, 3, 6, 6)
    expected = F.conv2d(x, _fq_weight(conv.weight, WEIGHT), conv.bias)
    torch.testing.assert_close(q(x), expected, rtol=0, atol=1e-6)
    assert q.weight is conv.weight  # parameters are shared, as in PyTorch


def test_qconvbn2d_eval_equals_folded_fake_quantized_conv() -> None:
    fused = _conv_bn(train=False)
    conv, bn = fused[0], fused[1]
    q = QConvBn2d.from_float(fused, QCONFIG).train().freeze_bn_stats()
    q(torch.randn(2, 3, 6, 6))  # one QAT step: the weight quantizer sees w * gamma / std
    q.eval()
    x = torch.randn(2, 3, 6, 6)
    f = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w_fold = _fq_weight(conv.weight * f.reshape(-1, 1, 1, 1), WEIGHT)
    b_fold = (conv.bias - bn.running_mean) * f + bn.bias
    torch.testing.assert_close(q(x), F.conv2d(x, w_fold, b_fold, padding=1), rtol=1e-5, atol=1e-5)


def test_qconvbn2d_train_updates_running_stats_like_batchnorm() -> None:
    fused = _conv_bn(train=True)
    ref_conv, ref_bn = (m for m in _conv_bn(train=True))
    q = QConvBn2d.from_float(fused, QCONFIG).train()
    q.weight_quantizer.enable_fake_quant(False)  # then the fold is exact up to rounding
    for _ in range(3):
        x = torch.randn(8, 3, 6, 6)
        torch.testing.assert_close(q(x), ref_bn(ref_conv(x)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(q.bn.running_mean, ref_bn.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.bn.running_var, ref_bn.running_var, rtol=1e-5, atol=1e-6)
    assert int(q.bn.num_batches_tracked) == 3


def test_freeze_bn_stops_statistics_and_survives_train() -> None:
    model = nn.Sequential(
        QConvBnReLU2d.from_float(ConvBnReLU2d(*_conv_bn(True), nn.ReLU()), QCONFIG)
    )
    freeze_bn(model)
    model.train()
    q = model[0]
    mean = q.bn.running_mean.clone()
    q(torch.randn(4, 3, 6, 6))
    assert torch.equal(q.bn.running_mean, mean)
    assert q.training and not q.bn.training and q.weight_quantizer.training
    model.eval()
    unfreeze_bn(model)
    assert not q.bn.training
    model.train()
    assert q.bn.training


def test_qconvtransposebn2d_eval_equals_folded_reference() -> None:
    torch.manual_seed(0)
    convt, bn = nn.ConvTranspose2d(3, 4, 3, stride=2), nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_var.uniform_(0.5, 2.0)
        bn.running_mean.uniform_(-0.5, 0.5)
    fused = ConvTransposeBn2d(convt, bn)
    q = QConvTransposeBn2d.from_float(fused, QCONFIG).eval()
    assert q.weight_quantizer is not None and q.weight_quantizer.spec.axis == 1
    q.weight_quantizer.train()
    q(torch.randn(1, 3, 5, 5))  # observe the folded weight once
    x = torch.randn(2, 3, 5, 5)
    f = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    spec = q.weight_quantizer.spec
    w_fold = _fq_weight(convt.weight * f.reshape(1, -1, 1, 1), spec)
    b_fold = (convt.bias - bn.running_mean) * f + bn.bias
    expected = F.conv_transpose2d(x, w_fold, b_fold, stride=2)
    torch.testing.assert_close(q(x), expected, rtol=1e-5, atol=1e-5)


def _float_module(kind: type[nn.Module]) -> tuple[nn.Module, torch.Tensor]:
    """A float module or fused container of ``kind`` and an input for it."""
    dims = {"1d": 1, "2d": 2, "3d": 3}
    name = kind.__name__
    n = dims.get(name[-2:], 2)
    conv_t = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[n]
    bn_t = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[n]
    x = torch.randn(2, 3, *([5] * n))
    if kind in (nn.Linear,) or name == "LinearReLU":
        lin = nn.Linear(3, 4)
        return (lin if kind is nn.Linear else kind(lin, nn.ReLU())), torch.randn(2, 3)
    if kind is nn.ConvTranspose2d or name == "ConvTransposeBn2d":
        ct = nn.ConvTranspose2d(3, 4, 3)
        return (ct if kind is nn.ConvTranspose2d else kind(ct, nn.BatchNorm2d(4))), x
    if name == "BnReLU2d":
        return kind(nn.BatchNorm2d(3), nn.ReLU()), x
    conv = conv_t(3, 4, 3)
    if kind is conv_t:
        return conv, x
    parts: list[nn.Module] = [conv]
    if "Bn" in name:
        parts.append(bn_t(4))
    if "ReLU" in name:
        parts.append(nn.ReLU())
    return kind(*parts), x


@pytest.mark.parametrize("kind", list(QAT_MODULE_MAPPINGS), ids=lambda t: t.__name__)
def test_every_mapping_trains_and_keeps_stable_keys(kind: type[nn.Module]) -> None:
    torch.manual_seed(0)
    float_mod, x = _float_module(kind)
    float_mod.train()
    qat = QAT_MODULE_MAPPINGS[kind].from_float(
        float_mod, QCONFIG, input_quant=True, output_quant=True
    )
    y = qat(x)
    y.square().sum().backward()
    keys = set(qat.state_dict())
    assert {"input_quantizer.scale", "output_quantizer.scale"} <= keys
    if "BnReLU" not in kind.__name__:
        assert {"weight", "weight_quantizer.scale", "weight_quantizer.zero_point"} <= keys
        assert qat.weight.grad is not None
    if "Bn" in kind.__name__ and kind.__name__ != "BnReLU2d":
        assert {"bn.weight", "bn.running_mean", "bn.running_var"} <= keys
    if "ReLU" in kind.__name__:
        assert bool((y >= 0).all())
    # eval output does not depend on train-mode state
    qat.eval()
    torch.testing.assert_close(qat(x), qat(x))


def test_qfunctional_quantizes_results_but_not_scalar_ops() -> None:
    f = QFunctional()
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(f.add(a, b), a + b)
    from torchquant.nn.qat import activation_quantizer

    f.output_quantizer = activation_quantizer(get_default_qat_qconfig("tensorrt"))
    out = f.add_relu(a, b)
    assert bool((out >= 0).all())
    scale = f.output_quantizer.scale
    assert torch.allclose(out / scale, torch.round(out / scale), atol=1e-4)
    torch.testing.assert_close(f.cat([a, b], dim=1).shape, torch.Size([4, 6]))
    torch.testing.assert_close(f.mul_scalar(a, 2.0), a * 2.0)
    torch.testing.assert_close(f.add_scalar(a, 1.0), a + 1.0)
    assert FloatFunctional is QFunctional
    with pytest.raises(RuntimeError, match="add"):
        f(a)


def test_bnrelu_from_float_shares_statistics() -> None:
    bn = nn.BatchNorm2d(3)
    q = QAT_MODULE_MAPPINGS[BnReLU2d].from_float(BnReLU2d(bn, nn.ReLU()), QCONFIG)
    q.train()(torch.randn(4, 3, 5, 5))
    assert q.running_mean is bn.running_mean and int(bn.num_batches_tracked) == 1
