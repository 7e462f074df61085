"""step_batches: batches as a pure function of the step, for tensors, folders and shard streams."""

from __future__ import annotations

import pytest
import torch
from cfm_image.data import (
    ImageFolderDataset,
    ImageTensorDataset,
    ShardStream,
    collate_images,
    step_batches,
    write_shards,
)


@pytest.fixture
def indexed_dataset():
    """10 images whose label is their own index."""
    images = torch.linspace(-1, 1, 10)[:, None, None, None].expand(10, 1, 4, 4).clone()
    return ImageTensorDataset(images, torch.arange(10))


def test_each_epoch_is_a_permutation_and_batches_straddle_epochs(indexed_dataset):
    data = step_batches(indexed_dataset, 4, seed=0)
    labels = torch.cat([data(k)[1] for k in range(5)])  # 20 positions = 2 epochs
    first, second = labels[:10], labels[10:]
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)
    images, _ = data(2)  # positions 8..11: the end of epoch 0, the start of epoch 1
    assert torch.equal(images, indexed_dataset.images[labels[8:12]])


def test_batches_depend_on_step_and_seed_only(indexed_dataset):
    sequential = [step_batches(indexed_dataset, 3, seed=7)(k)[1] for k in range(8)]
    shuffled_order = step_batches(indexed_dataset, 3, seed=7)
    for k in (5, 0, 7, 2):
        assert torch.equal(shuffled_order(k)[1], sequential[k])
    other_seed = torch.cat([step_batches(indexed_dataset, 3, seed=8)(k)[1] for k in range(3)])
    assert not torch.equal(other_seed, torch.cat(sequential[:3]))


def test_batch_larger_than_dataset(indexed_dataset):
    _, labels = step_batches(indexed_dataset, 25, seed=0)(0)
    assert labels.shape == (25,) and torch.bincount(labels[:20]).tolist() == [2] * 10


def test_folder_dataset_batches(labelled_folder):
    dataset = ImageFolderDataset(labelled_folder, 8, labels=True)
    images, labels = step_batches(dataset, 4, seed=0)(1)
    assert images.shape == (4, 3, 8, 8) and labels.dtype == torch.long
    assert torch.equal(images, step_batches(dataset, 4, seed=0)(1)[0])


def test_stream_batches_resume_exactly(tmp_path, grid_dataset):
    write_shards(grid_dataset, str(tmp_path / "s-%02d.tar"), maxcount=4)
    stream = ShardStream(str(tmp_path / "s-{00..02}.tar"), repeat=True, shuffle_buffer=3, seed=1)
    sequential = step_batches(stream, 5)
    reference = [sequential(k) for k in range(6)]  # 30 samples, 2.5 epochs
    resumed = step_batches(stream, 5)
    for k in (4, 5, 1):
        images, labels = resumed(k)
        assert torch.equal(images, reference[k][0]) and torch.equal(labels, reference[k][1])
    with pytest.raises(ValueError, match="repeat=True"):
        step_batches(ShardStream(str(tmp_path / "s-00.tar")), 2)


def test_collate_and_argument_errors(indexed_dataset):
    image = torch.zeros(1, 4, 4)
    images, labels = collate_images([(image, None), (image, None)])
    assert images.shape == (2, 1, 4, 4) and labels is None
    with pytest.raises(ValueError, match="some samples have a class label"):
        collate_images([(image, 1), (image, None)])
    with pytest.raises(ValueError, match="different shapes"):
        collate_images([(image, 1), (torch.zeros(1, 5, 5), 1)])
    with pytest.raises(ValueError, match="batch_size"):
        step_batches(indexed_dataset, 0)
    with pytest.raises(ValueError, match="step"):
        step_batches(indexed_dataset, 2)(-1)


def test_a_process_share_loads_only_its_rows(indexed_dataset, tmp_path, grid_dataset):
    """``data(step, rows)`` is ``data(step)[rows]``; a map-style dataset reads only those images."""
    read = []

    class Counting(ImageTensorDataset):
        def batch(self, indices):
            read.extend(indices.tolist())
            return super().batch(indices)

    counting = Counting(indexed_dataset.images, indexed_dataset.labels)
    data = step_batches(counting, 6, seed=3)
    whole = data(2)
    read.clear()
    for rank in range(3):
        images, labels = data(2, slice(rank, None, 3))
        assert torch.equal(images, whole[0][rank::3]) and torch.equal(labels, whole[1][rank::3])
    assert sorted(read) == sorted(whole[1].tolist())  # two images per share, none twice
    write_shards(grid_dataset, str(tmp_path / "s-%02d.tar"), maxcount=4)
    stream = step_batches(ShardStream(str(tmp_path / "s-{00..02}.tar"), repeat=True, seed=1), 4)
    whole = stream(1)
    assert torch.equal(stream(1, slice(1, None, 2))[0], whole[0][1::2])
