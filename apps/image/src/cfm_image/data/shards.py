"""WebDataset ``.tar`` shards of images: writing them, and streaming them back.

A shard sample holds ``png`` (the image; ``jpg``/``jpeg``/``webp`` are read too) and, for labelled
data, ``cls`` (the class index as text). Streams split the shard list so that every process
(rank) and every DataLoader worker reads its own disjoint set of shards.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import webdataset as wds
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from cfm_image.data.imaging import (
    UNREADABLE_IMAGE_ERRORS,
    check_channels,
    check_resolution,
    encode_png,
    load_image_tensor,
    warn_unreadable,
)

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
_PARTIAL = ".partial"


def write_shards(samples: Iterable[tuple[Tensor, int | None]], out_pattern: str, maxcount: int = 1000) -> list[str]:
    """Write ``(image, label)`` samples into ``.tar`` shards of at most ``maxcount`` samples.

    ``image`` is a tensor ``(C, H, W)`` in ``[-1, 1]`` (stored as a lossless 8-bit PNG); ``label``
    an ``int`` (stored as ``cls``) or ``None``. Each shard is written under a temporary name and
    renamed when complete, so an interrupted run leaves no truncated shard behind.

    Args:
        samples: the samples, e.g. an :class:`~cfm_image.data.ImageFolderDataset`.
        out_pattern: shard path with a printf field for the shard number, e.g.
            ``"out/shard-%06d.tar"``; missing folders are created.
        maxcount: samples per shard.

    Returns:
        The paths of the written shards, in order.
    """
    if "%" not in out_pattern:
        raise ValueError(
            f"out_pattern needs a printf field for the shard number, e.g. 'shard-%06d.tar'; got {out_pattern!r}"
        )
    if maxcount < 1:
        raise ValueError(f"maxcount must be at least 1, got {maxcount}")
    iterator = iter(samples)
    first = next(iterator, None)
    if first is None:
        raise ValueError("no samples to write: the sample source is empty")
    Path(out_pattern % 0).parent.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    failed = False

    def publish(partial_name: str) -> None:
        if failed:
            os.remove(partial_name)
            return
        final_name = partial_name[: -len(_PARTIAL)]
        os.replace(partial_name, final_name)
        written.append(final_name)

    writer = wds.ShardWriter(out_pattern + _PARTIAL, maxcount=maxcount, post=publish, verbose=0)
    try:
        for index, (image, label) in enumerate(_chain(first, iterator)):
            record = {"__key__": f"{index:09d}", "png": encode_png(image)}
            if label is not None:
                record["cls"] = str(int(label)).encode()
            writer.write(record)
    except BaseException:
        failed = True
        raise
    finally:
        writer.close()
    return written


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def expand_shards(urls: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The shard list of a path, a brace pattern (``"data/shard-{000000..000009}.tar"``), several
    of those joined by ``"::"``, or a sequence of them. Local shards must exist."""
    items = [urls] if isinstance(urls, (str, os.PathLike)) else list(urls)
    shards = [s for item in items for s in wds.shardlists.expand_urls(os.fspath(item))]
    if not shards:
        raise ValueError(f"no shards given ({urls!r})")
    missing = [s for s in shards if _is_local(s) and not os.path.isfile(s)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(shards)} shards not found, e.g. {missing[0]}")
    return shards


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


