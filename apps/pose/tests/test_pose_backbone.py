"""The pose backbone under the FlowMap contract."""

import pytest
import torch
from cfm_core import CFMLoss, FlowMap
from cfm_pose.backbone import PointSetEncoder, PoseMLP

SMALL = {
    "hidden": 32,
    "depth": 2,
    "time_dim": 16,
    "code_dim": 24,
    "encoder_hidden": 16,
    "encoder_depth": 2,
    "fourier_levels": 3,
}


def _inputs(mode, batch=3, points=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    cond = torch.rand(batch, points, 3, generator=g)
    x = torch.randn(batch, 12, generator=g) if mode == "vector" else torch.randn(batch, points, 3, generator=g)
    t, r = torch.rand(batch, generator=g), torch.rand(batch, generator=g)
    return x, t, r, cond


def _net(mode, **extra):
    torch.manual_seed(0)
    return PoseMLP(data_dim=12 if mode == "vector" else 3, mode=mode, **SMALL, **extra)


@pytest.mark.parametrize("mode", ["vector", "per_point"])
def test_output_shapes_and_config_round_trip(mode):
    net = _net(mode)
    x, t, r, cond = _inputs(mode)
    out = net(x, t, r, cond)
    assert out.shape == x.shape
    copy = PoseMLP.from_config(net.config())
    copy.load_state_dict(net.state_dict())
    assert torch.equal(copy(x, t, r, cond), out)
    with pytest.raises(ValueError, match="unknown PoseMLP config keys"):
        PoseMLP.from_config({**net.config(), "width": 3})


def test_encoder_is_order_invariant_and_per_point_mode_is_equivariant():
    x, t, r, cond = _inputs("per_point")
    encoder = PointSetEncoder(code_dim=8, hidden=16, depth=2)
    perm = torch.randperm(cond.shape[1], generator=torch.Generator().manual_seed(1))
    assert torch.allclose(encoder(cond[:, perm]), encoder(cond), atol=1e-6)
    net = _net("per_point")
    assert torch.allclose(net(x[:, perm], t, r, cond[:, perm]), net(x, t, r, cond)[:, perm], atol=1e-5)
    assert not torch.allclose(net(x, t, r, cond), net(x, t, t, cond))


@pytest.mark.parametrize("mode", ["vector", "per_point"])
def test_jvp_matches_central_differences(mode):
    net = _net(mode)
    x, t, r, cond = _inputs(mode)
    g = torch.Generator().manual_seed(2)
    vx, vt, vr = torch.randn(x.shape, generator=g), 0.5 * torch.ones(3), -0.5 * torch.ones(3)

    def f(x_, t_, r_):
        return net(x_, t_, r_, cond)

    _, jvp = torch.func.jvp(f, (x, t, r), (vx, vt, vr))
    eps = 2e-3
    fd = (f(x + eps * vx, t + eps * vt, r + eps * vr) - f(x - eps * vx, t - eps * vt, r - eps * vr)) / (2 * eps)
    assert (jvp - fd).abs().max() / jvp.abs().max() < 2e-2
    other = (f(x + eps * vx, t, r) - f(x - eps * vx, t, r)) / (2 * eps)
    assert (jvp - other).abs().max() / jvp.abs().max() > 1e-2


@pytest.mark.parametrize("mode", ["vector", "per_point"])
def test_cumulative_flow_map_trains_and_samples(mode):
    net = _net(mode)
    model = FlowMap(net, "ddim")
    x, _, _, cond = _inputs(mode, batch=4)
    loss = CFMLoss(model)(x, cond)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in net.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        sample = model.sample(torch.randn_like(x), steps=2, cond=cond)
    assert sample.shape == x.shape and torch.isfinite(sample).all()


def test_bad_configs_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="unknown PoseMLP mode"):
        PoseMLP(mode="graph")
    with pytest.raises(ValueError, match="data_dim must be 3"):
        PoseMLP(mode="per_point", data_dim=6)
    with pytest.raises(ValueError, match="unknown time features"):
        PoseMLP(time_features="cosine")
    net = _net("vector")
    x, t, r, cond = _inputs("vector")
    with pytest.raises(ValueError, match=r"x must have shape \(B, 12\)"):
        net(x[:, :6], t, r, cond)
    with pytest.raises(ValueError, match="cond must be the input points"):
        net(x, t, r, None)
    with pytest.raises(ValueError, match="must match its paired points"):
        _net("per_point")(torch.zeros(3, 5, 3), t, r, cond)
    assert _net("vector", time_features="fourier")(x, t, r, cond).shape == x.shape
