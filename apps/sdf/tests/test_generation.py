"""Generating fields: the final-field and ride-along paths agree with each other and with the
core's samplers; the null condition and condition dropout."""

from __future__ import annotations

import pytest
import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.formulations import get_formulation
from cfm_sdf import generation
from cfm_sdf.backbone import SDFDecoder
from cfm_sdf.generation import field_is_network_output, generate_fields
from cfm_sdf.model import (
    EXTRA_POINTS_KEY,
    NULL_CONDITION,
    CorrelatedNoiseSampler,
    FieldNet,
)
from cfm_sdf.representation import RepresentationConfig, batch, correlated_noise

CONFIG = RepresentationConfig(n_context=64, n_query_volume=16, n_query_near=16, n_query_surface=0)
NOISE_GRID = 6


def model(formulation: str | dict, null_cond=None) -> FlowMap:
    """A CFM around a tiny decoder with perturbed weights (fresh gates output zeros)."""
    torch.manual_seed(0)
    features = "fourier" if formulation == "edm" else "sinusoidal"
    net = SDFDecoder.from_preset("tiny", time_features=features)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))
    return FlowMap(FieldNet(net), formulation, null_cond=null_cond)


@pytest.fixture(scope="module")
def data():
    return batch(0, 2, 0, "stool", CONFIG)


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("x1", {}, True),
        ("ddim", {}, True),
        ("ddim", {"prediction": "epsilon"}, False),  # x0_hat = (x - s eps_hat)/a mixes the state in
        ("edm", {}, False),
        ("u", {}, False),
    ],
)
def test_field_is_network_output(name, options, expected):
    assert field_is_network_output(get_formulation(name, **options)) is expected


def generate(m, data, extra, steps, sampler, seed=3, guidance=1.0):
    return generate_fields(
        m, data.cond(), extra, steps, sampler, NOISE_GRID, torch.Generator().manual_seed(seed), guidance
    )


@pytest.mark.parametrize("sampler, steps", [("cumulative", 1), ("cumulative", 3), ("euler", 4), ("heun", 3)])
def test_final_field_path_equals_riding_along(data, monkeypatch, sampler, steps):
    m = model("x1")
    fast = generate(m, data, data.query_points, steps, sampler)
    monkeypatch.setattr(generation, "field_is_network_output", lambda formulation: False)
    slow = generate(m, data, data.query_points, steps, sampler)
    assert fast.nfe == slow.nfe
    torch.testing.assert_close(fast.context_values, slow.context_values, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.extra_values, slow.extra_values, atol=1e-5, rtol=0)
    assert fast.extra_values.abs().max() > 0.01  # not trivially zero


@pytest.mark.parametrize("formulation", ["x1", "edm", {"name": "ddim", "prediction": "epsilon"}], ids=str)
def test_context_values_match_the_core_sampler_and_extra_points_agree(data, formulation):
    m = model(formulation)
    # the extra points are the context points themselves: their values must agree
    fields = generate(m, data, data.context_points, 2, "cumulative", seed=5)
    noise = correlated_noise(data.context_points, NOISE_GRID, torch.Generator().manual_seed(5))
    direct = m.sample(noise, steps=2, cond=data.cond())
    torch.testing.assert_close(fields.context_values, direct, atol=1e-5, rtol=0)
    torch.testing.assert_close(fields.extra_values, direct, atol=1e-5, rtol=0)
    assert fields.nfe == 2 and fields.seconds > 0


@pytest.mark.parametrize("sampler, steps", [("cumulative", 1), ("cumulative", 3), ("euler", 2)])
def test_guided_final_field_mixes_both_calls(data, monkeypatch, sampler, steps):
    m = model("x1", null_cond=NULL_CONDITION)
    fast = generate(m, data, data.query_points, steps, sampler, guidance=2.5)
    plain = generate(m, data, data.query_points, steps, sampler)
    assert fast.nfe == 2 * plain.nfe
    assert (fast.extra_values - plain.extra_values).abs().max() > 1e-3  # guidance acts
    monkeypatch.setattr(generation, "field_is_network_output", lambda formulation: False)
    slow = generate(m, data, data.query_points, steps, sampler, guidance=2.5)
    torch.testing.assert_close(fast.context_values, slow.context_values, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.extra_values, slow.extra_values, atol=1e-5, rtol=0)


