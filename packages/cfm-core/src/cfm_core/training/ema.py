"""Exponential moving averages (EMA) of a module's weights, for several decays at once.

After every optimizer step, :meth:`EMA.update` moves each float32 average towards the current
weights: ``avg <- d * avg + (1 - d) * weight``. With ``warmup_power > 0`` the decay ``d`` grows with
the number of past updates ``n`` as ``min(decay, 1 - (1 + n)^-power)`` (k-diffusion's EMAWarmup with
``inv_gamma = 1``), so the first update copies the weights and early averages forget the random
initialisation quickly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn


def _tracked_parameters(module: nn.Module) -> list[tuple[str, Tensor]]:
    """Floating-point parameters under every name (tied weights appear once per name)."""
    return [(name, p) for name, p in module.named_parameters(remove_duplicate=False) if p.dtype.is_floating_point]


def apply_average(module: nn.Module, average: Mapping[str, Tensor]) -> None:
    """Copy averaged parameters (as :attr:`EMA.averages` holds them) into ``module``, strictly."""
    params = dict(_tracked_parameters(module))
    missing, unexpected = sorted(set(params) - set(average)), sorted(set(average) - set(params))
    if missing or unexpected:
        raise KeyError(f"EMA average does not fit the module: missing {missing[:8]}, unexpected {unexpected[:8]}")
    with torch.no_grad():
        for name, p in params.items():
            if average[name].shape != p.shape:
                raise ValueError(
                    f"EMA average of {name!r} has shape {tuple(average[name].shape)}, "
                    f"the module's parameter {tuple(p.shape)}"
                )
            p.copy_(average[name])


class EMA:
    """Float32 moving averages of ``module``'s floating-point parameters for several decays.

    Args:
        module: the (unwrapped) module being trained; the averages start as copies of its weights.
        decays: the decays kept at once, each in ``[0, 1)``; the first is the default for sampling.
        warmup_power: 0 for a constant decay, else the EMAWarmup power (2/3 or 3/4 are usual).
    """

    def __init__(self, module: nn.Module, decays: Sequence[float] = (0.999,), warmup_power: float = 0.0) -> None:
        self.decays = tuple(float(d) for d in decays)
        distinct = len(set(self.decays)) == len(self.decays)
        if not distinct or any(not 0.0 <= d < 1.0 for d in self.decays):
            raise ValueError(f"EMA decays must be distinct and lie in [0, 1), got {decays}")
        if warmup_power < 0:
            raise ValueError(f"EMA warmup_power must be >= 0, got {warmup_power}")
        self.module = module
        self.warmup_power = float(warmup_power)
        self.updates = 0
        self.averages: dict[float, dict[str, Tensor]] = {}
        self.reset()

    def reset(self) -> None:
        """Restart every average from the module's current weights (update count 0)."""
        self.updates = 0
        params = _tracked_parameters(self.module)
        self.averages = {decay: {name: p.detach().float().clone() for name, p in params} for decay in self.decays}

    def effective_decay(self, decay: float) -> float:
        """The decay the next update uses (``decay`` itself unless warming up)."""
        if self.warmup_power == 0:
            return decay
        return min(decay, max(0.0, 1.0 - (1.0 + self.updates) ** -self.warmup_power))

    @torch.no_grad()
    def update(self) -> None:
        """Move every average towards the module's current weights (call after each step)."""
        params = _tracked_parameters(self.module)
        for decay, average in self.averages.items():
            weight = 1.0 - self.effective_decay(decay)
            for name, p in params:
                average[name].lerp_(p.detach().float(), weight)
        self.updates += 1

    def copy(self, decay: float | None = None) -> nn.Module:
        """A deep copy of the module holding the average for ``decay`` (default: the first decay),
        in eval mode without gradients: the model to sample from."""
        if not self.decays:
            raise ValueError("this EMA keeps no decays")
        decay = self.decays[0] if decay is None else float(decay)
        if decay not in self.averages:
            raise KeyError(f"no EMA with decay {decay}; kept: {self.decays}")
        model = copy.deepcopy(self.module)
        apply_average(model, self.averages[decay])
        return model.eval().requires_grad_(False)

    def state_dict(self) -> dict[str, Any]:
        """``{"updates": int, "averages": {decay: {parameter name: tensor}}}``."""
        return {"updates": self.updates, "averages": self.averages}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the decays and parameter names must match exactly."""
        averages = {float(d): avg for d, avg in state["averages"].items()}
        if set(averages) != set(self.decays):
            raise ValueError(f"EMA state holds decays {sorted(averages)}, this EMA keeps {sorted(self.decays)}")
        with torch.no_grad():
            for decay, average in averages.items():
                own = self.averages[decay]
                missing = sorted(set(own) - set(average))
                unexpected = sorted(set(average) - set(own))
                if missing or unexpected:
                    raise KeyError(
                        f"EMA state (decay {decay}) does not fit the module: missing "
                        f"{missing[:8]}, unexpected {unexpected[:8]}"
                    )
                for name, tensor in average.items():
                    own[name].copy_(tensor)
        self.updates = int(state["updates"])
