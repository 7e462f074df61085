"""Gaussian-to-Gaussian transport: the exact flow map of every formulation, in closed form.

If the data are ``N(mu, Sigma)`` and the path is ``x_t = alpha_t x_data + sigma_t noise``, every
marginal is Gaussian with mean ``alpha_t mu`` and covariance ``alpha_t^2 Sigma + sigma_t^2 I``. In the
eigenbasis ``Sigma = U diag(lam) U^T`` the coordinates decouple with variances
``V_t = alpha_t^2 lam + sigma_t^2``, and the probability-flow ODE is linear:
``v_t(x) = alpha_t' mu + U diag(V_t'/(2 V_t)) U^T (x - alpha_t mu)``. Its flow map is affine:

    psi_{t->r}(x) = alpha_r mu + U diag(sqrt(V_r / V_t)) U^T (x - alpha_t mu).

Because every update ``F`` is affine in the field, the exact fields follow by inverting ``F``:
``m_{t->r} = (psi_{t->r}(x) - Q x)/P`` and ``m_t = (v_t(x) - B x)/A`` where ``F = P m + Q x`` and
``velocity = A m + B x``. The tests use these oracles; users can check a new formulation with them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cfm_core.formulations import Formulation, expand_like


class GaussianOracle:
    """Exact fields and flow maps for data ``N(mean, covariance)`` under ``formulation``.

    Args:
        formulation: any formulation whose path is Gaussian (all four are).
        mean: ``(D,)`` data mean.
        covariance: ``(D, D)`` symmetric positive-definite data covariance.
    """

    def __init__(self, formulation: Formulation, mean: Tensor, covariance: Tensor) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float64)
        covariance = torch.as_tensor(covariance, dtype=torch.float64)
        if mean.ndim != 1 or covariance.shape != (mean.numel(), mean.numel()):
            raise ValueError(
                f"need mean (D,) and covariance (D, D), got {tuple(mean.shape)}, {tuple(covariance.shape)}"
            )
        lam, basis = torch.linalg.eigh(0.5 * (covariance + covariance.T))
        if (lam <= 0).any():
            raise ValueError("covariance must be positive definite")
        self.formulation = formulation
        self.mean, self.covariance, self.lam, self.basis = mean, covariance, lam, basis

    # ---- marginals -----------------------------------------------------------
    def _variances(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha, d alpha, V, dV)`` with ``V``, ``dV`` of shape ``(B, D)`` in the eigenbasis."""
        alpha, sigma, d_alpha, d_sigma = self.formulation.path_coefficients(t.double())
        var = alpha[:, None] ** 2 * self.lam + sigma[:, None] ** 2
        d_var = 2 * alpha[:, None] * d_alpha[:, None] * self.lam + 2 * sigma[:, None] * d_sigma[:, None]
        return alpha, d_alpha, var, d_var

    def sample_marginal(self, z: Tensor, t: Tensor) -> Tensor:
        """Map standard-normal ``z`` ``(B, D)`` to the exact marginal at ``t`` (monotonically)."""
        alpha, _, var, _ = self._variances(t)
        return (alpha[:, None] * self.mean + (var.sqrt() * z.double()) @ self.basis.T).to(z.dtype)

    def data_from_standard(self, z: Tensor) -> Tensor:
        """The data point ``mu + U diag(sqrt(lam)) z`` (the end of the flow started from ``z``)."""
        return (self.mean + (self.lam.sqrt() * z.double()) @ self.basis.T).to(z.dtype)

    # ---- exact maps ----------------------------------------------------------
    def flow_map(self, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        """The exact ``psi_{t->r}(x)``."""
        alpha_t, _, var_t, _ = self._variances(t)
        alpha_r, _, var_r, _ = self._variances(r)
        y = (x.double() - alpha_t[:, None] * self.mean) @ self.basis
        out = alpha_r[:, None] * self.mean + (y * (var_r / var_t).sqrt()) @ self.basis.T
        return out.to(x.dtype)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """The exact marginal probability-flow velocity ``v_t(x)``."""
        alpha, d_alpha, var, d_var = self._variances(t)
        y = (x.double() - alpha[:, None] * self.mean) @ self.basis
        return (d_alpha[:, None] * self.mean + (y * d_var / (2 * var)) @ self.basis.T).to(x.dtype)

    def instantaneous_field(self, x: Tensor, t: Tensor) -> Tensor:
        """The exact marginal instantaneous field ``m_t(x)`` (``E[target | x_t = x]``)."""
        f = self.formulation
        zero, one = (
            torch.zeros_like(x, dtype=torch.float64),
            torch.ones_like(x, dtype=torch.float64),
        )
        t64 = t.double()
        a = f.velocity(one, zero, t64)
        b = f.velocity(zero, one, t64)
        return ((self.velocity(x, t).double() - b * x.double()) / a).to(x.dtype)

    def cumulative_field(self, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        """The exact cumulative field ``m_{t->r}(x)``; equals :meth:`instantaneous_field` where ``r = t``."""
        f = self.formulation
        zero, one = (
            torch.zeros_like(x, dtype=torch.float64),
            torch.ones_like(x, dtype=torch.float64),
        )
        t64, r64 = t.double(), r.double()
        p = f.update(one, zero, t64, r64) - f.update(zero, zero, t64, r64)
        q = f.update(zero, one, t64, r64)
        same = expand_like(r64 == t64, x)
        safe_p = torch.where(same, torch.ones_like(p), p)
        cumulative = (self.flow_map(x, t, r).double() - q * x.double()) / safe_p
        return torch.where(same, self.instantaneous_field(x, t).double(), cumulative).to(x.dtype)
