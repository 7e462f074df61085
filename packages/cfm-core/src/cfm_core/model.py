"""Deprecated: ``CumulativeFlowMap``, the model and its loss in one object.

Use :class:`cfm_core.FlowMap` (the model: ``field``, ``flow_map``, ``sample``) and
:class:`cfm_core.CFMLoss` with a :class:`cfm_core.LossRecipe` (training). This module keeps the old
names working for one release.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from cfm_core.conditions import Condition, select_condition
from cfm_core.flow_map import FlowMap
from cfm_core.formulations import Formulation
from cfm_core.loss import TARGET_FIELDS, CFMLoss, LossRecipe, NoiseSampler

__all__ = ["TARGET_FIELDS", "Condition", "CumulativeFlowMap", "select_condition"]


class CumulativeFlowMap(FlowMap):
    """Deprecated: a :class:`~cfm_core.FlowMap` that also carries its :class:`~cfm_core.CFMLoss`.

    ``CumulativeFlowMap(net, formulation, **options)`` takes the :class:`~cfm_core.LossRecipe`
    fields, ``null_cond``, ``formulation_options`` and ``noise_sampler`` as keywords; calling it (or
    :meth:`loss`) computes the loss. Its state dict is the model's (``net.*``).
    """

    def __init__(
        self,
        net: nn.Module,
        formulation: str | Formulation | dict[str, Any] = "edm",
        *,
        null_cond: Condition = None,
        formulation_options: dict[str, Any] | None = None,
        noise_sampler: NoiseSampler | None = None,
        **recipe: Any,
    ) -> None:
        warnings.warn(
            "CumulativeFlowMap is deprecated; use FlowMap(net, formulation) for the model and "
            "CFMLoss(model, LossRecipe(...)) for training",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(net, formulation, formulation_options=formulation_options, null_cond=null_cond)
        # Not a submodule: the loss holds the model, and a module must not contain itself.
        object.__setattr__(self, "cfm_loss", CFMLoss(self, LossRecipe(**recipe), noise_sampler=noise_sampler))

    def forward(
        self, x_data: Tensor, cond: Condition = None, *, noise: Tensor | None = None, return_terms: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The CFM training loss on a batch (see :meth:`cfm_core.CFMLoss.forward`)."""
        return self.cfm_loss(x_data, cond, noise=noise, return_terms=return_terms)

    def loss(self, x_data: Tensor, cond: Condition = None, *, noise: Tensor | None = None) -> Tensor:
        """The CFM training loss on a batch (a differentiable scalar)."""
        return self(x_data, cond, noise=noise)

    def sample(
        self,
        noise: Tensor,
        steps: int | Sequence[float] | Tensor = 1,
        cond: Condition = None,
        guidance: float = 1.0,
        return_nfe: bool = False,
        *,
        sampler: str = "cumulative",
    ) -> Tensor | tuple[Tensor, int]:
        """:meth:`cfm_core.FlowMap.sample`, also taking ``cond``, ``guidance`` by position."""
        return super().sample(noise, steps, sampler=sampler, cond=cond, guidance=guidance, return_nfe=return_nfe)
