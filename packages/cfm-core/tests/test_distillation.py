"""Distillation: the frozen teacher and the Lagrangian objective, against the Gaussian oracle."""

from __future__ import annotations

import pytest
import torch
from cfm_core.distillation import (
    Teacher,
    lagrangian_prediction,
    lagrangian_weight,
    r_derivative,
    regression_pair,
    update_coefficients,
    weights_sha256,
)
from cfm_core.formulations import get_formulation
from cfm_core.oracle import GaussianOracle

from .conftest import SmoothNet, interior_times

MEAN = torch.tensor([0.5, -1.0])
COVARIANCE = torch.tensor([[1.0, 0.3], [0.3, 0.5]])


class OracleModel(torch.nn.Module):
    """A "trained model" whose field is the exact Gaussian one (``r = t``: the instantaneous field)."""

    def __init__(self, oracle: GaussianOracle) -> None:
        super().__init__()
        self.formulation, self.oracle = oracle.formulation, oracle
        self.register_buffer("anchor", torch.zeros(1))  # something for the teacher to move

    def field(self, x, t, r, cond=None):
        return self.oracle.cumulative_field(x, t.to(x.dtype), r.to(x.dtype))


def _batch(formulation, n=64, seed=0):
    t, r = interior_times(formulation, n, seed=seed)
    t, r = t.float(), r.float()
    g = torch.Generator().manual_seed(seed + 1)
    oracle = GaussianOracle(formulation, MEAN, COVARIANCE)
    x = oracle.sample_marginal(torch.randn(n, 2, generator=g), t)
    return oracle, x, t, r


def _lagrangian(oracle, teacher_oracle, x, t, r, backend, step=1e-3):
    student = OracleModel(oracle)
    teacher = Teacher(OracleModel(teacher_oracle))
    return lagrangian_prediction(
        lambda r_: student.field(x, t, r_),
        x,
        t,
        r,
        teacher.velocity,
        oracle.formulation,
        backend=backend,
        step=step,
    )


@pytest.mark.parametrize("backend", ["jvp", "jvp_one_pass", "autograd", "finite_difference"])
def test_lagrangian_target_is_the_exact_field_at_the_exact_flow_map(formulation, backend):
    """Exact student, exact teacher: the target equals the prediction (zero loss) for every backend.
    The finite difference's error in ``d_r m`` enters the target times ``P / P_r`` (up to the noise
    level for edm), so its tolerance is relative to that factor."""
    oracle, x, t, r = _batch(formulation)
    pred, target = _lagrangian(oracle, oracle, x, t, r, backend)
    p, _, p_r, _ = update_coefficients(formulation, t, r)
    if backend == "finite_difference":
        tolerance = 1e-2 * (1 + (p / p_r).abs())[:, None]
    else:
        tolerance = 1e-4 * max(1.0, float(pred.abs().max()))
    assert ((pred - target).abs() < tolerance).all()


def test_lagrangian_target_moves_when_the_teacher_is_perturbed(formulation):
    """Negative control: a teacher with a shifted mean gives a target away from the exact field."""
    oracle, x, t, r = _batch(formulation)
    shifted = GaussianOracle(formulation, MEAN + 0.5, COVARIANCE)
    pred, target = _lagrangian(oracle, shifted, x, t, r, "jvp")
    assert (pred - target).abs().mean() > 0.05


def test_r_derivative_backends_agree_on_a_network(formulation):
    """d_r m of a smooth network: forward-mode, double backward and the finite difference agree."""
    net = SmoothNet(dim=3)
    t, r = interior_times(formulation, 32, seed=4)
    t, r = t.float(), r.float()
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(5))

    def field_at(r_):
        return formulation.precondition(net, x, t, r_)

    got = {b: r_derivative(field_at, formulation, t, r, b, 1e-3) for b in ("jvp", "autograd", "finite_difference")}
    torch.testing.assert_close(got["jvp"], got["autograd"], rtol=1e-4, atol=1e-5)
    scale = got["autograd"].abs().max()
    assert (got["finite_difference"] - got["autograd"]).abs().max() < 0.02 * scale


def test_update_coefficients_match_the_update(formulation):
    t, r = interior_times(formulation, 16, seed=2)
    p, q, p_r, q_r = update_coefficients(formulation, t, r)
    m, x = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    torch.testing.assert_close(formulation.update(m, x, t, r), p[:, None] * m + q[:, None] * x)
    h = 1e-6
    step = formulation.update(m, x, t, r + h) - formulation.update(m, x, t, r - h)
    torch.testing.assert_close(step / (2 * h), p_r[:, None] * m + q_r[:, None] * x, rtol=1e-5, atol=1e-6)
    weight = lagrangian_weight(formulation, t, t)
    torch.testing.assert_close(weight, torch.ones_like(weight))


def test_lagrangian_weight_is_the_residual_per_unit_time(formulation):
    """``|d_r P(t, r) / d_r P(t, t)|`` times ``|dr/du| / |dt/du|``: the second factor is 1 where time
    is linear in unit time, ``(r/t)^((rho - 1)/rho)`` on edm's Karras schedule."""
    t, r = interior_times(formulation, 16, seed=4)
    _, _, p_r, _ = update_coefficients(formulation, t, r)
    _, _, p_t, _ = update_coefficients(formulation, t, t)
    if formulation.name == "edm":
        speed = (r / t) ** ((formulation.rho - 1) / formulation.rho)
        assert (speed < 0.99).all()  # the pairs span sigma: the factor is not 1
    else:
        speed = torch.ones_like(t)
    torch.testing.assert_close(lagrangian_weight(formulation, t, r), (p_r / p_t).abs() * speed)


