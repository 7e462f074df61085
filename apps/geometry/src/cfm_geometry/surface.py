"""The shape one Geometry-Distributions network learns: a triangle mesh or a point cloud.

:func:`load_surface` reads any mesh trimesh reads (OBJ, PLY, STL, OFF, GLB/GLTF) or a point cloud
(PLY without faces, XYZ text, NPY, NPZ). The format is detected from the file's first bytes where
it has a signature (NPY, NPZ, PLY, GLB, OFF, ASCII STL) and from the extension otherwise, so a PLY
holding faces loads as a mesh and one holding only vertices as a point cloud. Every surface is
validated: an unreadable file, an empty mesh or cloud, NaN/inf coordinates, or a mesh whose faces
all have zero area raise :class:`SurfaceError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

MESH_FORMATS = ("obj", "ply", "stl", "off", "glb", "gltf")
POINT_FORMATS = ("ply", "xyz", "txt", "pts", "npy", "npz")
_SIGNATURES = (
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "npz"),
    (b"ply", "ply"),
    (b"glTF", "glb"),
    (b"OFF", "off"),
    (b"COFF", "off"),
    (b"NOFF", "off"),
    (b"solid", "stl"),
)
_TEXT_POINT_FORMATS = ("xyz", "txt", "pts")
# Faces smaller than this fraction of the squared bounding-box diagonal count as zero-area.
_RELATIVE_AREA_EPS = 1e-12


class SurfaceError(ValueError):
    """A shape file that cannot be used: unreadable, empty, non-finite or of zero area."""


@dataclass(frozen=True, eq=False)
class Surface:
    """A validated shape: a triangle ``mesh``, or a point cloud ``points`` (one of the two).

    Attributes:
        source: where it came from (a path, or ``builtin:<name>``); named in error messages.
        mesh: the triangle mesh (vertex/face colours or a texture, if any, live in its visual).
        points: ``(N, 3)`` float64 points of a point cloud.
        normals: ``(N, 3)`` normals of a point cloud, if the file had them.
        colors: ``(N, 3)`` RGB in ``[0, 1]`` of a point cloud, if the file had them.

    Build one with :meth:`from_mesh` or :meth:`from_points`, which validate the data.
    """

    source: str
    mesh: trimesh.Trimesh | None = None
    points: np.ndarray | None = None
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None

    @classmethod
    def from_mesh(cls, mesh: trimesh.Trimesh, source: str) -> Surface:
        """A validated mesh surface; raises :class:`SurfaceError` naming ``source``."""
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.faces)
        if len(vertices) == 0 or len(faces) == 0:
            raise SurfaceError(f"{source}: empty mesh ({len(vertices)} vertices, {len(faces)} faces)")
        _check_finite(vertices, source, "vertex")
        if faces.min() < 0 or faces.max() >= len(vertices):
            raise SurfaceError(f"{source}: face indices outside 0..{len(vertices) - 1}")
        diagonal2 = float(np.sum(np.ptp(vertices, axis=0) ** 2))
        if not (mesh.area_faces > _RELATIVE_AREA_EPS * diagonal2).any():
            raise SurfaceError(f"{source}: all {len(faces)} faces have zero area; nothing to sample")
        return cls(source=source, mesh=mesh)

    @classmethod
    def from_points(
        cls,
        points: np.ndarray,
        source: str,
        normals: np.ndarray | None = None,
        colors: np.ndarray | None = None,
    ) -> Surface:
        """A validated point-cloud surface; ``colors`` are RGB in ``[0, 1]``."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise SurfaceError(f"{source}: points must have shape (N, 3), got {points.shape}")
        if len(points) == 0:
            raise SurfaceError(f"{source}: empty point cloud")
        _check_finite(points, source, "point")
        if np.ptp(points, axis=0).max() == 0:
            raise SurfaceError(f"{source}: all {len(points)} point(s) coincide; a shape needs points spread in space")
        extras = {"normals": normals, "colors": colors}
        for name, value in extras.items():
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float64)
            if value.shape != points.shape:
                raise SurfaceError(f"{source}: {name} shape {value.shape} != points {points.shape}")
            _check_finite(value, source, name[:-1])
            extras[name] = value
        return cls(source=source, points=points, **extras)

    @property
    def is_mesh(self) -> bool:
        return self.mesh is not None

    @property
    def bounds(self) -> np.ndarray:
        """``(2, 3)``: the per-axis minimum and maximum of the vertices (or points)."""
        xyz = np.asarray(self.mesh.vertices) if self.is_mesh else self.points
        return np.stack([xyz.min(axis=0), xyz.max(axis=0)])

    @property
    def has_normals(self) -> bool:
        return self.is_mesh or self.normals is not None

    @property
    def has_colors(self) -> bool:
        if self.is_mesh:
            return self.mesh.visual.kind in ("vertex", "face", "texture")
        return self.colors is not None


