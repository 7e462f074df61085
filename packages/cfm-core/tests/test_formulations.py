"""Each formulation's closed forms against its own update F (the general field equation)."""

from __future__ import annotations

import math

import pytest
import torch
from cfm_core.formulations import EDM, FORMULATIONS, expand_like, get_formulation

from .conftest import interior_times


def _coefficients(f, t, r):
    """``P``, ``Q`` of ``F = P m + Q x`` as functions of ``(t, r)`` (scalars per sample)."""
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    p = f.update(one[:, None], zero[:, None], t, r)[:, 0] - f.update(zero[:, None], zero[:, None], t, r)[:, 0]
    q = f.update(zero[:, None], one[:, None], t, r)[:, 0]
    return p, q


def test_field_target_matches_general_field_equation(formulation):
    """closed form == -(P Dm + Q_t x + Q v)/P_t with P_t, Q_t by autograd of F."""
    t, r = interior_times(formulation, 64)
    t = t.clone().requires_grad_(True)
    p, q = _coefficients(formulation, t, r)
    p_t = torch.autograd.grad(p.sum(), t, retain_graph=True)[0]
    q_t = torch.autograd.grad(q.sum(), t)[0]
    t = t.detach()
    g = torch.Generator().manual_seed(1)
    x, m_inst, dm = (torch.randn(64, 5, generator=g, dtype=torch.float64) for _ in range(3))
    v = formulation.velocity(m_inst, x, t)
    general = -(expand_like(p, x) * dm + expand_like(q_t, x) * x + expand_like(q, x) * v) / expand_like(p_t, x)
    closed = formulation.field_target(m_inst, x, t, r, dm)
    torch.testing.assert_close(closed, general.detach(), rtol=1e-7, atol=1e-8)


def test_velocity_is_the_derivative_of_the_update(formulation):
    t, _ = interior_times(formulation, 32)
    g = torch.Generator().manual_seed(2)
    x, m = (
        torch.randn(32, 4, generator=g, dtype=torch.float64),
        torch.randn(32, 4, generator=g, dtype=torch.float64),
    )
    r = t.clone().requires_grad_(True)
    out = formulation.update(m, x, t, r)
    (dr,) = torch.autograd.grad(out.sum(), r, create_graph=False)
    # d/dr F[m, x, t, r] at r = t, summed over the 4 coordinates
    torch.testing.assert_close(dr, formulation.velocity(m, x, t).sum(1), rtol=1e-7, atol=1e-8)


def test_update_is_identity_at_equal_times(formulation):
    t, _ = interior_times(formulation, 16)
    x, m = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    torch.testing.assert_close(formulation.update(m, x, t, t), x)


def test_conditional_update_follows_the_conditional_path(formulation):
    """F with the conditional target moves a path point exactly to the path point at r."""
    t, r = interior_times(formulation, 32)
    g = torch.Generator().manual_seed(3)
    data, noise = (
        torch.randn(32, 3, generator=g, dtype=torch.float64),
        torch.randn(32, 3, generator=g, dtype=torch.float64),
    )
    x_t = formulation.interpolate(data, noise, t)
    m = formulation.conditional_target(data, noise, t)
    torch.testing.assert_close(formulation.update(m, x_t, t, r), formulation.interpolate(data, noise, r))
    torch.testing.assert_close(formulation.velocity(m, x_t, t), formulation.conditional_velocity(data, noise, t))


def test_update_reaches_data_end(formulation):
    """Jumping to the data end returns the data prediction (x1, D, x0) or x + (1-t) u."""
    t, _ = interior_times(formulation, 8)
    x, m = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    end = torch.full_like(t, formulation.t_data)
    out = formulation.update(m, x, t, end)
    expected = x + expand_like(1 - t, x) * m if formulation.name == "u" else m
    torch.testing.assert_close(out, expected)


