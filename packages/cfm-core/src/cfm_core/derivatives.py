"""Backends for the total time derivative ``Dm = d_t m_{t->r}(x) + (d_x m_{t->r}(x)) v``.

Every backend gets a ``field(x, t) -> m`` closure (``r`` and the condition are held fixed inside it)
and returns ``Dm`` detached: the derivative only enters the stop-gradient target.

* ``jvp`` — forward-mode AD (dual tensors, ``torch.autograd.forward_ad``) with tangent ``(v, 1)`` in
  float32 under ``no_grad``, autocast off, the math attention kernel forced (fused kernels have no
  forward-mode rule) and, by default, the lean rules of :mod:`cfm_core.forward_rules` for linear,
  convolution and normalisation layers with constant weights (``lean=False``: PyTorch's own rules;
  :func:`use_lean_rules` resolves the recipe's ``forward_rules`` choice). The caller then runs one ordinary forward with
  gradients, with the same RNG state, so dropout masks are shared.
* ``jvp_one_pass`` — the same dual pass with gradients enabled (:func:`jvp_with_value`): it returns
  the prediction with its graph as well as the tangent, so the separate forward is saved (a
  shorter step) at a memory price: autograd also records the tangent's elementwise formulas, so
  the loss forward saves several times the tensor bytes of ``jvp``. For small models. Under autocast it falls
  back to ``jvp`` (the tangent must stay in float32 while the prediction runs in low precision).
* ``finite_difference`` — one extra stop-gradient forward one small step along the instantaneous
  (conditional) flow: ``(m(x', t') - m(x, t)) / (t' - t)`` with ``x' = F[m_t, x, t, t']`` (Euler
  Mean Flows' JVP-free estimate). The step is ``step`` in unit time, shortened where ``r`` is closer.
  The default of :class:`~cfm_core.LossRecipe`. Where the exact derivative of a time oscillation of
  frequency ``w`` is ``w`` times its amplitude, the secant's is at most ``2/step`` times it, and as a
  one-sided (upwind) difference it damps the oscillation in the regression instead of feeding it
  back: the cumulative target stays bounded for networks with high-frequency time features, at a
  bias first order in ``step``. Both ends of the secant are float32 outside autocast: under autocast
  the loss has the start ``m(x, t)`` evaluated again in float32 (one more forward), since a
  bfloat16 value's rounding (relative 2^-8) divided by the step would swamp the derivative.
  ``central=True`` (the recipe's ``fd_scheme="central"``) spans ``step`` back and ``step`` forward
  along the flow, one more pass: a bias second order in ``step`` on slowly varying fields, and the
  same bound on fast oscillations (``1/step`` times their amplitude).
* ``autograd`` — ``torch.autograd.functional.jvp`` (the double-backward trick): slower, but works for
  modules without forward-mode rules; the tests use it as the reference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from cfm_core.forward_rules import lean_forward_rules

if TYPE_CHECKING:
    from cfm_core.formulations import Formulation

Field = Callable[[Tensor, Tensor], Tensor]

DERIVATIVE_BACKENDS = ("jvp", "jvp_one_pass", "finite_difference", "autograd")
FORWARD_RULES = ("auto", "lean", "torch")


def use_lean_rules(forward_rules: str, device: torch.device) -> bool:
    """Whether a forward-mode pass on ``device`` uses the lean layer rules: ``"lean"`` always,
    ``"torch"`` never, ``"auto"`` on the CPU and under ``torch.compile`` (which cannot trace
    PyTorch's own forward-mode rule of ``layer_norm``), PyTorch's own rules otherwise."""
    if forward_rules not in FORWARD_RULES:
        raise ValueError(f"forward_rules: unknown {forward_rules!r}; choose one of {FORWARD_RULES}")
    if forward_rules == "auto":
        return device.type == "cpu" or torch.compiler.is_compiling()
    return forward_rules == "lean"


@contextlib.contextmanager
def derivative_context(device: torch.device):
    """No grad, no autocast, math attention: the context every derivative pass runs in."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with (
        torch.no_grad(),
        torch.autocast(device_type=device.type, enabled=False),
        sdpa_kernel(SDPBackend.MATH),
    ):
        yield


