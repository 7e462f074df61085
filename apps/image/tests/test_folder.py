"""ImageFolderDataset: resizing and cropping, labels, unreadable files, empty folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cfm_image.data import ImageFolderDataset, UnreadableImageWarning
from cfm_image.data.imaging import decode_image
from PIL import Image


def test_shapes_labels_and_range(labelled_folder):
    dataset = ImageFolderDataset(labelled_folder, 16, labels=True)
    assert len(dataset) == 10 and dataset.skipped == 0
    assert dataset.class_names == ["cat", "dog"] and dataset.num_classes == 2
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        assert -1.0 <= image.min() and image.max() <= 1.0
        assert label == ("dog" in str(dataset.files[index]))
    grey = ImageFolderDataset(labelled_folder, 8, channels=1)
    image, label = grey[0]
    assert image.shape == (1, 8, 8) and label is None and grey.num_classes is None


def test_constant_image_values_are_exact(tmp_path):
    color = (200, 100, 50)
    Image.new("RGB", (37, 23), color).save(tmp_path / "a.png")
    image, _ = ImageFolderDataset(tmp_path, 12)[0]
    expected = torch.tensor(color, dtype=torch.float32) / 127.5 - 1.0
    assert torch.equal(image, expected[:, None, None].expand(3, 12, 12))


@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_png_keeps_its_levels(tmp_path, channels):
    levels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000  # 0 .. 63000 of 65535
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image, _ = ImageFolderDataset(tmp_path, 8, channels=channels)[0]
    expected = torch.from_numpy(np.round(levels / 257.0)).float() / 127.5 - 1.0
    assert torch.equal(image, expected.expand(channels, 8, 8))  # not clipped to white


def test_a_float_image_is_refused_naming_why(tmp_path):
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(ValueError, match="F images .32-bit pixels. have no fixed white level"):
        decode_image(str(tmp_path / "float.tiff"), 1)


@pytest.mark.parametrize("wide", [True, False])
def test_resize_shorter_side_then_center_crop(tmp_path, wide):
    # A 60x20 image: a white centre band of 40 between two black 10-pixel margins. After the
    # shorter side goes 20 -> 10 the band spans 5..25 of 30; the centre crop 10..20 is all white.
    band = np.zeros((20, 60), dtype=np.uint8)
    band[:, 10:50] = 255
    Image.fromarray(band if wide else band.T).save(tmp_path / "band.png")
    image, _ = ImageFolderDataset(tmp_path, 10, channels=1)[0]
    assert image.shape == (1, 10, 10)
    assert torch.equal(image, torch.ones(1, 10, 10))


def test_jpeg_close_to_source(tmp_path):
    pixels = np.full((32, 32, 3), (10, 120, 240), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.jpeg", quality=95)
    image, _ = ImageFolderDataset(tmp_path, 32)[0]
    expected = torch.tensor([10, 120, 240], dtype=torch.float32) / 127.5 - 1.0
    assert (image - expected[:, None, None]).abs().max() < 0.05


def test_unreadable_header_is_skipped_and_counted(labelled_folder):
    (labelled_folder / "cat" / "broken.png").write_bytes(b"not an image at all")
    with pytest.warns(UnreadableImageWarning, match="broken.png"):
        dataset = ImageFolderDataset(labelled_folder, 16, labels=True)
    assert len(dataset) == 10 and dataset.skipped == 1


def test_truncated_file_is_skipped_at_load(tmp_path):
    Image.new("RGB", (16, 16), (255, 0, 0)).save(tmp_path / "a.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "b.png")
    data = (tmp_path / "b.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[: len(data) // 2])  # header intact, pixels cut
    dataset = ImageFolderDataset(tmp_path, 16)
    assert len(dataset) == 2 and dataset.skipped == 0
    with pytest.warns(UnreadableImageWarning, match="b.png"):
        image, _ = dataset[1]  # falls through to the next readable file, a.png
    assert torch.equal(image, dataset[0][0]) and dataset.skipped == 1
    assert dataset.try_load(1) is None and dataset.skipped == 1  # counted once per file


def test_empty_and_missing_folders_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        ImageFolderDataset(tmp_path, 16)
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.warns(UnreadableImageWarning), pytest.raises(ValueError, match="1 unreadable"):
        ImageFolderDataset(tmp_path, 16)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere", 16)


def test_labels_need_class_folders(labelled_folder):
    Image.new("RGB", (8, 8)).save(labelled_folder / "loose.png")
    with pytest.raises(ValueError, match="loose.png"):
        ImageFolderDataset(labelled_folder, 8, labels=True)


def test_bad_configuration(labelled_folder):
    with pytest.raises(ValueError, match="channels"):
        ImageFolderDataset(labelled_folder, 8, channels=2)
    with pytest.raises(ValueError, match="resolution"):
        ImageFolderDataset(labelled_folder, 0)
    with pytest.raises(IndexError):
        ImageFolderDataset(labelled_folder, 8)[10]
