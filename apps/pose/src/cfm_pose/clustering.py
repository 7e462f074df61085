"""Joints from a generated point set: mean-shift clustering plus non-maximum suppression.

The procedure follows RigNet's joint extraction (``utils/cluster_utils.py``), without its
attention weights and mesh-inside test:

1. **Mean shift.** Every point is a seed ``y``. With the kernel ``K(d) = max(h^2 - d^2, 0)`` (``h``
   the bandwidth) and ``m(y) = sum_i K(|y - x_i|) x_i / sum_i K(|y - x_i|)`` over the input points
   ``x_i``, each step moves ``y <- y + step (m(y) - y)`` (RigNet's step 0.3), for at most
   ``max_iter`` steps (40) or until no seed moves more than ``1e-6 h``.
2. **Density** of a converged seed: ``sum_i K(|y - x_i|) / (N h^2)``.
3. **NMS.** Seeds in order of decreasing density (ties: lower index first); a seed becomes a mode
   unless a mode already lies within ``h`` of it.
4. **Support.** Each converged seed votes for its nearest mode; modes with fewer than
   ``min_count`` votes are dropped (this replaces RigNet's density threshold and removes stray
   points).

It is deterministic (no random state) and returns the modes in order of decreasing density.
"""

from __future__ import annotations

import numpy as np
import torch

_CHUNK = 2048


def _kernel_sums(seeds: torch.Tensor, points: torch.Tensor, bandwidth: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_i K x_i (S, 3), sum_i K (S,))`` over the points, computed in row chunks."""
    weighted, mass = [], []
    for chunk in seeds.split(_CHUNK):
        kernel = (bandwidth**2 - torch.cdist(chunk, points) ** 2).clamp_min(0.0)
        weighted.append(kernel @ points)
        mass.append(kernel.sum(dim=1))
    return torch.cat(weighted), torch.cat(mass)


def mean_shift(points: torch.Tensor, bandwidth: float, step: float = 0.3, max_iter: int = 40
               ) -> torch.Tensor:
    """The converged positions ``(N, 3)`` of mean-shift seeds started at ``points`` (step 1)."""
    seeds = points.clone()
    for _ in range(max_iter):
        weighted, mass = _kernel_sums(seeds, points, bandwidth)
        target = torch.where(mass[:, None] > 0, weighted / mass.clamp_min(1e-300)[:, None], seeds)
        moved = step * (target - seeds)
        seeds = seeds + moved
        if moved.norm(dim=1).max() < 1e-6 * bandwidth:
            break
    return seeds


def extract_joints(points: np.ndarray, bandwidth: float = 0.04, min_count: int = 5,
                   step: float = 0.3, max_iter: int = 40) -> np.ndarray:
    """``(K, 3)`` joint positions found in ``points (N, 3)`` (module doc); ``K`` may be 0.

    ``bandwidth`` is in the units of the points (RigNet's learned value is 0.0429 on shapes
    normalised to unit size); ``min_count`` is the fewest points a joint must gather.
    """
    points_np = np.asarray(points, np.float64)
    if points_np.ndim != 2 or points_np.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points_np.shape}")
    if not np.isfinite(points_np).all():
        raise ValueError("points contain NaN or inf")
    if bandwidth <= 0 or min_count < 1:
        raise ValueError(f"need bandwidth > 0 and min_count >= 1, got {bandwidth}, {min_count}")
    if len(points_np) == 0:
        return np.zeros((0, 3))
    data = torch.from_numpy(points_np)
    seeds = mean_shift(data, bandwidth, step, max_iter)
    density = _kernel_sums(seeds, data, bandwidth)[1] / (len(data) * bandwidth**2)
    order = torch.sort(-density, stable=True).indices.numpy()

    seeds_np = seeds.numpy()
    suppressed = np.zeros(len(seeds_np), dtype=bool)
    modes = []
    for index in order:
        if suppressed[index]:
            continue
        modes.append(index)
        suppressed |= np.linalg.norm(seeds_np - seeds_np[index], axis=1) <= bandwidth
    centres = seeds[modes]
    votes = torch.cdist(seeds, centres).argmin(dim=1)
    support = torch.bincount(votes, minlength=len(modes))
    return centres[support >= min_count].numpy()
