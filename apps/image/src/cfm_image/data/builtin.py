"""Small image datasets shipped inside installed packages (no download, usable offline).

* ``"digits"``: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), labels 0-9.
* ``"faces"``: the 100 face crops of scikit-image's ``lfw_subset`` (25x25 grey, unlabelled; the
  subset's 100 non-face background crops are left out).

Both are grayscale (one channel), resized (bilinear, antialiased) to ``resolution`` and scaled to
``[-1, 1]``, and split into train and test parts by a seeded permutation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from cfm_core.resources import require_memory
from torch import Tensor

from cfm_image.data.imaging import check_resolution
from cfm_image.data.tensor_dataset import ImageTensorDataset

BUILTIN_DATASETS = ("digits", "faces")
SPLITS = ("train", "test", "all")
DEFAULT_RESOLUTION = {"digits": 16, "faces": 32}


def _digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images / 16.0, bunch.target, [str(k) for k in range(10)]


def _faces() -> tuple[np.ndarray, None, None]:
    from skimage.data import lfw_subset

    images = lfw_subset()[:100].astype(np.float64)
    return images / 255.0 if images.max() > 1.0 else images, None, None


_LOADERS = {"digits": _digits, "faces": _faces}


def _resize_unit_images(images: np.ndarray, resolution: int) -> Tensor:
    """Grey ``(N, h, w)`` in ``[0, 1]`` as ``(N, 1, resolution, resolution)`` in ``[-1, 1]``."""
    x = torch.as_tensor(images, dtype=torch.float32)[:, None]
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0.0, 1.0).mul(2.0).sub(1.0)


def split_indices(count: int, split: str, test_fraction: float, seed: int) -> Tensor:
    """The indices of ``split`` among ``count`` items: a seeded permutation whose first
    ``round(count * test_fraction)`` entries are the test part."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if split == "all":
        return torch.arange(count)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(count * test_fraction))
    return order[:n_test].sort().values if split == "test" else order[n_test:].sort().values


def load_builtin(
    name: str,
    resolution: int | None = None,
    *,
    split: str = "train",
    test_fraction: float = 0.1,
    seed: int = 0,
) -> ImageTensorDataset:
    """A built-in dataset as an :class:`ImageTensorDataset` of one-channel images in ``[-1, 1]``.

    Args:
        name: ``"digits"`` (labelled, 10 classes) or ``"faces"`` (unlabelled).
        resolution: output side (default 16 for digits, 32 for faces).
        split: ``"train"``, ``"test"`` or ``"all"``.
        test_fraction: share of the images in the test part.
        seed: seed of the train/test permutation (fixed, so splits never overlap across runs).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown built-in dataset {name!r}; choose one of {BUILTIN_DATASETS}")
    resolution = check_resolution(DEFAULT_RESOLUTION[name] if resolution is None else resolution)
    images, labels, class_names = _LOADERS[name]()
    pixels = len(images) * resolution**2
    require_memory(2 * 4 * pixels, f"{len(images)} {name} images at {resolution}x{resolution}", "--data.resolution")
    index = split_indices(len(images), split, test_fraction, seed)
    x = _resize_unit_images(images, resolution)[index]
    y = None if labels is None else torch.as_tensor(labels, dtype=torch.long)[index]
    return ImageTensorDataset(x, y, class_names)
