"""The two-time UNet: shapes, conditioning, JVP, CFM training step, warm start, configs, presets."""

from __future__ import annotations

import json

import pytest
import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.derivatives import derivative_context, jvp_derivative
from cfm_core.nn import load_single_time_state_dict
from cfm_image.unet import UNET_PRESETS, UNet, unet_config, unet_from_config
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


def tiny(num_classes=None, **options):
    torch.manual_seed(0)
    return UNet(**{**UNET_PRESETS["tiny"], **options}, in_channels=1, resolution=16, num_classes=num_classes)


def randomize_zero_layers(net: nn.Module) -> None:
    """Give the zero-initialised output layers small random weights (so outputs depend on all)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in net.parameters():
            if not parameter.any():
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))


def inputs(batch=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, 16, 16, generator=generator)
    t = torch.rand(batch, generator=generator) * 0.8 + 0.1
    return x, t, torch.clamp(t + 0.1, max=1.0)


def test_output_shape_and_zero_init():
    net = tiny()
    x, t, r = inputs()
    out = net(x, t, r)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))  # zero output conv
    randomize_zero_layers(net)
    assert net(x, t, r).abs().mean() > 0
    wider = UNet(in_channels=3, resolution=32, out_channels=6, **UNET_PRESETS["tiny"])
    assert wider(torch.randn(2, 3, 32, 32), t[:2], r[:2]).shape == (2, 6, 32, 32)


def test_class_conditioning_and_null_class():
    net = tiny(num_classes=10)
    randomize_zero_layers(net)
    x, t, r = inputs()
    labels = torch.tensor([0, 4, 9])
    out = net(x, t, r, labels)
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, t, r, torch.tensor([1, 4, 9])))
    null = torch.full((3,), 10)
    assert torch.equal(net(x, t, r), net(x, t, r, null))  # no labels means the null class
    with pytest.raises(ValueError, match="integer class labels"):
        net(x, t, r, labels.float())


def test_input_errors():
    net = tiny()
    x, t, r = inputs()
    with pytest.raises(ValueError, match="expects images"):
        net(torch.randn(3, 3, 16, 16), t, r)
    with pytest.raises(ValueError, match="r must have shape"):
        net(x, t, r[:2])
    with pytest.raises(ValueError, match="unconditional"):
        net(x, t, r, torch.tensor([0, 1, 2]))


def test_jvp_matches_finite_differences_and_autograd():
    net = tiny(num_classes=10, time_embedding="sinusoidal").eval()
    randomize_zero_layers(net)
    x, t, r = inputs()
    labels = torch.tensor([2, 10, 5])
    v = torch.randn_like(x, generator=torch.Generator().manual_seed(5))

    def field(x_, t_):
        return net(x_, t_, r, labels)

    with derivative_context(x.device):  # math attention, as in CFMLoss's JVP
        _, tangent = torch.func.jvp(field, (x, t), (v, torch.ones_like(t)))

        def central(h):
            return (field(x + h * v, t + h) - field(x - h * v, t - h)) / (2 * h)

        richardson = (4 * central(1e-2) - central(2e-2)) / 3  # O(h^4) error; float32 rounding
    assert tangent.norm() > 1.0
    assert (richardson - tangent).norm() / tangent.norm() < 5e-4
    with sdpa_kernel(SDPBackend.MATH):  # double backward needs the math kernel too
        _, reference = torch.autograd.functional.jvp(field, (x, t), (v, torch.ones_like(t)))
    torch.testing.assert_close(tangent, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "torch"])
def test_jvp_with_either_forward_rules_matches_torch_func_jvp(lean):
    """The UNet's convolutions and group norms under the lean rules or PyTorch's own."""
    net = tiny(num_classes=10, time_embedding="sinusoidal").eval()
    randomize_zero_layers(net)
    x, t, r = inputs()
    labels = torch.tensor([2, 10, 5])
    v = torch.randn_like(x, generator=torch.Generator().manual_seed(5))

    def field(x_, t_):
        return net(x_, t_, r, labels)

    with derivative_context(x.device):
        _, reference = torch.func.jvp(field, (x, t), (v, torch.ones_like(t)))
    torch.testing.assert_close(jvp_derivative(field, x, t, v, lean=lean), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("formulation", ["ddim", "u"])
def test_cumulative_flow_map_loss_backpropagates(formulation):
    net = tiny(num_classes=10, dropout=0.1)
    randomize_zero_layers(net)
    loss_fn = CFMLoss(FlowMap(net, formulation, null_cond=torch.tensor(10)), LossRecipe(cond_dropout=0.2))
    x, _, _ = inputs(batch=4)
    torch.manual_seed(0)
    loss = loss_fn(x, torch.tensor([0, 3, 3, 9]))
    loss.backward()
    assert torch.isfinite(loss)
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["output_conv.weight"].abs().sum() > 0
    assert grads["time_embedding.emb_r.mlp.0.weight"].abs().sum() > 0  # r reaches the loss


def test_warm_start_from_single_time_state():
    net = tiny(num_classes=10)
    randomize_zero_layers(net)
    x, t, _ = inputs()
    labels = torch.tensor([1, 2, 3])
    before = net(x, t, t, labels)
    load_single_time_state_dict(net, net.state_dict())  # its own (two-time) state: a no-op
    assert torch.equal(net(x, t, t, labels), before)

    single = {  # the state of the single-time network that emb_r was copied from
        key.replace("time_embedding.emb_t.", "time_embedding."): value.clone()
        for key, value in net.state_dict().items()
        if not key.startswith("time_embedding.emb_r.")
    }
    with torch.no_grad():  # training moves emb_r away from emb_t ...
        for parameter in net.time_embedding.emb_r.parameters():
            parameter.add_(0.1)
    assert not torch.allclose(net(x, t, t, labels), before)
    load_single_time_state_dict(net, single)  # ... and the warm start restores r = t exactly
    assert torch.equal(net(x, t, t, labels), before)


def test_config_round_trip_through_json():
    config = unet_config("tiny", in_channels=1, resolution=16, num_classes=10)
    assert config["channel_mults"] == [1, 2] and config["num_classes"] == 10
    net = unet_from_config(json.loads(json.dumps(config)))
    assert net.config == config
    reference = tiny(num_classes=10)
    shapes = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in net.state_dict().items()} == shapes
    net.load_state_dict(reference.state_dict())


def test_config_errors():
    with pytest.raises(ValueError, match="unknown UNet preset"):
        unet_config("huge", in_channels=3, resolution=32)
    with pytest.raises(ValueError, match="unknown UNet options"):
        unet_config("tiny", in_channels=3, resolution=32, width=3)
    with pytest.raises(ValueError, match="lacks"):
        unet_config("tiny", in_channels=3)
    with pytest.raises(ValueError, match="not divisible by 4"):
        UNet(in_channels=3, resolution=30, channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match="match no feature resolution"):
        UNet(in_channels=3, resolution=32, attention_resolutions=(12,))
    with pytest.raises(ValueError, match="num_heads"):
        UNet(in_channels=3, resolution=16, base_channels=30, num_heads=4)


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("micro", 0.1e6, 0.4e6), ("tiny", 0.3e6, 2e6), ("small", 4e6, 15e6), ("cifar", 35e6, 55e6)],
)
def test_preset_parameter_counts(preset, low, high):
    with torch.device("meta"):  # built without memory and without running it
        net = UNet(**UNET_PRESETS[preset], in_channels=3, resolution=32, num_classes=10)
    count = sum(p.numel() for p in net.parameters())
    assert low <= count <= high
