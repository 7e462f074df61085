"""SDFDecoder: shapes, queries, conditioning, derivatives and use inside CFMLoss."""

from __future__ import annotations

import pytest
import torch
from cfm_core import CFMLoss, FlowMap
from cfm_sdf.backbone import NULL_SURFACE_VALUE, PRESETS, SDFDecoder
from cfm_sdf.representation import RepresentationConfig, batch, correlated_noise
from torch.nn.attention import SDPBackend, sdpa_kernel

CONFIG = RepresentationConfig(n_context=96, n_query_volume=8, n_query_near=8, n_query_surface=0, n_condition=64)


def randomised(net: SDFDecoder, seed: int = 0) -> SDFDecoder:
    """Perturb every parameter (the zero-initialised gates make a fresh net ignore its inputs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))
    return net


@pytest.fixture(scope="module")
def data():
    return batch(0, 3, 0, "chair", CONFIG)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return randomised(SDFDecoder.from_preset("tiny", stages=2)).eval()


def times(n: int):
    return torch.linspace(-1.0, 1.0, n), torch.linspace(-0.5, 0.5, n)


def test_forward_and_decode_shapes(net, data):
    t, r = times(3)
    cond = data.cond()
    out = net(data.context_values, t, r, cond)
    assert out.shape == (3, 96) and torch.isfinite(out).all()
    queries = torch.rand(3, 37, 3) * 2 - 1
    assert net.decode(data.context_values, t, r, cond, queries).shape == (3, 37)
    torch.testing.assert_close(net.decode(data.context_values, t, r, cond, data.context_points), out)


def test_queries_do_not_interact(net, data):
    t, r = times(3)
    state = net.encode(data.context_values, t, r, data.cond())
    queries = torch.rand(3, 20, 3) * 2 - 1
    together = net.query(state, queries)
    apart = torch.cat([net.query(state, queries[:, :7]), net.query(state, queries[:, 7:])], dim=1)
    torch.testing.assert_close(together, apart)


def test_output_is_equivariant_to_context_order(data):
    torch.manual_seed(1)
    net = randomised(SDFDecoder.from_preset("tiny")).eval()  # one stage: order cannot matter
    t, r = times(3)
    perm = torch.randperm(96)
    out = net(data.context_values, t, r, data.cond())
    cond = {"context_points": data.context_points[:, perm], "surface_points": data.surface_points}
    torch.testing.assert_close(net(data.context_values[:, perm], t, r, cond), out[:, perm])


def test_condition_null_rows_and_unconditional_mode(net, data):
    t, r = times(3)
    x = data.context_values
    conditional = net(x, t, r, data.cond())
    unconditional = net(x, t, r, data.cond(conditional=False))
    assert not torch.allclose(conditional, unconditional)
    surface = data.surface_points.clone()
    surface[1] = NULL_SURFACE_VALUE
    mixed = net(x, t, r, {"context_points": data.context_points, "surface_points": surface})
    torch.testing.assert_close(mixed[1], unconditional[1])
    torch.testing.assert_close(mixed[[0, 2]], conditional[[0, 2]])
    fewer = {"context_points": data.context_points, "surface_points": data.surface_points[:, :10]}
    assert net(x, t, r, fewer).shape == (3, 96)


def test_jvp_matches_finite_differences(net, data):
    t, r = times(3)
    x, cond = data.context_values, data.cond()
    tangent = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))

    def field(x_, t_):
        return net(x_, t_, r, cond)

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        _, jvp = torch.func.jvp(field, (x, t), (tangent, torch.ones_like(t)))
        eps = 3e-4  # the Fourier time features oscillate quickly: a small central step
        fd = (field(x + eps * tangent, t + eps) - field(x - eps * tangent, t - eps)) / (2 * eps)
    assert (jvp - fd).norm() / fd.norm() < 0.03


@pytest.mark.parametrize("formulation", ["edm", "x1"])
def test_cumulative_flow_map_loss_backpropagates(formulation, data):
    torch.manual_seed(0)
    features = "fourier" if formulation == "edm" else "sinusoidal"
    net = SDFDecoder.from_preset("tiny", time_features=features)
    loss_fn = CFMLoss(FlowMap(net, formulation))
    surface = data.surface_points.clone()
    surface[2] = NULL_SURFACE_VALUE  # a dropped condition row
    cond = {"context_points": data.context_points, "surface_points": surface}
    noise = correlated_noise(data.context_points, 8, torch.Generator().manual_seed(0))
    loss = loss_fn(data.context_values, cond, noise=noise)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert net.head.out.weight.grad.abs().sum() > 0
    samples = loss_fn.model.sample(noise, steps=2, cond=cond)
    assert samples.shape == data.context_values.shape and torch.isfinite(samples).all()


def test_config_round_trip_and_presets():
    net = SDFDecoder.from_preset("tiny", time_features="sinusoidal")
    clone = SDFDecoder.from_config(net.config())
    assert clone.config() == net.config()
    clone.load_state_dict(net.state_dict())
    assert set(PRESETS) == {"tiny", "small", "base"}
    with pytest.raises(ValueError, match="unknown keys \\['depth'\\]"):
        SDFDecoder.from_config({**net.config(), "depth": 3})
    with pytest.raises(ValueError, match="unknown SDFDecoder preset"):
        SDFDecoder.from_preset("huge")
    with pytest.raises(ValueError, match="not divisible by heads"):
        SDFDecoder(width=30, heads=4)
    with pytest.raises(ValueError, match="time_features"):
        SDFDecoder(time_features="learned")


def test_bad_inputs_name_the_problem(net, data):
    t, r = times(3)
    x = data.context_values
    with pytest.raises(ValueError, match="needs cond"):
        net(x, t, r, data.context_points)
    with pytest.raises(ValueError, match="do not match x"):
        net(x[:, :50], t, r, data.cond())
    with pytest.raises(ValueError, match="unknown cond keys"):
        net(x, t, r, {**data.cond(), "class": torch.zeros(3)})
    surface = data.surface_points.clone()
    surface[0, 3] = float("nan")
    with pytest.raises(ValueError, match="all finite or all NaN"):
        net(x, t, r, {"context_points": data.context_points, "surface_points": surface})
    with pytest.raises(ValueError, match="t must be"):
        net(x, t[:2], r, data.cond())
