"""Gaussian-to-Gaussian transport: exact flow maps for every path, checked against the formulations."""

from __future__ import annotations

import pytest
import torch
from cfm_core.derivatives import jvp_derivative
from cfm_core.oracle import GaussianOracle
from cfm_core.samplers import sample_cumulative, sample_euler, sample_heun

from .conftest import interior_times

MEAN = torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64)
A = torch.tensor([[0.6, 0.2, 0.0], [0.1, 1.2, 0.3], [0.0, -0.2, 0.4]], dtype=torch.float64)
COV = A @ A.T


def _oracle(formulation):
    return GaussianOracle(formulation, MEAN, COV)


def _oracle_field(oracle):
    def field(x, t, r):
        return oracle.cumulative_field(x, t, r), 1

    return field


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_cumulative_jumps_of_the_oracle_are_exact(formulation, steps):
    """(a) k cumulative jumps from the exact noise-end marginal land on the exact data point."""
    oracle = _oracle(formulation)
    z = torch.randn(256, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    start = torch.full((256,), formulation.t_noise, dtype=torch.float64)
    x = oracle.sample_marginal(z, start)
    grid = formulation.time_grid(steps).double()
    out, nfe = sample_cumulative(_oracle_field(oracle), formulation, x, grid)
    assert nfe == steps
    torch.testing.assert_close(out, oracle.data_from_standard(z), rtol=1e-6, atol=1e-6)
    # hence the exact data moments
    big = torch.randn(200_000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ends = oracle.data_from_standard(big)
    torch.testing.assert_close(ends.mean(0), MEAN, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(ends.T), COV, atol=0.02, rtol=0)


def test_field_equation_residual_of_the_oracle_vanishes(formulation):
    """(b) with the exact marginal instantaneous field, the field-equation target is the oracle itself."""
    oracle = _oracle(formulation)
    t, r = interior_times(formulation, 128, seed=4)
    z = torch.randn(128, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x = oracle.sample_marginal(z, t)
    m_inst = oracle.instantaneous_field(x, t)
    v = formulation.velocity(m_inst, x, t)
    torch.testing.assert_close(v, oracle.velocity(x, t))

    def field(x_, t_):
        return oracle.cumulative_field(x_, t_, r)

    _, dm = torch.func.jvp(field, (x, t), (v, torch.ones_like(t)))
    target = formulation.field_target(m_inst, x, t, r, dm)
    torch.testing.assert_close(target, oracle.cumulative_field(x, t, r), rtol=1e-6, atol=1e-6)
    # the float32 JVP backend gives the same target to float32 accuracy
    dm32 = jvp_derivative(lambda a, b: oracle.cumulative_field(a.double(), b.double(), r).float(), x, t, v)
    target32 = formulation.field_target(m_inst, x, t, r, dm32.double())
    torch.testing.assert_close(target32, target, rtol=2e-3, atol=2e-3)


def test_a_wrong_derivative_breaks_the_residual(formulation):
    """The residual check can fail: dropping the spatial term of Dm gives a wrong target."""
    oracle = _oracle(formulation)
    t, r = interior_times(formulation, 64, seed=6)
    x = oracle.sample_marginal(torch.randn(64, 3, dtype=torch.float64), t)
    m_inst = oracle.instantaneous_field(x, t)
    _, dm_time_only = torch.func.jvp(lambda t_: oracle.cumulative_field(x, t_, r), (t,), (torch.ones_like(t),))
    wrong = formulation.field_target(m_inst, x, t, r, dm_time_only)
    assert (wrong - oracle.cumulative_field(x, t, r)).abs().max() > 1e-2


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_instantaneous_samplers_converge_to_the_exact_map(formulation, method):
    oracle = _oracle(formulation)
    z = torch.randn(128, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x0 = oracle.sample_marginal(z, torch.full((128,), formulation.t_noise, dtype=torch.float64))
    exact = oracle.data_from_standard(z)
    sampler = sample_euler if method == "euler" else sample_heun
    errors = []
    for steps in (8, 32, 128):
        out, nfe = sampler(_oracle_field(oracle), formulation, x0, formulation.time_grid(steps).double())
        assert nfe == (steps if method == "euler" else 2 * steps - 1)
        errors.append((out - exact).abs().max().item())
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < (0.1 if method == "euler" else 0.02), errors
