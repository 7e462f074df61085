"""Reading the shape a user gives ``cfm pose sample``: a mesh, a point cloud or an NPY array.

* ``.npy``: an ``(N, 3)`` float array of points.
* anything trimesh reads (``.obj``, ``.ply``, ``.off``, ``.stl``, ``.glb`` ...): with triangle
  faces, ``n_points`` points are sampled uniformly on the surface; without faces (a point-cloud
  PLY) the vertices are the points.

A point set with more or fewer points than ``n_points`` is resampled to ``n_points`` (without
replacement when it has enough). The shape is normalised with RigNet's map (of the mesh vertices
or of the points), as the training data were; it must be y-up like them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from cfm_core.cli.app import ConfigError

from cfm_pose.normalize import Normalization
from cfm_pose.surface import sample_mesh_surface


@dataclass(frozen=True, eq=False)
class InputShape:
    """The points ``(n_points, 3)`` in the input's own frame and the map to the unit-box frame."""

    points: np.ndarray
    normalization: Normalization

    @property
    def normalized_points(self) -> np.ndarray:
        return self.normalization.apply(self.points)


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--input: {path} is not a readable .npy array ({err})") from None
    if array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ConfigError(f"--input: {path} must hold an (N, 3) array of points, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
        raise ConfigError(f"--input: {path} must hold numbers (point coordinates), got {array.dtype} values")
    return np.asarray(array, np.float64)


def _load_geometry(path: Path) -> trimesh.Trimesh | trimesh.PointCloud:
    try:
        loaded = trimesh.load(path, process=False)
    except Exception as err:  # trimesh raises many kinds for unreadable files
        raise ConfigError(f"--input: {path} is not a readable mesh or point cloud ({err})") from None
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_geometry() if loaded.geometry else None
    if not isinstance(loaded, (trimesh.Trimesh, trimesh.PointCloud)) or len(loaded.vertices) == 0:
        raise ConfigError(f"--input: {path} holds no vertices")
    return loaded


def _resample(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) == count:
        return points
    return points[rng.choice(len(points), count, replace=len(points) < count)]


def load_input_shape(path: str | Path, n_points: int, seed: int = 0) -> InputShape:
    """The shape in ``path`` as ``n_points`` surface points (module doc); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--input: shape file not found: {path}")
    rng = np.random.default_rng(seed)
    if path.suffix.lower() == ".npy":
        points = _load_npy(path)
        extent_of = points
    else:
        geometry = _load_geometry(path)
        extent_of = np.asarray(geometry.vertices, np.float64)
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
            try:
                points = sample_mesh_surface(extent_of, geometry.faces, n_points, rng)
            except ValueError as err:
                raise ConfigError(f"--input: {path}: {err}") from None
        else:
            points = extent_of
    if not np.isfinite(points).all():
        raise ConfigError(f"--input: {path} contains NaN or inf coordinates")
    try:
        normalization = Normalization.rignet_of_points(extent_of)
    except ValueError as err:
        raise ConfigError(f"--input: {path}: {err}") from None
    return InputShape(_resample(points, n_points, rng), normalization)
