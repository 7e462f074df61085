"""PNG pictures of meshes (and optionally the condition points), with matplotlib, off screen
(a bare ``Figure``: no pyplot, no global backend change): one mesh, or a grid of titled panels."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from cfm_sdf.meshing import write_atomic

#: Light direction (world, y up) for the Lambert shading.
_LIGHT = np.array([0.4, 0.8, 0.45]) / np.linalg.norm([0.4, 0.8, 0.45])


@dataclass(frozen=True)
class Panel:
    """One picture of a grid: a title, a mesh (``None``: nothing to draw, e.g. an empty level set),
    optional points ``(N, 3)`` drawn as red dots and an optional point cloud ``(M, 3)`` drawn as
    small grey dots (a surface known only by its samples)."""

    title: str
    mesh: trimesh.Trimesh | None
    points: np.ndarray | None = None
    cloud: np.ndarray | None = None


def render_mesh_png(
    mesh: trimesh.Trimesh,
    path: str | os.PathLike,
    points: np.ndarray | None = None,
    size: int = 512,
    elevation: float = 20.0,
    azimuth: float = -60.0,
    max_faces: int = 60000,
) -> Path:
    """Write a shaded view of ``mesh`` to ``path`` atomically.

    The view is y up, from the front left, and spans ``[-0.8, 0.8]^3``.

    ``points`` ``(N, 3)`` (e.g. the 64 condition points) are drawn as red dots. Meshes with more
    than ``max_faces`` faces are drawn from a uniform subset of faces (matplotlib is slow).
    """
    _check_png(path)
    if len(mesh.faces) == 0:
        raise ValueError("cannot render an empty mesh")
    figure = Figure(figsize=(size / 100, size / 100), dpi=100)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0), projection="3d")
    _draw(axes, mesh, points, elevation, azimuth, max_faces)
    return _save(figure, path)


def render_mesh_grid_png(
    panels: Sequence[Panel],
    path: str | os.PathLike,
    columns: int,
    panel_size: float = 2.4,
    elevation: float = 20.0,
    azimuth: float = -60.0,
    max_faces: int = 30000,
) -> Path:
    """Write ``panels`` as a grid of ``columns`` pictures per row (each as :func:`render_mesh_png`
    draws it, ``panel_size`` inches wide, titled); a panel with neither mesh nor cloud says "no
    surface"."""
    _check_png(path)
    if not panels:
        raise ValueError("render_mesh_grid_png needs at least one panel")
    if int(columns) != columns or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    rows = -(-len(panels) // int(columns))
    figure = Figure(figsize=(panel_size * columns, panel_size * rows), dpi=100)
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(rows, int(columns), index + 1, projection="3d")
        axes.set_title(panel.title, fontsize=8)
        mesh = panel.mesh if panel.mesh is not None and len(panel.mesh.faces) else None
        if mesh is None and panel.cloud is None:
            axes.text2D(0.5, 0.5, "no surface", transform=axes.transAxes, ha="center")
            axes.set_axis_off()
            continue
        _draw(axes, mesh, panel.points, elevation, azimuth, max_faces, panel.cloud)
    return _save(figure, path)


def _check_png(path: str | os.PathLike) -> None:
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"render path must end in .png, got {path}")


def _draw(
    axes,
    mesh: trimesh.Trimesh | None,
    points: np.ndarray | None,
    elevation: float,
    azimuth: float,
    max_faces: int,
    cloud: np.ndarray | None = None,
) -> None:
    # matplotlib's z axis is up: show world (x, y, z) as (x, -z, y), a rotation
    axes.computed_zorder = False  # the points stay in front of the mesh
    if mesh is not None:
        faces = mesh.faces
        if len(faces) > max_faces:
            faces = faces[np.linspace(0, len(faces) - 1, max_faces).astype(int)]
        triangles = mesh.vertices[faces]
        normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
        shade = 0.25 + 0.75 * np.abs(normals @ _LIGHT)
        colors = np.clip(shade[:, None] * np.array([0.55, 0.7, 0.9]), 0.0, 1.0)
        axes.add_collection3d(
            Poly3DCollection(_to_plot_axes(triangles), facecolors=colors, edgecolors=colors, linewidths=0.1)
        )
    if cloud is not None:
        c = _to_plot_axes(np.asarray(cloud, dtype=float))
        axes.scatter(c[:, 0], c[:, 1], c[:, 2], c="0.45", s=0.5, depthshade=True, zorder=1)
    if points is not None:
        p = _to_plot_axes(np.asarray(points, dtype=float))
        axes.scatter(p[:, 0], p[:, 1], p[:, 2], c="red", s=6, depthshade=False, zorder=2)
    for setter in (axes.set_xlim, axes.set_ylim, axes.set_zlim):
        setter(-0.8, 0.8)
    axes.set_box_aspect((1, 1, 1))
    axes.view_init(elev=elevation, azim=azimuth)
    axes.set_axis_off()


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
    return Path(path)


def _to_plot_axes(xyz: np.ndarray) -> np.ndarray:
    return np.stack([xyz[..., 0], -xyz[..., 2], xyz[..., 1]], axis=-1)
