"""Training data for one shape: surface samples ``(N, 3)`` drawn once, normalised, and batched
per step."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
import trimesh
from cfm_core.io import write_bytes_atomic
from cfm_core.resources import require_memory
from tqdm.auto import tqdm

from cfm_geometry.normalisation import Normalisation
from cfm_geometry.shapes import BUILTIN_SHAPES, builtin_shape
from cfm_geometry.surface import Surface, SurfaceError, load_surface

__all__ = [
    "Normalisation",
    "PointBank",
    "Surface",
    "SurfaceError",
    "load_surface",
    "sample_surface_points",
    "save_points",
    "surface_from_spec",
]

SAMPLE_CHUNK = 1 << 21
POINT_OUTPUT_FORMATS = (".ply", ".npy", ".npz", ".xyz")


def surface_from_spec(spec: str | os.PathLike) -> Surface:
    """A built-in shape by name (one of :data:`~cfm_geometry.shapes.BUILTIN_SHAPES`), else the
    file at ``spec`` (see :func:`~cfm_geometry.surface.load_surface`)."""
    if str(spec) in BUILTIN_SHAPES:
        return Surface.from_mesh(builtin_shape(str(spec)), source=f"builtin:{spec}")
    return load_surface(spec)


def sample_surface_points(surface: Surface, n: int, seed: int) -> np.ndarray:
    """``n`` surface points ``(n, 3)`` in the shape's units, float32.

    A mesh is sampled uniformly by area (``trimesh.sample.sample_surface``); a point cloud is
    resampled uniformly with replacement. The result is a deterministic function of ``seed``.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"the number of points must be a positive integer, got {n!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    if not surface.is_mesh:
        index = rng.integers(0, len(surface.points), size=n)
        return surface.points[index].astype(np.float32)
    chunks = [min(SAMPLE_CHUNK, n - start) for start in range(0, n, SAMPLE_CHUNK)]
    parts = [
        trimesh.sample.sample_surface(surface.mesh, count, seed=rng)[0].astype(np.float32)
        for count in tqdm(chunks, desc="sampling surface", unit="chunk", disable=len(chunks) < 2)
    ]
    return np.concatenate(parts, axis=0)


