"""Shared fixtures of the cfm-core tests."""

from __future__ import annotations

import pytest
import torch
from cfm_core.formulations import FORMULATIONS, get_formulation

ALL_FORMULATIONS = sorted(FORMULATIONS)


@pytest.fixture(params=ALL_FORMULATIONS)
def formulation(request):
    return get_formulation(request.param)


def interior_times(formulation, n: int, seed: int = 0, lo: float = 0.05, hi: float = 0.9):
    """Random ``(t, r)`` pairs in unit time ``[lo, hi]`` (away from the clamped data end), r on the data side."""
    g = torch.Generator().manual_seed(seed)
    u = lo + (hi - lo) * torch.rand(2, n, generator=g, dtype=torch.float64)
    u_t, u_r = u.min(0).values, u.max(0).values
    return formulation.time_from_unit(u_t), formulation.time_from_unit(u_r)


class AffineTimeNet(torch.nn.Module):
    """``net(x, t, r) = a(t, r) * x + b(t, r)``: exact for Gaussian-to-Gaussian transport (diagonal)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(8, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, 2 * dim),
        )

    def forward(self, x, t, r, cond=None):
        feats = torch.stack([t, r, t * r, t**2, r**2, torch.sin(3 * t), torch.sin(3 * r), t - r], dim=1)
        a, b = self.mlp(feats.float()).chunk(2, dim=1)
        return (1 + a) * x + b


class SmoothNet(torch.nn.Module):
    """A small smooth MLP ``net(x, t, r, cond)`` used to compare derivative backends."""

    def __init__(self, dim: int = 3, hidden: int = 32, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(dim + 2, hidden),
            torch.nn.Tanh(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, dim),
        )

    def forward(self, x, t, r, cond=None):
        out = self.body(torch.cat([x, t[:, None].to(x), r[:, None].to(x)], dim=1))
        return out if cond is None else out + cond


def make_loss(net, formulation="u", *, null_cond=None, noise_sampler=None, **recipe):
    """``CFMLoss(FlowMap(net, formulation, null_cond=...), LossRecipe(**recipe))``."""
    from cfm_core import CFMLoss, FlowMap, LossRecipe

    return CFMLoss(FlowMap(net, formulation, null_cond=null_cond), LossRecipe(**recipe), noise_sampler=noise_sampler)


def fix_times(loss_fn, u_t, u_r, inst):
    """Make ``loss_fn`` draw the given unit-time pairs (``inst`` marks the ``r = t`` rows)."""
    from types import SimpleNamespace

    from cfm_core.time_sampling import TimePairs

    rows = torch.arange(inst.shape[0])
    pairs = TimePairs(u_t, u_r, inst, rows[inst], rows[~inst])
    loss_fn.time_sampler = SimpleNamespace(draw=lambda batch, device: pairs)
