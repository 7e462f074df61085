"""Shared fixtures of the cfm-image tests: small image folders and tensor datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cfm_image.data import ImageTensorDataset
from PIL import Image


@pytest.fixture
def labelled_folder(tmp_path):
    """``root/{cat,dog}/`` with 3 PNGs of various sizes and 2 JPEGs each (10 images)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for k, (height, width) in enumerate([(20, 30), (48, 17), (16, 16)]):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
        for k, (height, width) in enumerate([(25, 40), (64, 33)]):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"j{k}.jpg", quality=95)
    return root


@pytest.fixture
def grid_dataset():
    """12 RGB 8x8 images with 8-bit values (exactly representable in PNG) and labels 0..2."""
    generator = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (12, 3, 8, 8), generator=generator)
    labels = torch.arange(12) % 3
    return ImageTensorDataset(levels.float() / 127.5 - 1.0, labels)


@pytest.fixture(scope="session")
def fake_inception_weights(tmp_path_factory):
    """A weights file in torch-fidelity's Inception-v3 format with random weights (He-scaled
    convolutions, so the 2048 features neither vanish nor explode): the real file cannot be
    downloaded here. The network is built with its weight loading switched off."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    folder = tmp_path_factory.mktemp("inception")
    empty = folder / "empty.pth"
    torch.save({}, empty)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], str(empty))
    torch.manual_seed(0)
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = folder / "fake-inception.pth"
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_image_run(tmp_path_factory):
    """A 2-step class-conditional run on the 8x8 digits with the micro UNet (its run directory)."""
    from cfm_core.cli import main

    out = tmp_path_factory.mktemp("tiny-image") / "run"
    argv = ["--net.preset", "micro", "--net.base-channels", "8", "--data.resolution", "8"]
    argv += ["--train.batch-size", "8", "--train.steps", "2", "--train.sample-every", "0"]
    assert main(["image", "train", *argv, "--train.output-dir", str(out)]) == 0
    return out
