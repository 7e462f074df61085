"""Samplers of the training time pairs ``(t, r)``, in *unit time* (0 = noise, 1 = data).

Each returns ``(u_t, u_r)`` with ``u_t <= u_r``: ``t`` is the time nearer the noise and generation
runs from ``t`` to ``r``. A share ``instantaneous_ratio`` of the batch gets ``r = t`` (the ordinary
multi-step objective, which anchors training; the paper uses 0.5, MeanFlow 0.75, and 1.0 gives the
plain multi-step baseline from the same code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

TIME_SAMPLERS = ("uniform", "logit_normal")


@dataclass(frozen=True)
class TimePairSampler:
    """Draws ``(u_t, u_r)`` pairs.

    Args:
        kind: ``"uniform"`` (two uniform draws, ordered: the paper) or ``"logit_normal"`` (two
            ``sigmoid(N(mean, std))`` draws, ordered: MeanFlow's choice).
        instantaneous_ratio: share of the batch with ``r = t``.
        mean, std: parameters of the logit-normal law (MeanFlow: -0.4, 1.0).
    """

    kind: str = "uniform"
    instantaneous_ratio: float = 0.5
    mean: float = -0.4
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in TIME_SAMPLERS:
            raise ValueError(f"unknown time sampler {self.kind!r}; choose one of {TIME_SAMPLERS}")
        if not 0.0 <= self.instantaneous_ratio <= 1.0:
            raise ValueError(f"instantaneous_ratio must lie in [0, 1], got {self.instantaneous_ratio}")
        if self.std <= 0:
            raise ValueError(f"logit-normal std must be positive, got {self.std}")

    def _draw(self, shape: tuple[int, ...], device, generator) -> Tensor:
        if self.kind == "uniform":
            return torch.rand(shape, device=device, generator=generator)
        z = torch.randn(shape, device=device, generator=generator) * self.std + self.mean
        return torch.sigmoid(z)

    def __call__(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(u_t, u_r, instantaneous)``; ``instantaneous`` marks the rows with ``r = t``.

        Exactly ``round(instantaneous_ratio * batch_size)`` rows get ``r = t``, at random positions.
        """
        pair = self._draw((2, batch_size), device, generator)
        u_t, u_r = pair.min(dim=0).values, pair.max(dim=0).values
        n_inst = int(round(self.instantaneous_ratio * batch_size))
        order = torch.randperm(batch_size, device=device, generator=generator)
        instantaneous = torch.zeros(batch_size, dtype=torch.bool, device=device)
        instantaneous[order[:n_inst]] = True
        u_r = torch.where(instantaneous, u_t, u_r)
        return u_t, u_r, instantaneous
