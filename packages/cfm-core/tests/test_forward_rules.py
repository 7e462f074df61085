"""The lean forward-mode rules give PyTorch's generic tangents, are used where they apply, and step
aside where a parameter carries a tangent."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from cfm_core import forward_rules
from cfm_core.forward_rules import lean_forward_rules

G = torch.Generator().manual_seed(0)


def _rand(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def _tangent(fn, x, x_t, lean: bool):
    with fwAD.dual_level(), lean_forward_rules() if lean else torch.no_grad():
        out = fn(fwAD.make_dual(x, x_t))
        return fwAD.unpack_dual(out).tangent


@pytest.fixture
def count_lean_calls(monkeypatch):
    calls = []
    original = forward_rules._lean_call

    def counted(op, *args):
        calls.append(op)
        return original(op, *args)

    monkeypatch.setattr(forward_rules, "_lean_call", counted)
    return calls


W_LIN, B_LIN = _rand(5, 4), _rand(5)
W_CONV2, B_CONV2 = _rand(6, 2, 3, 3), _rand(6)
W_CONV1, W_CONV3 = _rand(4, 3, 3), _rand(2, 2, 3, 3, 3)
GAMMA4, BETA4, GAMMA_C = _rand(4), _rand(4), _rand(4)

CASES = {
    "linear": ((3, 7, 4), lambda x: F.linear(x, W_LIN, B_LIN)),
    "linear_kw_no_bias": ((3, 4), lambda x: F.linear(input=x, weight=W_LIN)),
    "conv1d": ((2, 3, 9), lambda x: F.conv1d(x, W_CONV1, None, 2, 1)),
    "conv2d_groups": ((2, 4, 7, 7), lambda x: F.conv2d(x, W_CONV2, B_CONV2, stride=2, padding=1, groups=2)),
    "conv2d_same": ((2, 4, 6, 6), lambda x: F.conv2d(x, W_CONV2[:, :2].repeat(1, 2, 1, 1), padding="same")),
    "conv3d": ((1, 2, 5, 5, 5), lambda x: F.conv3d(x, W_CONV3, dilation=2, padding=2)),
    "layer_norm_affine": ((3, 5, 4), lambda x: F.layer_norm(x, (4,), GAMMA4, BETA4, eps=1e-3)),
    "layer_norm_plain_2d": ((3, 2, 4), lambda x: F.layer_norm(x, (2, 4))),
    "group_norm": ((2, 4, 3, 3), lambda x: F.group_norm(x, 2, GAMMA_C, BETA4, 1e-6)),
    "group_norm_plain": ((2, 4, 5), lambda x: F.group_norm(x, 4)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_lean_rule_matches_generic_tangent(name, count_lean_calls):
    shape, fn = CASES[name]
    x, x_t = _rand(*shape), _rand(*shape)
    generic = _tangent(fn, x, x_t, lean=False)
    lean = _tangent(fn, x, x_t, lean=True)
    assert count_lean_calls, "the lean rule was not used"
    torch.testing.assert_close(lean, generic, rtol=1e-10, atol=1e-10)
    # the primal is untouched
    with lean_forward_rules():
        torch.testing.assert_close(fn(x), fn(x.clone()))


def test_parameters_with_tangents_take_the_generic_rule(count_lean_calls):
    """A weight that depends on the input (a hypernetwork, say) has a tangent of its own."""
    x, x_t = _rand(3, 4), _rand(3, 4)

    def fn(x_):
        weight = W_LIN * x_.sum()  # depends on x: its tangent must enter the result
        return F.linear(x_, weight, B_LIN)

    lean = _tangent(fn, x, x_t, lean=True)
    assert not count_lean_calls
    torch.testing.assert_close(lean, _tangent(fn, x, x_t, lean=False))


def test_input_without_tangent_is_left_alone(count_lean_calls):
    with fwAD.dual_level(), lean_forward_rules():
        out = F.linear(_rand(2, 4), W_LIN)
    assert not count_lean_calls and fwAD.unpack_dual(out).tangent is None


def test_wrong_rule_would_be_caught():
    """The comparison above can fail: dropping the centring term gives a visibly different tangent."""
    x, x_t = _rand(3, 4), _rand(3, 4)
    generic = _tangent(lambda a: F.layer_norm(a, (4,)), x, x_t, lean=False)
    rstd = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    assert not torch.allclose(rstd * x_t, generic, atol=1e-3)


@pytest.mark.parametrize("name", list(CASES))
def test_a_pass_with_gradients_backpropagates_through_the_lean_rule(name, count_lean_calls):
    """The joint value-and-tangent pass of the training loss needs the primal's ordinary gradient."""
    shape, fn = CASES[name]
    x, x_t = _rand(*shape), _rand(*shape)
    x_lean = x.clone().requires_grad_(True)
    with fwAD.dual_level(), lean_forward_rules():
        out = fn(fwAD.make_dual(x_lean, x_t))
        primal, tangent = fwAD.unpack_dual(out)
    assert count_lean_calls and tangent is not None and not tangent.requires_grad
    cotangent = _rand(*primal.shape)
    (primal * cotangent).sum().backward()
    x_plain = x.clone().requires_grad_(True)
    (fn(x_plain) * cotangent).sum().backward()
    torch.testing.assert_close(x_lean.grad, x_plain.grad, rtol=1e-10, atol=1e-10)


def test_weight_gradients_pass_through_the_lean_rule():
    x, x_t = _rand(3, 4), _rand(3, 4)
    weights = [W_LIN.clone().requires_grad_(True) for _ in range(2)]
    with fwAD.dual_level(), lean_forward_rules():
        primal = fwAD.unpack_dual(F.linear(fwAD.make_dual(x, x_t), weights[0], B_LIN)).primal
    primal.pow(2).sum().backward()
    F.linear(x, weights[1], B_LIN).pow(2).sum().backward()
    torch.testing.assert_close(weights[0].grad, weights[1].grad, rtol=1e-10, atol=1e-10)
