"""From a field to a mesh: evaluate on a grid in chunks, marching cubes, atomic mesh files, IoU.

Grids are ``(R, R, R)`` arrays indexed ``[i, j, k]`` = the field at ``(x_i, y_j, z_k)``, with
``x_i = lo + i (hi - lo) / (R - 1)`` (the bounds are the first and last grid nodes). The fields
follow the app's convention, negative inside.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import trimesh
from cfm_core.io import write_bytes_atomic as write_atomic
from cfm_core.resources import require_memory
from skimage import measure
from torch import Tensor
from tqdm.auto import tqdm

MESH_SUFFIXES = (".obj", ".ply")


def grid_axis(resolution: int, bounds: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """The ``resolution`` node coordinates along one axis (float64)."""
    if int(resolution) != resolution or resolution < 2:
        raise ValueError(f"grid resolution must be an integer >= 2, got {resolution!r}")
    lo, hi = map(float, bounds)
    if not lo < hi:
        raise ValueError(f"grid bounds must satisfy lo < hi, got {bounds}")
    return np.linspace(lo, hi, int(resolution))


def grid_points(resolution: int, bounds: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """All ``resolution**3`` grid nodes, an ``(R**3, 3)`` float64 array in ``[i, j, k]`` order; a
    grid too large for the available memory is refused first (:class:`ConfigError`)."""
    require_memory(4 * 3 * 8 * resolution**3, f"a {resolution}^3 grid", "--resolution")
    axis = grid_axis(resolution, bounds)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


@torch.no_grad()
def sdf_grid(
    fn: Callable[[Tensor], Tensor | np.ndarray],
    resolution: int,
    bounds: tuple[float, float] = (-1.0, 1.0),
    batch: int = 65536,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Evaluate ``fn`` (``(N, 3)`` float32 tensor on ``device`` -> ``(N,)``) on the grid, ``batch``
    points at a time; returns the ``(R, R, R)`` float32 grid."""
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    points = torch.from_numpy(grid_points(resolution, bounds)).float()
    values = np.empty(points.shape[0], dtype=np.float32)
    starts = range(0, points.shape[0], int(batch))
    for start in tqdm(starts, desc="sdf grid", disable=not progress, leave=False):
        chunk = points[start : start + int(batch)].to(device)
        out = fn(chunk)
        out = out.detach().float().cpu().numpy() if isinstance(out, Tensor) else np.asarray(out)
        if out.shape != (chunk.shape[0],):
            raise ValueError(
                f"field function returned shape {out.shape} for {chunk.shape[0]} points; expected one value per point"
            )
        values[start : start + chunk.shape[0]] = out
    return values.reshape((resolution,) * 3)


def _check_grid(grid: np.ndarray, name: str = "grid") -> np.ndarray:
    grid = np.asarray(grid)
    if grid.ndim != 3 or min(grid.shape) < 2:
        raise ValueError(f"{name} must be a 3-D array with at least 2 nodes per axis, got {grid.shape}")
    if not np.isfinite(grid).all():
        raise ValueError(f"{name} contains NaN or inf")
    return grid


def extract_mesh(grid: np.ndarray, level: float = 0.0, bounds: tuple[float, float] = (-1.0, 1.0)) -> trimesh.Trimesh:
    """Marching cubes (scikit-image) of the ``level`` set of ``grid``, in world coordinates.

    The grid is padded by one node of value above ``level`` on every side, so the mesh is always
    closed: a shape that reaches the grid boundary is capped there (up to one grid step outside
    the bounds). Faces are oriented outwards (positive volume). Raises ``ValueError`` when the
    field never crosses ``level`` (the level set is empty).
    """
    grid = _check_grid(grid)
    low, high = float(grid.min()), float(grid.max())
    if not low < level < high:
        raise ValueError(
            f"empty level set: the field's range [{low:.4g}, {high:.4g}] does not cross level "
            f"{level} (the shape is empty or fills the whole grid)"
        )
    axes = [grid_axis(n, bounds) for n in grid.shape]
    spacing = tuple(float(a[1] - a[0]) for a in axes)
    padded = np.pad(grid.astype(np.float32), 1, constant_values=high)
    vertices, faces, _, _ = measure.marching_cubes(padded, level=level, spacing=spacing)
    vertices = vertices + np.array([a[0] - s for a, s in zip(axes, spacing, strict=True)])
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def save_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` to ``path`` (``.obj`` or ``.ply``) atomically; returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"unsupported mesh format {path.suffix!r} for {path}; use one of {MESH_SUFFIXES}")
    data = mesh.export(file_type=suffix[1:])
    write_atomic(path, data.encode() if isinstance(data, str) else data)
    return path


def volumetric_iou(sdf_a: np.ndarray, sdf_b: np.ndarray, level: float = 0.0) -> float:
    """Intersection over union of the inside regions (``value < level``) of two fields sampled on
    the same grid. Raises ``ValueError`` when both are empty (IoU undefined)."""
    a, b = _check_grid(sdf_a, "sdf_a"), _check_grid(sdf_b, "sdf_b")
    if a.shape != b.shape:
        raise ValueError(f"volumetric IoU needs grids of the same shape, got {a.shape} and {b.shape}")
    return inside_iou(a, b, level)


def inside_iou(values_a: np.ndarray, values_b: np.ndarray, level: float = 0.0) -> float:
    """Intersection over union of the points inside (``value < level``) two fields sampled at the
    same points (any shape; uniform points give a Monte-Carlo volumetric IoU). Raises
    ``ValueError`` when the shapes differ or both are empty (IoU undefined)."""
    a, b = np.asarray(values_a), np.asarray(values_b)
    if a.shape != b.shape:
        raise ValueError(f"IoU needs values at the same points, got {a.shape} and {b.shape}")
    inside_a, inside_b = a < level, b < level
    union = np.logical_or(inside_a, inside_b).sum()
    if union == 0:
        raise ValueError("volumetric IoU is undefined: both fields are empty (nothing below level)")
    return float(np.logical_and(inside_a, inside_b).sum() / union)
