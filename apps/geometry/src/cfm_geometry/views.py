"""Pictures of point clouds: one cloud from several viewpoints, or several clouds, one row of
views each, in one PNG."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from cfm_core.plotting import as_array, grid_shape, save_figure
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Line3DCollection
from PIL import Image

from cfm_geometry.generation import finite_rows

#: (elevation, azimuth) in degrees: three-quarter, front, side and top views.
DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((20.0, -60.0), (0.0, -90.0), (0.0, 0.0), (90.0, -90.0))
#: ``up_axis`` -> the rotation taking data coordinates to matplotlib's z-up axes. For y-up data
#: the front (+z) of the shape faces the ``(0, -90)`` view.
_TO_Z_UP = {
    "z": np.eye(3),
    "y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    "x": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
}


def _colour_args(colors, count: int) -> dict:
    """Matplotlib scatter colour arguments for ``None``, ``(N,)`` values or ``(N, 3|4)`` RGB(A)."""
    if colors is None:
        return {"color": "tab:blue"}
    if isinstance(colors, torch.Tensor):
        colors = colors.detach().cpu().numpy()
    colors = np.asarray(colors, dtype=np.float64)
    if colors.shape == (count,):
        return {"c": colors, "cmap": "viridis"}
    if colors.ndim == 2 and colors.shape[0] == count and colors.shape[1] in (3, 4):
        if colors.min() < 0 or colors.max() > 1:
            raise ValueError("RGB(A) colors must lie in [0, 1]")
        return {"c": colors}
    raise ValueError(f"colors must have shape (N,) or (N, 3|4) with N = {count}, got {colors.shape}")


def save_point_cloud_views(
    points,
    path: str | os.PathLike,
    views: Sequence[tuple[float, float]] = DEFAULT_VIEWS,
    colors=None,
    segments=None,
    point_size: float = 0.5,
    title: str | None = None,
    *,
    up_axis: str = "y",
    max_points: int | None = 200_000,
    seed: int = 0,
    dpi: int = 100,
) -> Path:
    """A 3-D point cloud from several viewpoints in one PNG, to look at a shape without a viewer.

    Args:
        points: ``(N, 3)`` points.
        path: the PNG to write.
        views: ``(elevation, azimuth)`` pairs in degrees, one panel each (matplotlib's convention,
            applied after ``up_axis`` is turned to point up).
        colors: ``None``, ``(N,)`` scalars (viridis colour map) or ``(N, 3|4)`` RGB(A) in [0, 1].
        segments: ``(K, 2, 3)`` line segments drawn over the points, e.g. skeleton bones.
        point_size: marker area in points^2.
        title: the figure title.
        up_axis: the data axis that points up: ``"y"`` (default: OBJ/PLY meshes, SMPL, RigNet),
            ``"z"`` or ``"x"``.
        max_points: draw a random subset of at most this many points (fixed by ``seed``), since
            matplotlib slows down badly beyond a few hundred thousand; ``None`` draws all.
        dpi: resolution; each panel is 3.2 x 3.2 inches.
    """
    pts = as_array(points, "points", "(N, 3)", ndim=2, last=3)
    if len(pts) == 0:
        raise ValueError("points is empty")
    if up_axis not in _TO_Z_UP:
        raise ValueError(f"up_axis must be one of {sorted(_TO_Z_UP)}, got {up_axis!r}")
    views = as_array(views, "views", "(V, 2) of (elevation, azimuth)", ndim=2, last=2)
    if len(views) == 0:
        raise ValueError("views is empty: give at least one (elevation, azimuth) pair")
    colour = _colour_args(colors, len(pts))
    if max_points is not None and len(pts) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(pts), max_points, replace=False))
        pts = pts[keep]
        colour = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in colour.items()}
    rotation = _TO_Z_UP[up_axis]
    pts = pts @ rotation.T
    bones = None
    if segments is not None:
        bones = as_array(segments, "segments", "(K, 2, 3)", ndim=3, last=3)
        if bones.shape[1] != 2:
            raise ValueError(f"segments must have shape (K, 2, 3), got {bones.shape}")
        bones = bones @ rotation.T
    everything = pts if bones is None else np.concatenate([pts, bones.reshape(-1, 3)])
    centre = 0.5 * (everything.min(0) + everything.max(0))
    half = 0.5 * max(float((everything.max(0) - everything.min(0)).max()), 1e-6) * 1.05

    rows, cols = grid_shape(len(views), None)
    fig = Figure(figsize=(3.2 * cols, 3.2 * rows + (0.4 if title else 0)))
    for i, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=point_size, linewidths=0, depthshade=False, **colour)
        if bones is not None:
            ax.add_collection3d(Line3DCollection(bones, colors="tab:red", linewidths=1.5))
        ax.set(
            xlim=(centre[0] - half, centre[0] + half),
            ylim=(centre[1] - half, centre[1] + half),
            zlim=(centre[2] - half, centre[2] + half),
        )
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=float(elev), azim=float(azim))
        ax.set_title(f"elev {elev:g}, azim {azim:g}", fontsize=8)
        ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi)


def save_view_rows(
    clouds: Mapping[str, object], path: str | os.PathLike, up_axis: str, point_size: float = 0.3
) -> Path:
    """Write one PNG holding, for each ``title -> (N, 3) points`` of ``clouds`` in order, a row of
    :func:`save_point_cloud_views` views titled ``title``. Non-finite points
    are left out (and counted in the title); a cloud with none finite gets no row."""
    if not clouds:
        raise ValueError("clouds is empty: give at least one 'title -> (N, 3) points' entry")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".views.") as scratch:
        for index, (title, points) in enumerate(clouds.items()):
            finite, dropped = finite_rows(points)
            if len(finite) == 0:
                continue
            if dropped:
                title = f"{title} ({dropped} non-finite points not drawn)"
            row = save_point_cloud_views(
                finite, Path(scratch) / f"row{index}.png", point_size=point_size, title=title, up_axis=up_axis
            )
            with Image.open(row) as image:
                rows.append(image.convert("RGB"))
    if not rows:
        raise ValueError("no cloud has a finite point to draw")
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    offsets = np.cumsum([0] + [r.height for r in rows[:-1]])
    for row, top in zip(rows, offsets, strict=True):
        canvas.paste(row, (0, int(top)))
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    try:
        with os.fdopen(handle, "wb") as file:
            canvas.save(file, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