def shared_rng(device: torch.device):
    """Fork the RNG so that a pass inside this context consumes the same random numbers as the
    pass that follows it (dropout masks are shared between the derivative and the gradient pass)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _dual_pass(field: Field, x: Tensor, t: Tensor, velocity: Tensor, lean: bool) -> tuple[Tensor, Tensor]:
    """``field`` on dual tensors with tangent ``(velocity, 1)`` (with the lean layer rules if
    ``lean``): the value and the detached tangent (zeros where the field does not depend on ``(x, t)``)."""
    with fwAD.dual_level(), lean_forward_rules() if lean else contextlib.nullcontext():
        out = field(fwAD.make_dual(x, velocity), fwAD.make_dual(t, torch.ones_like(t)))
        value, tangent = fwAD.unpack_dual(out)
    return value, torch.zeros_like(value) if tangent is None else tangent.detach()


def jvp_derivative(field: Field, x: Tensor, t: Tensor, velocity: Tensor, *, lean: bool = True) -> Tensor:
    """``Dm`` by forward-mode AD in float32 (dual tensors, with the lean layer rules if ``lean``;
    the same tangent as ``torch.func.jvp`` up to rounding)."""
    with derivative_context(x.device):
        return _dual_pass(field, x.float(), t.float(), velocity.float(), lean)[1]


def jvp_with_value(field: Field, x: Tensor, t: Tensor, velocity: Tensor, *, lean: bool = True) -> tuple[Tensor, Tensor]:
    """``(m, Dm)`` from one forward pass on dual tensors with gradients enabled: ``m`` carries the
    autograd graph (backpropagate through it as through an ordinary forward), ``Dm`` is detached.
    Runs in the input's dtype, without autocast; costs memory (see the module docstring)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        return _dual_pass(field, x, t, velocity.to(x.dtype), lean)


def autograd_derivative(field: Field, x: Tensor, t: Tensor, velocity: Tensor) -> Tensor:
    """``Dm`` by reverse-mode AD twice (``torch.autograd.functional.jvp``), in float32."""
    x32, t32, v32 = x.float(), t.float(), velocity.float()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.autocast(device_type=x.device.type, enabled=False), sdpa_kernel(SDPBackend.MATH):
        _, tangent = torch.autograd.functional.jvp(field, (x32, t32), (v32, torch.ones_like(t32)))
    return tangent.detach()


def finite_difference_derivative(
    field: Field,
    x: Tensor,
    t: Tensor,
    r: Tensor,
    m_inst: Tensor,
    m_value: Tensor | None,
    formulation: Formulation,
    step: float,
    *,
    central: bool = False,
) -> Tensor:
    """``Dm`` by one extra forward pass ``step`` (unit time) along the instantaneous flow towards ``r``.

    ``m_value`` is the detached float32 output of the gradient pass at ``(x, t)``, or ``None``: then
    the start is evaluated here too, in float32 outside autocast, with the RNG state the end's pass
    then uses (the same dropout masks); ``m_inst`` is the instantaneous field that moves ``x`` (the
    conditional target in training). ``central``: the secant between ``step`` back along the flow
    (shortened to the room left before the noise end) and ``step`` forward, one more pass; where
    no room is left it is the forward secant.
    """
    u_t, u_r = formulation.unit_from_time(t), formulation.unit_from_time(r)
    gap = (u_r - u_t).clamp_min(0.0)
    h = torch.where(gap > 0, torch.minimum(gap, torch.full_like(gap, step)), torch.full_like(gap, step))
    t_next = formulation.time_from_unit(u_t + h)
    shape = t.shape + (1,) * (x.ndim - t.ndim)
    with derivative_context(x.device):
        replay = not torch.compiler.is_compiling()  # a compiled graph cannot fork the RNG
        if m_value is None:
            with shared_rng(x.device) if replay else contextlib.nullcontext():
                m_value = field(x.float(), t.float())
        t_prev, m_prev = t.float(), m_value.float()
        if central:
            back = torch.minimum(h, u_t.clamp_min(0.0))
            t_prev = torch.where(back > 0, formulation.time_from_unit(u_t - back), t).float()
            x_prev = formulation.update(m_inst.float(), x.float(), t.float(), t_prev)
            with shared_rng(x.device) if replay else contextlib.nullcontext():
                m_prev = torch.where((back > 0).reshape(shape), field(x_prev, t_prev), m_prev)
        x_next = formulation.update(m_inst.float(), x.float(), t.float(), t_next.float())
        m_next = field(x_next, t_next.float())
        dt = (t_next - t_prev).float()
        return ((m_next - m_prev) / dt.reshape(shape)).detach()
