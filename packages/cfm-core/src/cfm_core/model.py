"""``CumulativeFlowMap``: the object users touch. It wraps any network ``net(x, t, r, cond)``.

Training (``model.loss`` or calling the module) regresses the network's cumulative field
``m_{t->r}(x)`` onto the stop-gradient field-equation target of its formulation; a share of each
batch has ``r = t`` and regresses onto the ordinary conditional target. Sampling jumps with the
cumulative field (:meth:`CumulativeFlowMap.sample`) or integrates the instantaneous field ``r = t``
(:meth:`CumulativeFlowMap.sample_instantaneous`, the multi-step baseline).

The loss is the module's ``forward`` so that a ``DistributedDataParallel`` (or accelerate) wrapper
sees the gradient pass and synchronises gradients; the derivative pass runs under ``no_grad`` on the
same network and needs no synchronisation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cfm_core.coupling import COUPLINGS, minibatch_ot_pairing
from cfm_core.derivatives import (
    DERIVATIVE_BACKENDS,
    autograd_derivative,
    finite_difference_derivative,
    jvp_derivative,
    jvp_with_value,
    shared_rng,
)
from cfm_core.formulations import Formulation, get_formulation
from cfm_core.samplers import INSTANTANEOUS_METHODS, SAMPLERS, check_time_grid
from cfm_core.time_sampling import TimePairSampler

Condition = Tensor | dict[str, Tensor] | Sequence[Tensor] | None
FIELD_WEIGHTINGS = ("normalized", "none")
TARGET_FIELDS = ("conditional", "model")


def select_condition(cond: Condition, index: Tensor) -> Condition:
    """Rows ``index`` of a condition that is ``None``, a tensor, or a dict/list/tuple of tensors."""
    if cond is None:
        return None
    if isinstance(cond, Tensor):
        return cond[index]
    if isinstance(cond, dict):
        return {k: select_condition(v, index) for k, v in cond.items()}
    if isinstance(cond, (list, tuple)):
        return type(cond)(select_condition(v, index) for v in cond)
    raise TypeError(f"unsupported condition type {type(cond).__name__}; use a tensor, dict, list or tuple")


def _replace_rows(cond: Condition, null_cond: Condition, mask: Tensor) -> Condition:
    """``cond`` with the rows in ``mask`` replaced by ``null_cond`` (same structure, broadcastable).

    A ``None`` entry of a dict/tuple ``null_cond`` keeps that part of the condition as it is (e.g.
    query positions that are inputs, not a condition to drop)."""
    if null_cond is None:
        return cond
    if isinstance(cond, Tensor):
        null = torch.as_tensor(null_cond, dtype=cond.dtype, device=cond.device).expand_as(cond)
        return torch.where(mask.reshape((-1,) + (1,) * (cond.ndim - 1)), null, cond)
    if isinstance(cond, dict):
        return {k: _replace_rows(v, null_cond[k], mask) for k, v in cond.items()}
    return type(cond)(_replace_rows(v, n, mask) for v, n in zip(cond, null_cond, strict=True))


def _null_like(cond: Condition, null_cond: Condition) -> Condition:
    """A whole batch of the null condition, shaped like ``cond``."""
    all_rows = torch.ones(_batch_size(cond), dtype=torch.bool, device=_device(cond))
    return _replace_rows(cond, null_cond, all_rows)


def _batch_size(cond: Condition) -> int:
    if isinstance(cond, Tensor):
        return cond.shape[0]
    first = next(iter(cond.values())) if isinstance(cond, dict) else cond[0]
    return _batch_size(first)


def _device(cond: Condition) -> torch.device:
    if isinstance(cond, Tensor):
        return cond.device
    first = next(iter(cond.values())) if isinstance(cond, dict) else cond[0]
    return _device(first)


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class CumulativeFlowMap(nn.Module):
    """A network trained as a cumulative flow map ``psi_{t->r}(x) = F[m_{t->r}(x), x, t, r]``.

    Args:
        net: ``net(x, t, r, cond) -> tensor shaped like x``. ``t`` and ``r`` are ``(B,)`` tensors
            of the formulation's *network time* (``t`` itself for u, x1 and ddim; EDM's
            ``c_noise = ln(sigma)/4`` for edm, whose preconditioning also scales ``x``).
        formulation: ``"u"``, ``"x1"``, ``"edm"``, ``"ddim"``, a config dict, or a
            :class:`~cfm_core.formulations.Formulation` instance.
        instantaneous_ratio: share of each batch trained with ``r = t`` (paper: 0.5; MeanFlow: 0.75;
            1.0 trains the ordinary multi-step model: the baseline, from the same code).
        time_sampler: ``"uniform"`` (paper) or ``"logit_normal"`` (MeanFlow), in unit time.
        logit_normal: ``(mean, std)`` of the logit-normal law.
        derivative: ``"jvp"`` (default), ``"jvp_one_pass"`` (the JVP pass also gives the prediction:
            faster, more memory), ``"finite_difference"`` (JVP-free) or ``"autograd"``.
        fd_step: the finite-difference step, in unit time.
        field_weighting: ``"normalized"`` (default) weights each cumulative row by
            :meth:`~cfm_core.formulations.Formulation.field_weight`, which bounds the gradient of
            the x1/EDM/DDIM targets near the data end without moving the minimiser; ``"none"`` is
            the paper's plain L2 (measured to diverge for x1/EDM/DDIM on a Gaussian; see README).
        adaptive_p, adaptive_c: adaptive loss weight ``1/(|err|^2 + c)^p`` under stop-gradient
            (``p = 0`` is the paper's plain L2; MeanFlow uses ``p = 1``). ``None`` takes the
            formulation's measured default (0 for u, x1 and edm; 1 for ddim).
        null_cond: the condition meaning "unconditional" (e.g. a tensor holding the extra class
            index), used by ``cond_dropout`` in training and by classifier-free guidance in sampling.
            For dict/tuple conditions give the same structure; a ``None`` entry leaves that part
            untouched. Without it, guidance calls the network with ``cond=None``.
        cond_dropout: share of training rows whose condition is replaced by ``null_cond``.
        noise_sampler: ``noise_sampler(x_data, cond) -> noise`` for training when ``noise`` is not
            passed (default: ``torch.randn_like``); e.g. spatially correlated noise for functions.
        coupling: ``"independent"`` (default: noise rows as drawn) or ``"minibatch_ot"`` (the
            batch's noise rows re-paired with its data rows by an exact optimal assignment, in
            blocks of ``ot_block`` rows; unconditional models only). See :mod:`cfm_core.coupling`.
        ot_block: rows per exact assignment of ``"minibatch_ot"`` (cost ``O(ot_block^3)``).
        target_field: the instantaneous field ``m_{t->t}`` inside the cumulative rows' target (its
            value and the velocity the total derivative follows): ``"conditional"`` (default, the
            paper's Eq. 7: ``m_t(x | x1)``, unbiased but carrying the data's spread at every
            ``x``) or ``"model"`` (the network's own ``m_{t->t}(x)`` under stop-gradient, one
            more forward pass without gradient: the same fixed point once the ``r = t`` rows,
            which keep the conditional target, have learnt it, and a target without data noise).
        formulation_options: keyword arguments for the formulation when given by name.
    """

    def __init__(
        self,
        net: nn.Module,
        formulation: str | Formulation | dict[str, Any] = "edm",
        *,
        instantaneous_ratio: float = 0.5,
        time_sampler: str = "uniform",
        logit_normal: tuple[float, float] = (-0.4, 1.0),
        derivative: str = "jvp",
        fd_step: float = 0.01,
        field_weighting: str = "normalized",
        adaptive_p: float | None = None,
        adaptive_c: float = 1e-3,
        null_cond: Condition = None,
        cond_dropout: float = 0.0,
        formulation_options: dict[str, Any] | None = None,
        noise_sampler: Callable[[Tensor, Condition], Tensor] | None = None,
        coupling: str = "independent",
        ot_block: int = 1024,
        target_field: str = "conditional",
    ) -> None:
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be callable as net(x, t, r, cond), got {type(net).__name__}")
        if derivative not in DERIVATIVE_BACKENDS:
            raise ValueError(f"unknown derivative backend {derivative!r}; choose one of {DERIVATIVE_BACKENDS}")
        if not 0.0 < fd_step < 1.0:
            raise ValueError(f"fd_step must lie in (0, 1) (unit time), got {fd_step}")
        if coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling {coupling!r}; choose one of {COUPLINGS}")
        if ot_block < 2:
            raise ValueError(f"ot_block must be at least 2 rows, got {ot_block}")
        if target_field not in TARGET_FIELDS:
            raise ValueError(f"unknown target_field {target_field!r}; choose one of {TARGET_FIELDS}")
        if field_weighting not in FIELD_WEIGHTINGS:
            raise ValueError(f"unknown field_weighting {field_weighting!r}; choose one of {FIELD_WEIGHTINGS}")
        self.formulation = get_formulation(formulation, **(formulation_options or {}))
        if adaptive_p is None:
            adaptive_p = self.formulation.default_adaptive_p
        if adaptive_p < 0 or adaptive_c <= 0:
            raise ValueError(f"need adaptive_p >= 0 and adaptive_c > 0, got {adaptive_p}, {adaptive_c}")
        if not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must lie in [0, 1), got {cond_dropout}")
        if cond_dropout > 0 and null_cond is None:
            raise ValueError("cond_dropout > 0 needs null_cond (the condition meaning 'unconditional')")
        self.net = net
        self.time_sampler = TimePairSampler(
            kind=time_sampler,
            instantaneous_ratio=instantaneous_ratio,
            mean=logit_normal[0],
            std=logit_normal[1],
        )
        self.derivative = derivative
        self.fd_step = float(fd_step)
        self.field_weighting = field_weighting
        self.adaptive_p, self.adaptive_c = float(adaptive_p), float(adaptive_c)
        self.null_cond = null_cond
        self.cond_dropout = float(cond_dropout)
        self.noise_sampler = noise_sampler
        self.coupling, self.ot_block = coupling, int(ot_block)
        self.target_field = target_field

    # ------------------------------------------------------------------ field --
    def field(self, x: Tensor, t: Tensor, r: Tensor, cond: Condition = None) -> Tensor:
        """The (preconditioned) cumulative field ``m_{t->r}(x)`` in the formulation's own units."""
        out = self.formulation.precondition(self.net, x, t, r, cond)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"network output shape {shape} does not match the input shape {tuple(x.shape)}")
        return out

    def flow_map(self, x: Tensor, t: Tensor, r: Tensor, cond: Condition = None) -> Tensor:
        """``psi_{t->r}(x) = F[m_{t->r}(x), x, t, r]`` with validated times."""
        t, r = self._batch_times(t, x), self._batch_times(r, x)
        self.formulation.check_times(t, r)
        return self.formulation.update(self.field(x, t, r, cond), x, t, r)

    @staticmethod
    def _batch_times(t: Tensor | float, x: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
        return t.expand(x.shape[0]) if t.ndim == 0 else t

    # ------------------------------------------------------------------- loss --
    def forward(
        self,
        x_data: Tensor,
        cond: Condition = None,
        *,
        noise: Tensor | None = None,
        return_terms: bool = False,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The CFM training loss on a batch (a differentiable scalar). See :meth:`loss`."""
        if not isinstance(x_data, Tensor) or x_data.ndim < 2:
            raise ValueError("x_data must be a tensor of shape (batch, ...) with at least 2 dimensions")
        if not torch.isfinite(x_data).all():
            raise ValueError("x_data contains NaN or inf")
        if noise is None:
            noise = torch.randn_like(x_data) if self.noise_sampler is None else self.noise_sampler(x_data, cond)
        if noise.shape != x_data.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} does not match x_data shape {tuple(x_data.shape)}")
        if self.coupling == "minibatch_ot":
            if cond is not None:
                raise ValueError(
                    "coupling 'minibatch_ot' pairs noise across the batch, which a conditional "
                    "model cannot use (a condition's noise would stop being standard normal); "
                    "use coupling 'independent'"
                )
            noise = minibatch_ot_pairing(x_data, noise, self.ot_block)
        f = self.formulation
        batch, device = x_data.shape[0], x_data.device
        u_t, u_r, instantaneous = self.time_sampler(batch, device)
        t = f.time_from_unit(u_t).float()
        r = torch.where(instantaneous, t, f.time_from_unit(u_r).float())
        x_t = f.interpolate(x_data, noise, t)
        m_cond = f.conditional_target(x_data, noise, t)
        cond = self._drop_condition(cond, batch, device)

        per_sample = torch.empty(batch, device=device, dtype=torch.float32)
        for rows, cumulative in (
            ((~instantaneous).nonzero().squeeze(1), True),
            (instantaneous.nonzero().squeeze(1), False),
        ):
            if rows.numel() == 0:
                continue
            xs, ts, rs, ms = x_t[rows], t[rows], r[rows], m_cond[rows]
            cs = select_condition(cond, rows)
            if cumulative:
                pred, target = self._cumulative_prediction(xs, ts, rs, ms, cs)
            else:
                pred, target = self.field(xs, ts, rs, cs), ms
            err = (pred.float() - target.float()).pow(2).flatten(1).mean(1) * f.loss_weight(ts).float()
            if cumulative and self.field_weighting == "normalized":
                err = err * f.field_weight(ts, rs).float()
            per_sample[rows] = err
        raw = per_sample
        if self.adaptive_p > 0:
            per_sample = per_sample / (per_sample.detach() + self.adaptive_c).pow(self.adaptive_p)
        loss = per_sample.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite CFM loss ({loss.item()}) with formulation {f.name!r}: lower the learning "
                "rate, clip gradients, or check the network for overflow"
            )
        if not return_terms:
            return loss
        terms = {"loss": loss.detach(), "loss_weighted_mse": raw.detach().mean()}
        if instantaneous.any():
            terms["loss_instantaneous"] = raw[instantaneous].detach().mean()
        if (~instantaneous).any():
            terms["loss_cumulative"] = raw[~instantaneous].detach().mean()
        return loss, terms

    def loss(self, x_data: Tensor, cond: Condition = None, *, noise: Tensor | None = None) -> Tensor:
        """The CFM training loss on a batch of data ``x_data`` (shape ``(B, ...)``): a scalar.

        ``noise`` (standard normal, shaped like ``x_data``; drawn when not given) is paired with the
        data rows as the coupling says: as given, or re-paired by minibatch OT. Equivalent to
        calling the module (which is what DDP needs to synchronise gradients).
        """
        return self(x_data, cond, noise=noise)

    def _cumulative_prediction(self, x: Tensor, t: Tensor, r: Tensor, m_inst: Tensor, cond: Condition):
        """The gradient-carrying prediction ``m_{t->r}(x)`` and its stop-gradient field target."""
        f = self.formulation
        if self.target_field == "model":
            with torch.no_grad():
                m_inst = self.field(x, t, t, cond)
        velocity = f.velocity(m_inst, x, t)

        def field_at(x_: Tensor, t_: Tensor) -> Tensor:
            return self.field(x_, t_, r, cond)

        if self.derivative == "finite_difference":
            state = _rng_state(x.device)
            pred = self.field(x, t, r, cond)
            with shared_rng(x.device):  # the extra pass replays the gradient pass's dropout masks
                _set_rng_state(x.device, state)
                dm = finite_difference_derivative(field_at, x, t, r, m_inst, pred.detach(), f, self.fd_step)
        elif self.derivative == "jvp_one_pass" and not torch.is_autocast_enabled(x.device.type):
            pred, dm = jvp_with_value(field_at, x, t, velocity)  # one pass: value and tangent
        else:
            backend = autograd_derivative if self.derivative == "autograd" else jvp_derivative
            with shared_rng(x.device):
                dm = backend(field_at, x, t, velocity)
            pred = self.field(x, t, r, cond)
        target = f.field_target(m_inst.float(), x.float(), t, r, dm)
        return pred, target.detach()

    def _drop_condition(self, cond: Condition, batch: int, device: torch.device) -> Condition:
        if cond is None or self.cond_dropout == 0 or not self.training:
            return cond
        mask = torch.rand(batch, device=device) < self.cond_dropout
        return _replace_rows(cond, self.null_cond, mask)

    # --------------------------------------------------------------- sampling --
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
                both = torch.cat([cond, _null_like(cond, self.null_cond)])
                m_cond, m_uncond = self.field(torch.cat([x, x]), torch.cat([t, t]), torch.cat([r, r]), both).chunk(2)
            else:
                m_cond, m_uncond = (
                    self.field(x, t, r, cond),
                    self.field(x, t, r, _null_like(cond, self.null_cond)),
                )
            return m_uncond + guidance * (m_cond - m_uncond), 2

        return field

    def _grid(self, steps: int | Sequence[float] | Tensor, device: torch.device) -> Tensor:
        if isinstance(steps, (int,)) and not isinstance(steps, bool):
            return self.formulation.time_grid(steps, device=device)
        return check_time_grid(self.formulation, torch.as_tensor(steps)).to(device)

    @staticmethod
    def _check_noise(noise: Tensor) -> None:
        if not isinstance(noise, Tensor) or noise.ndim < 2:
            raise ValueError("noise must be a standard-normal tensor of shape (batch, ...) like the data")
        if not torch.isfinite(noise).all():
            raise ValueError("noise contains NaN or inf")

    @torch.no_grad()
    def sample(
        self,
        noise: Tensor,
        steps: int | Sequence[float] | Tensor = 1,
        cond: Condition = None,
        guidance: float = 1.0,
        return_nfe: bool = False,
    ) -> Tensor | tuple[Tensor, int]:
        """Generate with ``steps`` cumulative jumps (an int: the formulation's default grid; or a
        sequence of times from the noise end towards the data end). ``noise`` is standard normal,
        shaped like the data; the formulation scales it. Runs in eval mode.

        Returns the samples (and the number of network evaluations if ``return_nfe``).
        """
        return self._run(SAMPLERS["cumulative"], noise, steps, cond, guidance, return_nfe)

    @torch.no_grad()
    def sample_instantaneous(
        self,
        noise: Tensor,
        steps: int | Sequence[float] | Tensor = 100,
        method: str = "euler",
        cond: Condition = None,
        guidance: float = 1.0,
        return_nfe: bool = False,
    ) -> Tensor | tuple[Tensor, int]:
        """The multi-step baseline from the instantaneous field ``r = t``: ``method`` is ``"euler"``
        (the ``F`` step: Euler for u/x1/edm, deterministic DDIM for ddim), ``"ddim"`` (same) or
        ``"heun"`` (second order, ``2N - 1`` evaluations, EDM's sampler for edm)."""
        if method not in INSTANTANEOUS_METHODS:
            raise ValueError(f"unknown sampling method {method!r}; choose one of {INSTANTANEOUS_METHODS}")
        return self._run(SAMPLERS[method], noise, steps, cond, guidance, return_nfe)

    def _run(self, sampler, noise, steps, cond, guidance, return_nfe):
        self._check_noise(noise)
        grid = self._grid(steps, noise.device)
        with _eval_mode(self):
            x, nfe = sampler(
                self._guided_field(cond, float(guidance)),
                self.formulation,
                self.formulation.prior(noise),
                grid,
            )
        return (x, nfe) if return_nfe else x


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
