"""``cfm image pack``: a folder in, shards and meta.json out, readable by ShardStream."""

from __future__ import annotations

import json

import pytest
import torch
from cfm_core.cli import main as cfm
from cfm_image import pack_shards as tool
from cfm_image.data import ImageFolderDataset, ShardStream, UnreadableImageWarning


def test_pack_folder_with_labels(labelled_folder, tmp_path, capsys):
    (labelled_folder / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "shards"
    argv = [str(labelled_folder), str(out), "--resolution", "8", "--maxcount", "4", "--labels"]
    with pytest.warns(UnreadableImageWarning, match="broken.jpg"):
        assert cfm(["image", "pack", *argv]) == 0
    assert "wrote 10 images into 3 shards" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["count"] == 10 and meta["skipped"] == 1 and meta["class_names"] == ["cat", "dog"]
    assert meta["shards"] == [f"shard-{k:06d}.tar" for k in range(3)]
    assert sorted(p.name for p in out.iterdir()) == sorted(meta["shards"] + ["meta.json"])

    samples = list(ShardStream(str(out / "shard-{000000..000002}.tar")))
    with pytest.warns(UnreadableImageWarning):
        folder = ImageFolderDataset(labelled_folder, 8, labels=True)
    expected = sorted((image.numpy().tobytes(), label) for image, label in folder)
    assert sorted((image.numpy().tobytes(), label) for image, label in samples) == expected
    labels = [label for _, label in samples]
    assert labels != sorted(labels)  # packed in a shuffled order, not class by class
    assert all(image.shape == (3, 8, 8) and image.dtype == torch.float32 for image, _ in samples)


def test_pack_refuses_bad_input(labelled_folder, tmp_path, capsys):
    assert tool.main([str(tmp_path / "missing"), str(tmp_path / "out"), "--resolution", "8"]) == 2
    assert "missing" in capsys.readouterr().err
    out = tmp_path / "out"
    assert tool.main([str(labelled_folder), str(out), "--resolution", "8"]) == 0
    assert tool.main([str(labelled_folder), str(out), "--resolution", "8"]) == 2
    assert "already holds shards" in capsys.readouterr().err
