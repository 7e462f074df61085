"""Where a trained CFM's jumps miss: the gap between one cumulative jump and the model's own ODE.

CFM's field equation makes ``psi_{t->r}`` the flow map of the model's own instantaneous field
``m_{t->t}``. :func:`jump_gap` measures how far a trained model is from that fixed point: from
states on the model's own ODE trajectory (its ``r = t`` field, solved from the noise on a fine grid)
it compares one jump to the data end with the ODE's continuation to the data end. A gap that is
small from the noise end means the one-step sampler reproduces the multi-step one; a gap that only
appears from some start time on tells which jumps have not yet been learnt (e.g. EDM's jumps into
``sigma -> 0``, which the field equation constrains only through their time derivative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cfm_core.conditions import Condition
from cfm_core.flow_map import FlowMap
from cfm_core.samplers import INSTANTANEOUS_METHODS, SAMPLERS, sample_cumulative


@dataclass(frozen=True)
class JumpGap:
    """The gap of the jumps that start at one point of the grid."""

    start: float
    """Start of the jumps in unit time (0 = the noise end, 1 = the data end)."""
    t: float
    """The same start in the formulation's own time."""
    gap: float
    """Mean Euclidean distance (per sample, over all its coordinates) between the one-jump
    endpoint and the ODE endpoint."""
    spread: float
    """Root-mean-square distance of the ODE endpoints from their mean: the scale to read the gap
    against."""


@torch.no_grad()
def jump_gap(
    model: FlowMap,
    noise: Tensor,
    starts: Sequence[float] = (0.0, 0.25, 0.5, 0.75),
    steps: int = 64,
    method: str = "heun",
    cond: Condition = None,
) -> list[JumpGap]:
    """The gap between one jump ``psi_{t->data}`` and the model's own ODE, at each start time.

    The ODE is the model's ``r = t`` field solved with ``method`` (``"heun"``, ``"euler"`` or
    ``"ddim"``) on the formulation's ``steps``-hop grid; each start in unit time is rounded to the
    nearest hop before the data end. ``noise`` is standard normal, shaped like the data.
    """
    if method not in INSTANTANEOUS_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {INSTANTANEOUS_METHODS}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if any(not 0.0 <= s < 1.0 for s in starts):
        raise ValueError(f"starts must lie in [0, 1) (unit time, 0 = noise), got {list(starts)}")
    formulation, solve = model.formulation, SAMPLERS[method]
    grid = formulation.time_grid(steps, device=noise.device)

    def field(x: Tensor, t: Tensor, r: Tensor) -> tuple[Tensor, int]:
        return model.field(x, t, r, cond), 1

    was_training = model.training
    model.eval()
    try:
        gaps, x, reached = [], formulation.prior(noise), 0
        for start in sorted(starts):
            hop = min(round(start * steps), steps - 1)
            if hop > reached:  # advance along the ODE trajectory to this start
                x, _ = solve(field, formulation, x, grid[reached : hop + 1])
                reached = hop
            ode_end, _ = solve(field, formulation, x, grid[hop:])
            jump_end, _ = sample_cumulative(field, formulation, x, grid[[hop, steps]])
            centred = (ode_end - ode_end.mean(0)).flatten(1)
            gaps.append(
                JumpGap(
                    start=hop / steps,
                    t=float(grid[hop]),
                    gap=float((jump_end - ode_end).flatten(1).norm(dim=1).mean()),
                    spread=float(centred.pow(2).sum(1).mean().sqrt()),
                )
            )
    finally:
        model.train(was_training)
    return gaps
