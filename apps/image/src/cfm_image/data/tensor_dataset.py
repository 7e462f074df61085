"""An in-memory image dataset: a tensor of images in ``[-1, 1]`` and optional integer labels."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset


class ImageTensorDataset(Dataset):
    """Images ``(N, C, H, W)`` in ``[-1, 1]`` with optional labels ``(N,)`` in ``[0, num_classes)``.

    Items are ``(image, label)`` with ``label`` an ``int``, or ``None`` for an unlabelled dataset
    (batch them with :func:`cfm_image.data.collate_images`).

    Args:
        images: float tensor ``(N, C, H, W)``, ``C`` 1 or 3, square, values in ``[-1, 1]``.
        labels: integer tensor ``(N,)`` or ``None``.
        class_names: one name per class (defaults to ``"0", "1", ...``); only with labels.
    """

    def __init__(self, images: Tensor, labels: Tensor | None = None, class_names: list[str] | None = None) -> None:
        if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
            raise ValueError(f"images must be (N, C, H, H) with C in (1, 3), got {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError("images is empty: a dataset needs at least one image")
        if not torch.isfinite(images).all() or images.min() < -1 or images.max() > 1:
            raise ValueError("images must be finite and lie in [-1, 1]")
        if labels is not None:
            if labels.shape != (images.shape[0],) or labels.dtype.is_floating_point:
                raise ValueError(
                    f"labels must be an integer tensor ({images.shape[0]},), got {labels.dtype} {tuple(labels.shape)}"
                )
            if labels.min() < 0:
                raise ValueError("labels must be non-negative")
            labels = labels.long()
            num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
            if labels.max() >= num_classes:
                raise ValueError(f"label {int(labels.max())} out of range for {num_classes} classes")
            class_names = class_names or [str(k) for k in range(num_classes)]
        elif class_names is not None:
            raise ValueError("class_names given without labels")
        self.images = images.float()
        self.labels = labels
        self.class_names = class_names

    @property
    def num_classes(self) -> int | None:
        """The number of classes, or ``None`` when unlabelled."""
        return None if self.class_names is None else len(self.class_names)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int | None]:
        label = None if self.labels is None else int(self.labels[index])
        return self.images[index], label

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor | None]:
        """The images and labels at ``indices`` (a fast path for :func:`step_batches`)."""
        return self.images[indices], None if self.labels is None else self.labels[indices]
