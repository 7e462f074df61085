"""Lean forward-mode rules for layers whose parameters are constants.

In the derivative pass only the inputs ``(x, t)`` carry tangents; the weights are constants. PyTorch's
generic forward-mode formulas do not know that: ``linear`` (``addmm``) and ``convolution`` evaluate
the weight term with a materialised zero tangent (three products instead of two), and ``layer_norm``
and ``group_norm`` expand into long chains of elementwise kernels (the ``derivative-cost`` section
of BENCHMARKS.md times both rule sets). Inside :func:`lean_forward_rules`
these layers use the exact tangents for constant parameters:

* ``linear``/``conv{1,2,3}d``: ``d op(x, W, b) = op(dx, W)``;
* ``layer_norm``/``group_norm``: with ``y = (x - mean) * rstd`` over the normalised group,
  ``dy = rstd * (dx - mean(dx) - y * mean(y * dx))``, times the affine weight.

A call whose parameters do carry a tangent (weights computed from ``t``, say) or whose arguments
this module does not recognise goes to PyTorch's generic rule, so the tangent is always exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


def _has_tangent(value: Any) -> bool:
    return isinstance(value, Tensor) and fwAD.unpack_dual(value).tangent is not None


def _product_tangent(op: Callable[..., Tensor], x_t: Tensor, x: Tensor, weight: Tensor, bias, *options) -> Tensor:
    """Linear and convolution layers: the op applied to the tangent, without the bias."""
    return op(x_t, weight, None, *options)


def _normalized_tangent(x: Tensor, x_t: Tensor, dims: tuple[int, ...], eps: float) -> Tensor:
    """Tangent of ``(x - mean) / sqrt(var + eps)`` (biased variance over ``dims``)."""
    mean = x.mean(dims, keepdim=True)
    centred = x - mean
    rstd = torch.rsqrt(centred.pow(2).mean(dims, keepdim=True) + eps)
    y = centred * rstd
    x_t = x_t - x_t.mean(dims, keepdim=True)
    return rstd * (x_t - y * (y * x_t).mean(dims, keepdim=True))


def _layer_norm_tangent(op, x_t: Tensor, x: Tensor, normalized_shape, weight, bias, eps: float) -> Tensor:
    dims = tuple(range(-len(tuple(normalized_shape)), 0))
    tangent = _normalized_tangent(x, x_t, dims, eps)
    return tangent if weight is None else tangent * weight


def _group_norm_tangent(op, x_t: Tensor, x: Tensor, num_groups: int, weight, bias, eps: float) -> Tensor:
    grouped = (x.shape[0], num_groups, -1)
    tangent = _normalized_tangent(x.reshape(grouped), x_t.reshape(grouped), (-1,), eps).reshape(x.shape)
    if weight is None:
        return tangent
    return tangent * weight.reshape((1, -1) + (1,) * (x.ndim - 2))


@dataclass(frozen=True)
class _Rule:
    names: tuple[str, ...]  # the functional's parameter names, in order
    defaults: dict[str, Any]  # defaults of the optional ones
    parameters: tuple[str, ...]  # arguments that must be constant (no tangent) for the rule to apply
    tangent: Callable[..., Tensor]  # tangent(op, x_t, *full_arguments)


_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_RULES: dict[Callable[..., Tensor], _Rule] = {
    F.linear: _Rule(("input", "weight", "bias"), {"bias": None}, ("weight", "bias"), _product_tangent),
    F.conv1d: _Rule(_CONV, _CONV_DEFAULTS, ("weight", "bias"), _product_tangent),
    F.conv2d: _Rule(_CONV, _CONV_DEFAULTS, ("weight", "bias"), _product_tangent),
    F.conv3d: _Rule(_CONV, _CONV_DEFAULTS, ("weight", "bias"), _product_tangent),
    F.layer_norm: _Rule(
        ("input", "normalized_shape", "weight", "bias", "eps"),
        {"weight": None, "bias": None, "eps": 1e-5},
        ("weight", "bias"),
        _layer_norm_tangent,
    ),
    F.group_norm: _Rule(
        ("input", "num_groups", "weight", "bias", "eps"),
        {"weight": None, "bias": None, "eps": 1e-5},
        ("weight", "bias"),
        _group_norm_tangent,
    ),
}


def _lean_call(op: Callable[..., Tensor], rule: _Rule, arguments: list[Any]) -> Tensor:
    """``op(*arguments)`` on the input's primal (recorded by autograd as usual, so a pass with
    gradients enabled can backpropagate through it), with ``rule.tangent`` attached as its tangent."""
    primal, tangent = fwAD.unpack_dual(arguments[0])
    out = op(primal, *arguments[1:])
    with torch.no_grad():  # the tangent only feeds the stop-gradient target
        out_tangent = rule.tangent(op, tangent, primal, *arguments[1:])
    return fwAD.make_dual(out, out_tangent)


class _LeanForwardRules(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        if rule is None or len(args) > len(rule.names) or set(kwargs) - set(rule.names):
            return func(*args, **kwargs)
        given = dict(zip(rule.names, args, strict=False)) | kwargs
        arguments = [given.get(name, rule.defaults.get(name)) for name in rule.names]
        if not _has_tangent(arguments[0]) or any(_has_tangent(given.get(p)) for p in rule.parameters):
            return func(*args, **kwargs)
        return _lean_call(func, rule, arguments)


@contextlib.contextmanager
def lean_forward_rules() -> Iterator[None]:
    """Within this context, linear, convolution, layer-norm and group-norm calls whose parameters are
    constants use the lean exact forward-mode rules above (same tangents up to rounding)."""
    with _LeanForwardRules():
        yield
