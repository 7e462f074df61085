"""Training with the network's own time features: DDPM-scale sinusoids, Fourier scale 16, low scale.

A user's network arrives with its time embedding. DDPM's sinusoids at scale 1000 and NCSN++'s
Fourier features at scale 16 make the network oscillate fast in ``t``; the exact time derivative
in the cumulative target (the JVP) then feeds those oscillations back, and the one-step map drifts
far from the data. The default recipe (the finite-difference derivative) damps them. Each training
test compares the trained one-step map with the exact affine flow map of Gaussian-to-Gaussian
transport (:class:`~cfm_core.oracle.GaussianOracle`): mean absolute error over fixed noise, data
``N((1, -0.5), diag(0.25, 2.25))``, in data units. The tolerances are stated per case from
measurement (300 steps); the JVP control at scale 1000 misses them by 4-9x (u, x1, edm), so the tests can fail.
"""

from __future__ import annotations

import pytest
import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.derivatives import finite_difference_derivative, jvp_derivative
from cfm_core.formulations import get_formulation
from cfm_core.nn import FourierTimeEmbedding, SinusoidalTimeEmbedding
from cfm_core.oracle import GaussianOracle
from torch import nn

MEAN = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 1.5])
STEPS = 300
FORMULATION_OPTIONS = {"edm": {"sigma_max": 10.0, "sigma_data": 1.0}}
TIME_FEATURES = {
    "ddpm_sinusoidal_1000": lambda: SinusoidalTimeEmbedding(32, scale=1000.0),
    "fourier_16": lambda: FourierTimeEmbedding(32, scale=16.0),
    "sinusoidal_10": lambda: SinusoidalTimeEmbedding(32, scale=10.0),
}


class AffineTimeNet(nn.Module):
    """``net(x, t, r) = (1 + a(t, r)) x + b(t, r)``: an MLP on the time features of ``t`` and ``r``.

    Affine in ``x``, so the exact flow map is representable and the error left is the objective's.
    """

    def __init__(self, features: str, hidden: int = 64) -> None:
        super().__init__()
        self.emb_t, self.emb_r = TIME_FEATURES[features](), TIME_FEATURES[features]()
        self.mlp = nn.Sequential(
            nn.Linear(64, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 4)
        )

    def forward(self, x, t, r, cond=None):
        a, b = self.mlp(torch.cat([self.emb_t(t), self.emb_r(r)], 1)).chunk(2, 1)
        return (1 + a) * x + b


def _one_step_error(formulation: str, features: str, recipe: LossRecipe) -> float:
    """Mean absolute error of the trained one-step map against the exact flow map."""
    torch.manual_seed(0)
    model = FlowMap(AffineTimeNet(features), formulation, formulation_options=FORMULATION_OPTIONS.get(formulation))
    loss_fn = CFMLoss(model, recipe)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    for _ in range(STEPS):
        loss = loss_fn(MEAN + STD * torch.randn(256, 2))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
    f = model.formulation
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    start, end = torch.full((4000,), f.t_noise), torch.full((4000,), f.t_data)
    exact = GaussianOracle(f, MEAN, torch.diag(STD**2)).flow_map(f.prior(noise), start, end)
    return (model.sample(noise, steps=1) - exact).abs().mean().item()


# (formulation, time features) -> tolerance on the one-step map's mean absolute error. Measured at
# these settings: 0.12 / 0.23 / 0.16 / 0.50 (u / x1 / edm / ddim) at scale 1000, 0.12 / 0.31 (u / x1)
# with Fourier scale 16, 0.11 / 0.18 (u / edm) at scale 10; the JVP at scale 1000: 1.8 / 1.4 / 1.8 /
# 0.60. DDIM converges slowest on this budget (its adaptive weight already keeps the JVP bounded).
# Low scales for x1 and ddim: test_gaussian_training.py. EDM and DDIM with Fourier scale 16 stay at
# 0.61 and 0.49 on this budget and are not asserted.
TOLERANCES = {
    ("u", "ddpm_sinusoidal_1000"): 0.2,
    ("x1", "ddpm_sinusoidal_1000"): 0.3,
    ("edm", "ddpm_sinusoidal_1000"): 0.3,
    ("ddim", "ddpm_sinusoidal_1000"): 0.6,
    ("u", "fourier_16"): 0.25,
    ("x1", "fourier_16"): 0.4,
    ("u", "sinusoidal_10"): 0.2,
    ("edm", "sinusoidal_10"): 0.3,
}


