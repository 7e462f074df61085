"""jump_gap: zero for the exact Gaussian flow map, the size of a planted error otherwise."""

from __future__ import annotations

import pytest
import torch
from cfm_core import FlowMap
from cfm_core.diagnostics import jump_gap
from cfm_core.oracle import GaussianOracle

from .conftest import SmoothNet

MEAN = torch.tensor([0.5, -1.0])
COV = torch.tensor([[1.0, 0.3], [0.3, 0.5]])


def _oracle_model(formulation, offset: float = 0.0) -> FlowMap:
    """A model whose field is the exact one, plus ``offset`` on every jump with r != t."""
    oracle = GaussianOracle(formulation, MEAN, COV)
    model = FlowMap(SmoothNet(dim=2), formulation)

    def field(x, t, r, cond=None):
        if torch.equal(t, r):
            return oracle.instantaneous_field(x.double(), t.double()).float()
        return oracle.cumulative_field(x.double(), t.double(), r.double()).float() + offset

    model.field = field
    return model


def test_the_exact_flow_map_has_no_gap(formulation):
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    gaps = jump_gap(_oracle_model(formulation), noise, starts=(0.0, 0.5, 0.75), steps=64)
    assert [g.start for g in gaps] == [0.0, 0.5, 0.75]
    for g in gaps:
        assert g.gap < 5e-3, g
        assert 0.5 < g.spread < 3.0, g  # the data's scale (traces of COV: 1.5)


def test_a_planted_jump_error_shows_at_its_size(formulation):
    """An offset of 0.2 on every coordinate of m moves the one-jump endpoint by P(t, data) * 0.2 *
    sqrt(2); the ODE (r = t) is untouched."""
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    model = _oracle_model(formulation, offset=0.2)
    (gap,) = jump_gap(model, noise, starts=(0.0,), steps=32)
    f = formulation
    t, r = torch.tensor([f.t_noise]), torch.tensor([f.t_data])
    p = f.update(torch.ones(1, 2), torch.zeros(1, 2), t, r)[0, 0]
    assert gap.gap == pytest.approx(float(p.abs()) * 0.2 * 2**0.5, rel=0.05)


def test_arguments_are_checked_and_training_mode_restored(formulation):
    model = _oracle_model(formulation)
    noise = torch.randn(16, 2)
    with pytest.raises(ValueError, match="ODE method"):
        jump_gap(model, noise, method="rk4")
    with pytest.raises(ValueError, match="starts"):
        jump_gap(model, noise, starts=(1.0,))
    with pytest.raises(ValueError, match="steps"):
        jump_gap(model, noise, steps=0)
    model.train()
    jump_gap(model, noise, starts=(0.5,), steps=4)
    assert model.training
