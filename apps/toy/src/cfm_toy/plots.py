"""Scatter plots of 2-D samples, side by side (PNG)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from cfm_core.plotting import as_array, grid_shape, save_figure
from matplotlib.figure import Figure


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
    arrays = {name: as_array(pts, f"panel {name!r}", "(N, 2)", ndim=2, last=2) for name, pts in panels.items()}
    lo, hi = lims if lims is not None else _robust_limits(list(arrays.values()))
    if not lo < hi:
        raise ValueError(f"lims must be (lo, hi) with lo < hi, got {lims}")
    rows, cols = grid_shape(len(arrays), ncols)
    fig = Figure(figsize=(3 * cols, 3 * rows + (0.4 if title else 0)))
    for i, (name, pts) in enumerate(arrays.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.scatter(pts[:, 0], pts[:, 1], s=point_size, alpha=0.5, linewidths=0, rasterized=True)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", title=name)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi)
