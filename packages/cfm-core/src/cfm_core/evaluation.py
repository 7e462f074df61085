"""The NFE sweep every app evaluates with: CFM at 1, 2, 4 ... jumps vs the multi-step baseline.

:func:`nfe_sweep` samples the same noise with a CFM model's cumulative jumps and with a baseline's
instantaneous solver at several step counts, timing each run; the app then scores each
:class:`SweepEntry` with its own metric (energy distance, Chamfer, FID ...).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cfm_core.conditions import Condition, select_condition
from cfm_core.flow_map import FlowMap


@dataclass
class SweepEntry:
    """One sampling run of a sweep."""

    label: str
    """``"cfm"`` or ``"baseline"``."""
    sampler: str
    """``cumulative``, ``euler``, ``heun`` or ``ddim``."""
    steps: int
    nfe: int
    seconds: float
    """Wall time of the whole run (synchronised on CUDA)."""
    samples: Tensor

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(1, self.samples.shape[0])


def _timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def nfe_sweep(
    noise: Tensor,
    cfm: FlowMap | None,
    cfm_steps: Iterable[int] = (1, 2, 4),
    baseline: FlowMap | None = None,
    baseline_steps: Iterable[int] = (1, 2, 4, 8, 16, 32, 64, 128),
    baseline_method: str = "euler",
    cond: Condition = None,
    guidance: float = 1.0,
    batch_size: int | None = None,
) -> list[SweepEntry]:
    """Sample ``noise`` with ``cfm`` at each of ``cfm_steps`` jumps and with ``baseline``'s
    instantaneous ``baseline_method`` at each of ``baseline_steps``; ``batch_size`` splits big runs."""
    entries: list[SweepEntry] = []

    def run(model: FlowMap, steps: int, sampler: str) -> tuple[Tensor, int]:
        chunks, nfe = [], 0
        size = batch_size or noise.shape[0]
        for start in range(0, noise.shape[0], size):
            part = noise[start : start + size]
            part_cond = select_condition(cond, torch.arange(start, min(start + size, noise.shape[0])))
            x, nfe = model.sample(part, steps, sampler=sampler, cond=part_cond, guidance=guidance, return_nfe=True)
            chunks.append(x)
        return torch.cat(chunks), nfe

    for model, label, steps_list, sampler in (
        (cfm, "cfm", cfm_steps, "cumulative"),
        (baseline, "baseline", baseline_steps, baseline_method),
    ):
        if model is None:
            continue
        for steps in steps_list:
            (x, nfe), seconds = _timed(lambda m=model, s=steps, k=sampler: run(m, s, k))
            entries.append(SweepEntry(label, sampler, int(steps), nfe, seconds, x))
    return entries


def sweep_table(entries: Sequence[SweepEntry], scores: Sequence[dict[str, float]]) -> list[dict]:
    """Rows ``{label, sampler, steps, nfe, ms_per_sample, **score}`` for JSON/Markdown reports."""
    return [
        {
            "label": e.label,
            "sampler": e.sampler,
            "steps": e.steps,
            "nfe": e.nfe,
            "ms_per_sample": 1000 * e.seconds_per_sample,
            **s,
        }
        for e, s in zip(entries, scores, strict=True)
    ]
