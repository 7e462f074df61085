"""``MethodConfig``: the CFM options every app exposes on its command line, and the builder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from cfm_core.cli.app import ConfigError
from cfm_core.coupling import COUPLINGS
from cfm_core.formulations import FORMULATIONS, get_formulation
from cfm_core.model import TARGET_FIELDS, Condition, CumulativeFlowMap


@dataclass
class MethodConfig:
    """How the network is trained and sampled (CFM, or the multi-step baseline with ratio 1.0)."""

    formulation: Literal["u", "x1", "edm", "ddim"] = "u"
    """The formulation: u (velocity) or x1 (endpoint) flow matching, edm (denoiser), ddim (x0)."""
    formulation_options: dict[str, float] = field(default_factory=dict)
    """Formulation settings, e.g. sigma_max 10 sigma_data 0.5 (edm), target_clamp 0.02 (x1)."""
    instantaneous_ratio: float = 0.5
    """Share of each batch with r = t (paper 0.5; MeanFlow 0.75; 1.0 = the multi-step baseline)."""
    time_sampler: Literal["uniform", "logit_normal"] = "uniform"
    """Law of the (t, r) pairs in unit time: uniform then ordered (paper) or logit-normal (MeanFlow)."""
    logit_normal: tuple[float, float] = (-0.4, 1.0)
    """Mean and std of the logit-normal law."""
    derivative: Literal["jvp", "jvp_one_pass", "finite_difference", "autograd"] = "jvp"
    """Total time derivative of the network: forward-mode JVP; the JVP pass also giving the prediction
    (jvp_one_pass: ~15% faster step on small models, 3-5x the saved activations); one extra forward
    pass; or double backward."""
    fd_step: float = 0.01
    """Finite-difference step in unit time."""
    field_weighting: Literal["normalized", "none"] = "normalized"
    """Weight of the cumulative rows: normalized (bounded gradients) or none (the paper's plain L2)."""
    adaptive_p: float | None = None
    """Adaptive loss weight 1/(err + c)^p (0 = plain L2; MeanFlow uses 1); default: the
    formulation's measured choice (1 for ddim, 0 otherwise)."""
    adaptive_c: float = 1e-3
    """The c of the adaptive weight."""
    cond_dropout: float = 0.0
    """Share of training rows whose condition is replaced by the null condition (for guidance)."""
    coupling: Literal["independent", "minibatch_ot"] = "independent"
    """Pairing of noise and data rows in a batch: independent (the paper) or minibatch_ot (exact
    optimal assignment: straighter paths, far better one-step samples; unconditional models only)."""
    ot_block: int = 1024
    """Rows per exact assignment of minibatch_ot (cost grows as the cube)."""
    target_field: Literal["conditional", "model"] = "conditional"
    """Instantaneous field inside the cumulative rows' target: conditional (the paper's m_t(x|x1):
    unbiased, as noisy as the data) or model (the network's own r = t output under stop-gradient,
    one extra forward pass: no data noise; the r = t rows still learn from the data). Measured better
    on geometry, worse on pose and SDF, divergent with ddim (see the README)."""

    def __post_init__(self) -> None:
        if self.formulation not in FORMULATIONS:
            raise ConfigError(f"method.formulation: unknown {self.formulation!r}; choose one of {sorted(FORMULATIONS)}")
        try:
            get_formulation(self.formulation, **self.formulation_options)
        except ValueError as err:
            raise ConfigError(f"method.formulation_options: {err}") from None
        if not 0.0 <= self.instantaneous_ratio <= 1.0:
            raise ConfigError(f"method.instantaneous_ratio must lie in [0, 1], got {self.instantaneous_ratio}")
        if not 0.0 < self.fd_step < 1.0:
            raise ConfigError(f"method.fd_step must lie in (0, 1), got {self.fd_step}")
        if (self.adaptive_p is not None and self.adaptive_p < 0) or self.adaptive_c <= 0:
            raise ConfigError("method.adaptive_p must be >= 0 and method.adaptive_c > 0")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ConfigError(f"method.cond_dropout must lie in [0, 1), got {self.cond_dropout}")
        if self.coupling not in COUPLINGS:
            raise ConfigError(f"method.coupling: unknown {self.coupling!r}; choose one of {COUPLINGS}")
        if self.ot_block < 2:
            raise ConfigError(f"method.ot_block must be at least 2, got {self.ot_block}")
        if self.target_field not in TARGET_FIELDS:
            raise ConfigError(f"method.target_field: unknown {self.target_field!r}; choose one of {TARGET_FIELDS}")

    @property
    def is_baseline(self) -> bool:
        """True for the multi-step baseline (every row at r = t)."""
        return self.instantaneous_ratio == 1.0


def build_cfm(
    net: nn.Module,
    method: MethodConfig,
    null_cond: Condition = None,
    noise_sampler: Callable[[Tensor, Condition], Tensor] | None = None,
) -> CumulativeFlowMap:
    """Wrap ``net`` as a :class:`CumulativeFlowMap` configured by ``method``; ``null_cond`` and
    ``noise_sampler`` are passed through (see :class:`~cfm_core.CumulativeFlowMap`)."""
    return CumulativeFlowMap(
        net,
        method.formulation,
        formulation_options=dict(method.formulation_options),
        instantaneous_ratio=method.instantaneous_ratio,
        time_sampler=method.time_sampler,
        logit_normal=tuple(method.logit_normal),
        derivative=method.derivative,
        fd_step=method.fd_step,
        field_weighting=method.field_weighting,
        adaptive_p=method.adaptive_p,
        adaptive_c=method.adaptive_c,
        null_cond=null_cond,
        cond_dropout=method.cond_dropout if null_cond is not None else 0.0,
        noise_sampler=noise_sampler,
        coupling=method.coupling,
        ot_block=method.ot_block,
        target_field=method.target_field,
    )