def test_unit_time_round_trip_and_grid(formulation):
    u = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(formulation.unit_from_time(formulation.time_from_unit(u)), u)
    grid = formulation.time_grid(4)
    assert grid.shape == (5,)
    assert grid[0].item() == pytest.approx(formulation.t_noise)
    assert grid[-1].item() == formulation.t_data
    diffs = grid.diff() if formulation.t_data > formulation.t_noise else -grid.diff()
    assert (diffs > 0).all()


def test_edm_grid_follows_karras():
    f = EDM()
    lo, hi = f.sigma_min ** (1 / 7), f.sigma_max ** (1 / 7)
    for steps in (1, 2, 18):
        expected = [(hi + i / steps * (lo - hi)) ** 7 for i in range(steps)] + [0.0]
        torch.testing.assert_close(
            f.time_grid(steps).double(),
            torch.tensor(expected, dtype=torch.float64),
            rtol=1e-6,
            atol=0,
        )


def test_edm_preconditioning_values():
    f = EDM(sigma_data=0.5)
    c_skip, c_out, c_in = f.preconditioning(torch.tensor([0.5]))
    assert c_skip.item() == pytest.approx(0.5)
    assert c_out.item() == pytest.approx(0.25 / (0.5**0.5))
    assert c_in.item() == pytest.approx(1 / (0.5**0.5))


@pytest.mark.parametrize("name", sorted(FORMULATIONS))
def test_config_round_trip(name):
    f = get_formulation(name)
    assert get_formulation(f.config()).config() == f.config()


def test_bad_formulations_are_named():
    with pytest.raises(ValueError, match="unknown formulation 'vp'"):
        get_formulation("vp")
    with pytest.raises(ValueError, match="bad options for formulation 'edm'"):
        get_formulation("edm", sigma_maxx=3)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        EDM(sigma_min=5, sigma_max=1)


def test_check_times_names_the_problem(formulation):
    lo, hi = sorted((formulation.t_noise, formulation.t_data))
    bad = torch.tensor([hi + 1.0])
    with pytest.raises(ValueError, match="outside the formulation's range"):
        formulation.check_times(bad)
    with pytest.raises(ValueError, match="NaN"):
        formulation.check_times(torch.tensor([float("nan")]))
    t, r = interior_times(formulation, 4)
    with pytest.raises(ValueError, match="r must lie between t and the data end"):
        formulation.check_times(r, t)


def test_field_weight_is_the_ratio_of_time_derivatives(formulation):
    """field_weight(t, r) == P_t(t, r) / P_t(t, t), with P_t by autograd of F."""
    t, r = interior_times(formulation, 32, seed=9)
    t = t.clone().requires_grad_(True)
    p_r, _ = _coefficients(formulation, t, r)
    (dp_r,) = torch.autograd.grad(p_r.sum(), t)
    t2 = t.detach().clone().requires_grad_(True)
    # P_t(t, t): differentiate P(t, s) in t, then set s = t
    p_s, _ = _coefficients(formulation, t2, t.detach())
    (dp_s,) = torch.autograd.grad(p_s.sum(), t2)
    torch.testing.assert_close(formulation.field_weight(t.detach(), r), dp_r / dp_s, rtol=1e-6, atol=1e-9)


def test_edm_jump_grid_is_equally_spaced_in_log_sigma_then_zero():
    f = EDM()
    for steps in (1, 3, 6):
        grid = f.jump_grid(steps).double()
        log_sigma = torch.linspace(math.log(f.sigma_max), math.log(f.sigma_min), steps + 1, dtype=torch.float64)
        torch.testing.assert_close(grid[:-1], log_sigma[:-1].exp(), rtol=1e-6, atol=0)
        assert grid[-1].item() == 0.0
    with pytest.raises(ValueError, match="positive integer"):
        f.jump_grid(0)


@pytest.mark.parametrize("name", ["u", "x1", "ddim"])
def test_other_formulations_jump_on_their_solver_grid(name):
    f = get_formulation(name)
    torch.testing.assert_close(f.jump_grid(4), f.time_grid(4))
