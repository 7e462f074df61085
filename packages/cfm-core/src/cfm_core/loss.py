"""``LossRecipe`` and ``CFMLoss``: how a :class:`~cfm_core.flow_map.FlowMap` is trained.

Each batch row gets a time pair ``(t, r)``. The cumulative rows (``r != t``) regress the network's
field ``m_{t->r}(x_t)`` onto the stop-gradient field-equation target of the formulation, built
from the total derivative of the network along the instantaneous flow; the ``r = t`` rows regress
``m_{t->t}(x_t)`` onto the ordinary conditional target. The loss is the module's ``forward`` so
that a ``DistributedDataParallel`` (or accelerate) wrapper sees the gradient pass and synchronises
gradients; the derivative pass runs under ``no_grad`` on the same network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from cfm_core.conditions import Condition, replace_rows, select_condition
from cfm_core.coupling import COUPLINGS, minibatch_ot_pairing
from cfm_core.derivatives import (
    DERIVATIVE_BACKENDS,
    FORWARD_RULES,
    autograd_derivative,
    finite_difference_derivative,
    jvp_derivative,
    jvp_with_value,
    shared_rng,
    use_lean_rules,
)
from cfm_core.distillation import (
    OBJECTIVES,
    TEACHER_OBJECTIVES,
    Teacher,
    lagrangian_prediction,
    lagrangian_weight,
    regression_pair,
)
from cfm_core.flow_map import FlowMap
from cfm_core.samplers import INSTANTANEOUS_METHODS
from cfm_core.time_sampling import TimePairSampler

FIELD_WEIGHTINGS = ("normalized", "none")
TARGET_FIELDS = ("conditional", "model")
TEACHER_TARGETS = ("teacher", "data")
FD_SCHEMES = ("forward", "central")

NoiseSampler = Callable[[Tensor, Condition], Tensor]


@dataclass(frozen=True)
class LossRecipe:
    """The training options of a CFM loss; invalid values raise ``ValueError`` naming the field.

    Frozen: :class:`CFMLoss` derives its time sampler from it once; use
    :func:`dataclasses.replace` for a variant."""

    instantaneous_ratio: float = 0.5
    """Share of each batch with r = t (1.0 trains only the instantaneous field: the multi-step baseline)."""
    time_sampler: Literal["uniform", "logit_normal"] = "uniform"
    """Law of the (t, r) pairs in unit time: two uniform draws, or two logit-normal draws, ordered."""
    logit_normal: tuple[float, float] = (-0.4, 1.0)
    """Mean and std of the logit-normal law in unit time (0 = noise): a negative mean puts more times
    near the noise. MeanFlow's law, mean -0.4 in its time where 1 is the noise, is (0.4, 1.0) here."""
    derivative: Literal["jvp", "jvp_one_pass", "finite_difference", "autograd"] = "finite_difference"
    """Total time derivative of the network in the cumulative target: finite_difference (default: the
    secant over fd_step along the instantaneous flow, one extra forward pass; it damps time
    oscillations faster than 1/fd_step, so networks with high-frequency time features, such as
    DDPM's scale-1000 sinusoids or Fourier scale 16, train stably); the exact derivative by
    forward-mode JVP (jvp: the paper's objective, unstable when the network's time features
    oscillate fast); the JVP pass also giving the prediction (jvp_one_pass: one pass fewer, more
    saved activations); or double backward (autograd)."""
    fd_step: float = 0.05
    """Finite-difference step in unit time (shortened where r is closer): a longer step damps more of
    the network's fast time oscillations and biases the target more (first order in the step)."""
    fd_scheme: Literal["forward", "central"] = "forward"
    """The finite difference's secant in the field-equation target: forward (from (x, t) one fd_step
    along the flow; one extra pass) or central (from fd_step back to fd_step forward, the back step
    shortened near the noise end; two extra passes, a bias second order in the step). The
    lagrangian objective's derivative in r always takes a three-point secant (second order)."""
    forward_rules: Literal["auto", "lean", "torch"] = "auto"
    """Forward-mode rules of the jvp backends: lean (exact tangents of linear, convolution and
    normalisation layers with constant weights, cfm_core.forward_rules), torch (PyTorch's own), or
    auto (lean on the CPU and under torch.compile, torch's on a GPU). The tangent is the same; only
    the speed differs (and torch.compile cannot trace torch's rule of layer_norm)."""
    field_weighting: Literal["normalized", "none"] = "normalized"
    """Weight of the cumulative rows: normalized (the formulation's field weight, which bounds the
    gradients near the data end without moving the minimiser) or none (plain L2)."""
    adaptive_p: float | None = None
    """Adaptive loss weight 1/(err + c)^p under stop-gradient (0 = plain L2); default: the
    formulation's default_adaptive_p (1 for ddim's x0-prediction, 0 otherwise)."""
    adaptive_c: float = 1e-3
    """The c of the adaptive weight."""
    cond_dropout: float = 0.0
    """Share of training rows whose condition is replaced by the null condition (for guidance)."""
    coupling: Literal["independent", "minibatch_ot"] = "independent"
    """Pairing of noise and data rows in a batch: independent, or minibatch_ot (an exact optimal
    assignment in blocks of ot_block rows; unconditional models only)."""
    ot_block: int = 1024
    """Rows per exact assignment of minibatch_ot (cost grows as the cube)."""
    target_field: Literal["conditional", "model"] = "conditional"
    """Instantaneous field inside the cumulative rows' target: conditional (m_t(x|x1): unbiased,
    carrying the data's spread) or model (the network's own r = t output under stop-gradient, one
    extra forward pass; the r = t rows still learn from the data). Not with ddim. Not used with a
    teacher (its field takes this place)."""
    objective: Literal["data", "eulerian", "lagrangian", "regression"] | None = None
    """What the loss learns: data (the field-equation target above; the default without a teacher),
    eulerian (the same target with a frozen teacher's r = t field in place of the conditional one,
    no data noise; the default with a teacher), lagrangian (the residual of d_r psi_{t->r} =
    v_teacher(psi_{t->r}, r), d_r by the derivative backend) or regression (the one jump from noise
    to data regressed onto the teacher's ODE endpoint: the Luhman & Luhman 2021 peer)."""
    teacher_target: Literal["teacher", "data"] = "teacher"
    """With a teacher: what the r = t rows regress onto (its field, or the conditional target)."""
    teacher_steps: int = 32
    """With objective regression: hops of the teacher's ODE solve that gives each target."""
    teacher_sampler: Literal["euler", "heun", "ddim"] = "heun"
    """With objective regression: the teacher's ODE solver."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "logit_normal", tuple(float(v) for v in self.logit_normal))
        if len(self.logit_normal) != 2:
            raise ValueError(f"logit_normal must be (mean, std), got {self.logit_normal}")
        self.time_pairs()  # the time sampler checks instantaneous_ratio, time_sampler, logit_normal
        if self.derivative not in DERIVATIVE_BACKENDS:
            raise ValueError(
                f"derivative: unknown derivative backend {self.derivative!r}; choose one of {DERIVATIVE_BACKENDS}"
            )
        if self.forward_rules not in FORWARD_RULES:
            raise ValueError(f"forward_rules: unknown {self.forward_rules!r}; choose one of {FORWARD_RULES}")
        if not 0.0 < self.fd_step < 1.0:
            raise ValueError(f"fd_step must lie in (0, 1) (unit time), got {self.fd_step}")
        if self.fd_scheme not in FD_SCHEMES:
            raise ValueError(f"fd_scheme: unknown {self.fd_scheme!r}; choose one of {FD_SCHEMES}")
        if self.field_weighting not in FIELD_WEIGHTINGS:
            raise ValueError(f"field_weighting: unknown {self.field_weighting!r}; choose one of {FIELD_WEIGHTINGS}")
        if self.adaptive_p is not None and self.adaptive_p < 0:
            raise ValueError(f"adaptive_p must be >= 0, got {self.adaptive_p}")
        if self.adaptive_c <= 0:
            raise ValueError(f"adaptive_c must be > 0, got {self.adaptive_c}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must lie in [0, 1), got {self.cond_dropout}")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling: unknown coupling {self.coupling!r}; choose one of {COUPLINGS}")
        if self.ot_block < 2:
            raise ValueError(f"ot_block must be at least 2 rows, got {self.ot_block}")
        if self.target_field not in TARGET_FIELDS:
            raise ValueError(f"target_field: unknown {self.target_field!r}; choose one of {TARGET_FIELDS}")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ValueError(f"objective: unknown {self.objective!r}; choose one of {OBJECTIVES}")
        if self.teacher_target not in TEACHER_TARGETS:
            raise ValueError(f"teacher_target: unknown {self.teacher_target!r}; choose one of {TEACHER_TARGETS}")
        if int(self.teacher_steps) != self.teacher_steps or self.teacher_steps < 1:
            raise ValueError(f"teacher_steps must be a positive integer, got {self.teacher_steps}")
        if self.teacher_sampler not in INSTANTANEOUS_METHODS:
            raise ValueError(
                f"teacher_sampler: unknown {self.teacher_sampler!r}; choose one of {INSTANTANEOUS_METHODS}"
            )

    def time_pairs(self) -> TimePairSampler:
        """The sampler of the training time pairs this recipe describes."""
        mean, std = self.logit_normal
        return TimePairSampler(self.time_sampler, self.instantaneous_ratio, mean, std)

    def check_formulation(self, formulation: str) -> None:
        """Raise ``ValueError`` for a recipe that does not train with formulation ``formulation``."""
        if formulation == "ddim" and self.target_field == "model":
            raise ValueError("target_field: 'model' diverges with the ddim formulation; use target_field 'conditional'")


class CFMLoss(nn.Module):
    """The CFM training loss of ``model``: ``loss = CFMLoss(model, recipe)(x_data, cond)``.

    Args:
        model: the :class:`~cfm_core.flow_map.FlowMap` being trained (a submodule: the loss's
            parameters are the model's).
        recipe: the training options (default :class:`LossRecipe`).
        noise_sampler: ``noise_sampler(x_data, cond) -> noise`` used when ``forward`` is given no
            ``noise`` (default ``torch.randn_like``); e.g. spatially correlated noise for functions.
        teacher: a frozen trained :class:`~cfm_core.distillation.Teacher` of the same formulation
            (equal :meth:`~cfm_core.formulations.Formulation.field_config`: the network's
            prediction may differ) to distil by ``recipe.objective`` (not a submodule: never saved
            with the model).

    Attributes:
        check_finite: raise on NaN or inf in ``x_data`` (``ValueError``) or in the loss
            (``FloatingPointError``). Each check reads a value back from the device, which stalls a
            GPU and breaks a ``torch.compile`` graph; the :class:`~cfm_core.training.Trainer` turns
            them on for its logging and checkpoint steps only. Default True.
    """

    check_finite: bool = True

    def __init__(
        self,
        model: FlowMap,
        recipe: LossRecipe | None = None,
        *,
        noise_sampler: NoiseSampler | None = None,
        teacher: Teacher | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, FlowMap):
            raise TypeError(f"model must be a FlowMap, got {type(model).__name__}")
        recipe = LossRecipe() if recipe is None else recipe
        recipe.check_formulation(model.formulation.name)
        if recipe.cond_dropout > 0 and model.null_cond is None:
            raise ValueError("cond_dropout > 0 needs null_cond (the condition meaning 'unconditional')")
        self.model, self.recipe, self.noise_sampler = model, recipe, noise_sampler
        self.teacher, self.objective = teacher, _objective(recipe, teacher, model)
        self.time_sampler = recipe.time_pairs()
        p = model.formulation.default_adaptive_p if recipe.adaptive_p is None else recipe.adaptive_p
        self.adaptive_p = float(p)

    def forward(
        self,
        x_data: Tensor,
        cond: Condition = None,
        *,
        noise: Tensor | None = None,
        return_terms: bool = False,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The loss on a batch ``x_data`` of shape ``(B, ...)``: a differentiable scalar.

        ``noise`` (standard normal, shaped like ``x_data``; drawn when not given) is paired with the
        data rows as the recipe's coupling says. With ``return_terms`` also returns a dict of
        detached terms: ``loss``, ``loss_weighted_mse`` and the mean of the ``r = t`` rows
        (``loss_instantaneous``) and of the other rows (``loss_cumulative``) when present.
        """
        recipe, f = self.recipe, self.model.formulation
        if not isinstance(x_data, Tensor) or x_data.ndim < 2:
            raise ValueError("x_data must be a tensor of shape (batch, ...) with at least 2 dimensions")
        if self.check_finite and not torch.isfinite(x_data).all():
            raise ValueError("x_data contains NaN or inf")
        if noise is None:
            noise = torch.randn_like(x_data) if self.noise_sampler is None else self.noise_sampler(x_data, cond)
        if noise.shape != x_data.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} does not match x_data shape {tuple(x_data.shape)}")
        if self.objective == "regression":
            return self._regression_loss(
                noise, self._drop_condition(cond, x_data.shape[0], x_data.device), return_terms
            )
        if recipe.coupling == "minibatch_ot":
            if cond is not None:
                raise ValueError(
                    "coupling 'minibatch_ot' pairs noise across the batch, which a conditional "
                    "model cannot use (a condition's noise would stop being standard normal); "
                    "use coupling 'independent'"
                )
            noise = minibatch_ot_pairing(x_data, noise, recipe.ot_block)

        batch, device = x_data.shape[0], x_data.device
        pairs = self.time_sampler.draw(batch, device)
        t = f.time_from_unit(pairs.u_t).float()
        r = torch.where(pairs.instantaneous, t, f.time_from_unit(pairs.u_r).float())
        x_t = f.interpolate(x_data, noise, t)
        m_cond = f.conditional_target(x_data, noise, t)
        cond = self._drop_condition(cond, batch, device)

        per_sample = torch.empty(batch, device=device, dtype=torch.float32)
        for rows, cumulative in ((pairs.cumulative_rows, True), (pairs.instantaneous_rows, False)):
            if rows.numel() == 0:  # sizes are fixed by the ratio: no device synchronisation
                continue
            xs, ts, rs, ms, cs = x_t[rows], t[rows], r[rows], m_cond[rows], select_condition(cond, rows)
            lagrangian = cumulative and self.objective == "lagrangian"
            if lagrangian:
                pred, target = self._lagrangian_prediction(xs, ts, rs, cs)
            elif cumulative:
                pred, target = self._cumulative_prediction(xs, ts, rs, ms, cs)
            else:
                if self.teacher is not None and recipe.teacher_target == "teacher":
                    ms = self.teacher.field(xs, ts, cs)
                pred, target = self.model.field(xs, ts, rs, cs), ms
            err = (pred.float() - target.float()).pow(2).flatten(1).mean(1) * f.loss_weight(ts).float()
            if cumulative and recipe.field_weighting == "normalized":
                weight = lagrangian_weight(f, ts, rs) if lagrangian else f.field_weight(ts, rs)
                err = err * weight.float()
            per_sample[rows] = err

        raw = per_sample
        if self.adaptive_p > 0:
            per_sample = per_sample / (per_sample.detach() + recipe.adaptive_c).pow(self.adaptive_p)
        loss = per_sample.mean()
        if self.check_finite and not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite CFM loss ({loss.item()}) with formulation {f.name!r}: lower the learning "
                "rate, clip gradients, or check the network for overflow"
            )
        if not return_terms:
            return loss
        terms = {"loss": loss.detach(), "loss_weighted_mse": raw.detach().mean()}
        if pairs.instantaneous_rows.numel():
            terms["loss_instantaneous"] = raw[pairs.instantaneous_rows].detach().mean()
        if pairs.cumulative_rows.numel():
            terms["loss_cumulative"] = raw[pairs.cumulative_rows].detach().mean()
        return loss, terms

    def _cumulative_prediction(self, x: Tensor, t: Tensor, r: Tensor, m_inst: Tensor, cond: Condition):
        """The gradient-carrying prediction ``m_{t->r}(x)`` and its stop-gradient field target."""
        model, f, backend = self.model, self.model.formulation, self.recipe.derivative
        if self.teacher is not None:
            m_inst = self.teacher.field(x, t, cond)
        elif self.recipe.target_field == "model":
            with torch.no_grad():
                m_inst = model.field(x, t, t, cond)
        velocity = f.velocity(m_inst, x, t)

        def field_at(x_: Tensor, t_: Tensor) -> Tensor:
            return model.field(x_, t_, r, cond)

        # The derivative pass replays the gradient pass's random numbers (dropout masks); a compiled
        # loss cannot read or set the RNG state, so there the two passes draw their own.
        replay = not torch.compiler.is_compiling()
        if backend == "finite_difference":
            state = _rng_state(x.device) if replay else None
            pred = model.field(x, t, r, cond)
            with shared_rng(x.device) if replay else contextlib.nullcontext():
                if replay:
                    _set_rng_state(x.device, state)
                # under autocast the prediction is low precision: the secant's start is redone in float32
                start = None if torch.is_autocast_enabled(x.device.type) else pred.detach()
                dm = finite_difference_derivative(
                    field_at, x, t, r, m_inst, start, f, self.recipe.fd_step, central=self.recipe.fd_scheme == "central"
                )
        elif backend == "jvp_one_pass" and not torch.is_autocast_enabled(x.device.type):
            lean = use_lean_rules(self.recipe.forward_rules, x.device)
            pred, dm = jvp_with_value(field_at, x, t, velocity, lean=lean)  # one pass: value and tangent
        else:
            with shared_rng(x.device) if replay else contextlib.nullcontext():
                if backend == "autograd":
                    dm = autograd_derivative(field_at, x, t, velocity)
                else:
                    dm = jvp_derivative(
                        field_at, x, t, velocity, lean=use_lean_rules(self.recipe.forward_rules, x.device)
                    )
            pred = model.field(x, t, r, cond)
        target = f.field_target(m_inst.float(), x.float(), t, r, dm)
        return pred, target.detach()

    def _lagrangian_prediction(self, x: Tensor, t: Tensor, r: Tensor, cond: Condition):
        """The prediction ``m_{t->r}(x)`` and its Lagrangian stop-gradient target (teacher velocity)."""
        return lagrangian_prediction(
            lambda r_: self.model.field(x, t, r_, cond),
            x,
            t,
            r,
            lambda x_, r_: self.teacher.velocity(x_, r_, cond),
            self.model.formulation,
            backend=self.recipe.derivative,
            step=self.recipe.fd_step,
        )

    def _regression_loss(self, noise: Tensor, cond: Condition, return_terms: bool):
        """The regression peer: the mean squared distance of the one jump to the teacher's endpoint."""
        jump, endpoint = regression_pair(
            lambda x, t, r: self.model.field(x, t, r, cond),
            noise,
            self.teacher,
            self.recipe.teacher_steps,
            self.recipe.teacher_sampler,
            cond,
        )
        loss = (jump.float() - endpoint.float()).pow(2).flatten(1).mean(1).mean()
        if self.check_finite and not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite regression loss ({loss.item()}): lower the learning rate")
        return (loss, {"loss": loss.detach(), "loss_regression": loss.detach()}) if return_terms else loss

    def _drop_condition(self, cond: Condition, batch: int, device: torch.device) -> Condition:
        """``cond`` with a ``cond_dropout`` share of rows nulled (in training mode only)."""
        if cond is None or self.recipe.cond_dropout == 0 or not self.model.training:
            return cond
        mask = torch.rand(batch, device=device) < self.recipe.cond_dropout
        return replace_rows(cond, self.model.null_cond, mask)


def _objective(recipe: LossRecipe, teacher: Teacher | None, model: FlowMap) -> str:
    """The recipe's objective (its default: eulerian with a teacher, data without), checked
    against the teacher."""
    objective = recipe.objective or ("data" if teacher is None else "eulerian")
    if teacher is None and objective in TEACHER_OBJECTIVES:
        raise ValueError(f"objective {objective!r} distils a teacher: pass teacher=")
    if teacher is not None and objective not in TEACHER_OBJECTIVES:
        raise ValueError(f"a teacher needs a distillation objective {TEACHER_OBJECTIVES}, got {objective!r}")
    if teacher is not None and teacher.formulation.field_config() != model.formulation.field_config():
        raise ValueError(
            f"the teacher's formulation {teacher.formulation.config()} differs from the "
            f"student's {model.formulation.config()} (only the network's prediction may differ)"
        )
    return objective


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
