"""The formulation interface: one class holds everything a diffusion/flow formulation means.

A *formulation* fixes

* a Gaussian **path** ``x_t = alpha(t) * x_data + sigma(t) * noise`` (how training points are made),
* what the network **predicts** (the field ``m``: a velocity, an endpoint, a denoiser, an x0),
  and its conditional instantaneous target ``m_t(x | x_data)``,
* the **update** ``F[m, x, t, r]``: the step from time ``t`` to time ``r``. It is affine,
  ``F = P(t, r) m + Q(t, r) x`` with ``F[m, x, t, t] = x``; with the instantaneous field and
  ``r`` close to ``t`` it is the ordinary solver step, with the cumulative field ``m_{t->r}`` it is
  the cumulative flow map ``psi_{t->r}(x) = F[m_{t->r}(x), x, t, r]``,
* the **field-equation target** that ``m_{t->r}`` regresses onto (under stop-gradient),
* its **time convention** (which end is noise) and a map from *unit time* ``u`` in ``[0, 1]``
  (0 = noise, 1 = data, the same for every formulation) to its own time.

The general field equation
--------------------------
For an exact flow map, the backward transport equation in the start time reads
``d/dt psi_{t->r}(x) + (d/dx psi_{t->r}(x)) v_t(x) = 0`` where ``v_t`` is the instantaneous velocity.
Insert ``psi = P m + Q x`` (``m = m_{t->r}``):

    P_t m + P (d_t m + d_x m . v) + Q_t x + Q v = 0
    =>  m = -(P Dm + Q_t x + Q v) / P_t,      Dm := d_t m + (d_x m) v          (*)

``Dm`` is the total derivative of the network along the instantaneous flow with ``r`` held fixed,
a JVP with tangent ``(v, 1)`` on ``(x, t)``. ``v = P_r(t, t) m_t + Q_r(t, t) x`` is affine in the
instantaneous field, so replacing the marginal ``m_t`` by its conditional target gives an unbiased
regression target (the paper's Theorem 4). Each subclass writes the closed form of (*) and a test
checks it against (*) computed by autograd from :meth:`update` alone.

At the data end ``P_t`` vanishes (the equation degenerates into "``m`` is constant along the flow"),
so each closed form has one singular factor; subclasses clamp it (documented per class).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor


def expand_like(coefficient: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient of shape ``(B,)`` to broadcast against ``x`` ``(B, ...)``."""
    if coefficient.ndim == 0:
        return coefficient
    return coefficient.reshape(coefficient.shape + (1,) * (x.ndim - coefficient.ndim))


