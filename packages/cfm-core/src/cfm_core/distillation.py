"""Distillation from a frozen, trained teacher: the teacher and the objectives that use it.

A :class:`Teacher` wraps a trained model (any multi-step model, or a CFM model's ``r = t`` field) of
the same formulation as the student (the same path and field ``m``; the network's parametrisation of
``m`` may differ: an epsilon-prediction ddim teacher gives the same ``x0_hat`` field as an x0 one).
It is frozen (eval mode, no gradients), it is not a submodule of the loss (so it is never saved into
the student's checkpoints nor seen by its optimizer) and it follows the student's device and dtype.

The objectives (Boffi et al., *Flow Map Matching*; Luhman & Luhman 2021 for ``regression``):

* ``eulerian`` — the cumulative field-equation target with the teacher's instantaneous field
  ``m_{t->t}`` in place of the conditional one (no data noise in the target). The loss computes it
  with its own derivative backends; nothing here is specific to it.
* ``lagrangian`` — the residual of ``d_r psi_{t->r}(x) = v_teacher(psi_{t->r}(x), r)`` with
  ``psi = F[m_{t->r}(x), x, t, r] = P m + Q x``. Solving ``R = P_r m + P d_r m + Q_r x - v = 0``
  for ``m`` gives the stop-gradient regression target of :func:`lagrangian_target`,

      m_{t->r} <- (v_teacher(psi, r) - Q_r x - P d_r m) / P_r,

  whose fixed point is the teacher's flow map (for u-prediction: MeanFlow's
  ``u = v(x + (r - t) u, r) - (r - t) d_r u``). :func:`lagrangian_weight` scales each row so that
  its gradient is the residual per unit time in the units of the instantaneous field.
* ``regression`` — the student's single jump from the noise end to the data end regressed onto
  the teacher's ODE endpoint from the same noise (:meth:`Teacher.endpoint`, no gradients).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from cfm_core.derivatives import (
    autograd_derivative,
    derivative_context,
    jvp_derivative,
    jvp_with_value,
    shared_rng,
)
from cfm_core.formulations import Formulation, expand_like
from cfm_core.samplers import INSTANTANEOUS_METHODS, SAMPLERS

OBJECTIVES = ("data", "eulerian", "lagrangian", "regression")
TEACHER_OBJECTIVES = ("eulerian", "lagrangian", "regression")


def weights_sha256(state_dict: Mapping[str, Tensor]) -> str:
    """SHA-256 of a state dict: every entry's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Teacher:
    """A frozen trained model whose instantaneous field a student distils.

    Args:
        model: a trained model with ``.formulation`` and ``.field(x, t, r, cond)`` (a
            :class:`~cfm_core.CumulativeFlowMap` or ``FlowMap``). It is put in eval mode with
            gradients off, and moved to the device and dtype of the inputs it is called with.
        source: where the weights came from (a checkpoint path), for the run's records.

    Not an ``nn.Module``: a loss holding it does not register it, so its weights never enter the
    student's state dict, optimizer or EMA.
    """

    def __init__(self, model: nn.Module, *, source: str | None = None) -> None:
        if not hasattr(model, "formulation") or not callable(getattr(model, "field", None)):
            raise TypeError(f"a teacher needs .formulation and .field(x, t, r, cond), got {type(model).__name__}")
        self.model = model.eval().requires_grad_(False)
        self.formulation: Formulation = model.formulation
        self.source = source
        self.weights_sha256 = weights_sha256(model.state_dict())

    def record(self) -> dict[str, Any]:
        """What a run stores about its teacher: the source path and the SHA-256 of its weights."""
        return {"path": self.source, "weights_sha256": self.weights_sha256}

    def _follow(self, x: Tensor) -> None:
        """Move the teacher to ``x``'s device and (floating) dtype if it is elsewhere."""
        reference = next(self.model.parameters(), None)
        if reference is None:
            reference = next(self.model.buffers(), None)
        if reference is None:
            return
        dtype = x.dtype if x.is_floating_point() else reference.dtype
        if reference.device != x.device or reference.dtype != dtype:
            self.model.to(device=x.device, dtype=dtype)

    @torch.no_grad()
    def field(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """The teacher's instantaneous field ``m_{t->t}(x)`` (detached, in ``x``'s dtype)."""
        self._follow(x)
        return self.model.field(x, t, t, cond).to(x.dtype)

    @torch.no_grad()
    def velocity(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """The teacher's probability-flow velocity ``v(x, t)`` (detached)."""
        return self.formulation.velocity(self.field(x, t, cond), x, t)

    @torch.no_grad()
    def endpoint(self, noise: Tensor, steps: int, method: str = "heun", cond: Any = None) -> Tensor:
        """The end of the teacher's ODE from standard-normal ``noise`` (scaled by the formulation's
        prior), integrated with ``steps`` hops of ``method`` (euler, heun or ddim) on the default grid."""
        if method not in INSTANTANEOUS_METHODS:
            raise ValueError(f"unknown teacher sampler {method!r}; choose one of {INSTANTANEOUS_METHODS}")
        f = self.formulation
        grid = f.time_grid(steps, device=noise.device)

        def field(x: Tensor, t: Tensor, r: Tensor) -> tuple[Tensor, int]:
            return self.field(x, t, cond), 1

        x, _ = SAMPLERS[method](field, f, f.prior(noise), grid)
        return x


# ------------------------------------------------------------------------------ lagrangian --
def update_coefficients(formulation: Formulation, t: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(P, Q, d_r P, d_r Q)`` of the affine update ``F[m, x, t, r] = P m + Q x``, each ``(B,)``."""
    one, zero = torch.ones_like(t), torch.zeros_like(t)

    def coefficients(r_: Tensor) -> tuple[Tensor, Tensor]:
        return formulation.update(one, zero, t, r_), formulation.update(zero, one, t, r_)

    (p, q), (p_r, q_r) = torch.func.jvp(coefficients, (r,), (torch.ones_like(r),))
    return p, q, p_r, q_r


def _time_per_unit(formulation: Formulation, t: Tensor) -> Tensor:
    """``|dt/du|`` at ``t``: how fast the formulation's time moves per unit time ``u`` (the time in
    which training pairs are drawn and sampling grids are laid out). 1 for u, x1 and ddim; for edm
    ``rho sigma^((rho - 1)/rho) |sigma_min^(1/rho) - sigma_max^(1/rho)|`` (the Karras schedule)."""
    u = formulation.unit_from_time(t)
    _, speed = torch.func.jvp(formulation.time_from_unit, (u,), (torch.ones_like(u),))
    return speed.abs()


def lagrangian_weight(formulation: Formulation, t: Tensor, r: Tensor) -> Tensor:
    """``|d_r P(t, r) / d_r P(t, t)| * |dr/du| / |dt/du|`` (1 at ``r = t``).

    With it the gradient of a row is its Lagrangian residual per unit time ``u`` (the residual of
    ``d psi / du``) divided by the instantaneous field's velocity coefficient per unit time at
    ``t``. The first factor bounds the weight at the data end where ``d_r P`` grows (ddim); the
    second is 1 where time is linear in ``u`` (u, x1, ddim) and ``(r/t)^((rho - 1)/rho)`` for edm,
    whose residual per unit sigma scales like ``1/r`` towards the data end (the velocity is
    ``(x - D)/sigma`` and the network sees ``log sigma``): without it the rows ending near the data
    end dominate the gradient and the intermediate ends of few-step grids are barely trained.
    """
    _, _, p_r, _ = update_coefficients(formulation, t, r)
    _, _, p_t, _ = update_coefficients(formulation, t, t)
    return (p_r / p_t).abs() * _time_per_unit(formulation, r) / _time_per_unit(formulation, t)


def r_derivative(
    field_at: Callable[[Tensor], Tensor],
    formulation: Formulation,
    t: Tensor,
    r: Tensor,
    backend: str,
    step: float,
) -> Tensor:
    """``d_r m_{t->r}(x)`` (detached) of ``field_at(r) = m_{t->r}(x)``.

    ``backend``: ``"jvp"`` / ``"jvp_one_pass"`` (forward-mode, float32), ``"autograd"`` (double
    backward) or ``"finite_difference"``: the derivative at ``r`` of the parabola through the field
    at ``r`` and two more times ``step`` unit time apart (three passes; a bias second order in
    ``step``, where a two-point secant's first-order bias misleads the one-jump rows wherever the
    flow bends): ``r - step`` and ``r + step`` inside, ``r + step`` and ``r + 2 step`` near ``t``,
    ``r - step`` and ``r - 2 step`` near the data end (spacing shortened to the room left after
    ``t``). Every pass replays the same random numbers, so dropout masks agree.
    """

    def in_x_and_r(x_: Tensor, r_: Tensor) -> Tensor:
        return field_at(r_)

    dummy = torch.zeros_like(r)
    if backend in ("jvp", "jvp_one_pass"):
        return jvp_derivative(in_x_and_r, dummy, r, torch.zeros_like(dummy))
    if backend == "autograd":
        return autograd_derivative(in_x_and_r, dummy, r, torch.zeros_like(dummy))
    if backend != "finite_difference":
        raise ValueError(f"unknown derivative backend {backend!r}")
    u_t, u_r = formulation.unit_from_time(t), formulation.unit_from_time(r)
    h = torch.full_like(u_r, step)
    central = (u_r + h <= 1.0) & (u_r - h >= u_t)
    ahead = ~central & (u_r + 2 * h <= 1.0)
    back = torch.minimum(h, ((u_r - u_t) / 2).clamp_min(1e-4))
    u_a = torch.where(central, u_r - h, torch.where(ahead, u_r + h, u_r - back))
    u_b = torch.where(central, u_r + h, torch.where(ahead, u_r + 2 * h, u_r - 2 * back))
    r_a, r_b = (formulation.time_from_unit(u).to(r.dtype) for u in (u_a, u_b))
    with derivative_context(r.device):
        values = []
        for r_i in (r, r_a, r_b):
            with shared_rng(r.device):
                values.append(field_at(r_i).float())
        m0, m_a, m_b = values
        r0, r_a, r_b = r.float(), r_a.float(), r_b.float()
        # the derivative at r0 of the Lagrange parabola through (r0, m0), (r_a, m_a), (r_b, m_b)
        c0 = (2 * r0 - r_a - r_b) / ((r0 - r_a) * (r0 - r_b))
        c_a = (r0 - r_b) / ((r_a - r0) * (r_a - r_b))
        c_b = (r0 - r_a) / ((r_b - r0) * (r_b - r_a))
        return (expand_like(c0, m0) * m0 + expand_like(c_a, m0) * m_a + expand_like(c_b, m0) * m_b).detach()


def lagrangian_target(
    x: Tensor, t: Tensor, r: Tensor, dm_dr: Tensor, teacher_velocity: Tensor, formulation: Formulation
) -> Tensor:
    """The stop-gradient target ``(v_teacher(psi, r) - Q_r x - P d_r m) / P_r`` for ``m_{t->r}(x)``.

    ``teacher_velocity`` is the teacher's velocity at ``(psi_{t->r}(x), r)`` with
    ``psi = F[m, x, t, r]``; ``dm_dr`` the derivative of the student's field in ``r``.
    """
    p, _, p_r, q_r = update_coefficients(formulation, t, r)
    target = (teacher_velocity.float() - expand_like(q_r, x) * x.float() - expand_like(p, x) * dm_dr.float()) / (
        expand_like(p_r, x)
    )
    return target.detach()


def lagrangian_prediction(
    field_at: Callable[[Tensor], Tensor],
    x: Tensor,
    t: Tensor,
    r: Tensor,
    teacher_velocity: Callable[[Tensor, Tensor], Tensor],
    formulation: Formulation,
    backend: str = "jvp",
    step: float = 0.01,
) -> tuple[Tensor, Tensor]:
    """The gradient-carrying prediction ``m_{t->r}(x)`` and its Lagrangian stop-gradient target.

    ``field_at(r) -> m_{t->r}(x)`` holds ``x``, ``t`` and the condition fixed;
    ``teacher_velocity(x, t)`` is the teacher's (detached) velocity. ``backend`` picks how ``d_r m``
    is taken (see :func:`r_derivative`; ``jvp_one_pass`` takes the prediction from the dual pass).
    """
    if backend == "jvp_one_pass" and not torch.is_autocast_enabled(x.device.type):
        pred, dm_dr = jvp_with_value(lambda x_, r_: field_at(r_), torch.zeros_like(r), r, torch.zeros_like(r))
    else:
        with shared_rng(x.device):  # the derivative passes see the prediction pass's dropout masks
            dm_dr = r_derivative(field_at, formulation, t, r, backend, step)
        pred = field_at(r)
    with torch.no_grad():
        psi = formulation.update(pred.detach().float(), x.float(), t, r)
        v = teacher_velocity(psi, r)
    return pred, lagrangian_target(x, t, r, dm_dr, v, formulation)


# ------------------------------------------------------------------------------ regression --
def regression_pair(
    field: Callable[[Tensor, Tensor, Tensor], Tensor],
    noise: Tensor,
    teacher: Teacher,
    steps: int,
    method: str = "heun",
    cond: Any = None,
) -> tuple[Tensor, Tensor]:
    """The student's one jump from ``noise`` and the teacher's ODE endpoint from the same noise.

    ``field(x, t, r) -> m_{t->r}(x)`` is the student's (gradient-carrying) field. Returns
    ``(psi_{noise->data}(prior(noise)), teacher endpoint)``; the second is detached.
    """
    f = teacher.formulation
    x = f.prior(noise)
    t = torch.full((x.shape[0],), f.t_noise, device=x.device)
    r = torch.full((x.shape[0],), f.t_data, device=x.device)
    jump = f.update(field(x, t, r), x, t, r)
    return jump, teacher.endpoint(noise, steps, method, cond)