def load_surface(path: str | os.PathLike) -> Surface:
    """Read a mesh or point cloud from ``path`` and validate it (see the module docstring).

    Point-cloud files: PLY without faces (``nx ny nz`` and ``red green blue`` properties are
    kept), XYZ/TXT/PTS text with 3 (``x y z``) or 6 (``x y z nx ny nz``) columns, NPY of shape
    ``(N, 3)`` or ``(N, 6)`` (with normals), NPZ with ``points`` and optional ``normals``,
    ``colors`` (RGB in ``[0, 1]``) arrays.

    Raises:
        FileNotFoundError: no such file.
        SurfaceError: unknown format, unreadable content, or a degenerate surface.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = detect_format(path)
    try:
        if fmt == "npy":
            return _columns_surface(np.load(path, allow_pickle=False), str(path))
        if fmt == "npz":
            return _npz_surface(path)
        if fmt in _TEXT_POINT_FORMATS:
            return _columns_surface(np.loadtxt(path, ndmin=2), str(path))
        loaded = trimesh.load(str(path), file_type=fmt, process=False)
    except SurfaceError:
        raise
    except Exception as error:  # trimesh and numpy raise many types for corrupt files
        raise SurfaceError(f"{path}: cannot read as {fmt.upper()}: {error}") from error
    return _trimesh_surface(loaded, str(path))


def detect_format(path: Path) -> str:
    """The format name of ``path``: from its first bytes where they are a signature, else from
    its extension. Raises :class:`SurfaceError` for an unknown format."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature):
            return fmt
    fmt = path.suffix.lower().lstrip(".")
    if fmt in MESH_FORMATS or fmt in POINT_FORMATS:
        return fmt
    known = sorted(set(MESH_FORMATS) | set(POINT_FORMATS))
    raise SurfaceError(f"{path}: unknown shape format {path.suffix!r}; use one of {known}")


def _check_finite(values: np.ndarray, source: str, what: str) -> None:
    bad = ~np.isfinite(values).all(axis=-1)
    if bad.any():
        raise SurfaceError(f"{source}: {int(bad.sum())} of {len(values)} {what} rows hold NaN or inf")


def _columns_surface(array: np.ndarray, source: str) -> Surface:
    """A point cloud from an ``(N, 3)`` (xyz) or ``(N, 6)`` (xyz + normals) array."""
    if array.ndim != 2 or array.shape[1] not in (3, 6):
        raise SurfaceError(f"{source}: expected an (N, 3) x y z or (N, 6) x y z nx ny nz array, got {array.shape}")
    normals = array[:, 3:6] if array.shape[1] == 6 else None
    return Surface.from_points(array[:, :3], source, normals=normals)


def _npz_surface(path: Path) -> Surface:
    with np.load(path, allow_pickle=False) as archive:
        if "points" not in archive:
            raise SurfaceError(f"{path}: NPZ needs a 'points' array, found {sorted(archive)}")
        extras = {key: archive[key] for key in ("normals", "colors") if key in archive}
        return Surface.from_points(archive["points"], str(path), **extras)


def _trimesh_surface(loaded: trimesh.parent.Geometry, source: str) -> Surface:
    """A surface from what ``trimesh.load`` returned: a mesh, a point cloud, or a scene of them."""
    parts = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    meshes = [p for p in parts if isinstance(p, trimesh.Trimesh) and len(p.faces)]
    if meshes:
        mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
        return Surface.from_mesh(mesh, source)
    clouds = [p for p in parts if isinstance(p, (trimesh.PointCloud, trimesh.Trimesh))]
    if not clouds:
        raise SurfaceError(f"{source}: holds no mesh faces and no points (empty or unreadable)")
    if len(clouds) > 1:
        return Surface.from_points(np.concatenate([c.vertices for c in clouds]), source)
    return _point_cloud_surface(clouds[0], source)


def _point_cloud_surface(cloud: trimesh.PointCloud | trimesh.Trimesh, source: str) -> Surface:
    """A point cloud keeping PLY normals (``nx ny nz``) and colours, when present."""
    raw = cloud.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    names = () if raw is None else (raw.keys() if isinstance(raw, dict) else raw.dtype.names)
    normals = None
    if {"nx", "ny", "nz"} <= set(names):
        normals = np.column_stack([np.asarray(raw[k], dtype=np.float64).ravel() for k in ("nx", "ny", "nz")])
    colors = getattr(cloud, "colors", None)
    has_colors = colors is not None and len(colors) == len(cloud.vertices)
    colors = np.asarray(colors, dtype=np.float64)[:, :3] / 255.0 if has_colors else None
    return Surface.from_points(cloud.vertices, source, normals=normals, colors=colors)