class Formulation(ABC):
    """Base class of the four formulations (and of any a user adds by writing one subclass).

    Subclasses implement the path coefficients, the update ``F``, the instantaneous velocity,
    the conditional target, the closed-form field-equation target and the unit-time map.
    Times are tensors of shape ``(B,)`` (or scalars); data tensors have shape ``(B, ...)``.
    """

    name: ClassVar[str] = ""
    #: Human-readable statement of the time convention, stored in checkpoints.
    time_convention: ClassVar[str] = ""
    #: The adaptive loss-weight power used when the user gives none (0: no adaptive weight).
    default_adaptive_p: ClassVar[float] = 0.0

    # ----------------------------------------------------------------- time --
    @property
    @abstractmethod
    def t_noise(self) -> float:
        """The time at the noise end (where sampling starts)."""

    @property
    @abstractmethod
    def t_data(self) -> float:
        """The time at the data end (where sampling stops)."""

    @abstractmethod
    def time_from_unit(self, u: Tensor) -> Tensor:
        """Map unit time ``u`` (0 = noise, 1 = data) to this formulation's time."""

    @abstractmethod
    def unit_from_time(self, t: Tensor) -> Tensor:
        """Inverse of :meth:`time_from_unit`."""

    def time_grid(self, steps: int, device: torch.device | str | None = None) -> Tensor:
        """The default grid of ``steps`` hops of the multi-step solvers, from ``t_noise`` to
        ``t_data`` (``steps+1`` times): equal steps in unit time."""
        u = torch.linspace(0.0, 1.0, check_steps(steps) + 1, device=device, dtype=torch.float64)
        grid = self.time_from_unit(u)
        grid[0], grid[-1] = self.t_noise, self.t_data
        return grid.float()

    def jump_grid(self, steps: int, device: torch.device | str | None = None) -> Tensor:
        """The default grid of ``steps`` jumps of the flow map (the cumulative sampler): the
        solvers' :meth:`time_grid` unless the formulation says otherwise."""
        return self.time_grid(steps, device=device)

    def network_time(self, t: Tensor) -> Tensor:
        """What the network sees as a time input (identity unless a subclass says otherwise)."""
        return t

    def toward_data(self, t: Tensor, r: Tensor) -> Tensor:
        """True where ``r`` lies on the data side of ``t`` (or equals it)."""
        if self.t_data > self.t_noise:
            return r >= t
        return r <= t

    def check_times(self, t: Tensor, r: Tensor | None = None) -> None:
        """Raise ``ValueError`` naming the problem if ``t`` (and ``r``) are outside the range.

        ``r`` must lie between ``t`` and the data end: generation runs from ``t`` to ``r``.
        """
        lo, hi = sorted((self.t_noise, self.t_data))
        tol = 1e-6 * max(1.0, abs(hi))
        for name, value in (("t", t), ("r", r)):
            if value is None:
                continue
            if not torch.isfinite(value).all():
                raise ValueError(f"{self.name}: time {name} contains NaN or inf")
            if (value < lo - tol).any() or (value > hi + tol).any():
                raise ValueError(
                    f"{self.name}: time {name} outside the formulation's range [{lo}, {hi}] "
                    f"(got min {value.min().item():.6g}, max {value.max().item():.6g}); "
                    f"{self.time_convention}"
                )
        if r is not None and not self.toward_data(t, r).all():
            raise ValueError(
                f"{self.name}: r must lie between t and the data end ({self.t_data}); "
                f"generation runs from t to r. {self.time_convention}"
            )

    # ----------------------------------------------------------------- path --
    @abstractmethod
    def path_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha, sigma, d alpha/dt, d sigma/dt)`` of the path ``x_t = alpha x_data + sigma noise``."""

    def prior(self, noise: Tensor) -> Tensor:
        """Scale standard-normal ``noise`` into a sample at the noise end ``t_noise``."""
        _, sigma, _, _ = self.path_coefficients(torch.tensor(self.t_noise, dtype=torch.float64))
        return noise * float(sigma)

    def interpolate(self, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """A training point ``x_t = alpha(t) x_data + sigma(t) noise``."""
        alpha, sigma, _, _ = self.path_coefficients(t)
        return expand_like(alpha, x_data) * x_data + expand_like(sigma, x_data) * noise

    def conditional_velocity(self, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``d x_t / dt`` along the conditional path with fixed ``x_data`` and ``noise``."""
        _, _, d_alpha, d_sigma = self.path_coefficients(t)
        return expand_like(d_alpha, x_data) * x_data + expand_like(d_sigma, x_data) * noise

    # ---------------------------------------------------------------- field --
    @abstractmethod
    def conditional_target(self, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The conditional instantaneous target ``m_t(x_t | x_data)`` (what r = t training regresses on)."""

    @abstractmethod
    def velocity(self, m: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """Instantaneous velocity ``dx/dt = P_r(t, t) m + Q_r(t, t) x`` of an instantaneous field ``m``."""

    @abstractmethod
    def update(self, m: Tensor, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        """The update ``F[m, x, t, r]``: the (cumulative) step from ``t`` to ``r``."""

    @abstractmethod
    def field_target(self, m_inst: Tensor, x: Tensor, t: Tensor, r: Tensor, dm: Tensor) -> Tensor:
        """Closed form of the field equation (*): the stop-gradient target for ``m_{t->r}(x)``.

        ``m_inst`` is the instantaneous field at ``(x, t)`` (the conditional target in training),
        ``dm`` the total derivative ``d_t m_{t->r} + (d_x m_{t->r}) v`` with ``v = velocity(m_inst, x, t)``.
        """

    def loss_weight(self, t: Tensor) -> Tensor:
        """Per-sample weight of the squared error in ``m`` space (1 unless a subclass says otherwise)."""
        return torch.ones_like(t)

    def field_weight(self, t: Tensor, r: Tensor) -> Tensor:
        """``P_t(t, r) / P_t(t, t)``: the normalised field weight (1 at ``r = t``, 0 at the data end).

        The regression target ``m_sg + lambda R`` of the residual ``R = P_t m + P Dm + Q_t x + Q v``
        has the same fixed point for every ``lambda``; the paper's closed form takes
        ``lambda = -1/P_t``, which blows up where ``P_t -> 0`` at the data end. Weighting that loss
        by ``P_t(t, r)/P_t(t, t)`` is the same as taking ``lambda = -1/P_t(t, t)``, bounded for
        every ``r``: the gradient becomes ``(m - m_t) - (r - t)``-sized terms, as for u-prediction.
        A positive per-``(t, r)`` weight leaves the minimiser (and Theorem 4) unchanged.
        """
        return torch.ones_like(t)

    def precondition(self, net, x: Tensor, t: Tensor, r: Tensor, cond=None) -> Tensor:
        """Evaluate the field ``m_{t->r}(x)`` from the raw network ``net(x, t, r, cond)``.

        The default passes the network times straight through; EDM overrides this with its
        ``c_skip``/``c_out``/``c_in``/``c_noise`` preconditioning.
        """
        return net(x, self.network_time(t), self.network_time(r), cond)

    def config(self) -> dict:
        """The constructor arguments, for checkpoints (``get_formulation`` rebuilds it from them)."""
        return {"name": self.name}

    def field_config(self) -> dict:
        """The part of :meth:`config` that fixes the path, the time and the field ``m`` (what
        :meth:`update` and :meth:`velocity` take), leaving out how the network parametrises ``m``
        (ddim's ``prediction``). Models with equal field configs have interchangeable fields: a
        distillation teacher and its student must share it."""
        return self.config()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def check_steps(steps: int) -> int:
    """``steps`` as an int; ``ValueError`` unless it is a positive integer."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return int(steps)
