"""Shards: write and stream back, brace patterns, disjoint ranks and workers, resume, corruption."""

from __future__ import annotations

from itertools import islice

import pytest
import torch
import webdataset as wds
from cfm_image.data import ShardStream, UnreadableImageWarning, expand_shards, write_shards
from torch.utils.data import DataLoader

PATTERN = "shard-%03d.tar"
BRACE = "shard-{000..003}.tar"


@pytest.fixture
def shard_dir(tmp_path, grid_dataset):
    paths = write_shards(grid_dataset, str(tmp_path / PATTERN), maxcount=3)
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"shard-{k:03d}.tar" for k in range(4)]
    return tmp_path


def _keys(samples):
    """Each sample's image as bytes (a hashable identity)."""
    return [image.numpy().tobytes() for image, _ in samples]


def test_round_trip_is_lossless(shard_dir, grid_dataset):
    samples = list(ShardStream(str(shard_dir / BRACE)))
    assert len(samples) == len(grid_dataset)
    for (image, label), (expected, expected_label) in zip(samples, grid_dataset, strict=True):
        assert torch.equal(image, expected) and label == expected_label
    assert not list(shard_dir.glob("*.partial"))


def test_list_of_paths_and_resize(shard_dir):
    stream = ShardStream([shard_dir / "shard-000.tar", shard_dir / "shard-001.tar"], resolution=4, channels=1)
    samples = list(stream)
    assert len(samples) == 6 and all(image.shape == (1, 4, 4) for image, _ in samples)


def test_unlabelled_samples_have_no_label(tmp_path, grid_dataset):
    write_shards(((image, None) for image, _ in grid_dataset), str(tmp_path / PATTERN), maxcount=5)
    assert {label for _, label in ShardStream(str(tmp_path / "shard-{000..002}.tar"))} == {None}


def test_two_ranks_see_disjoint_data(shard_dir, grid_dataset):
    parts = [_keys(ShardStream(str(shard_dir / BRACE), rank=r, world_size=2)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 6
    assert not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(_keys(grid_dataset))


def test_dataloader_workers_see_disjoint_data_and_resume(shard_dir, grid_dataset):
    stream = ShardStream(str(shard_dir / BRACE))
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    full = list(loader)
    assert sorted(_keys(full)) == sorted(_keys(grid_dataset))  # each sample exactly once
    resumed = list(DataLoader(stream.starting_at(4), batch_size=None, num_workers=2))
    assert _keys(resumed) == _keys(full[4:])


def test_too_few_shards_for_readers(shard_dir):
    with pytest.raises(ValueError, match="4 shards cannot feed 5 readers"):
        list(ShardStream(str(shard_dir / BRACE), rank=0, world_size=5))


def test_skip_resumes_exactly_across_epochs(shard_dir):
    stream = ShardStream(str(shard_dir / BRACE), repeat=True, shuffle_shards=True, shuffle_buffer=4, seed=3)
    reference = list(islice(stream, 40))
    epochs = [reference[k : k + 12] for k in (0, 12, 24)]
    assert _keys(epochs[0]) != _keys(epochs[1])  # reshuffled per epoch ...
    assert sorted(_keys(epochs[0])) == sorted(_keys(epochs[1])) == sorted(_keys(epochs[2]))
    for position in (0, 5, 12, 29):  # ... and resumable within and across epochs
        resumed = list(islice(stream.starting_at(position), 40 - position))
        assert _keys(resumed) == _keys(reference[position:])


def test_corrupt_sample_is_skipped_and_counted(tmp_path, grid_dataset):
    write_shards(grid_dataset, str(tmp_path / PATTERN), maxcount=12)
    with wds.TarWriter(str(tmp_path / "bad.tar")) as writer:
        writer.write({"__key__": "broken", "png": b"garbage", "cls": b"1"})
        writer.write({"__key__": "nolabel", "png": b"\x89PNG\r\n\x1a\n", "cls": b"x"})
        writer.write({"__key__": "noimage", "txt": b"hello"})
    stream = ShardStream([tmp_path / "shard-000.tar", tmp_path / "bad.tar"])
    with pytest.warns(UnreadableImageWarning, match="broken"):
        samples = list(stream)
    assert len(samples) == 12 and stream.skipped == 3


def test_shards_without_readable_samples_fail(tmp_path):
    with wds.TarWriter(str(tmp_path / "bad.tar")) as writer:
        writer.write({"__key__": "broken", "png": b"garbage"})
    with pytest.warns(UnreadableImageWarning), pytest.raises(ValueError, match="no readable"):
        list(ShardStream(str(tmp_path / "bad.tar"), repeat=True))


def test_missing_shards_and_bad_arguments(tmp_path, grid_dataset):
    write_shards(grid_dataset, str(tmp_path / PATTERN), maxcount=12)
    with pytest.raises(FileNotFoundError, match="1 of 2 shards not found, e.g. .*shard-001.tar"):
        expand_shards(str(tmp_path / "shard-{000..001}.tar"))
    with pytest.raises(ValueError, match="no shards"):
        expand_shards([])
    with pytest.raises(ValueError, match="no samples"):
        write_shards([], str(tmp_path / PATTERN))
    with pytest.raises(ValueError, match="printf"):
        write_shards(grid_dataset, str(tmp_path / "shard.tar"))
    with pytest.raises(ValueError, match="rank"):
        ShardStream(str(tmp_path / "shard-000.tar"), rank=2, world_size=2)


def test_interrupted_write_leaves_no_partial_shard(tmp_path, grid_dataset):
    def failing():
        yield from islice(iter(grid_dataset), 4)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_shards(failing(), str(tmp_path / PATTERN), maxcount=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000.tar"]
    assert len(list(ShardStream(str(tmp_path / "shard-000.tar")))) == 3
