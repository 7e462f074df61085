"""``MethodConfig``: the CFM options every app exposes on its command line, and the builder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from cfm_core.cli.app import ConfigError
from cfm_core.conditions import Condition
from cfm_core.distillation import TEACHER_OBJECTIVES
from cfm_core.flow_map import FlowMap
from cfm_core.formulations import FORMULATIONS, get_formulation
from cfm_core.loss import CFMLoss, LossRecipe, NoiseSampler


@dataclass(frozen=True)
class _FormulationChoice:
    """The formulation and its settings: a base of :class:`MethodConfig` so that they come first
    (a dataclass lists its bases' fields before its own, the last base's first)."""

    formulation: Literal["u", "x1", "edm", "ddim"] = "u"
    """The formulation: u (velocity) or x1 (endpoint) flow matching, edm (denoiser), ddim (x0, or
    the noise with --method.formulation-options prediction epsilon)."""
    formulation_options: dict[str, float | str] = field(default_factory=dict)
    """Formulation settings, e.g. sigma_max 10 sigma_data 0.5 (edm), target_clamp 0.02 (x1),
    prediction epsilon (ddim: the network predicts the noise, trained by DDPM's loss)."""


@dataclass(frozen=True)
class MethodConfig(LossRecipe, _FormulationChoice):
    """How the network is trained and sampled (CFM, or the multi-step baseline with ratio 1.0):
    the formulation, then the loss recipe's options and the teacher."""

    teacher: str | None = None
    """Distil this trained run directory or checkpoint of the same app (its first EMA average,
    frozen: any multi-step model, or a CFM model's r = t field) by the objective. Its path and the
    SHA-256 of its weights are stored in the student's checkpoints."""
    student_init: Literal["teacher", "fresh"] = "teacher"
    """With a teacher: start from its weights (when the student's network options equal the
    teacher's; a smaller or otherwise different student starts fresh) or from fresh weights."""

    def __post_init__(self) -> None:
        if self.formulation not in FORMULATIONS:
            raise ConfigError(f"method.formulation: unknown {self.formulation!r}; choose one of {sorted(FORMULATIONS)}")
        try:
            get_formulation(self.formulation, **self.formulation_options)
        except ValueError as err:
            raise ConfigError(f"method.formulation_options: {err}") from None
        try:
            super().__post_init__()
            self.check_formulation(self.formulation)
        except ValueError as err:
            raise ConfigError(f"method.{err}") from None
        if self.teacher is None and self.objective in TEACHER_OBJECTIVES:
            raise ConfigError(f"method.objective {self.objective!r} distils a teacher: give --method.teacher RUN")
        if self.teacher is not None and self.objective == "data":
            raise ConfigError(f"method.objective 'data' ignores --method.teacher; choose one of {TEACHER_OBJECTIVES}")
        if self.teacher is not None and not str(self.teacher).strip():
            raise ConfigError("method.teacher must be a run directory or checkpoint path")

    @property
    def is_baseline(self) -> bool:
        """True for the multi-step baseline (every row at r = t)."""
        return self.instantaneous_ratio == 1.0

    def recipe(self) -> LossRecipe:
        """The :class:`~cfm_core.LossRecipe` part of this config."""
        return LossRecipe(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LossRecipe)})


def build_cfm(
    net: nn.Module,
    method: MethodConfig,
    null_cond: Condition = None,
    noise_sampler: NoiseSampler | None = None,
) -> CFMLoss:
    """The :class:`~cfm_core.CFMLoss` that trains ``net`` as ``method`` says; its ``.model`` is the
    :class:`~cfm_core.FlowMap`. Without ``null_cond`` the condition is never dropped. The loss
    trains from the data: :func:`cfm_core.cli.teacher.with_teacher` attaches the teacher that
    ``method.teacher`` names (and its objective)."""
    model = FlowMap(net, method.formulation, formulation_options=dict(method.formulation_options), null_cond=null_cond)
    recipe = method.recipe()
    if null_cond is None:
        recipe = dataclasses.replace(recipe, cond_dropout=0.0)
    recipe = dataclasses.replace(recipe, objective=None)
    return CFMLoss(model, recipe, noise_sampler=noise_sampler)
