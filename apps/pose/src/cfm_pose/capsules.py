"""Capsules (a segment swept by a ball): distances, bounding box, and the surface of their union.

A capsule ``(a, b, r)`` is the set of points within distance ``r`` of the segment ``ab``; a zero
length gives a ball. Its surface is a cylinder of area ``2 pi r |ab|`` plus two hemispheres of total
area ``4 pi r^2``, which is sampled uniformly in closed form. The surface of a *union* of capsules
is sampled by rejection: uniform samples on each capsule's own surface, weighted by its area, are
kept when they are not strictly inside another capsule, which leaves them uniform on the union's
outer surface.
"""

from __future__ import annotations

import numpy as np


def segment_distances(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``(N, S)`` Euclidean distances from points ``(N, 3)`` to segments ``starts/ends (S, 3)``."""
    direction = ends - starts
    length2 = np.maximum((direction**2).sum(-1), 1e-300)
    rel = points[:, None, :] - starts[None]
    along = np.clip((rel * direction[None]).sum(-1) / length2, 0.0, 1.0)
    closest = starts[None] + along[..., None] * direction[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=-1)


def capsule_bounds(starts: np.ndarray, ends: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact bounding box ``(lower, upper)`` of a union of capsules."""
    r = radii[:, None]
    lower = np.minimum(starts, ends) - r
    upper = np.maximum(starts, ends) + r
    return lower.min(axis=0), upper.max(axis=0)


def _orthonormal_frames(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors per row, orthogonal to each other and to ``direction`` ``(S, 3)``."""
    helper = np.where(np.abs(direction[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    first = np.cross(direction, helper)
    first /= np.linalg.norm(first, axis=-1, keepdims=True)
    return first, np.cross(direction, first)


def _sample_capsule_surfaces(
    starts: np.ndarray, ends: np.ndarray, radii: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniform on the summed surfaces of the capsules, and each one's capsule."""
    axis = ends - starts
    lengths = np.linalg.norm(axis, axis=-1)
    unit = np.where(lengths[:, None] > 0, axis / np.maximum(lengths, 1e-300)[:, None], [0, 1.0, 0])
    cylinder_area = 2 * np.pi * radii * lengths
    sphere_area = 4 * np.pi * radii**2
    areas = cylinder_area + sphere_area
    owner = rng.choice(len(radii), size=count, p=areas / areas.sum())
    on_cylinder = rng.random(count) < cylinder_area[owner] / areas[owner]
    first, second = _orthonormal_frames(unit)

    angle = rng.uniform(0, 2 * np.pi, count)
    along = rng.random(count)
    radial = np.cos(angle)[:, None] * first[owner] + np.sin(angle)[:, None] * second[owner]
    cylinder_points = starts[owner] + along[:, None] * axis[owner] + radii[owner, None] * radial

    sphere_dir = rng.normal(size=(count, 3))
    sphere_dir /= np.linalg.norm(sphere_dir, axis=-1, keepdims=True)
    toward_end = (sphere_dir * unit[owner]).sum(-1) >= 0
    centre = np.where(toward_end[:, None], ends[owner], starts[owner])
    cap_points = centre + radii[owner, None] * sphere_dir
    return np.where(on_cylinder[:, None], cylinder_points, cap_points), owner


def sample_capsule_union_surface(
    starts: np.ndarray,
    ends: np.ndarray,
    radii: np.ndarray,
    count: int,
    rng: np.random.Generator,
    inside_margin: float = 1e-9,
) -> np.ndarray:
    """``(count, 3)`` points uniform on the outer surface of the union of capsules.

    Rejection sampling (module doc): batches of candidates are drawn until ``count`` survive; a
    candidate is rejected when it lies more than ``inside_margin`` inside another capsule.
    """
    radii = np.asarray(radii, np.float64)
    if count <= 0:
        raise ValueError(f"point count must be positive, got {count}")
    if radii.ndim != 1 or np.any(radii <= 0):
        raise ValueError("capsule radii must be a 1-D array of positive numbers")
    kept: list[np.ndarray] = []
    total = 0
    for _ in range(100):
        candidates, owner = _sample_capsule_surfaces(starts, ends, radii, 2 * count, rng)
        gap = segment_distances(candidates, starts, ends) - radii[None]
        gap[np.arange(len(owner)), owner] = np.inf
        accepted = candidates[gap.min(axis=1) > -inside_margin]
        kept.append(accepted)
        total += len(accepted)
        if total >= count:
            return np.concatenate(kept)[:count]
    raise RuntimeError("capsule union surface: too few samples survive; the capsules may be nested")
