"""The 2-D toy distributions (moments against closed forms) and the two-time ``ToyMLP``."""

from __future__ import annotations

import math

import pytest
import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.formulations import FORMULATIONS
from cfm_core.nn import load_single_time_state_dict, time_features_for
from cfm_toy.backbone import ToyMLP
from cfm_toy.config import ToyNetConfig
from cfm_toy.data import (
    TOY_DISTRIBUTIONS,
    gaussian_mixture_components,
    gaussian_mixture_moments,
    sample_toy,
)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def moments(x):
    x = x.double()
    return x.mean(0), torch.cov(x.T)


# ------------------------------------------------------------------------------ toy data --
@pytest.mark.parametrize("name", TOY_DISTRIBUTIONS)
def test_toy_distributions_are_centred_with_unit_mean_variance(name):
    x = sample_toy(name, 100_000, seeded(0))
    assert x.shape == (100_000, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    mean, cov = moments(x)
    assert mean.abs().max() < 0.02
    assert float(cov.trace()) / 2 == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name", TOY_DISTRIBUTIONS)
def test_toy_sampling_is_reproducible(name):
    torch.testing.assert_close(sample_toy(name, 50, seeded(3)), sample_toy(name, 50, seeded(3)))
    assert not torch.equal(sample_toy(name, 50, seeded(3)), sample_toy(name, 50, seeded(4)))


def test_gaussian_mixture_moments_match_samples():
    mean, cov = gaussian_mixture_moments()
    weights, means, covs = gaussian_mixture_components()
    assert mean.shape == (2,) and cov.shape == (2, 2) and weights.sum() == pytest.approx(1.0)
    torch.testing.assert_close(mean, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    assert float(cov.trace()) == pytest.approx(2.0)
    assert abs(float(cov[0, 1])) > 0.1  # a genuinely anisotropic, correlated target
    sample_mean, sample_cov = moments(sample_toy("gaussian_mixture", 200_000, seeded(1)))
    torch.testing.assert_close(sample_mean, mean, rtol=0, atol=0.01)
    torch.testing.assert_close(sample_cov, cov, rtol=0, atol=0.015)


def test_checkerboard_lies_on_dark_squares_with_uniform_marginals():
    x = sample_toy("checkerboard", 20_000, seeded(2)).double() / math.sqrt(0.75)  # back to [-2, 2]
    assert x.abs().max() <= 2.0
    cells = torch.floor(x + 2).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).double()
    dark = counts[counts > 0]
    assert len(dark) == 8 and (dark / dark.mean() - 1).abs().max() < 0.1


def test_eight_gaussians_and_two_moons_closed_form_covariances():
    _, cov = moments(sample_toy("eight_gaussians", 100_000, seeded(5)))
    torch.testing.assert_close(cov, torch.eye(2, dtype=torch.float64), rtol=0, atol=0.02)
    _, cov = moments(sample_toy("two_moons", 100_000, seeded(6)))
    var_x, var_y = 0.75 + 0.01, 9 / 16 - 1 / math.pi + 0.01  # raw moons, noise std 0.1
    scale = 0.5 * (var_x + var_y)
    assert float(cov[0, 0]) == pytest.approx(var_x / scale, abs=0.02)
    assert float(cov[1, 1]) == pytest.approx(var_y / scale, abs=0.02)


def test_sample_toy_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown toy distribution 'swiss'.*checkerboard"):
        sample_toy("swiss", 10)
    for n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            sample_toy("spirals", n)


# ------------------------------------------------------------------------------ ToyMLP --
def perturbed(net, seed=0, std=0.2):
    """Give the zero-initialised layers (output, FiLM modulation) random weights."""
    g = seeded(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def time_grid_points(n, lo, hi, seed):
    """Times on a 2^-12 grid, so the finite-difference offsets below survive the embeddings'
    cast of time to float32 (exactly for the sinusoidal features, to round-off for Fourier)."""
    t = lo + (hi - lo) * torch.rand(n, generator=seeded(seed), dtype=torch.float64)
    return torch.round(t * 4096) / 4096


def test_toy_mlp_starts_at_zero_and_keeps_shapes():
    net = ToyMLP(hidden=32, depth=2, time_dim=16)
    x, t = torch.randn(7, 2), torch.rand(7)
    out = net(x, t, t * 0.5)
    assert out.shape == x.shape and (out == 0).all()
    wide = ToyMLP(dim=5, hidden=16, depth=1, time_dim=8)
    assert wide(torch.randn(3, 5), t[:3], t[:3]).shape == (3, 5)


# The time features see float32 time, so the finite-difference step trades truncation against
# float32 rounding: the sinusoidal products 1000 (t +- k h) are exact for h = 2^-14; the Fourier
# products 2 pi (t +- k h) round, which limits the agreement to about 1e-3.
@pytest.mark.parametrize(
    ("kind", "lo", "hi", "step", "rtol"),
    [("sinusoidal", 0.05, 0.95, 2.0**-14, 1e-4), ("fourier", -1.5, 1.1, 2.0**-12, 3e-3)],
)
def test_toy_mlp_jvp_matches_finite_difference(kind, lo, hi, step, rtol):
    net = ToyMLP(hidden=32, depth=2, time_embedding=kind, time_dim=16, fourier_levels=2)
    net = perturbed(net).double()
    x = torch.randn(6, 2, generator=seeded(1), dtype=torch.float64)
    t, r = time_grid_points(6, lo, hi, 2), time_grid_points(6, lo, hi, 3)
    v = torch.randn(6, 2, generator=seeded(4), dtype=torch.float64)
    dt, dr = torch.ones_like(t), 0.5 * torch.ones_like(r)
    _, tangent = torch.func.jvp(net, (x, t, r), (v, dt, dr))

    def along(s):
        return net(x + s * v, t + s * dt, r + s * dr)

    h = step  # fourth-order central difference
    finite_difference = (along(-2 * h) - 8 * along(-h) + 8 * along(h) - along(2 * h)) / (12 * h)
    scale = float(tangent.detach().abs().max())
    assert scale > 1.0
    torch.testing.assert_close(tangent, finite_difference, rtol=rtol, atol=rtol * scale)
    _, reference = torch.autograd.functional.jvp(net, (x, t, r), (v, dt, dr))
    torch.testing.assert_close(tangent, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["sinusoidal", "fourier"])
def test_toy_mlp_warm_starts_from_a_single_time_checkpoint(kind):
    trained = perturbed(ToyMLP(hidden=32, depth=2, time_embedding=kind, time_dim=16), seed=5)
    # A single-time checkpoint: the time embedding without the emb_t/emb_r split.
    single_state = {
        key.replace("time_embed.emb_t.", "time_embed."): value
        for key, value in trained.state_dict().items()
        if not key.startswith("time_embed.emb_r.")
    }
    trained.time_embed.emb_r.load_state_dict(trained.time_embed.emb_t.state_dict())  # emb(t) only
    fresh = ToyMLP(hidden=32, depth=2, time_embedding=kind, time_dim=16)
    load_single_time_state_dict(fresh, single_state)
    x, t = torch.randn(9, 2), torch.rand(9)
    out = fresh(x, t, t)
    assert out.abs().max() > 1e-3
    torch.testing.assert_close(out, trained(x, t, t), rtol=0, atol=0)
    emb = fresh.time_embed
    torch.testing.assert_close(emb(t, t), emb.emb_t(t), rtol=0, atol=0)  # r = t: single-time net
    assert not torch.allclose(fresh(x, t, 0.3 * t), out)


@pytest.mark.parametrize("formulation", sorted(FORMULATIONS))
def test_cumulative_flow_map_trains_every_toy_mlp_parameter(formulation):
    torch.manual_seed(0)
    kind = time_features_for(formulation, ToyNetConfig().time_embedding)
    net = ToyMLP(hidden=32, depth=2, time_dim=16, time_embedding=kind, fourier_levels=2)
    loss_fn = CFMLoss(FlowMap(net, formulation))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    x = sample_toy("gaussian_mixture", 64, seeded(7))
    for _ in range(3):  # zero-initialised output and FiLM layers: gradients reach all in 3 steps
        optimizer.zero_grad()
        loss = loss_fn(x)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_toy_mlp_vector_condition():
    torch.manual_seed(0)
    net = perturbed(ToyMLP(hidden=16, depth=1, time_dim=8, cond_dim=3))
    x, t, cond = torch.randn(5, 2), torch.rand(5), torch.randn(5, 3)
    assert not torch.allclose(net(x, t, t, cond), net(x, t, t, torch.zeros_like(cond)))
    loss_fn = CFMLoss(FlowMap(net, "u", null_cond=torch.zeros(3)), LossRecipe(cond_dropout=0.2))
    loss_fn(x, cond).backward()
    assert net.cond_embed.weight.grad.abs().sum() > 0


def test_toy_mlp_rejects_bad_input():
    net = ToyMLP(hidden=16, depth=1, time_dim=8)
    t = torch.rand(4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        net(torch.randn(4, 3), t, t)
    with pytest.raises(ValueError, match="unconditional"):
        net(torch.randn(4, 2), t, t, torch.randn(4, 1))
    with pytest.raises(ValueError, match=r"cond must have shape \(4, 3\)"):
        conditional = ToyMLP(hidden=16, depth=1, time_dim=8, cond_dim=3)
        conditional(torch.randn(4, 2), t, t, torch.randn(4, 2))
    with pytest.raises(ValueError, match="unknown time_embedding 'gaussian'"):
        ToyMLP(time_embedding="gaussian")
    with pytest.raises(ValueError, match="depth >= 1"):
        ToyMLP(depth=0)
