"""Validation shared by the metrics: every metric takes sample matrices of shape ``(N, D)``."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def as_sample_matrix(
    x: ArrayLike,
    name: str,
    *,
    min_samples: int = 1,
    dtype: torch.dtype | None = None,
    detach: bool = True,
) -> Tensor:
    """``x`` as a torch tensor of shape ``(N, D)``, finite, with at least ``min_samples`` rows.

    Numpy arrays become CPU tensors; torch tensors keep their device (and are detached from the
    autograd graph when ``detach``). ``dtype`` (if given) converts the values; otherwise floating
    tensors keep theirs and others become float32. Raises ``TypeError``/``ValueError`` naming
    ``name`` and the problem.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has zero feature dimensions (shape {tuple(x.shape)})")
    if x.shape[0] < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples, got {x.shape[0]}")
    if detach:
        x = x.detach()
    if dtype is not None:
        x = x.to(dtype)
    elif not x.is_floating_point():
        x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def as_sample_pair(
    x: ArrayLike,
    y: ArrayLike,
    names: tuple[str, str] = ("x", "y"),
    *,
    min_samples: int = 1,
    dtype: torch.dtype | None = None,
    detach: bool = True,
) -> tuple[Tensor, Tensor]:
    """Two sample matrices with the same feature dimension, on one device (``x``'s unless only
    ``y`` is on a GPU) and one floating dtype (the wider of the two unless ``dtype`` is given)."""
    a = as_sample_matrix(x, names[0], min_samples=min_samples, dtype=dtype, detach=detach)
    b = as_sample_matrix(y, names[1], min_samples=min_samples, dtype=dtype, detach=detach)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} have different dimensions: {tuple(a.shape)} vs {tuple(b.shape)}")
    device = b.device if a.device.type == "cpu" else a.device
    common = torch.promote_types(a.dtype, b.dtype)
    return a.to(device, common), b.to(device, common)
