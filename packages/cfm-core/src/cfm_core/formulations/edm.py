"""EDM (Karras et al. 2022): a preconditioned denoiser on the variance-exploding path.

Time convention: ``t = sigma`` in ``[0, sigma_max]``, **t = sigma_max is noise, t = 0 is data**;
the path is ``x = x_data + sigma * noise``. Generation runs from ``t`` down to ``r <= t``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cfm_core.formulations.base import Formulation, check_steps, expand_like


class EDM(Formulation):
    """EDM denoiser ``D`` with EDM's preconditioning and Karras sigma schedule.

    * Preconditioning (written once, here): ``D(x; t, r) = c_skip(t) x + c_out(t) net(c_in(t) x,
      c_noise(t), c_noise(r))`` with ``c_skip = sd^2/(t^2+sd^2)``, ``c_out = t sd/sqrt(t^2+sd^2)``,
      ``c_in = 1/sqrt(t^2+sd^2)``, ``c_noise = ln(max(t, sigma_min))/4`` (``sd`` = ``sigma_data``).
    * Update: the Euler step of the probability-flow ODE ``dx/dsigma = (x - D)/sigma``:
      ``F[D, x, t, r] = x + (r - t)(x - D)/t``, i.e. ``P = (t - r)/t``, ``Q = r/t``; at ``r = 0``
      it returns ``D`` itself.
    * Conditional target ``x_data``; conditional velocity ``(x - x_data)/t`` (= the noise).
    * Field target. ``P_t = r/t^2``, ``Q_t = -r/t^2``; the general equation gives

          D_{t->r} = -(t^2/r) [ (t-r)/t Dm - r/t^2 x + r/t (x - D_t)/t ]
                   = D_t + (r - t) t / r . Dm
                   = x_data + (r - t)/r [ t d_t D + (d_x D)(x - x_data) ]      (conditional form)

    * Clamp: ``r`` in the ``1/r`` factor is clamped at ``target_clamp`` (default ``sigma_min``).
    * Unit time follows the Karras schedule with ``rho``: ``u = 0 -> sigma_max``, ``u = 1 ->
      sigma_min``; the sampling grid of N hops is ``Karras(i/N)`` for ``i < N``, then 0 (EDM's own
      grid puts ``sigma_min`` before the final 0, which wastes a hop in few-step sampling). The
      flow map's jumps take :meth:`jump_grid`, equal steps in ``log sigma``.
    * Loss weight ``1/c_out(t)^2`` (EDM's ``lambda(sigma)``): the loss in the raw network's units.
    """

    name = "edm"
    time_convention = "t = sigma in [0, sigma_max]: t = sigma_max is noise, t = 0 is data; x = x_data + sigma*noise"

    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        sigma_data: float = 0.5,
        rho: float = 7.0,
        target_clamp: float | None = None,
    ) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"edm: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if sigma_data <= 0 or rho <= 0:
            raise ValueError(f"edm: sigma_data and rho must be positive, got {sigma_data}, {rho}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.sigma_data, self.rho = float(sigma_data), float(rho)
        self.target_clamp = float(sigma_min if target_clamp is None else target_clamp)
        if self.target_clamp <= 0:
            raise ValueError(f"edm: target_clamp must be positive, got {target_clamp}")

    @property
    def t_noise(self) -> float:
        return self.sigma_max

    @property
    def t_data(self) -> float:
        return 0.0

    def time_from_unit(self, u: Tensor) -> Tensor:
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (hi + u * (lo - hi)).clamp_min(0.0) ** self.rho

    def unit_from_time(self, t: Tensor) -> Tensor:
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (t.clamp_min(0.0) ** (1 / self.rho) - hi) / (lo - hi)

    def jump_grid(self, steps: int, device: torch.device | str | None = None) -> Tensor:
        """``steps`` jumps equally spaced in ``log sigma`` (the network's time input) from
        ``sigma_max`` to ``sigma_min``, then 0. The Karras grid of :meth:`time_grid` spaces an ODE
        solver's steps by its truncation error, which a jump of the flow map does not have
        (docs/design-notes.md, "EDM's jump grid")."""
        i = torch.arange(check_steps(steps), device=device, dtype=torch.float64)
        log_max, log_min = math.log(self.sigma_max), math.log(self.sigma_min)
        sigmas = torch.exp(log_max + i / steps * (log_min - log_max))
        return torch.cat([sigmas, sigmas.new_zeros(1)]).float()

    def network_time(self, t: Tensor) -> Tensor:
        return t.clamp_min(self.sigma_min).log() / 4

    def path_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return torch.ones_like(t), t, torch.zeros_like(t), torch.ones_like(t)

    def preconditioning(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(c_skip, c_out, c_in)`` at sigma ``t``."""
        sd2 = self.sigma_data**2
        norm = (t**2 + sd2).rsqrt()
        return sd2 * norm**2, t * self.sigma_data * norm, norm

    def precondition(self, net, x: Tensor, t: Tensor, r: Tensor, cond=None) -> Tensor:
        c_skip, c_out, c_in = (expand_like(c, x) for c in self.preconditioning(t))
        out = net(c_in * x, self.network_time(t), self.network_time(r), cond)
        return c_skip * x + c_out * out

    def conditional_target(self, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return x_data

    def velocity(self, m: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return (x - m) / expand_like(t.clamp_min(1e-12), x)

    def update(self, m: Tensor, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        ratio = (t - r) / t.clamp_min(1e-12)
        return x + expand_like(ratio, x) * (m - x)

    def field_target(self, m_inst: Tensor, x: Tensor, t: Tensor, r: Tensor, dm: Tensor) -> Tensor:
        coefficient = (r - t) * t / r.clamp_min(self.target_clamp)
        return m_inst + expand_like(coefficient, x) * dm

    def field_weight(self, t: Tensor, r: Tensor) -> Tensor:
        """``P_t(t, r)/P_t(t, t) = r/t``."""
        return r / t.clamp_min(1e-12)

    def loss_weight(self, t: Tensor) -> Tensor:
        _, c_out, _ = self.preconditioning(t.clamp_min(self.sigma_min))
        return c_out.pow(-2)

    def config(self) -> dict:
        return {
            "name": self.name,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "sigma_data": self.sigma_data,
            "rho": self.rho,
            "target_clamp": self.target_clamp,
        }
