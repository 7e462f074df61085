"""FlowMap: NFE counts, classifier-free guidance, eval mode in sampling, user time grids."""

from __future__ import annotations

import pytest
import torch
from cfm_core import FlowMap

from .conftest import SmoothNet


class CountingNet(SmoothNet):
    def __init__(self):
        super().__init__()
        self.rows = 0

    def forward(self, x, t, r, cond=None):
        self.rows += x.shape[0]
        return super().forward(x, t, r, None if cond is None else cond.float()[:, None].expand_as(x))


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7])
def test_nfe_counts_are_exact(formulation, steps):
    net = CountingNet()
    model = FlowMap(net, formulation)
    noise = torch.randn(5, 3)
    for call, expected in [
        (lambda: model.sample(noise, steps=steps, return_nfe=True), steps),
        (lambda: model.sample(noise, steps=steps, sampler="euler", return_nfe=True), steps),
        (lambda: model.sample(noise, steps=steps, sampler="ddim", return_nfe=True), steps),
        (lambda: model.sample(noise, steps=steps, sampler="heun", return_nfe=True), 2 * steps - 1),
    ]:
        net.rows = 0
        _, nfe = call()
        assert nfe == expected
        assert net.rows == expected * 5  # NFE counts per-sample network evaluations


def test_classifier_free_guidance_combines_fields():
    net = CountingNet()
    model = FlowMap(net, "u", null_cond=torch.tensor(0))
    noise, cond = torch.randn(6, 3), torch.randint(1, 4, (6,))
    out, nfe = model.sample(noise, steps=2, cond=cond, guidance=3.0, return_nfe=True)
    assert nfe == 4 and net.rows == 4 * 6
    # by hand
    grid = model.formulation.time_grid(2)
    x = noise.clone()
    for t, r in zip(grid[:-1], grid[1:], strict=True):
        tb, rb = t.expand(6), r.expand(6)
        m_c, m_u = model.field(x, tb, rb, cond), model.field(x, tb, rb, torch.zeros_like(cond))
        x = model.formulation.update(m_u + 3.0 * (m_c - m_u), x, tb, rb)
    torch.testing.assert_close(out, x)
    with pytest.raises(ValueError, match="guidance != 1 needs a condition"):
        model.sample(noise, guidance=2.0)


def test_sampling_restores_training_mode():
    model = FlowMap(SmoothNet(dropout=0.5), "u").train()
    noise = torch.randn(4, 3)
    a, b = model.sample(noise, steps=2), model.sample(noise, steps=2)
    torch.testing.assert_close(a, b)  # eval mode inside: no dropout
    assert model.training


def test_user_time_grid_and_its_errors(formulation):
    model = FlowMap(SmoothNet(), formulation)
    grid = formulation.time_grid(3).tolist()
    x, nfe = model.sample(torch.randn(4, 3), steps=grid, return_nfe=True)
    assert nfe == 3 and x.shape == (4, 3)
    with pytest.raises(ValueError, match="r must lie between t and the data end"):
        model.sample(torch.randn(4, 3), steps=grid[::-1])
    with pytest.raises(ValueError, match="outside the formulation's range"):
        model.sample(torch.randn(4, 3), steps=[grid[0] + 100 * (grid[0] - grid[-1]), grid[-1]])


@pytest.mark.parametrize(("sampler", "grid_of"), [("cumulative", "jump_grid"), ("euler", "time_grid")])
def test_an_int_step_count_samples_on_the_samplers_default_grid(sampler, grid_of):
    model = FlowMap(SmoothNet(), "edm")
    noise = torch.randn(5, 3)
    grid = getattr(model.formulation, grid_of)(3)
    assert not torch.equal(model.formulation.jump_grid(3), model.formulation.time_grid(3))
    torch.testing.assert_close(
        model.sample(noise, 3, sampler=sampler), model.sample(noise, grid.tolist(), sampler=sampler)
    )
