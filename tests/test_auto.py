"""The automatic path: `PrepareConfig` on unmodified models (torchquant._auto, _trace, _sites)."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchquant._api import quantize
from torchquant._auto import PrepareConfig
from torchquant._calibrate import calibrate
from torchquant.config import QConfig, get_default_qat_qconfig
from torchquant.errors import ConfigError, UnsupportedModelError
from torchquant.nn.qat import QConv2d, QConvReLU2d, QLinear
from torchquant.nn.qat_bn import QConvBnReLU2d
from torchquant.quant.quantizer import Quantizer


class Block(nn.Module):
    """Conv-BN with a residual add in forward code; `Net` calls it twice."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)) + x)


class Net(nn.Module):
    """An ``if`` on an input property, a reused submodule, matmul (@) and cat sites."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn, self.relu = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.block = Block(8)
        self.head = nn.Linear(8 * 8 + 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.stem(x)))
        x = self.block(self.block(x))
        if x.shape[-1] > 4:  # noqa: SIM108 (the point: an if statement on an input's shape)
            x = F.max_pool2d(x, 2)
        else:
            x = x * torch.sigmoid(x)  # only small inputs take this branch
        f = x.flatten(2)  # (B, 8, HW)
        gram = f @ f.transpose(1, 2) / f.shape[-1]  # (B, 8, 8)
        return self.head(torch.cat([gram.flatten(1), x.mean((2, 3))], 1))


BRANCH_LINE = inspect.getsourcelines(Net.forward)[1] + 6  # the `x * torch.sigmoid(x)` line


def _net() -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial BN statistics, so folding matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _data(n: int = 6, size: int = 8, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, size, size, generator=g) for _ in range(n)]


def _prepared(config: PrepareConfig | None = None) -> nn.Module:
    return quantize(_net(), config or PrepareConfig(), (_data(1)[0],))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_prepares_unmodified_model_and_stays_close_to_float() -> None:
    net, data = _net(), _data()
    model = calibrate(_prepared(), data, "minmax", progress=False)
    with torch.no_grad():
        for x in data:
            assert _rel_err(model(x), net(x)) < 0.05


def test_fuses_conv_bn_relu_and_bn_is_gone() -> None:
    model = _prepared()
    assert type(model.stem) is QConvReLU2d  # BN folded into the conv weights
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.stem.modules())
    assert isinstance(model.bn, nn.Identity) and isinstance(model.relu, nn.Identity)
    assert "stem" in model.torchquant_plan.by_action("fused+quantized")
    assert set(model.torchquant_plan.by_action("fused")) == {"bn", "relu"}


def test_reused_submodule_gets_one_site_per_call_and_is_not_fused() -> None:
    model = _prepared()
    assert type(model.block.conv) is QConv2d  # called twice: no Conv-BN fusion
    assert isinstance(model.block.bn, nn.BatchNorm2d)
    adds = [k for k in model.torchquant_functional.sites if k.startswith("block_") and "_add_" in k]
    assert sorted(k[-1] for k in adds) == ["0", "1"]


def test_residual_add_quantizes_the_shortcut_only_for_tensorrt() -> None:
    sites = _prepared().torchquant_functional.sites
    add = next(v for k, v in sites.items() if "_add_" in k)
    assert list(add) == ["input1"]  # input0 comes from the BN, fused into the conv by TensorRT
    sites_all = _prepared(PrepareConfig(profile="all")).torchquant_functional.sites
    add_all = next(v for k, v in sites_all.items() if "_add_" in k)
    assert sorted(add_all) == ["input0", "input1"]


def test_add_inputs_are_quantized_at_run_time() -> None:
    model = calibrate(_prepared(), _data(), "minmax", progress=False)
    add = next(v for k, v in model.torchquant_functional.sites.items() if "_add_0" in k)
    seen: list[torch.Tensor] = []
    add["input1"].register_forward_hook(lambda m, a, out: seen.append(out))
    model(_data(1)[0])
    scale = float(add["input1"].scale)
    assert len(seen) == 1
    torch.testing.assert_close(seen[0] / scale, torch.round(seen[0] / scale))


def test_matmul_and_cat_sites() -> None:
    sites = _prepared().torchquant_functional.sites
    matmul = next(v for k, v in sites.items() if "_matmul_" in k)
    cat = next(v for k, v in sites.items() if "_cat_" in k)
    assert sorted(matmul) == ["input0", "input1"]
    assert list(cat) == ["output"]  # one shared scale for all inputs of the concat
    assert isinstance(_prepared().head, QLinear)


def test_unseen_branch_raises_naming_file_and_line() -> None:
    model = calibrate(_prepared(), _data(), "minmax", progress=False)
    with pytest.raises(UnsupportedModelError, match=rf"test_auto\.py:{BRANCH_LINE}\b.*branch"):
        model(torch.randn(2, 3, 4, 4))


def test_model_failing_on_example_inputs_names_the_module() -> None:
    with pytest.raises(UnsupportedModelError, match="'stem'"):
        quantize(_net(), PrepareConfig(), (torch.randn(1, 5, 8, 8),))


def test_skip_and_override_leave_layers_float() -> None:
    model = _prepared(PrepareConfig(skip_layers=("head",), overrides={"block": None}))
    assert type(model.head) is nn.Linear
    assert type(model.block.conv) is nn.Conv2d
    assert not [k for k in model.torchquant_functional.sites if k.startswith("block_")]
    assert "head" in model.torchquant_plan.by_action("float")


def test_state_dict_round_trip_into_a_freshly_prepared_model() -> None:
    data = _data()
    model = calibrate(_prepared(), data, progress=False)
    fresh = _prepared()
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    torch.testing.assert_close(fresh(data[0]), model(data[0]), rtol=0, atol=0)


def test_deepcopy_keeps_working() -> None:
    model = calibrate(_prepared(), _data(), "minmax", progress=False)
    clone = copy.deepcopy(model)
    torch.testing.assert_close(clone(_data(1)[0]), model(_data(1)[0]), rtol=0, atol=0)


def test_qat_trains() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 3, 8, 8)
    y = (x.mean((1, 2, 3)) > 0).long() + 2 * (x[:, 0].mean((1, 2)) > 0).long()
    model = quantize(_net().train(), PrepareConfig(qat=True), (x[:2],))
    assert isinstance(model.stem, QConvBnReLU2d)  # BN folded during training
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_inplace_residual_add_and_plan_text() -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn(self.conv(x))
            out += x  # torchvision's ResNet style
            return torch.relu(out) + 1.0  # an add with a scalar: nothing to quantize

    x = torch.randn(2, 4, 5, 5)
    model = calibrate(
        quantize(InPlace().eval(), PrepareConfig(), (x,)), [x], "minmax", progress=False
    )
    (site,) = (v for k, v in model.torchquant_functional.sites.items() if "_add_" in k)
    assert list(site) == ["input1"]
    expected = torch.relu(model.conv(x) + site["input1"](x)) + 1.0  # BN folded into the conv
    torch.testing.assert_close(model(x), expected)
    text = str(model.torchquant_plan)
    assert "fused+quantized" in text and "shortcut only" in text


def test_sdpa_quantizes_query_key_value() -> None:
    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(16, 48)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).unflatten(-1, (3, 2, 8)).permute(2, 0, 3, 1, 4)  # (B, 2, T, 8)
            return F.scaled_dot_product_attention(q, k, v)

    model = quantize(Attn().eval(), PrepareConfig(), (torch.randn(2, 5, 16),))
    (site,) = model.torchquant_functional.sites.values()
    assert sorted(site) == ["key", "query", "value"]
    assert all(isinstance(q, Quantizer) for q in site.values())


def test_config_validation_and_dict_round_trip() -> None:
    with pytest.raises(ConfigError, match="unknown functional op"):
        PrepareConfig(functional_ops=("conv",))
    with pytest.raises(ConfigError, match="example_inputs"):
        quantize(_net(), PrepareConfig())
    config = PrepareConfig(qat=True, overrides={"head": None, "stem": QConfig()}, skip_layers=["x"])
    assert PrepareConfig.from_dict(config.to_dict()) == config
    assert config.resolved_qconfig() == get_default_qat_qconfig("tensorrt")


def test_site_keys_hold_no_line_numbers() -> None:
    """State-dict names of functional sites survive edits that shift source lines."""
    model = quantize(Net(), PrepareConfig(), (torch.randn(2, 3, 8, 8),))
    keys = list(model.torchquant_functional.sites.keys())
    assert keys and all("_L" not in k for k in keys)
    assert any(k.endswith("_add_0") for k in keys)


def test_sequential_root_is_prepared() -> None:
    """An nn.Sequential root calls every child: the call-site table must be harmless."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    x = torch.randn(8, 3, 6, 6)
    prepared = quantize(model.eval(), PrepareConfig(), (x,))
    calibrate(prepared, [x], progress=False)
    with torch.no_grad():
        ref = model(x)
        assert float((prepared(x) - ref).norm() / ref.norm()) < 0.05
