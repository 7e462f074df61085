"""Training-step timing shared by the benchmarks: models timed in interleaved rounds.

Timing one model after another lets a change in machine load (other processes, thermal state) land
on one model only and bias the ratio; interleaving short rounds of every model and taking each
model's median round spreads the load over all of them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

TrainStep = Callable[[int], None]


def optimizer_step(
    loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Callable[[int], Any]
) -> TrainStep:
    """``step(i)``: ``loss_fn`` (a CFMLoss) on ``batches(i)`` (a tensor or an ``(x, cond)`` pair),
    backward, update."""

    def step(i: int) -> None:
        batch = batches(i)
        x, cond = batch if isinstance(batch, (tuple, list)) else (batch, None)
        loss = loss_fn(x, cond)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def interleaved_step_times(
    steps: dict[str, TrainStep], repeats: int, rounds: int = 5, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per step of each named training step, after ``warmup`` steps each, over
    ``rounds`` rounds of ``repeats`` steps that visit every model in turn."""
    if repeats < 1 or rounds < 1:
        raise ValueError(f"need repeats >= 1 and rounds >= 1, got {repeats}, {rounds}")
    for step in steps.values():
        for i in range(warmup):
            step(i)
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(rounds):
        for name, step in steps.items():
            first = warmup + round_index * repeats
            start = time.perf_counter()
            for i in range(first, first + repeats):
                step(i)
            samples[name].append((time.perf_counter() - start) / repeats)
    return {name: statistics.median(values) for name, values in samples.items()}
