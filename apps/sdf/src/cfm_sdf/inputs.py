"""The condition points of ``cfm sdf sample``: from an ``.npy`` array or sampled on a mesh, and the
frame they live in (the model's: bounding box centred, longest half-extent 0.9)."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from cfm_core.cli import ConfigError

from cfm_sdf.families import NORMALIZED_HALF_EXTENT
from cfm_sdf.pipeline import MESH_SUFFIXES

OPTION = "--points"


@dataclass
class ConditionPoints:
    """Points in the model's frame, with the map back: ``model = (original - center) * scale``."""

    points: np.ndarray  # (N, 3) float32
    center: np.ndarray  # (3,)
    scale: float

    def to_original(self, vertices: np.ndarray) -> np.ndarray:
        """Model-frame vertices -> the frame of the input."""
        return vertices / self.scale + self.center


def load_condition_points(
    path: str | os.PathLike, n_points: int, normalize: str, rng: np.random.Generator
) -> tuple[ConditionPoints, str | None]:
    """Read ``path`` (``.npy`` ``(N, 3)`` or a mesh) into at most ``n_points`` condition points.

    A mesh gets ``n_points`` points sampled uniformly on its surface; an array with more rows gets
    a random subset, one with fewer is used whole. ``normalize``: ``"none"`` (already in the
    model's frame), ``"bbox"`` (normalise the bounding box of the mesh, or of all the array's
    points) or ``"auto"`` (bbox for meshes, none for arrays). Returns the points and a note for
    the user (or ``None``). Errors are :class:`ConfigError` naming the option and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{OPTION}: file not found: {path}")
    suffix = path.suffix.lower()
    note = None
    if suffix == ".npy":
        points = _read_array(path)
        bounds = np.stack([points.min(0), points.max(0)])
        if len(points) > n_points:
            points = points[np.sort(rng.choice(len(points), n_points, replace=False))]
        elif len(points) < n_points:
            note = f"{path} holds {len(points)} points, fewer than --n-points {n_points}: using all"
    elif suffix in MESH_SUFFIXES:
        mesh = _read_mesh(path)
        points, _ = trimesh.sample.sample_surface(mesh, n_points, seed=rng)
        bounds = mesh.bounds
    else:
        raise ConfigError(f"{OPTION}: {path} is neither .npy nor a mesh ({', '.join(MESH_SUFFIXES)})")
    if normalize == "bbox" or (normalize == "auto" and suffix != ".npy"):
        center = (bounds[0] + bounds[1]) / 2.0
        extent = float((bounds[1] - bounds[0]).max())
        if not extent > 0:
            raise ConfigError(f"{OPTION}: the points of {path} span no volume (all identical)")
        scale = NORMALIZED_HALF_EXTENT / (extent / 2.0)
    else:
        center, scale = np.zeros(3), 1.0
    framed = ((points - center) * scale).astype(np.float32)
    if np.abs(framed).max() > 1.0:
        raise ConfigError(
            f"{OPTION}: points of {path} lie outside [-1, 1]^3, the model's domain; pass "
            "--normalize bbox to normalise their bounding box"
        )
    return ConditionPoints(framed, np.asarray(center, dtype=np.float64), float(scale)), note


def _read_array(path: Path) -> np.ndarray:
    try:
        points = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"{OPTION}: cannot read {path} ({type(err).__name__}: {err})") from None
    if not isinstance(points, np.ndarray) or points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        shape = getattr(points, "shape", type(points).__name__)
        raise ConfigError(f"{OPTION}: {path} must hold an (N, 3) array of points, got {shape}")
    if not np.issubdtype(points.dtype, np.number) or not np.isfinite(points).all():
        raise ConfigError(f"{OPTION}: {path} holds NaN, inf or non-numeric values")
    return points.astype(np.float64)


def _read_mesh(path: Path) -> trimesh.Trimesh:
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as err:  # trimesh raises many types for unreadable files
        raise ConfigError(f"{OPTION}: cannot load mesh {path} ({type(err).__name__}: {err})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or mesh.area <= 0:
        raise ConfigError(f"{OPTION}: {path} holds no triangles to sample points on")
    if not np.isfinite(mesh.vertices).all():
        raise ConfigError(f"{OPTION}: {path} has NaN or inf vertices")
    return mesh
