"""Batches by global step: ``data = step_batches(dataset, batch_size, seed)``, then ``data(k)``.

``data(k)`` is a pure function of ``k`` (and the seed), so a run resumed at step ``k`` sees
exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cfm_image.data.shards import ShardStream

Batch = tuple[Tensor, Tensor | None]
StepBatches = Callable[..., Batch]


def collate_images(items: Sequence[tuple[Tensor, int | None]]) -> Batch:
    """Stack ``(image, label)`` items into ``(images (B, C, H, W), labels (B,) long or None)``."""
    if not items:
        raise ValueError("cannot collate an empty list of images")
    shapes = {tuple(image.shape) for image, _ in items}
    if len(shapes) > 1:
        raise ValueError(
            f"images of different shapes {sorted(shapes)} cannot form a batch; set a resolution to resize them"
        )
    labels = [label for _, label in items]
    has_label = [label is not None for label in labels]
    if any(has_label) and not all(has_label):
        raise ValueError("some samples have a class label and some do not")
    images = torch.stack([image for image, _ in items])
    return images, torch.tensor(labels, dtype=torch.long) if all(has_label) else None


def epoch_permutation(size: int, seed: int, epoch: int) -> Tensor:
    """The seeded permutation of ``range(size)`` used in ``epoch``."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.randperm(size, generator=torch.Generator().manual_seed(int(state)))


class _PermutedBatches:
    """``data(k)``: positions ``k*B ... k*B+B-1`` of the concatenated per-epoch permutations."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int) -> None:
        if len(dataset) == 0:
            raise ValueError("the dataset is empty")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self._permutations: dict[int, Tensor] = {}

    def _permutation(self, epoch: int) -> Tensor:
        if epoch not in self._permutations:
            if len(self._permutations) >= 4:
                self._permutations.pop(next(iter(self._permutations)))
            self._permutations[epoch] = epoch_permutation(len(self.dataset), self.seed, epoch)
        return self._permutations[epoch]

    def indices(self, step: int) -> Tensor:
        """The dataset indices of the batch at ``step``."""
        size = len(self.dataset)
        positions = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, offsets = positions // size, positions % size
        return torch.cat([self._permutation(int(e))[offsets[epochs == e]] for e in epochs.unique()])

    def __call__(self, step: int, rows: slice = slice(None)) -> Batch:
        index = self.indices(_check_step(step))[rows]
        if hasattr(self.dataset, "batch"):
            return self.dataset.batch(index)
        return collate_images([self.dataset[int(i)] for i in index])


class _StreamBatches:
    """``data(k)``: the ``k``-th run of ``B`` samples of a repeating :class:`ShardStream`; a call
    out of sequence restarts the stream at sample ``k*B``."""

    def __init__(self, stream: ShardStream, batch_size: int) -> None:
        if not stream.repeat:
            raise ValueError("step_batches needs a repeating stream: ShardStream(..., repeat=True)")
        self.stream, self.batch_size = stream, batch_size
        self._iterator = None
        self._next_step: int | None = None

    def __call__(self, step: int, rows: slice = slice(None)) -> Batch:
        step = _check_step(step)
        if step != self._next_step:
            self._iterator = iter(self.stream.starting_at(self.stream.skip + step * self.batch_size))
        items = [next(self._iterator) for _ in range(self.batch_size)]  # a stream is read in order
        self._next_step = step + 1
        return collate_images(items[rows])


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return int(step)


def step_batches(dataset: Dataset | ShardStream, batch_size: int, seed: int = 0) -> StepBatches:
    """A function ``data(step, rows=slice(None)) -> (images, labels or None)`` giving the rows
    ``rows`` of the batch of a global step (a process's share under DDP: a map-style dataset loads
    only those images; a stream reads the whole batch and keeps them).

    For a map-style dataset (``ImageTensorDataset``, ``ImageFolderDataset``, any ``Dataset``
    of ``(image, label)``) the samples are visited in a seeded permutation per epoch and batch
    ``k`` holds positions ``k*B`` to ``k*B+B-1`` of the concatenated epochs (a batch may straddle
    two epochs). For a :class:`ShardStream` (with ``repeat=True``; its own ``seed`` applies) batch
    ``k`` is samples ``k*B`` to ``k*B+B-1`` of the stream, read in order. Either way ``data(k)``
    depends on ``k`` only, which makes resuming at any step exact.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(dataset, ShardStream):
        return _StreamBatches(dataset, batch_size)
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"step_batches needs a map-style dataset or a ShardStream, got {type(dataset).__name__}")
    return _PermutedBatches(dataset, batch_size, seed)
