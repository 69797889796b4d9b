"""fuse_modules: every pattern's fused eval output equals the unfused one; train mode gives
QAT containers; errors name the modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchquant import nn as tqnn
from torchquant._fuse import fuse_module_groups, fuse_modules, fuse_modules_qat
from torchquant.errors import ConfigError, UnsupportedModelError


def _randomize_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


# (modules, input shape, container built in train mode)
PATTERNS = [
    ([nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4)], (2, 3, 9), tqnn.ConvBn1d),
    ([nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)], (2, 3, 7, 7), tqnn.ConvBn2d),
    ([nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4)], (2, 3, 5, 5, 5), tqnn.ConvBn3d),
    ([nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4), nn.ReLU()], (2, 3, 9), tqnn.ConvBnReLU1d),
    ([nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()], (2, 3, 7, 7), tqnn.ConvBnReLU2d),
    ([nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4), nn.ReLU()], (2, 3, 5, 5, 5), tqnn.ConvBnReLU3d),
    ([nn.Conv1d(3, 4, 3), nn.ReLU()], (2, 3, 9), tqnn.ConvReLU1d),
    ([nn.Conv2d(3, 4, 3), nn.ReLU()], (2, 3, 7, 7), tqnn.ConvReLU2d),
    ([nn.Conv3d(3, 4, 3), nn.ReLU()], (2, 3, 5, 5, 5), tqnn.ConvReLU3d),
    ([nn.Linear(3, 4), nn.ReLU()], (2, 3), tqnn.LinearReLU),
    ([nn.BatchNorm2d(3), nn.ReLU()], (2, 3, 7, 7), tqnn.BnReLU2d),
    (
        [nn.ConvTranspose2d(3, 4, 3, stride=2), nn.BatchNorm2d(4)],
        (2, 3, 5, 5),
        tqnn.ConvTransposeBn2d,
    ),
]


@pytest.mark.parametrize(
    ("modules", "shape", "container"), PATTERNS, ids=[p[2].__name__ for p in PATTERNS]
)
def test_fused_eval_equals_unfused(
    modules: list[nn.Module], shape: tuple[int, ...], container: type[nn.Module]
) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(*modules)).eval()
    names = [str(i) for i in range(len(modules))]
    fused = fuse_modules(model, names)
    assert fused is not model
    if container is not tqnn.BnReLU2d:  # BN folded away in eval mode
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert all(isinstance(fused[i], nn.Identity) for i in range(1, len(modules)))
    x = torch.randn(shape)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)
    qat = fuse_modules(model.train(), names)
    assert type(qat[0]) is container
    torch.testing.assert_close(qat.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_nested_names_list_of_lists_and_inplace() -> None:
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()),
        nn.Linear(2, 2),
        nn.ReLU(),
    ).train()
    out = fuse_modules(model, [["0.0", "0.1", "0.2"], ["1", "2"]], inplace=True)
    assert out is model
    assert isinstance(model[0][0], tqnn.ConvBnReLU2d) and isinstance(model[1], tqnn.LinearReLU)


def test_fuse_modules_qat_and_group_worker() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
    assert isinstance(fuse_modules_qat(model, ["0", "1"])[0], tqnn.ConvBn2d)
    fuse_module_groups(model, [["0", "1"]], qat=False)
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[1], nn.Identity)


def test_unsupported_sequence_names_the_modules() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2))
    with pytest.raises(UnsupportedModelError, match=r"\['0', '1'\].*Conv2d, MaxPool2d"):
        fuse_modules(model, ["0", "1"])
    with pytest.raises(UnsupportedModelError, match="BatchNorm1d"):
        fuse_modules(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm1d(2)), ["0", "1"])
    with pytest.raises(ConfigError, match="nope"):
        fuse_modules(model, ["0", "nope"])
