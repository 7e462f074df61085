"""Uniform (area-weighted) point samples on a triangle mesh."""

from __future__ import annotations

import numpy as np


def sample_mesh_surface(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, 3)`` points uniform on the mesh ``vertices (V, 3)``, ``faces (F, 3)``.

    A face is picked with probability proportional to its area, then a point uniform in it with
    the barycentric square-root rule ``(1 - sqrt(u), sqrt(u) (1 - v), sqrt(u) v)``.
    """
    corners = np.asarray(vertices, np.float64)[np.asarray(faces)]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=-1)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("the mesh has no surface area to sample")
    chosen = corners[rng.choice(len(areas), size=count, p=areas / total)]
    root_u = np.sqrt(rng.random(count))[:, None]
    v = rng.random(count)[:, None]
    return (1 - root_u) * chosen[:, 0] + root_u * (1 - v) * chosen[:, 1] + root_u * v * chosen[:, 2]
