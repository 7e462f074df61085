"""Samplers of the training time pairs ``(t, r)``, in *unit time* (0 = noise, 1 = data).

Each returns ``(u_t, u_r)`` with ``u_t <= u_r``: ``t`` is the time nearer the noise and generation
runs from ``t`` to ``r``. A share ``instantaneous_ratio`` of the batch gets ``r = t`` (the ordinary
multi-step objective, which anchors training; 1.0 gives the plain multi-step baseline from the same
code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

TIME_SAMPLERS = ("uniform", "logit_normal")


class TimePairs(NamedTuple):
    """One draw of a batch's time pairs, in unit time."""

    u_t: Tensor
    """``(B,)`` start times (nearer the noise)."""
    u_r: Tensor
    """``(B,)`` end times, ``u_r >= u_t``; equal to ``u_t`` on the instantaneous rows."""
    instantaneous: Tensor
    """``(B,)`` bool mask of the rows with ``r = t``."""
    instantaneous_rows: Tensor
    """Indices of the rows with ``r = t``, ascending (their count is fixed by the ratio)."""
    cumulative_rows: Tensor
    """Indices of the other rows, ascending."""


@dataclass(frozen=True)
class TimePairSampler:
    """Draws ``(u_t, u_r)`` pairs.

    Args:
        kind: ``"uniform"`` (two uniform draws, ordered: the paper) or ``"logit_normal"`` (two
            ``sigmoid(N(mean, std))`` draws in unit time, ordered: MeanFlow's law, whose mean -0.4 in its
            time, where 1 is the noise, is mean 0.4 here).
        instantaneous_ratio: share of the batch with ``r = t``.
        mean, std: parameters of the logit-normal law.
    """

    kind: str = "uniform"
    instantaneous_ratio: float = 0.5
    mean: float = -0.4
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in TIME_SAMPLERS:
            raise ValueError(f"time_sampler: unknown {self.kind!r}; choose one of {TIME_SAMPLERS}")
        if not 0.0 <= self.instantaneous_ratio <= 1.0:
            raise ValueError(f"instantaneous_ratio must lie in [0, 1], got {self.instantaneous_ratio}")
        if self.std <= 0:
            raise ValueError(f"logit_normal: the std must be positive, got {self.std}")

    def _draw(self, shape: tuple[int, ...], device, generator) -> Tensor:
        if self.kind == "uniform":
            return torch.rand(shape, device=device, generator=generator)
        z = torch.randn(shape, device=device, generator=generator) * self.std + self.mean
        return torch.sigmoid(z)

    def draw(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> TimePairs:
        """The time pairs of a batch and its split into ``r = t`` rows and cumulative rows.

        Exactly ``round(instantaneous_ratio * batch_size)`` rows get ``r = t``, at random positions.
        """
        pair = self._draw((2, batch_size), device, generator)
        u_t, u_r = pair.min(dim=0).values, pair.max(dim=0).values
        n_inst = int(round(self.instantaneous_ratio * batch_size))
        order = torch.randperm(batch_size, device=device, generator=generator)
        instantaneous_rows, cumulative_rows = order[:n_inst].sort().values, order[n_inst:].sort().values
        instantaneous = torch.zeros(batch_size, dtype=torch.bool, device=device)
        instantaneous[instantaneous_rows] = True
        u_r = torch.where(instantaneous, u_t, u_r)
        return TimePairs(u_t, u_r, instantaneous, instantaneous_rows, cumulative_rows)

    def __call__(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(u_t, u_r, instantaneous)`` of :meth:`draw`; ``instantaneous`` marks ``r = t``."""
        return self.draw(batch_size, device, generator)[:3]
