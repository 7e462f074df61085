"""PNG figures for reports: 2-D sample panels, multi-view 3-D point clouds, metric curves.

Figures are drawn with matplotlib's Agg renderer on :class:`matplotlib.figure.Figure` objects
(no pyplot, no global backend switch, no display needed) and written atomically: to a temporary
file in the target folder, then renamed over ``path``. Every function returns the written path.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Line3DCollection

#: (elevation, azimuth) in degrees: three-quarter, front, side and top views.
DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((20.0, -60.0), (0.0, -90.0), (0.0, 0.0), (90.0, -90.0))
#: ``up_axis`` -> the rotation taking data coordinates to matplotlib's z-up axes. For y-up data
#: the front (+z) of the shape faces the ``(0, -90)`` view.
_TO_Z_UP = {
    "z": np.eye(3),
    "y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    "x": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
}


def _as_array(values, name: str, shape_hint: str, *, ndim: int, last: int | None = None) -> np.ndarray:
    """``values`` (numpy, torch or nested lists) as a finite float64 array with ``ndim`` dims."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric with shape {shape_hint}: {err}") from None
    if array.ndim != ndim or (last is not None and array.shape[-1] != last):
        raise ValueError(f"{name} must have shape {shape_hint}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return array


def _save(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (temporary file in the same folder, rename)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG; the path must end in .png, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _grid_shape(count: int, ncols: int | None) -> tuple[int, int]:
    cols = min(count, 4) if ncols is None else ncols
    if cols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    return math.ceil(count / cols), cols


def _robust_limits(arrays: Sequence[np.ndarray]) -> tuple[float, float]:
    """Shared square limits: the 0.5-99.5 percentiles of all points, widened by 5%, so one panel of
    far outliers (a bad one-step sampler) does not squash the others."""
    pooled = np.concatenate([a.reshape(-1) for a in arrays])
    lo, hi = np.percentile(pooled, [0.5, 99.5])
    pad = 0.05 * max(hi - lo, 1e-6)
    return float(lo - pad), float(hi + pad)


def save_scatter_panels(
    panels: Mapping[str, object],
    path: str | os.PathLike,
    title: str | None = None,
    lims: tuple[float, float] | None = None,
    *,
    ncols: int | None = None,
    point_size: float = 1.0,
    dpi: int = 100,
) -> Path:
    """Scatter plots of 2-D samples side by side, e.g. one-, two- and four-step samples beside the
    multi-step baseline and the data.

    Args:
        panels: panel title -> points ``(N, 2)`` (numpy, torch or lists), drawn in order.
        path: the PNG to write.
        title: the figure title.
        lims: ``(lo, hi)`` for both axes of every panel; default: shared limits from the
            0.5-99.5 percentiles of all points (the same scale in every panel).
        ncols: panels per row (default: up to 4 in a row, then more rows).
        point_size: marker area in points^2.
        dpi: resolution; each panel is 3 x 3 inches.
    """
    if not panels:
        raise ValueError("panels is empty: give at least one 'title -> (N, 2) points' entry")
    arrays = {name: _as_array(pts, f"panel {name!r}", "(N, 2)", ndim=2, last=2) for name, pts in panels.items()}
    lo, hi = lims if lims is not None else _robust_limits(list(arrays.values()))
    if not lo < hi:
        raise ValueError(f"lims must be (lo, hi) with lo < hi, got {lims}")
    rows, cols = _grid_shape(len(arrays), ncols)
    fig = Figure(figsize=(3 * cols, 3 * rows + (0.4 if title else 0)))
    for i, (name, pts) in enumerate(arrays.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.scatter(pts[:, 0], pts[:, 1], s=point_size, alpha=0.5, linewidths=0, rasterized=True)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", title=name)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


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
    pts = _as_array(points, "points", "(N, 3)", ndim=2, last=3)
    if len(pts) == 0:
        raise ValueError("points is empty")
    if up_axis not in _TO_Z_UP:
        raise ValueError(f"up_axis must be one of {sorted(_TO_Z_UP)}, got {up_axis!r}")
    views = _as_array(views, "views", "(V, 2) of (elevation, azimuth)", ndim=2, last=2)
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
        bones = _as_array(segments, "segments", "(K, 2, 3)", ndim=3, last=3)
        if bones.shape[1] != 2:
            raise ValueError(f"segments must have shape (K, 2, 3), got {bones.shape}")
        bones = bones @ rotation.T
    everything = pts if bones is None else np.concatenate([pts, bones.reshape(-1, 3)])
    centre = 0.5 * (everything.min(0) + everything.max(0))
    half = 0.5 * max(float((everything.max(0) - everything.min(0)).max()), 1e-6) * 1.05

    rows, cols = _grid_shape(len(views), None)
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
    return _save(fig, path, dpi)


def save_curves(
    curves: Mapping[str, tuple[object, object]],
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    title: str | None = None,
    *,
    logy: bool = False,
    symlog_y: float | None = None,
    dpi: int = 100,
) -> Path:
    """Line plots with markers, one per label, e.g. sample quality against the number of network
    evaluations (NFE) for CFM and the multi-step baseline.

    Args:
        curves: label -> ``(xs, ys)``, two 1-D sequences of equal length.
        path: the PNG to write.
        xlabel, ylabel: axis labels.
        logx, logy: logarithmic axes (then the values must be positive).
        symlog_y: a symmetric logarithmic y axis, linear within ``+-symlog_y``: for values that
            may be zero or negative, such as an unbiased distance estimate at its noise floor.
        title: the figure title.
    """
    if not curves:
        raise ValueError("curves is empty: give at least one 'label -> (xs, ys)' entry")
    if symlog_y is not None and (logy or not symlog_y > 0):
        raise ValueError(f"symlog_y must be positive and excludes logy, got {symlog_y} with logy={logy}")
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    for label, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"curve {label!r} must be a pair (xs, ys)")
        xs = _as_array(pair[0], f"xs of curve {label!r}", "(K,)", ndim=1)
        ys = _as_array(pair[1], f"ys of curve {label!r}", "(K,)", ndim=1)
        if len(xs) != len(ys) or len(xs) == 0:
            raise ValueError(f"curve {label!r}: xs and ys need the same non-zero length, got {len(xs)} and {len(ys)}")
        for flag, values, axis in ((logx, xs, "x"), (logy, ys, "y")):
            if flag and (values <= 0).any():
                raise ValueError(f"curve {label!r}: log{axis} needs positive {axis} values")
        ax.plot(xs, ys, marker="o", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if logx else "linear", yscale="log" if logy else "linear")
    if symlog_y is not None:
        ax.set_yscale("symlog", linthresh=symlog_y)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)
