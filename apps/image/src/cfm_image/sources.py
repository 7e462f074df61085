"""From an :class:`ImageDataConfig` to data: the training batches and the reference images.

:func:`open_training_data` opens the configured source and returns it with the config *resolved*
(resolution, channels and num_classes filled in from the data), which is what checkpoints store;
:func:`training_batches` is the trainer's ``data(step)``; :func:`reference_images` gives the real
images the evaluation compares generated ones with.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import replace
from itertools import islice
from pathlib import Path

import torch
from cfm_core.cli import ConfigError
from cfm_core.resources import require_memory
from cfm_core.trust import is_plain_local, require_plain_local
from torch import Tensor
from torch.utils.data import Dataset

from cfm_image.config import ImageDataConfig
from cfm_image.data import (
    ImageFolderDataset,
    ShardStream,
    collate_images,
    expand_shards,
    load_builtin,
    step_batches,
)

FOLDER_RESOLUTION = 32
"""Default side of folder and shard images."""
SHARD_META = "meta.json"
"""The file ``cfm image pack`` writes beside the shards."""


def _shard_urls(spec: str) -> str | list[str]:
    """A folder means every ``.tar`` in it (sorted); anything else goes to webdataset as is."""
    folder = Path(spec)
    if not folder.is_dir():
        return spec
    shards = sorted(str(p) for p in folder.glob("*.tar"))
    if not shards:
        raise ConfigError(f"data.shards: no .tar shards in the folder {folder}")
    return shards


def _shard_meta(urls: str | list[str]) -> dict:
    """The ``meta.json`` beside the first shard, or ``{}``; missing shards raise ConfigError."""
    try:
        shards = expand_shards(urls)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.shards: {err}") from None
    for shard in shards:
        if is_plain_local(shard) and not tarfile.is_tarfile(shard):
            raise ConfigError(f"data.shards: {shard} is not a tar file (shards are WebDataset .tar files)")
    first = Path(shards[0])
    path = first.parent / SHARD_META
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"data.shards: cannot read {path}: {err}") from None


def _builtin(cfg: ImageDataConfig, split: str):
    dataset = load_builtin(cfg.builtin, cfg.resolution, split=split)
    labelled = dataset.num_classes is not None and not cfg.unconditional
    resolved = replace(
        cfg, resolution=dataset.resolution, channels=1, num_classes=dataset.num_classes if labelled else None
    )
    return dataset, resolved


def _folder(cfg: ImageDataConfig):
    resolution = cfg.resolution or FOLDER_RESOLUTION
    channels = cfg.channels or 3
    try:
        dataset = ImageFolderDataset(cfg.folder, resolution, channels=channels, labels=cfg.labels)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.folder: {err}") from None
    labelled = cfg.labels and not cfg.unconditional
    resolved = replace(
        cfg, resolution=resolution, channels=channels, num_classes=dataset.num_classes if labelled else None
    )
    return dataset, resolved


def _shards(cfg: ImageDataConfig, seed: int, repeat: bool):
    urls = _shard_urls(cfg.shards)
    meta = _shard_meta(urls)
    resolution = cfg.resolution or meta.get("resolution") or FOLDER_RESOLUTION
    channels = cfg.channels or meta.get("channels") or 3
    num_classes = None
    if cfg.labels and not cfg.unconditional:
        num_classes = cfg.num_classes or len(meta.get("class_names") or ()) or None
        if num_classes is None:
            raise ConfigError(
                f"data.num_classes: labelled shards need the number of classes "
                f"(no class_names in a {SHARD_META} beside the shards)"
            )
    try:
        stream = ShardStream(
            urls,
            resolution=resolution,
            channels=channels,
            repeat=repeat,
            shuffle_shards=repeat,
            shuffle_buffer=cfg.shuffle_buffer if repeat else 0,
            seed=seed,
        )
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.shards: {err}") from None
    return stream, replace(cfg, resolution=resolution, channels=channels, num_classes=num_classes)


def checked_stored_data(data: ImageDataConfig, checkpoint: str | Path) -> ImageDataConfig:
    """``data`` as read from ``checkpoint``'s stored config, refused (:class:`ConfigError`) when
    its folder or shards are a ``pipe:`` command or a URL: a checkpoint may come from a stranger."""
    require_plain_local(data.folder, "data.folder", checkpoint)
    require_plain_local(data.shards, "data.shards", checkpoint)
    return data


def open_training_data(cfg: ImageDataConfig, seed: int = 0):
    """``(dataset or stream, resolved config)`` of the training images.

    Errors about the data (missing folder or shards, no images, missing class count) raise
    :class:`ConfigError` naming the option.
    """
    if cfg.folder is not None:
        return _folder(cfg)
    if cfg.shards is not None:
        return _shards(cfg, seed, repeat=True)
    return _builtin(cfg, "train")


def training_batches(source: Dataset | ShardStream, data: ImageDataConfig, batch_size: int, seed: int = 0):
    """The trainer's ``data(step, rows)``: the rows ``rows`` of the images of ``step`` (the trainer
    passes each process its share), with labels when ``data.num_classes`` is set; a batch that
    would not fit in memory is refused first (:class:`ConfigError`)."""
    side = data.resolution
    batch_bytes = 4 * batch_size * data.channels * side**2
    require_memory(batch_bytes, f"a batch of {batch_size} images at {side}x{side}", "--data.resolution")
    batches = step_batches(source, batch_size, seed)

    def batch(step: int, rows: slice = slice(None)):
        images, labels = batches(step, rows)
        if data.num_classes is None:
            return images
        if labels is None:
            raise ValueError(
                f"{data.name}: the images carry no class labels, but the model is "
                "class-conditional (drop --data.labels or pass --data.unconditional)"
            )
        if int(labels.max()) >= data.num_classes:
            raise ValueError(
                f"{data.name}: label {int(labels.max())} out of range for "
                f"{data.num_classes} classes (set --data.num-classes)"
            )
        return images, labels

    return batch


def reference_images(data: ImageDataConfig, limit: int, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """Up to ``limit`` real images (and labels) of a resolved data config, for evaluation.

    Built-in data: the training split (the held-out split is :func:`held_out_images`); a folder:
    a seeded random choice of its images; shards: the first images of the stream, in order.
    """
    if data.folder is not None:
        dataset, _ = _folder(data)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        images, labels = collate_images([dataset[int(i)] for i in order[:limit]])
    elif data.shards is not None:
        stream, _ = _shards(data, seed, repeat=False)
        images, labels = collate_images(list(islice(iter(stream), limit)))
    else:
        dataset, _ = _builtin(data, "train")
        images, labels = dataset.images[:limit], dataset.labels
        labels = None if labels is None else labels[:limit]
    return images, labels if data.num_classes is not None else None


def held_out_images(data: ImageDataConfig) -> tuple[Tensor, Tensor | None] | None:
    """The test split of a built-in dataset (``None`` for folders and shards)."""
    if not data.is_builtin:
        return None
    dataset, _ = _builtin(data, "test")
    return dataset.images, dataset.labels