def test_teacher_endpoint_follows_the_exact_flow(formulation):
    """The regression peer's pairs: the teacher's Heun endpoint is the exact flow map's endpoint."""
    oracle = GaussianOracle(formulation, MEAN, COVARIANCE)
    teacher = Teacher(OracleModel(oracle))
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = teacher.endpoint(noise, steps=64, method="heun")
    f = formulation
    ones = torch.ones(256, dtype=torch.float64)
    want = oracle.flow_map(f.prior(noise), ones * f.t_noise, ones * f.t_data)
    assert (got - want).abs().max() < 1e-2 * want.abs().max()
    with pytest.raises(ValueError, match="unknown teacher sampler"):
        teacher.endpoint(noise, steps=4, method="cumulative")
    jump, target = regression_pair(
        lambda x, t, r: oracle.cumulative_field(x, t.double(), r.double()), noise, teacher, 64
    )
    assert (jump - target).abs().max() < 1e-2 * want.abs().max()
    shifted = Teacher(OracleModel(GaussianOracle(formulation, MEAN + 0.5, COVARIANCE)))
    _, target = regression_pair(lambda x, t, r: oracle.cumulative_field(x, t.double(), r.double()), noise, shifted, 8)
    assert (jump - target).abs().mean() > 0.1


def test_teacher_is_frozen_unregistered_and_follows_the_inputs():
    oracle = GaussianOracle(get_u(), MEAN, COVARIANCE)
    model = OracleModel(oracle).train()
    teacher = Teacher(model, source="runs/teacher")
    assert not model.training
    holder = torch.nn.Module()
    holder.teacher = teacher
    assert list(holder.state_dict()) == [] and list(holder.parameters()) == []
    x = torch.randn(4, 2, dtype=torch.float64)
    teacher.field(x, torch.full((4,), 0.5, dtype=torch.float64))
    assert model.anchor.dtype == torch.float64  # moved, not refused
    assert teacher.record() == {"path": "runs/teacher", "weights_sha256": teacher.weights_sha256}


def test_weights_hash_changes_with_any_weight():
    net = SmoothNet()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    before = weights_sha256(state)
    assert weights_sha256(dict(reversed(list(state.items())))) == before
    state["body.0.bias"][0] += 1e-6
    assert weights_sha256(state) != before


def get_u():
    from cfm_core.formulations import get_formulation

    return get_formulation("u")


def test_derivative_passes_share_the_prediction_passs_dropout_masks(formulation):
    net = SmoothNet(dim=3, dropout=0.5).train()
    t, r = interior_times(formulation, 16, seed=6)
    t, r = t.float(), r.float()
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(7))

    def field_at(r_):
        return formulation.precondition(net, x, t, r_)

    derivatives = {}
    for backend in ("jvp", "finite_difference"):
        torch.manual_seed(0)
        derivatives[backend] = r_derivative(field_at, formulation, t, r, backend, 1e-3)
    scale = derivatives["jvp"].abs().max()
    assert (derivatives["finite_difference"] - derivatives["jvp"]).abs().max() < 0.02 * scale
    torch.manual_seed(1)
    pred, _ = lagrangian_prediction(field_at, x, t, r, lambda x_, r_: x_, formulation, backend="finite_difference")
    torch.manual_seed(1)
    torch.testing.assert_close(pred, field_at(r))  # the same masks as a plain pass from that state


@pytest.mark.parametrize("name", ["u", "x1", "edm", "ddim"])
def test_r_secant_is_second_order_inside_near_t_and_near_the_data_end(name):
    """At the exact cumulative field the finite-difference d_r m is far nearer the exact one than
    a two-point secant over the same step, wherever r lies (inside, just after t, near the data
    end): its bias is second order in the step."""
    f = get_formulation(name)
    oracle = GaussianOracle(f, MEAN, COVARIANCE)
    u_t = torch.tensor([0.2, 0.2, 0.5], dtype=torch.float64)
    u_r = torch.tensor([0.55, 0.21, 0.97], dtype=torch.float64)
    t, r = f.time_from_unit(u_t), f.time_from_unit(u_r)
    x = oracle.sample_marginal(torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64), t)

    def field_at(r_):
        return oracle.cumulative_field(x, t, r_.double())

    _, exact = torch.autograd.functional.jvp(field_at, (r,), (torch.ones_like(r),))
    step = 0.02
    got = r_derivative(field_at, f, t, r, "finite_difference", step).double()
    toward_data = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)  # no room ahead at the data end
    r_next = f.time_from_unit(u_r + toward_data * step)
    two_point = (field_at(r_next) - field_at(r)) / (r_next - r)[:, None]
    error, two_point_error = ((d - exact).abs().amax(1) for d in (got, two_point))
    # 1e-4: the float32 rounding of the passes divided by the step
    assert (error < 0.2 * two_point_error + 1e-4).all(), (error, two_point_error)
