"""The per-point MLP and the point transformer: shapes, derivatives, symmetry, CFM integration."""

from __future__ import annotations

import pytest
import torch
from cfm_core import CFMLoss, FlowMap
from cfm_core.derivatives import derivative_context
from cfm_geometry.backbones import (
    PointMLP,
    PointTransformer,
    backbone_from_config,
    point_mlp_from_config,
    point_transformer_from_config,
)


def randomised(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``net`` with its zero-initialised parameters (gains, output, adaLN) set to random values,
    so that every path (including the time embedding) affects the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            if (parameter == 0).all():
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return net.eval()


def times(batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """EDM network times ``ln(sigma)/4`` for sigma in roughly [0.002, 80]."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, generator=generator) * 2.6 - 1.5, torch.rand(batch, generator=generator) * 2.6 - 1.5)


CASES = {
    "mlp": (lambda **kw: PointMLP(hidden=128, depth=3, **kw), (32, 3)),
    "mlp_sets": (lambda **kw: PointMLP(hidden=128, depth=3, **kw), (4, 8, 3)),
    "transformer": (lambda **kw: PointTransformer(width=64, depth=2, heads=4, **kw), (4, 8, 3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_shape_and_zero_init(case):
    make, shape = CASES[case]
    torch.manual_seed(0)
    net = make(channels=6)
    x = torch.randn(*shape[:-1], 6)
    t, r = times(shape[0])
    out = net(x, t, r)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))  # zero-initialised
    out = randomised(net)(x, t, r)
    assert out.shape == x.shape and out.abs().min() > 0
    assert not torch.allclose(net(x, t, r), net(x, t, t))  # the second time matters


@pytest.mark.parametrize("case", sorted(CASES))
def test_jvp_matches_finite_differences(case):
    make, shape = CASES[case]
    torch.manual_seed(0)
    net = randomised(make(fourier_levels=4))
    x, v = torch.randn(shape), torch.randn(shape)
    t, r = times(shape[0])

    def field(x_, t_):
        return net(x_, t_, r)

    eps = 1e-3
    with derivative_context(x.device):
        _, tangent = torch.func.jvp(field, (x, t), (v, torch.ones_like(t)))
        central = (field(x + eps * v, t + eps) - field(x - eps * v, t - eps)) / (2 * eps)
    assert tangent.abs().max() > 0.1
    assert (tangent - central).abs().max() < 1e-2 * tangent.abs().max()


@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_times_gives_the_per_row_outputs(case):
    make, shape = CASES[case]
    torch.manual_seed(0)
    net = randomised(make())
    x = torch.randn(shape)
    t, r = torch.full((shape[0],), 0.7), torch.full((shape[0],), -1.2)
    per_row = net(x, t, r)
    with net.shared_times():
        shared = net(x, t, r)
        with pytest.raises(ValueError, match="different times"):
            net(x, times(shape[0])[0], r)
    torch.testing.assert_close(shared, per_row, rtol=1e-5, atol=1e-5)
    assert not net._shared_times  # the context restores the per-row path


def test_point_mlp_treats_points_independently():
    net = randomised(PointMLP(hidden=64, depth=2))
    x = torch.randn(3, 5, 3)
    t, r = times(3)
    per_set = net(x, t, r)
    per_point = net(x.reshape(15, 3), t.repeat_interleave(5), r.repeat_interleave(5))
    torch.testing.assert_close(per_set, per_point.reshape(3, 5, 3))
    changed = x.clone()
    changed[:, 1:] += 1.0
    torch.testing.assert_close(net(changed, t, r)[:, 0], per_set[:, 0])


def test_point_transformer_is_permutation_equivariant_and_mixes_points():
    net = randomised(PointTransformer(width=32, depth=2, heads=4))
    x = torch.randn(2, 16, 3)
    t, r = times(2)
    permutation = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    out = net(x, t, r)
    torch.testing.assert_close(net(x[:, permutation], t, r), out[:, permutation])
    changed = x.clone()
    changed[:, 1:] += 1.0
    assert not torch.allclose(net(changed, t, r)[:, 0], out[:, 0])  # points interact


@pytest.mark.parametrize("case", ["mlp", "transformer"])
def test_cumulative_flow_map_trains_and_samples(case):
    make, shape = CASES[case]
    torch.manual_seed(0)
    net = make()
    model = FlowMap(net, "edm")
    x = torch.randn(shape)
    loss = CFMLoss(model)(x)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert net.output.weight.grad.abs().sum() > 0
    samples, nfe = model.sample(torch.randn(shape), steps=2, return_nfe=True)
    assert samples.shape == shape and torch.isfinite(samples).all() and nfe == 2


def test_config_round_trip_and_sizes():
    torch.manual_seed(0)
    for make, from_config in (
        (lambda: PointMLP(hidden=32, depth=2), point_mlp_from_config),
        (lambda: PointTransformer(width=32, depth=1, heads=2), point_transformer_from_config),
    ):
        net = randomised(make())
        rebuilt = from_config(net.config())
        rebuilt.load_state_dict(net.state_dict())
        again = backbone_from_config(net.config())
        assert type(again) is type(net) and again.config() == net.config()
        x = torch.randn(2, 4, 3)
        t, r = times(2)
        torch.testing.assert_close(rebuilt.eval()(x, t, r), net(x, t, r))
    gd = PointMLP()
    assert gd.point_embedding.out_features == 15  # xyz + sin/cos at 2 frequencies per axis
    assert PointMLP(fourier_levels=8).point_embedding.out_features == 51  # GD
    assert len(gd.blocks) == 6 and gd.input.out_features == 512


def test_bad_configs_and_conditions():
    with pytest.raises(ValueError, match=r"unknown point_mlp config keys \['width'\]"):
        point_mlp_from_config({"width": 3})
    with pytest.raises(ValueError, match="not 'point_transformer'"):
        point_transformer_from_config({"kind": "point_mlp"})
    with pytest.raises(ValueError, match="divisible by heads"):
        PointTransformer(width=30, heads=4)
    net = PointMLP(hidden=16, depth=1)
    x, (t, r) = torch.randn(4, 3), times(4)
    with pytest.raises(ValueError, match="unconditional"):
        net(x, t, r, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        net(x, t[:2], r)
    with pytest.raises(ValueError, match="expected 3 channels"):
        net(torch.randn(4, 6), t, r)
