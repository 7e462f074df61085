"""DDIM with epsilon-prediction, on the Gaussian oracle: the network's noise read as the exact
``x0_hat``, DDPM's plain noise loss, the DDIM steps an epsilon model needs, the config its
checkpoints store, and distillation from an epsilon teacher."""

from __future__ import annotations

import pytest
import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.distillation import Teacher
from cfm_core.formulations import DDIM, get_formulation
from cfm_core.oracle import GaussianOracle

from .conftest import SmoothNet, fix_times
from .test_distillation import COVARIANCE, MEAN

EPSILON = {"prediction": "epsilon"}


class ExactNoise(torch.nn.Module):
    """The exact noise prediction ``E[eps | x_t] = (x - a_t E[x0 | x_t])/s_t`` of Gaussian data (plus
    a constant ``error``)."""

    def __init__(self, oracle: GaussianOracle, error: float = 0.0) -> None:
        super().__init__()
        self.oracle, self.error = oracle, error

    def forward(self, x, t, r, cond=None):
        alpha, sigma, _, _ = self.oracle.formulation.path_coefficients(t.to(x.dtype))
        x0 = self.oracle.instantaneous_field(x, t.to(x.dtype))
        return (x - alpha[:, None] * x0) / sigma[:, None] + self.error


def _oracle(**options) -> GaussianOracle:
    return GaussianOracle(get_formulation("ddim", **options), MEAN, COVARIANCE)


