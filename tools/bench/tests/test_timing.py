"""The interleaved step timer visits every model in turn and reports per-step seconds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import interleaved_step_times, optimizer_step  # noqa: E402


def test_rounds_interleave_models_and_steps_are_indexed_in_order():
    calls: list[tuple[str, int]] = []
    steps = {name: (lambda i, name=name: calls.append((name, i))) for name in ("a", "b")}
    interleaved_step_times(steps, repeats=2, rounds=3, warmup=1)
    assert calls == [("a", 0), ("b", 0)] + [
        (name, i) for r in range(3) for name in ("a", "b") for i in (1 + 2 * r, 2 + 2 * r)
    ]


def test_a_slower_step_measures_slower():
    times = interleaved_step_times({"fast": lambda i: None, "slow": lambda i: time.sleep(0.002)}, repeats=3, rounds=3)
    assert times["slow"] >= 0.002 > times["fast"]


def test_optimizer_step_trains_on_tensor_and_pair_batches():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, cond=None):
            return ((self.w * x - (0 if cond is None else cond)) ** 2).mean()

    model = Model()
    step = optimizer_step(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda i: torch.ones(4))
    step(0)
    assert model.w.item() == pytest.approx(1 - 0.1 * 2)
    step = optimizer_step(
        model, torch.optim.SGD(model.parameters(), lr=0.1), lambda i: (torch.ones(4), torch.full((4,), model.w.item()))
    )
    step(0)
    assert model.w.item() == pytest.approx(0.8)


def test_bad_counts_are_named():
    with pytest.raises(ValueError, match="repeats"):
        interleaved_step_times({"a": lambda i: None}, repeats=0)