@pytest.mark.parametrize(("formulation", "features"), sorted(TOLERANCES))
def test_default_recipe_trains_the_one_step_map_with_the_networks_time_features(formulation, features):
    error = _one_step_error(formulation, features, LossRecipe())
    assert error < TOLERANCES[formulation, features], error


@pytest.mark.parametrize("formulation", ["u", "x1", "edm"])
def test_exact_derivative_misses_the_tolerance_with_ddpm_scale_features(formulation):
    """The negative control: the exact derivative (the JVP, as in the paper) at scale 1000, same budget."""
    error = _one_step_error(formulation, "ddpm_sinusoidal_1000", LossRecipe(derivative="jvp"))
    assert error > TOLERANCES[formulation, "ddpm_sinusoidal_1000"], error


@pytest.mark.parametrize(("central", "order"), [(False, 1), (True, 2)])
@pytest.mark.parametrize("name", ["u", "x1", "edm", "ddim"])
def test_finite_difference_target_converges_to_the_exact_target_at_the_oracle_flow_map(name, central, order):
    """At the exact cumulative field the finite-difference target differs from the exact target
    (the field itself) by a term of the scheme's order: halving the step about halves it (forward)
    or quarters it (central)."""
    f = get_formulation(name)
    oracle = GaussianOracle(f, MEAN, torch.diag(STD**2))
    gen = torch.Generator().manual_seed(0)
    n = 256
    u_t = 0.1 + 0.5 * torch.rand(n, generator=gen, dtype=torch.float64)
    t = f.time_from_unit(u_t)
    r = f.time_from_unit(u_t + 0.3)
    x = oracle.sample_marginal(torch.randn(n, 2, generator=gen, dtype=torch.float64), t)
    m_inst = oracle.instantaneous_field(x, t)  # the marginal field: the exact target is the fixed point

    def field(x_, t_):
        return oracle.cumulative_field(x_.double(), t_.double(), r)

    m = field(x, t)
    errors = []
    for step in (0.02, 0.01):
        dm = finite_difference_derivative(field, x, t, r, m_inst, m, f, step, central=central).double()
        errors.append((f.field_target(m_inst, x, t, r, dm) - m).abs().max().item())
    jvp_dm = jvp_derivative(field, x, t, f.velocity(m_inst, x, t)).double()
    assert (f.field_target(m_inst, x, t, r, jvp_dm) - m).abs().max().item() < 1e-3
    assert 0.8 * 2**order < errors[0] / errors[1] < 1.2 * 2**order, errors


@pytest.mark.parametrize(("central", "bound"), [(False, 2.0), (True, 1.0)])
def test_finite_difference_bounds_the_derivative_of_a_fast_time_oscillation(central, bound):
    """For ``m = sin(w t)`` the exact derivative has size ``w``; the forward secant stays below
    ``2/step``, the central one (twice as long) below ``1/step``."""
    f = get_formulation("u")
    w, step = 1000.0, 0.05
    t = torch.linspace(0.1, 0.5, 200)
    r = torch.full_like(t, 0.9)
    x = torch.zeros(200, 1)

    def field(x_, t_):
        return torch.sin(w * t_)[:, None] + 0 * x_

    m = field(x, t)
    fd = finite_difference_derivative(field, x, t, r, torch.zeros_like(x), m, f, step, central=central)
    exact = jvp_derivative(field, x, t, torch.zeros_like(x))
    assert exact.abs().max() > 0.9 * w
    assert fd.abs().max() <= bound / step + 1e-3


@pytest.mark.parametrize("name", ["u", "edm"])
def test_central_difference_falls_back_to_the_forward_secant_at_the_noise_end(name):
    """No time lies before the noise end: there the central secant is the forward one, and one
    step after it the back step is shortened to the room left (no time before the noise end)."""
    f = get_formulation(name)
    oracle = GaussianOracle(f, MEAN, torch.diag(STD**2))
    u_t = torch.tensor([0.0, 0.0, 0.02, 0.3], dtype=torch.float64)
    t, r = f.time_from_unit(u_t), f.time_from_unit(u_t + 0.5)
    x = oracle.sample_marginal(torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64), t)
    m_inst = oracle.instantaneous_field(x, t)
    seen = []

    def field(x_, t_):
        seen.append(f.unit_from_time(t_.double()))
        return oracle.cumulative_field(x_.double(), t_.double(), r)

    m = field(x, t)
    central = finite_difference_derivative(field, x, t, r, m_inst, m, f, 0.05, central=True)
    forward = finite_difference_derivative(field, x, t, r, m_inst, m, f, 0.05)
    torch.testing.assert_close(central[:2], forward[:2])
    assert not torch.allclose(central[3], forward[3])
    assert min(u.min().item() for u in seen) >= -1e-6
