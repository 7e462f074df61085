"""``FlowMap``: a network ``net(x, t, r, cond)`` read as a cumulative flow map, and its samplers.

The model holds what sampling needs: the network, the formulation (which gives the network's
output its meaning and the update ``F``) and the null condition for classifier-free guidance.
``psi_{t->r}(x) = F[m_{t->r}(x), x, t, r]`` jumps from time ``t`` to time ``r``; with ``r = t`` the
network gives the ordinary instantaneous field, which the multi-step samplers integrate. Training
is :class:`cfm_core.loss.CFMLoss`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cfm_core.conditions import Condition, null_like
from cfm_core.formulations import Formulation, get_formulation
from cfm_core.samplers import INSTANTANEOUS_METHODS, SAMPLERS, check_time_grid

#: The ``sampler`` choices of :meth:`FlowMap.sample`.
SAMPLER_NAMES = tuple(SAMPLERS)


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class FlowMap(nn.Module):
    """A network read as a cumulative flow map ``psi_{t->r}(x) = F[m_{t->r}(x), x, t, r]``.

    Args:
        net: ``net(x, t, r, cond) -> tensor shaped like x``. ``t`` and ``r`` are ``(B,)`` tensors
            of the formulation's *network time* (``t`` itself for u, x1 and ddim; EDM's
            ``c_noise = ln(sigma)/4`` for edm, whose preconditioning also scales ``x``).
        formulation: ``"u"``, ``"x1"``, ``"edm"``, ``"ddim"``, a config dict, or a
            :class:`~cfm_core.formulations.Formulation` instance.
        formulation_options: keyword arguments for the formulation when given by name.
        null_cond: the condition meaning "unconditional" (e.g. a tensor holding the extra class
            index), used by classifier-free guidance in sampling and by condition dropout in
            training. For dict/tuple conditions give the same structure; a ``None`` entry leaves
            that part untouched. Without it, guidance calls the network with ``cond=None``.
    """

    def __init__(
        self,
        net: nn.Module,
        formulation: str | Formulation | dict[str, Any] = "edm",
        *,
        formulation_options: dict[str, Any] | None = None,
        null_cond: Condition = None,
    ) -> None:
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be callable as net(x, t, r, cond), got {type(net).__name__}")
        self.net = net
        self.formulation = get_formulation(formulation, **(formulation_options or {}))
        self.null_cond = null_cond

    # ------------------------------------------------------------------ field --
    def field(self, x: Tensor, t: Tensor, r: Tensor, cond: Condition = None) -> Tensor:
        """The (preconditioned) cumulative field ``m_{t->r}(x)`` in the formulation's own units."""
        out = self.formulation.precondition(self.net, x, t, r, cond)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"network output shape {shape} does not match the input shape {tuple(x.shape)}")
        return out

    def flow_map(self, x: Tensor, t: Tensor | float, r: Tensor | float, cond: Condition = None) -> Tensor:
        """``psi_{t->r}(x) = F[m_{t->r}(x), x, t, r]`` with validated times (scalars or ``(B,)``)."""
        t, r = self._batch_times(t, x), self._batch_times(r, x)
        self.formulation.check_times(t, r)
        return self.formulation.update(self.field(x, t, r, cond), x, t, r)

    @staticmethod
    def _batch_times(t: Tensor | float, x: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
        return t.expand(x.shape[0]) if t.ndim == 0 else t

    # --------------------------------------------------------------- sampling --
    @torch.no_grad()
    def sample(
        self,
        noise: Tensor,
        steps: int | Sequence[float] | Tensor = 1,
        *,
        sampler: str = "cumulative",
        cond: Condition = None,
        guidance: float = 1.0,
        return_nfe: bool = False,
    ) -> Tensor | tuple[Tensor, int]:
        """Generate from standard-normal ``noise`` shaped like the data (the formulation scales it).

        ``steps`` is an int (hops on the formulation's default grid: its ``jump_grid`` for the
        cumulative sampler, its ``time_grid`` for the solvers) or a sequence of times from the noise
        end towards the data end. ``sampler`` is ``"cumulative"`` (one jump
        ``m_{t_i -> t_{i+1}}`` per hop: the flow map), or a multi-step solver of the instantaneous
        field ``r = t``: ``"euler"`` (the ``F`` step: Euler for u/x1/edm, deterministic DDIM for
        ddim), ``"ddim"`` (the same step) or ``"heun"`` (second order, ``2N - 1`` evaluations).
        With ``guidance != 1`` each evaluation is classifier-free guided towards ``cond`` (twice the
        evaluations). Runs in eval mode.

        Returns the samples (and the number of network evaluations if ``return_nfe``).
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampling method {sampler!r}; choose one of {SAMPLER_NAMES}")
        if not isinstance(noise, Tensor) or noise.ndim < 2:
            raise ValueError("noise must be a standard-normal tensor of shape (batch, ...) like the data")
        if not torch.isfinite(noise).all():
            raise ValueError("noise contains NaN or inf")
        grid = self._grid(steps, sampler, noise.device)
        with _eval_mode(self):
            x, nfe = SAMPLERS[sampler](
                self._guided_field(cond, float(guidance)),
                self.formulation,
                self.formulation.prior(noise),
                grid,
            )
        return (x, nfe) if return_nfe else x

    def sample_instantaneous(
        self,
        noise: Tensor,
        steps: int | Sequence[float] | Tensor = 100,
        method: str = "euler",
        cond: Condition = None,
        guidance: float = 1.0,
        return_nfe: bool = False,
    ) -> Tensor | tuple[Tensor, int]:
        """Deprecated: ``sample(noise, steps, sampler=method, ...)``."""
        warnings.warn(
            "sample_instantaneous is deprecated; use sample(noise, steps, sampler=method, ...)",
            DeprecationWarning,
            stacklevel=2,
        )
        if method not in INSTANTANEOUS_METHODS:
            raise ValueError(f"unknown sampling method {method!r}; choose one of {INSTANTANEOUS_METHODS}")
        return self.sample(noise, steps, sampler=method, cond=cond, guidance=guidance, return_nfe=return_nfe)

    def _guided_field(self, cond: Condition, guidance: float):
        """``field(x, t, r) -> (m, nfe)`` with classifier-free guidance when asked for."""
        if guidance != 1.0 and cond is None:
            raise ValueError("guidance != 1 needs a condition (cond) to guide towards")

        def field(x: Tensor, t: Tensor, r: Tensor) -> tuple[Tensor, int]:
            if guidance == 1.0 or cond is None:
                return self.field(x, t, r, cond), 1
            if self.null_cond is None:
                m_cond, m_uncond = self.field(x, t, r, cond), self.field(x, t, r, None)
            elif isinstance(cond, Tensor):
                both = torch.cat([cond, null_like(cond, self.null_cond)])
                m_cond, m_uncond = self.field(torch.cat([x, x]), torch.cat([t, t]), torch.cat([r, r]), both).chunk(2)
            else:
                m_cond, m_uncond = (
                    self.field(x, t, r, cond),
                    self.field(x, t, r, null_like(cond, self.null_cond)),
                )
            return m_uncond + guidance * (m_cond - m_uncond), 2

        return field

    def _grid(self, steps: int | Sequence[float] | Tensor, sampler: str, device: torch.device) -> Tensor:
        if isinstance(steps, int) and not isinstance(steps, bool):
            default = self.formulation.jump_grid if sampler == "cumulative" else self.formulation.time_grid
            return default(steps, device=device)
        return check_time_grid(self.formulation, torch.as_tensor(steps)).to(device)
