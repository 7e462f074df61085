"""Flow matching on the linear path, with u-prediction (velocity) or x1-prediction (endpoint).

Time convention: ``t`` in ``[0, 1]``, **t = 0 is noise, t = 1 is data**; the path is
``x_t = t x1 + (1 - t) x0`` with ``x0`` standard normal. Generation runs from ``t`` up to ``r >= t``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cfm_core.formulations.base import Formulation, expand_like


class _LinearPath(Formulation):
    time_convention = "t in [0, 1]: t = 0 is noise, t = 1 is data; x_t = t*x1 + (1-t)*x0"

    @property
    def t_noise(self) -> float:
        return 0.0

    @property
    def t_data(self) -> float:
        return 1.0

    def time_from_unit(self, u: Tensor) -> Tensor:
        return u

    def unit_from_time(self, t: Tensor) -> Tensor:
        return t

    def path_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return t, 1.0 - t, torch.ones_like(t), -torch.ones_like(t)


class UFlowMatching(_LinearPath):
    """u-prediction flow matching: the network predicts a velocity ``u``.

    * Update: ``F[u, x, t, r] = x + (r - t) u`` (``P = r - t``, ``Q = 1``).
    * Conditional target: ``u_t(x | x1) = x1 - x0``; velocity ``v = u``.
    * Field target. With ``P_t = -1``, ``Q_t = 0``, ``Q = 1`` the general equation
      ``m = -(P Dm + Q_t x + Q v) / P_t`` becomes

          u_{t->r} = v + (r - t) [d_t u + (d_x u) v],

      the MeanFlow identity ``u = v - (t - r) du/dt`` with the direction of time flipped.
      Nothing is singular, no clamp is needed.
    """

    name = "u"

    def conditional_target(self, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return x_data - noise

    def velocity(self, m: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return m

    def update(self, m: Tensor, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        return x + expand_like(r - t, x) * m

    def field_target(self, m_inst: Tensor, x: Tensor, t: Tensor, r: Tensor, dm: Tensor) -> Tensor:
        return m_inst + expand_like(r - t, x) * dm


class X1FlowMatching(_LinearPath):
    """x1-prediction flow matching: the network predicts the data endpoint ``x1_hat``.

    * Update: ``F[x1_hat, x, t, r] = x + (r - t)/(1 - t) (x1_hat - x)``, i.e.
      ``P = (r - t)/(1 - t)``, ``Q = (1 - r)/(1 - t)``.
    * Conditional target ``x1``; velocity ``v = (x1_hat - x)/(1 - t)``.
    * Field target. ``P_t = -(1 - r)/(1 - t)^2``, ``Q_t = (1 - r)/(1 - t)^2``; with the
      conditional velocity ``v = (x1 - x)/(1 - t)`` the general equation gives

          x1_hat_{t->r} = (1-t)^2/(1-r) [ (r-t)/(1-t) Dm + (1-r)/(1-t)^2 x + (1-r)/(1-t) v ]
                        = x1 + (r - t)/(1 - r) [ (1 - t) d_t x1_hat + (d_x x1_hat)(x1 - x) ]

      (``Dm = d_t x1_hat + d_x x1_hat . v``, so ``(1-t) Dm`` is the bracket).
    * Clamps: ``1 - r`` in the target is clamped at ``target_clamp`` (0.02, as Euler Mean Flows);
      ``1 - t`` in the update and velocity at ``eps`` so that ``t = r = 1`` is the identity.
    * Loss weight ``1/max(1 - t, target_clamp)^2`` by default, which makes the r = t loss the usual
      velocity-space flow-matching loss (``velocity_weighting=False`` gives plain MSE on x1).
    """

    name = "x1"

    def __init__(self, target_clamp: float = 0.02, velocity_weighting: bool = True) -> None:
        if not 0.0 < target_clamp < 1.0:
            raise ValueError(f"x1: target_clamp must lie in (0, 1), got {target_clamp}")
        self.target_clamp = float(target_clamp)
        self.velocity_weighting = bool(velocity_weighting)
        self.eps = 1e-6

    def conditional_target(self, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return x_data

    def velocity(self, m: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return (m - x) / expand_like((1.0 - t).clamp_min(self.eps), x)

    def update(self, m: Tensor, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        ratio = (r - t) / (1.0 - t).clamp_min(self.eps)
        return x + expand_like(ratio, x) * (m - x)

    def field_target(self, m_inst: Tensor, x: Tensor, t: Tensor, r: Tensor, dm: Tensor) -> Tensor:
        coefficient = (r - t) * (1.0 - t) / (1.0 - r).clamp_min(self.target_clamp)
        return m_inst + expand_like(coefficient, x) * dm

    def field_weight(self, t: Tensor, r: Tensor) -> Tensor:
        """``P_t(t, r)/P_t(t, t) = (1 - r)/(1 - t)``."""
        return (1.0 - r) / (1.0 - t).clamp_min(self.eps)

    def loss_weight(self, t: Tensor) -> Tensor:
        if not self.velocity_weighting:
            return torch.ones_like(t)
        return (1.0 - t).clamp_min(self.target_clamp).pow(-2)

    def config(self) -> dict:
        return {
            "name": self.name,
            "target_clamp": self.target_clamp,
            "velocity_weighting": self.velocity_weighting,
        }
