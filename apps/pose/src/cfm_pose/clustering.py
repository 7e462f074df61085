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
from scipy.spatial import cKDTree

_CHUNK = 1024


def _kernel_sums(seeds: np.ndarray, tree: cKDTree, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """``(sum_i K x_i (S, 3), sum_i K (S,))`` over the points of ``tree``, for every seed.

    Only pairs closer than the bandwidth contribute, so a k-d tree finds them; seeds are processed
    in chunks to bound memory when many points share one cluster.
    """
    points = tree.data
    weighted = np.zeros_like(seeds)
    mass = np.zeros(len(seeds))
    for first in range(0, len(seeds), _CHUNK):
        pairs = cKDTree(seeds[first : first + _CHUNK]).sparse_distance_matrix(tree, bandwidth, output_type="ndarray")
        rows = pairs["i"] + first
        kernel = bandwidth**2 - pairs["v"] ** 2
        mass += np.bincount(rows, weights=kernel, minlength=len(seeds))
        for axis in range(3):
            weighted[:, axis] += np.bincount(rows, weights=kernel * points[pairs["j"], axis], minlength=len(seeds))
    return weighted, mass


def mean_shift(points: np.ndarray, bandwidth: float, step: float = 0.3, max_iter: int = 40) -> np.ndarray:
    """The converged positions ``(N, 3)`` of mean-shift seeds started at ``points`` (step 1)."""
    tree = cKDTree(points)
    seeds = points.copy()
    for _ in range(max_iter):
        weighted, mass = _kernel_sums(seeds, tree, bandwidth)
        has_mass = mass > 0
        target = seeds.copy()
        target[has_mass] = weighted[has_mass] / mass[has_mass, None]
        moved = step * (target - seeds)
        seeds = seeds + moved
        if np.linalg.norm(moved, axis=1).max() < 1e-6 * bandwidth:
            break
    return seeds


def extract_joints(
    points: np.ndarray, bandwidth: float = 0.04, min_count: int = 5, step: float = 0.3, max_iter: int = 40
) -> np.ndarray:
    """``(K, 3)`` joint positions found in ``points (N, 3)`` (module doc); ``K`` may be 0.

    ``bandwidth`` is in the units of the points (RigNet's learned value is 0.0429 on shapes
    normalised to unit size); ``min_count`` is the fewest points a joint must gather.
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or inf")
    if bandwidth <= 0 or min_count < 1:
        raise ValueError(f"need bandwidth > 0 and min_count >= 1, got {bandwidth}, {min_count}")
    if len(points) == 0:
        return np.zeros((0, 3))
    seeds = mean_shift(points, bandwidth, step, max_iter)
    density = _kernel_sums(seeds, cKDTree(points), bandwidth)[1] / (len(points) * bandwidth**2)
    order = np.argsort(-density, kind="stable")

    suppressed = np.zeros(len(seeds), dtype=bool)
    modes = []
    for index in order:
        if suppressed[index]:
            continue
        modes.append(index)
        suppressed |= np.linalg.norm(seeds - seeds[index], axis=1) <= bandwidth
    centres = seeds[modes]
    _, votes = cKDTree(centres).query(seeds)
    support = np.bincount(votes, minlength=len(modes))
    return centres[support >= min_count]