def _noise(n=4000, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_the_exact_noise_is_read_as_the_exact_x0():
    """The epsilon model's field is the posterior mean ``E[x0 | x_t]`` at every time up to the noise
    end; the same network read as x0-prediction is not (the negative control)."""
    oracle = _oracle()
    t = torch.linspace(0.002, 1.0, 64, dtype=torch.float64)
    x = oracle.sample_marginal(_noise(64), t)
    net = ExactNoise(oracle)
    field = FlowMap(net, "ddim", formulation_options=EPSILON).field(x, t, t)
    torch.testing.assert_close(field, oracle.instantaneous_field(x, t), rtol=1e-9, atol=1e-9)
    assert (FlowMap(net, "ddim").field(x, t, t) - oracle.instantaneous_field(x, t)).abs().max() > 0.5


def test_the_exact_noise_model_needs_its_ddim_steps():
    """One DDIM step of the exact epsilon model gives the posterior mean at the noise end (the samples
    collapse onto the data mean); more steps converge to the exact flow map's samples. Read as
    x0-prediction, the same network never converges (the negative control)."""
    oracle, noise = _oracle(), _noise()
    ones = torch.ones(noise.shape[0], dtype=torch.float64)
    exact = oracle.flow_map(noise, ones, 0 * ones)
    scale = (exact - exact.mean(0)).norm(dim=1).mean()

    def error(model, steps):
        return ((model.sample(noise, steps, sampler="ddim") - exact).norm(dim=1).mean() / scale).item()

    model = FlowMap(ExactNoise(oracle), "ddim", formulation_options=EPSILON)
    errors = [error(model, steps) for steps in (1, 4, 16, 64, 256)]  # measured 0.99 0.42 0.12 0.031 0.008
    assert errors[0] > 0.9 and errors[-1] < 0.02
    assert errors == sorted(errors, reverse=True)
    assert model.sample(noise, 1, sampler="ddim").var(0).max() < 1e-3 * COVARIANCE.diagonal().min()
    assert error(FlowMap(ExactNoise(oracle), "ddim"), 256) > 1.0


def test_one_step_amplifies_an_epsilon_error_by_one_over_a():
    """An error ``delta`` of the predicted noise moves the one-step sample by ``-delta s_1/a_1`` (about
    150 delta): the reading ``x0_hat = (x - s eps_hat)/a`` at the noise end. The same error of an
    x0-prediction moves it by ``delta``."""
    oracle, noise, delta = _oracle(), _noise(256), 0.01
    f = oracle.formulation
    alpha, sigma, _, _ = f.path_coefficients(torch.tensor(1.0, dtype=torch.float64))

    def one_step(net, **options):
        return FlowMap(net, "ddim", formulation_options=options).sample(noise, 1, sampler="ddim")

    shift = one_step(ExactNoise(oracle, delta), **EPSILON) - one_step(ExactNoise(oracle), **EPSILON)
    torch.testing.assert_close(shift, torch.full_like(shift, -delta * sigma.item() / alpha.item()))
    assert sigma / alpha > 100

    class X0(torch.nn.Module):
        def forward(self, x, t, r, cond=None):
            return oracle.instantaneous_field(x, t.to(x.dtype)) + delta

    torch.testing.assert_close(one_step(X0()) - oracle.instantaneous_field(noise, torch.ones(256)), 0 * shift + delta)


def _noise_offset_loss(prediction: str, offset: torch.nn.Parameter):
    """The r = t loss of a network that predicts the batch's true noise plus ``offset``, on fixed
    times from the noise end down to DDPM's step 1."""
    n = 256
    f = get_formulation("ddim", prediction=prediction)
    data, noise = 2.0 * torch.randn(n, 3), torch.randn(n, 3)

    def net(x, t, r, cond=None):
        alpha, sigma, _, _ = f.path_coefficients(t)
        return (x - alpha[:, None] * data) / sigma[:, None] + offset

    loss_fn = CFMLoss(FlowMap(net, f), LossRecipe(instantaneous_ratio=1.0))
    u = torch.linspace(0.0, 1.0 - f.target_clamp, n)
    fix_times(loss_fn, u, u, torch.ones(n, dtype=torch.bool))
    return loss_fn(data, noise=noise)


def test_the_epsilon_baseline_trains_with_ddpms_plain_noise_loss():
    """With prediction epsilon the r = t loss is the plain mean squared error of the noise (no
    adaptive weight by default), its gradient too; the same network read as x0 gives another loss
    (the negative control)."""
    offset = torch.nn.Parameter(torch.tensor(0.5))
    loss = _noise_offset_loss("epsilon", offset)
    loss.backward()
    assert loss.item() == pytest.approx(0.25, rel=1e-4)
    assert offset.grad.item() == pytest.approx(1.0, rel=1e-4)  # d(offset^2)/d offset
    assert abs(_noise_offset_loss("x0", torch.nn.Parameter(torch.tensor(0.5))).item() - 0.25) > 0.1


def test_the_noise_loss_weight_is_the_signal_to_noise_ratio_bounded_at_ddpms_step_one():
    f = DDIM(prediction="epsilon")
    t = torch.tensor([1e-5, 1e-3, 0.3, 1.0], dtype=torch.float64)
    abar = f.alpha_bar(t)
    weight = f.loss_weight(t)
    torch.testing.assert_close(weight[1:], abar[1:] / (1 - abar[1:]))
    assert weight[0] == weight[1]
    torch.testing.assert_close(DDIM().loss_weight(t), torch.ones_like(t))
    assert (DDIM().default_adaptive_p, f.default_adaptive_p) == (1.0, 0.0)


def test_the_prediction_is_stored_only_when_it_is_epsilon_and_round_trips():
    assert "prediction" not in DDIM().config()  # x0 checkpoints keep their config
    eps = DDIM(beta_max=10.0, prediction="epsilon")
    assert eps.config()["prediction"] == "epsilon"
    rebuilt = get_formulation(eps.config())
    assert (rebuilt.prediction, rebuilt.beta_max) == ("epsilon", 10.0)
    assert eps.field_config() == DDIM(beta_max=10.0).field_config() != DDIM().field_config()
    with pytest.raises(ValueError, match="prediction must be one of"):
        DDIM(prediction="v")


def _exact_eps_teacher_loss(teacher_oracle, student="ddim"):
    """The Eulerian loss of the exact x0 flow map distilling an epsilon teacher (its field through
    the epsilon reading), on random interior time pairs."""
    teacher = Teacher(FlowMap(ExactNoise(teacher_oracle), "ddim", formulation_options=EPSILON))
    oracle = _oracle()
    model = FlowMap(SmoothNet(dim=2), student)
    model.field = lambda x, t, r, cond=None: oracle.cumulative_field(x.double(), t.double(), r.double()).float()
    loss_fn = CFMLoss(model, LossRecipe(derivative="jvp", adaptive_p=0.0), teacher=teacher)
    g = torch.Generator().manual_seed(3)
    u = 0.05 + 0.85 * torch.rand(2, 64, generator=g)
    inst = torch.arange(64) % 4 == 0
    u_t = u.min(0).values
    fix_times(loss_fn, u_t, torch.where(inst, u_t, u.max(0).values), inst)
    return loss_fn(3.0 * torch.randn(64, 2, generator=g), noise=torch.randn(64, 2, generator=g)).item()


def test_an_x0_student_distils_an_epsilon_teacher():
    """The exact x0 flow map has zero Eulerian loss against the exact epsilon teacher and a clear
    loss against a shifted one (the negative control)."""
    perturbed = _exact_eps_teacher_loss(GaussianOracle(get_formulation("ddim"), MEAN + 0.5, COVARIANCE))
    assert perturbed > 1e-2
    assert _exact_eps_teacher_loss(_oracle()) < 1e-6 * perturbed


@pytest.mark.parametrize(
    ("student", "message"),
    [("edm", "formulation"), ({"name": "ddim", "beta_max": 10.0}, "'beta_max': 10.0")],
)
def test_a_teacher_of_another_path_is_refused_whatever_the_prediction(student, message):
    teacher = Teacher(FlowMap(ExactNoise(_oracle()), "ddim", formulation_options=EPSILON))
    with pytest.raises(ValueError, match=message):
        CFMLoss(FlowMap(SmoothNet(dim=2), student), teacher=teacher)
