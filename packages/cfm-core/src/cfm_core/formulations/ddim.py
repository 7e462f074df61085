"""DDIM: the DDPM (variance-preserving) path, x0- or epsilon-prediction, and the deterministic DDIM update.

Time convention: continuous ``t`` in ``[0, 1]`` (DDPM step index / T), **t = 1 is noise, t = 0 is
data**; ``x_t = sqrt(abar(t)) x0 + sqrt(1 - abar(t)) eps``. Generation runs from ``t`` down to ``r <= t``.

The schedule is DDPM's linear beta schedule in continuous time (the VP-SDE of Song et al.):
``beta(t) = beta_min + (beta_max - beta_min) t`` with ``beta_min = T * 1e-4 = 0.1`` and
``beta_max = T * 0.02 = 20`` for ``T = 1000``, so ``log abar(t) = -(beta_min t + (beta_max -
beta_min) t^2 / 2)`` and ``d abar/dt = -beta(t) abar(t)`` exactly (``abar(1) ~ 4.3e-5``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cfm_core.formulations.base import Formulation, expand_like

#: What the network outputs: the clean data x0, or the noise epsilon.
PREDICTIONS = ("x0", "epsilon")


class DDIM(Formulation):
    """DDIM with x0-prediction ``x0_hat`` (or epsilon-prediction, read as ``x0_hat``).

    Write ``a = sqrt(abar)``, ``s = sqrt(1 - abar)``.

    * Update (the DDIM step): ``F[x0_hat, x, t, r] = a_r x0_hat + s_r (x - a_t x0_hat)/s_t``, i.e.
      ``P = a_r - s_r a_t/s_t``, ``Q = s_r/s_t``; at ``r = 0`` it returns ``x0_hat``.
    * Conditional target ``x0``; velocity ``v = a_t' x0_hat + s_t' (x - a_t x0_hat)/s_t`` with
      ``a' = -beta a/2``, ``s' = beta abar/(2 s)``.
    * Field target. ``P_t = -(s_r/s_t^2)(a_t' s_t - a_t s_t') = -(s_r/s_t^3) a_t'`` (using
      ``a^2 + s^2 = 1``) and ``Q_t x + Q v = (s_r/s_t^3) a_t' x0`` for the conditional velocity, so
      the general equation gives ``m = x0 - (P/P_t) Dm`` with

          -P/P_t = (a_r s_t - s_r a_t) s_t^2 / (s_r a_t') = -2 (1 - abar_t)/beta(t) . K,
          K = s_t a_r / (s_r a_t) - 1,

      i.e. ``x0_hat_{t->r} = x0 + K [ (d_x x0_hat)(a_t x0 - abar_t x) - 2 (1 - abar_t)/beta(t) d_t x0_hat ]``
      (the paper's form with the discrete ``(1 - beta)/beta`` replaced by its continuous limit).
    * Clamp: ``s_r`` in ``K`` is clamped at ``s(target_clamp)`` (default ``t = 1e-3``, DDPM step 1).
    * Default adaptive weight ``p = 1``: near the noise end ``1/a_t'`` makes the target amplify
      errors in ``d_t x0_hat``, and the adaptive weight bounds their effect on the gradient (the
      paper also reports DDIM's learning-rate sensitivity; docs/design-notes.md, "DDIM's adaptive
      weight").
    * ``prediction="epsilon"``: the network outputs ``eps_hat`` and the field is
      ``x0_hat = (x - s_t eps_hat)/a_t``. Since ``x0_hat - x0 = s_t (eps - eps_hat)/a_t`` on the
      path, the loss weight ``a_t^2/s_t^2`` (the signal-to-noise ratio, ``t`` clamped at
      ``target_clamp``: DDPM's step 1, below which DDPM never trains) makes the ``r = t`` loss DDPM's
      plain squared error on the noise, and the default adaptive weight is ``p = 0``. One DDIM step
      from the noise end reads ``x0_hat`` through ``1/a_1 ~ 150``, so every error of ``eps_hat``
      there is amplified that much: an epsilon model needs its steps (the few-step failure the CFM
      paper reports). Stored in checkpoints only when it is ``epsilon``, so that x0 checkpoints keep
      their config.
    """

    name = "ddim"
    time_convention = (
        "t in [0, 1] (DDPM step / T): t = 1 is noise, t = 0 is data; x_t = sqrt(abar)*x0 + sqrt(1-abar)*eps"
    )

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, target_clamp: float = 1e-3, prediction: str = "x0"
    ) -> None:
        if not 0.0 < beta_min <= beta_max:
            raise ValueError(f"ddim: need 0 < beta_min <= beta_max, got {beta_min}, {beta_max}")
        if not 0.0 < target_clamp < 1.0:
            raise ValueError(f"ddim: target_clamp must lie in (0, 1), got {target_clamp}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"ddim: prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.beta_min, self.beta_max, self.target_clamp = (
            float(beta_min),
            float(beta_max),
            float(target_clamp),
        )
        self.prediction = prediction

    @property
    def default_adaptive_p(self) -> float:  # the base class's class attribute, per instance here
        """1 for x0-prediction; 0 for epsilon-prediction (DDPM's plain squared error on the noise)."""
        return 0.0 if self.prediction == "epsilon" else 1.0

    @property
    def t_noise(self) -> float:
        return 1.0

    @property
    def t_data(self) -> float:
        return 0.0

    def time_from_unit(self, u: Tensor) -> Tensor:
        return 1.0 - u

    def unit_from_time(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def beta(self, t: Tensor) -> Tensor:
        """Continuous-time ``beta(t)`` with ``d abar/dt = -beta abar``."""
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        """``log abar(t) = -(beta_min t + (beta_max - beta_min) t^2/2)``."""
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)

    def alpha_bar(self, t: Tensor) -> Tensor:
        """``abar(t)``, the signal variance of the path."""
        return self.log_alpha_bar(t).exp()

    def _a_s(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(sqrt(abar), sqrt(1 - abar))``, the latter without cancellation near t = 0."""
        log_abar = self.log_alpha_bar(t)
        return (0.5 * log_abar).exp(), (-torch.expm1(log_abar)).clamp_min(0).sqrt()

    def prior(self, noise: Tensor) -> Tensor:
        # abar(1) ~ 4e-5: the marginal at t = 1 is standard normal up to that.
        return noise

    def path_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a, s = self._a_s(t)
        beta = self.beta(t)
        return a, s, -0.5 * beta * a, 0.5 * beta * a**2 / s.clamp_min(1e-12)

    def precondition(self, net, x: Tensor, t: Tensor, r: Tensor, cond=None) -> Tensor:
        """The network's output (x0-prediction), or ``(x - s_t eps_hat)/a_t`` (epsilon-prediction)."""
        out = net(x, self.network_time(t), self.network_time(r), cond)
        if self.prediction == "x0":
            return out
        a, s = (expand_like(c, x) for c in self._a_s(t))
        return (x - s * out) / a

    def loss_weight(self, t: Tensor) -> Tensor:
        """1 for x0-prediction; ``a_t^2/s_t^2`` (``t`` clamped at ``target_clamp``) for epsilon."""
        if self.prediction == "x0":
            return torch.ones_like(t)
        log_abar = self.log_alpha_bar(t.clamp_min(self.target_clamp))
        return log_abar.exp() / -torch.expm1(log_abar)

    def conditional_target(self, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return x_data

    def velocity(self, m: Tensor, x: Tensor, t: Tensor) -> Tensor:
        a, s, da, ds = (expand_like(c, x) for c in self.path_coefficients(t))
        return da * m + ds * (x - a * m) / s.clamp_min(1e-12)

    def update(self, m: Tensor, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        a_t, s_t = (expand_like(c, x) for c in self._a_s(t))
        a_r, s_r = (expand_like(c, x) for c in self._a_s(r))
        return a_r * m + s_r * (x - a_t * m) / s_t.clamp_min(1e-12)

    def field_target(self, m_inst: Tensor, x: Tensor, t: Tensor, r: Tensor, dm: Tensor) -> Tensor:
        a_t, s_t = self._a_s(t)
        a_r, s_r = self._a_s(r)
        _, s_clamp = self._a_s(torch.tensor(self.target_clamp, dtype=t.dtype, device=t.device))
        k = s_t * a_r / (s_r.clamp_min(s_clamp) * a_t) - 1.0
        coefficient = -2.0 * (1.0 - self.alpha_bar(t)) / self.beta(t) * k
        return m_inst + expand_like(coefficient, x) * dm

    def field_weight(self, t: Tensor, r: Tensor) -> Tensor:
        """``P_t(t, r)/P_t(t, t) = s_r/s_t``."""
        return self._a_s(r)[1] / self._a_s(t)[1].clamp_min(1e-12)

    def config(self) -> dict:
        config = {
            "name": self.name,
            "beta_min": self.beta_min,
            "beta_max": self.beta_max,
            "target_clamp": self.target_clamp,
        }
        if self.prediction != "x0":
            config["prediction"] = self.prediction
        return config

    def field_config(self) -> dict:
        """The config without ``prediction``: x0- and epsilon-models share the field ``x0_hat``."""
        return {k: v for k, v in self.config().items() if k != "prediction"}
