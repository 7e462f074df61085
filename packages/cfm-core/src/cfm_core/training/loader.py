"""Batches of consecutive training steps built ahead in worker processes (``torch.utils.data``).

:func:`step_loader` wraps a function ``build(step) -> batch`` (a process's rows of the global batch of
``step``) in a :class:`~torch.utils.data.DataLoader`: ``workers`` processes build the batches of the
steps ``first, first + 1, ...`` in turn (worker ``w`` the steps ``first + w``, ``first + w + workers``,
...), each with every RNG seeded by the step's data stream exactly as the training process would
seed it, and the loader yields them in step order. The batches are therefore identical to those
built in the training process, and a resumed run's loader simply starts at the resumed step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cfm_core.training.seeding import DATA_STREAM, seed_everything, step_seed


class StepBatches(IterableDataset):
    """``(step, build(step))`` for ``step`` in ``[first, last)``, this worker's share of the steps,
    every RNG seeded with the step's data stream before ``build`` runs."""

    def __init__(self, build: Callable[[int], Any], first: int, last: int, seed: int) -> None:
        super().__init__()
        self.build, self.first, self.last, self.seed = build, first, last, seed

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.first + worker, self.last, workers):
            seed_everything(step_seed(self.seed, step, DATA_STREAM))
            yield step, self.build(step)


def step_loader(
    build: Callable[[int], Any],
    first: int,
    last: int,
    seed: int,
    *,
    workers: int,
    prefetch: int = 2,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader yielding ``(step, batch)`` for the steps ``first .. last - 1`` in order, built by
    ``workers`` processes (at least 1) with ``prefetch`` batches each in flight; ``pin_memory`` puts
    the batches in page-locked memory for asynchronous copies to a GPU."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return DataLoader(
        StepBatches(build, first, last, seed),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=prefetch,
        pin_memory=pin_memory,
    )