class PointBank:
    """The normalised training points of one shape, drawn once; minibatches are drawn from them.

    Args:
        points: ``(N, 3)`` normalised points.
        normalisation: the transform from the shape's units (stored in checkpoints).
    """

    def __init__(self, points: torch.Tensor, normalisation: Normalisation) -> None:
        if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
            raise ValueError(f"points must have shape (N > 0, 3), got {tuple(points.shape)}")
        self.points = points
        self.normalisation = normalisation

    @classmethod
    def from_surface(
        cls,
        surface: Surface,
        num_points: int,
        seed: int,
        device: torch.device | str | None = None,
    ) -> PointBank:
        """Sample ``num_points`` surface points (seeded), fit the normalisation to them and the
        shape's bounding box, and keep the normalised points (float32, on ``device``). A count
        too large for the available memory is refused first (:class:`ConfigError`)."""
        require_memory(4 * 3 * 8 * num_points, f"{num_points:,} surface samples", "--points")
        samples = sample_surface_points(surface, num_points, seed)
        normalisation = Normalisation.fit(surface.bounds, samples)
        points = torch.from_numpy(normalisation.apply(samples)).to(device)
        return cls(points, normalisation)

    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    @property
    def channels(self) -> int:
        return self.points.shape[1]

    def to(self, device: torch.device | str) -> PointBank:
        """The same bank with its points on ``device``."""
        return PointBank(self.points.to(device), self.normalisation)

    def batch_for_step(
        self, step: int, batch_size: int, seed: int, *, set_size: int | None = None, rows: slice = slice(None)
    ) -> torch.Tensor:
        """The minibatch of training step ``step``: ``batch_size`` points drawn with replacement,
        as rows ``(batch_size, 3)`` or, with ``set_size``, as sets ``(batch_size / set_size,
        set_size, 3)``; only the rows (sets) ``rows`` of it are gathered.

        A pure function of ``(seed, step)``, independent of the device and of earlier calls, so
        a resumed run sees exactly the batches an uninterrupted run would have seen; the rows
        ``rows`` are those rows of the whole minibatch (the step's indices are drawn whole).
        """
        if step < 0 or batch_size < 1:
            raise ValueError(f"need step >= 0 and batch_size >= 1, got {step}, {batch_size}")
        rng = np.random.default_rng([int(seed), int(step)])
        index = torch.from_numpy(rng.integers(0, self.num_points, size=batch_size))
        if set_size is not None:
            index = index.view(-1, set_size)
        return self.points[index[rows].to(self.points.device)]

    def decode(self, points: torch.Tensor | np.ndarray) -> np.ndarray:
        """Generated ``(..., 3)`` points back in the shape's units, as float64."""
        if isinstance(points, torch.Tensor):
            points = points.detach().cpu().numpy()
        points = np.asarray(points, dtype=np.float64)
        if points.shape[-1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got shape {points.shape}")
        return self.normalisation.invert(points)


def save_points(
    path: str | os.PathLike, points: np.ndarray, normals: np.ndarray | None = None, colors: np.ndarray | None = None
) -> Path:
    """Write a point cloud atomically (temporary file in the same folder, then ``os.replace``).

    Formats by extension: ``.ply`` (binary, via trimesh; normals as ``nx ny nz``, colours as
    ``red green blue``), ``.npz`` (``points``, ``normals``, ``colors`` arrays), ``.npy`` and
    ``.xyz`` (columns ``x y z [nx ny nz]``; no colours). :func:`load_surface` reads them all back.
    ``colors`` are RGB in ``[0, 1]``. Returns the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in POINT_OUTPUT_FORMATS:
        raise ValueError(f"{path}: unknown point format {path.suffix!r}; use one of {POINT_OUTPUT_FORMATS}")
    points = _checked_columns(points, None, "points")
    normals = _checked_columns(normals, len(points), "normals")
    colors = _checked_columns(colors, len(points), "colors")
    if colors is not None and suffix in (".npy", ".xyz"):
        raise ValueError(f"{path}: {suffix} cannot hold colours; use .ply or .npz")
    if suffix == ".ply":
        data = _ply_bytes(points, normals, colors)
    elif suffix == ".npz":
        arrays = {"points": points, "normals": normals, "colors": colors}
        buffer = io.BytesIO()
        np.savez(buffer, **{k: v.astype(np.float32) for k, v in arrays.items() if v is not None})
        data = buffer.getvalue()
    else:
        table = points if normals is None else np.concatenate([points, normals], axis=1)
        buffer = io.BytesIO()
        if suffix == ".npy":
            np.save(buffer, table.astype(np.float32))
        else:
            np.savetxt(buffer, table, fmt="%.7g")
        data = buffer.getvalue()
    write_bytes_atomic(path, data)
    return path


def _checked_columns(values, rows: int | None, name: str) -> np.ndarray | None:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 3 or (rows is not None and len(values) != rows):
        expected = f"({'N' if rows is None else rows}, 3)"
        raise ValueError(f"{name} must have shape {expected}, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contain NaN or inf")
    return values


def _ply_bytes(points: np.ndarray, normals: np.ndarray | None, colors: np.ndarray | None) -> bytes:
    rgba = None
    if colors is not None:
        rgb = np.round(np.clip(colors, 0.0, 1.0) * 255).astype(np.uint8)
        rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    if normals is None:
        return trimesh.PointCloud(points, colors=rgba).export(file_type="ply")
    # trimesh writes normals only for meshes: a mesh without faces is a point cloud with normals.
    cloud = trimesh.Trimesh(
        vertices=points,
        faces=np.zeros((0, 3), dtype=np.int64),
        vertex_normals=normals,
        vertex_colors=rgba,
        process=False,
    )
    return trimesh.exchange.ply.export_ply(cloud, vertex_normal=True)