class ShardStream(IterableDataset):
    """Stream ``(image, label)`` samples from ``.tar`` shards (``label`` ``None`` without ``cls``).

    Shards are split across processes first (``rank::world_size``) and then across DataLoader
    workers, so every reader sees disjoint shards; there must be at least as many shards as
    readers. The order is deterministic given ``seed`` (shard order and the shuffle buffer are
    reseeded per epoch, rank and worker), which makes ``skip`` an exact resume: a stream with
    ``skip=n`` yields what the same stream yielded from its ``n``-th sample on. With DataLoader
    workers ``skip`` counts the samples of the whole process; the resume is exact for a
    DataLoader that takes one sample from each worker in turn (``batch_size=None``) and ``n`` a
    multiple of the number of workers. Once one epoch has been read, further whole epochs are
    skipped by counting, without reading them.

    A sample that cannot be decoded (or a shard member that cannot be read) is skipped with an
    :class:`UnreadableImageWarning` and counted in :attr:`skipped` (per process). A reader whose
    shards hold no readable sample raises ``ValueError`` at the end of its first pass.

    Args:
        urls: shard paths or brace patterns (see :func:`expand_shards`).
        resolution: resize-and-center-crop every image to this square; ``None`` keeps sizes.
        channels: 3 (RGB) or 1 (grayscale).
        repeat: start over after the last shard (epochs) instead of stopping.
        shuffle_shards: permute this reader's shard order every epoch.
        shuffle_buffer: shuffle samples through a buffer of this many (0: no shuffling).
        seed: seed of both shuffles.
        skip: samples (of this process) to leave out at the start: the resume position.
        rank, world_size: this process's slot; default from ``torch.distributed`` or the
            ``RANK``/``WORLD_SIZE`` environment variables (webdataset's convention).
    """

    def __init__(
        self,
        urls: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        resolution: int | None = None,
        channels: int = 3,
        repeat: bool = False,
        shuffle_shards: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        skip: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.shards = expand_shards(urls)
        self.resolution = None if resolution is None else check_resolution(resolution)
        check_channels(channels)
        if shuffle_buffer < 0 or skip < 0:
            raise ValueError(f"shuffle_buffer and skip must be >= 0, got {shuffle_buffer}, {skip}")
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        self.channels = channels
        self.repeat = repeat
        self.shuffle_shards = shuffle_shards
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.skip = skip
        self.rank, self.world_size = rank, world_size
        self.skipped = 0

    def starting_at(self, position: int) -> ShardStream:
        """A copy of this stream that starts at sample ``position`` (``skip=position``)."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        stream = copy.copy(self)
        stream.skip, stream.skipped = position, 0
        return stream

    def reader_slot(self) -> tuple[int, int, int, int]:
        """``(rank, world_size, worker, num_workers)`` of the current reader."""
        rank, world_size, _, _ = wds.utils.pytorch_worker_info()
        if self.world_size is not None:
            rank, world_size = self.rank, self.world_size
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        return rank, world_size, worker, num_workers

    def reader_shards(self) -> list[str]:
        """The shards of the current reader (process and DataLoader worker)."""
        rank, world_size, worker, num_workers = self.reader_slot()
        readers = world_size * num_workers
        if len(self.shards) < readers:
            raise ValueError(
                f"{len(self.shards)} shards cannot feed {readers} readers "
                f"({world_size} processes x {num_workers} workers); "
                "write more, smaller shards (lower maxcount)"
            )
        return self.shards[rank::world_size][worker::num_workers]

    def __iter__(self) -> Iterator[tuple[Tensor, int | None]]:
        rank, _, worker, num_workers = self.reader_slot()
        shards = self.reader_shards()
        to_skip = max(0, -(-(self.skip - worker) // num_workers))
        epoch, per_epoch = 0, None
        while True:
            if per_epoch is not None and to_skip >= per_epoch:
                epoch, to_skip = epoch + to_skip // per_epoch, to_skip % per_epoch
            rng = np.random.default_rng([self.seed, epoch, rank, worker])
            order = [shards[i] for i in rng.permutation(len(shards))] if self.shuffle_shards else shards
            samples = self._decoded(order)
            if self.shuffle_buffer > 1:
                samples = _buffer_shuffle(samples, self.shuffle_buffer, rng)
            count = 0
            for sample in samples:
                count += 1
                if count > to_skip:
                    yield sample
            if count == 0:
                raise ValueError(
                    f"no readable sample in shards {shards[:3]}{' ...' * (len(shards) > 3)}"
                    f" ({self.skipped} unreadable samples skipped)"
                )
            to_skip = max(0, to_skip - count)
            per_epoch = count
            if not self.repeat:
                return
            epoch += 1

    def _decoded(self, shards: list[str]) -> Iterator[tuple[Tensor, int | None]]:
        pipeline = wds.WebDataset(
            shards,
            handler=self._on_read_error,
            shardshuffle=False,
            nodesplitter=None,
            workersplitter=None,
            empty_check=False,
        )
        for sample in pipeline:
            source = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
            try:
                yield self._decode(sample)
            except UNREADABLE_IMAGE_ERRORS as error:
                self.skipped += 1
                warn_unreadable(source, error)

    def _decode(self, sample: dict) -> tuple[Tensor, int | None]:
        key = next((k for k in IMAGE_KEYS if k in sample), None)
        if key is None:
            raise ValueError(f"no image entry ({', '.join(IMAGE_KEYS)}) in sample keys {sorted(sample)}")
        image = load_image_tensor(sample[key], self.resolution, self.channels)
        label = int(sample["cls"].decode()) if "cls" in sample else None
        return image, label

    def _on_read_error(self, error: Exception) -> bool:
        """webdataset's error handler: count, warn and go on."""
        self.skipped += 1
        warn_unreadable("shard member", error)
        return True


def _buffer_shuffle(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """Shuffle a stream through a buffer of ``size`` items (deterministic given ``rng``)."""
    buffer = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        slot = int(rng.integers(size))
        yield buffer[slot]
        buffer[slot] = item
    for slot in rng.permutation(len(buffer)):
        yield buffer[slot]
