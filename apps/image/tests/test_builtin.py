"""Built-in datasets: digits and faces, shapes, ranges, labels and seeded splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cfm_image.data import load_builtin
from sklearn.datasets import load_digits


def test_digits_shapes_labels_and_range():
    train, test = load_builtin("digits", 16), load_builtin("digits", 16, split="test")
    assert train.images.shape == (1617, 1, 16, 16) and test.images.shape == (180, 1, 16, 16)
    assert train.num_classes == 10 and train.class_names == [str(k) for k in range(10)]
    assert set(train.labels.tolist()) == set(range(10))
    assert train.images.min() == -1.0 and train.images.max() == 1.0
    image, label = train[0]
    assert image.shape == (1, 16, 16) and isinstance(label, int)


def test_digits_at_native_resolution_match_the_source():
    everything = load_builtin("digits", 8, split="all")
    source = load_digits()
    expected = torch.as_tensor(source.images / 8.0 - 1.0, dtype=torch.float32)[:, None]
    assert torch.equal(everything.images, expected)
    assert torch.equal(everything.labels, torch.as_tensor(source.target))


def test_split_is_seeded_disjoint_and_complete():
    def rows(dataset):
        return {image.numpy().tobytes() + bytes([label]) for image, label in dataset}

    train, test = load_builtin("digits", 8), load_builtin("digits", 8, split="test")
    assert not rows(train) & rows(test)
    assert torch.equal(load_builtin("digits", 8).images, train.images)  # same seed, same split
    assert not torch.equal(load_builtin("digits", 8, seed=1).images, train.images)


def test_faces_shapes_and_range():
    faces = load_builtin("faces")
    assert faces.images.shape == (90, 1, 32, 32) and faces.labels is None
    assert faces.num_classes is None and faces[0][1] is None
    assert -1.0 <= faces.images.min() and faces.images.max() <= 1.0
    assert faces.images.std() > 0.1  # real pictures, not a constant
    small = load_builtin("faces", 16, split="test")
    assert small.images.shape == (10, 1, 16, 16)
    assert np.isclose(
        float(small.images.mean()),
        float(load_builtin("faces", 32, split="test").images.mean()),
        atol=0.02,
    )


def test_bad_names_and_splits():
    with pytest.raises(ValueError, match="cifar"):
        load_builtin("cifar")
    with pytest.raises(ValueError, match="split"):
        load_builtin("digits", split="validation")
    with pytest.raises(ValueError, match="resolution"):
        load_builtin("digits", -8)