def test_the_null_condition_is_the_unconditional_decoder(data):
    loss_fn = CFMLoss(model("x1", null_cond=NULL_CONDITION), LossRecipe(cond_dropout=0.5)).train()
    m = loss_fn.model
    rows = 400
    cond = {
        key: value[torch.arange(rows) % 2]
        for key, value in {**data.cond(), EXTRA_POINTS_KEY: data.query_points}.items()
    }
    torch.manual_seed(2)
    dropped = loss_fn._drop_condition(cond, rows, torch.device("cpu"))
    nulled = torch.isnan(dropped["surface_points"]).all(dim=2).all(dim=1)
    assert 0.4 < nulled.float().mean() < 0.6  # about half of the rows
    assert not torch.isnan(dropped["surface_points"][~nulled]).any()
    torch.testing.assert_close(dropped["surface_points"][~nulled], cond["surface_points"][~nulled])
    for key in ("context_points", EXTRA_POINTS_KEY):
        assert torch.equal(dropped[key], cond[key])  # inputs, not a condition: kept
    net = m.net.eval()
    first = torch.tensor([int(nulled.nonzero()[0]), int((~nulled).nonzero()[0])])
    x = data.context_values[first % 2]
    t, r = torch.tensor([0.3, 0.6]), torch.tensor([0.8, 0.9])
    with torch.no_grad():
        mixed = net(x, t, r, {k: v[first] for k, v in dropped.items()})
        free = net(x, t, r, {"context_points": cond["context_points"][first]})
        full = net(x, t, r, {k: v[first] for k, v in cond.items()})
    torch.testing.assert_close(mixed[0], free[0], atol=1e-5, rtol=0)  # dropped = unconditional
    torch.testing.assert_close(mixed[1], full[1], atol=1e-5, rtol=0)  # kept = conditional
    assert (free[1] - full[1]).abs().max() > 1e-3  # the condition matters


def test_training_with_condition_dropout_has_finite_gradients(data):
    m = CFMLoss(
        model("x1", null_cond=NULL_CONDITION),
        LossRecipe(cond_dropout=0.5),
        noise_sampler=CorrelatedNoiseSampler(NOISE_GRID),
    ).train()
    torch.manual_seed(0)
    loss = m(data.context_values, data.cond())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_generate_fields_rejects_bad_inputs(data):
    m = model("x1")
    with pytest.raises(ValueError, match="extra_points must be"):
        generate(m, data, data.query_points[:1], 1, "cumulative")
    with pytest.raises(ValueError, match="unknown sampler"):
        generate(m, data, data.query_points, 1, "rk4")
    with pytest.raises(ValueError, match="null condition"):
        generate(m, data, data.query_points, 1, "cumulative", guidance=2.0)


def test_field_net_reads_extra_points_from_the_context_only(data):
    net = model("x1").net.eval()
    t, r = torch.tensor([0.2, 0.7]), torch.tensor([0.9, 0.8])
    extra = data.query_points
    cond = {**data.cond(), EXTRA_POINTS_KEY: extra}
    state = torch.cat([data.context_values, data.query_values], dim=1)
    with torch.no_grad():
        out = net(state, t, r, cond)
        moved = net(torch.cat([data.context_values, -data.query_values], dim=1), t, r, cond)
        context_only = net(data.context_values, t, r, cond)
        decoded = net.decoder.decode(data.context_values, t, r, data.cond(), extra)
    n = data.context_values.shape[1]
    torch.testing.assert_close(out, moved)  # the extra values are never read
    torch.testing.assert_close(out[:, :n], context_only)
    torch.testing.assert_close(out[:, n:], decoded)
    with pytest.raises(ValueError, match="need cond\\['extra_points'\\]"):
        net(state, t, r, data.cond())
