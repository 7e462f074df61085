"""The three derivative backends agree with each other (and the autograd reference) on smooth nets."""

from __future__ import annotations

import pytest
import torch
from cfm_core import FlowMap, LossRecipe
from cfm_core.derivatives import (
    autograd_derivative,
    derivative_context,
    finite_difference_derivative,
    jvp_derivative,
    shared_rng,
    use_lean_rules,
)

from .conftest import SmoothNet, interior_times, make_loss


def _setup(formulation, n=32, seed=0):
    model = FlowMap(SmoothNet(seed=seed), formulation)
    t, r = interior_times(formulation, n, seed=seed)
    t, r = t.float(), r.float()
    g = torch.Generator().manual_seed(seed + 10)
    x, m_inst = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)
    v = formulation.velocity(m_inst, x, t)

    def field(x_, t_):
        return model.field(x_, t_, r)

    return model, field, x, t, r, m_inst, v


def test_jvp_matches_double_autograd_reference(formulation):
    _, field, x, t, _, _, v = _setup(formulation)
    torch.testing.assert_close(
        jvp_derivative(field, x, t, v), autograd_derivative(field, x, t, v), rtol=1e-4, atol=1e-5
    )


def test_jvp_matches_explicit_partial_derivatives(formulation):
    """Dm = d_t m + (d_x m) v, with both partials by plain reverse mode, one sample at a time."""
    model, field, x, t, r, _, v = _setup(formulation, n=4)
    dm = jvp_derivative(field, x, t, v)
    for i in range(4):
        ri = r[i : i + 1]
        ti, xi = t[i : i + 1], x[i : i + 1]
        jac_x = torch.autograd.functional.jacobian(lambda a, ti=ti, ri=ri: model.field(a[None], ti, ri)[0], x[i])
        jac_t = torch.autograd.functional.jacobian(lambda b, xi=xi, ri=ri: model.field(xi, b, ri)[0], ti)[:, 0]
        torch.testing.assert_close(dm[i], jac_t + jac_x @ v[i], rtol=1e-4, atol=1e-5)


def test_finite_difference_matches_jvp(formulation):
    model, field, x, t, r, m_inst, v = _setup(formulation)
    with torch.no_grad():
        m_value = field(x, t)
    fd = finite_difference_derivative(field, x, t, r, m_inst, m_value, formulation, step=1e-3)
    jvp = jvp_derivative(field, x, t, v)
    scale = jvp.abs().max().clamp_min(1.0)
    assert ((fd - jvp).abs().max() / scale) < 2e-2
    # and the check can fail: a large step is visibly off
    coarse = finite_difference_derivative(field, x, t, r, m_inst, m_value, formulation, step=0.5)
    assert ((coarse - jvp).abs().max() / scale) > ((fd - jvp).abs().max() / scale)


@pytest.mark.parametrize("backend", ["jvp", "jvp_one_pass", "finite_difference", "autograd"])
def test_every_backend_trains_every_formulation(formulation, backend):
    loss_fn = make_loss(SmoothNet(), formulation, derivative=backend)
    loss = loss_fn(torch.randn(16, 3))
    loss.backward()
    grads = [p.grad for p in loss_fn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_dropout_masks_are_shared_between_passes():
    net = SmoothNet(dropout=0.5).train()
    x, t = torch.randn(64, 3), torch.rand(64)

    def field(x_, t_):
        return net(x_, t_, t_)

    torch.manual_seed(0)
    with shared_rng(x.device):
        primal, _ = torch.func.jvp(field, (x, t), (torch.ones_like(x), torch.ones_like(t)))
    follow = field(x, t)
    torch.testing.assert_close(primal, follow)
    # without the fork the second pass draws new masks
    other = field(x, t)
    assert not torch.allclose(other, follow)


def test_jvp_runs_through_attention():
    """The math SDPA kernel is forced during the JVP, so attention layers work under forward AD."""

    class AttnNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(4, 2, batch_first=True)
            self.inp = torch.nn.Linear(3, 4)
            self.out = torch.nn.Linear(4, 1)

        def forward(self, x, t, r, cond=None):
            h = self.inp(
                torch.cat(
                    [
                        x[..., None],
                        t[:, None, None].expand(-1, x.shape[1], 1),
                        r[:, None, None].expand(-1, x.shape[1], 1),
                    ],
                    -1,
                )
            )
            h, _ = self.attn(h, h, h, need_weights=False)
            return self.out(h)[..., 0]

    loss_fn = make_loss(AttnNet(), "u", derivative="jvp", instantaneous_ratio=0.0)
    loss_fn(torch.randn(8, 5)).backward()


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "torch"])
def test_jvp_with_either_forward_rules_matches_torch_func_jvp(formulation, lean):
    _, field, x, t, _, _, v = _setup(formulation)
    with derivative_context(x.device):
        _, reference = torch.func.jvp(field, (x, t), (v, torch.ones_like(t)))
    dm = jvp_derivative(field, x, t, v, lean=lean)
    assert reference.norm() > 0.1
    torch.testing.assert_close(dm, reference, rtol=1e-5, atol=1e-6)


def test_forward_rules_choice():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [use_lean_rules(choice, cpu) for choice in ("auto", "lean", "torch")] == [True, True, False]
    assert [use_lean_rules(choice, gpu) for choice in ("auto", "lean", "torch")] == [False, True, False]  # eager
    with pytest.raises(ValueError, match="forward_rules: unknown 'fast'"):
        use_lean_rules("fast", cpu)
    with pytest.raises(ValueError, match="forward_rules"):
        LossRecipe(forward_rules="fast")


def test_finite_difference_under_autocast_takes_both_ends_in_float32(formulation):
    """Under bf16 autocast the secant's start is redone in float32: the target equals the float32
    one exactly, while the autocast forward's value as the start is visibly off (the negative control)."""
    _, field, x, t, r, m_inst, _ = _setup(formulation)
    with torch.no_grad():
        start = field(x, t)
        exact = finite_difference_derivative(field, x, t, r, m_inst, start, formulation, step=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        redone = finite_difference_derivative(field, x, t, r, m_inst, None, formulation, step=0.05)
        low = field(x, t)
        mixed = finite_difference_derivative(field, x, t, r, m_inst, low, formulation, step=0.05)
    assert not torch.equal(low.float(), start)  # the network ran in bf16
    torch.testing.assert_close(redone, exact, rtol=0, atol=0)
    assert (mixed - exact).abs().max() > 10 * (exact.abs().max() * 2**-24 / 0.05)


def test_the_loss_target_with_finite_differences_is_float32_under_autocast(formulation):
    """The CFM loss's cumulative target (conditional target field) under bf16 autocast is the
    float32 loss's target: the derivative is taken in float32 alone."""
    loss_fn = make_loss(SmoothNet(), formulation, derivative="finite_difference")
    _, _, x, t, r, m_inst, _ = _setup(formulation)
    _, target = loss_fn._cumulative_prediction(x, t, r, m_inst, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, target_bf16 = loss_fn._cumulative_prediction(x, t, r, m_inst, None)
    assert target_bf16.dtype == torch.float32
    torch.testing.assert_close(target_bf16, target, rtol=0, atol=0)
