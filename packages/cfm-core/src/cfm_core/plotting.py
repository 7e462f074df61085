"""PNG figures for reports: metric curves, and the helpers the apps' own pictures are drawn with.

Needs matplotlib, the ``plot`` extra of cfm-core (``pip install 'cfm-core[plot]'``); nothing else
in cfm-core imports this module. Figures are drawn with matplotlib's Agg renderer on
:class:`matplotlib.figure.Figure` objects (no pyplot, no global backend switch, no display needed)
and written atomically (:func:`save_figure`). Every function that writes returns the written path.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

try:
    from matplotlib.figure import Figure
except ImportError:
    raise ImportError(
        "cfm_core.plotting needs matplotlib, the 'plot' extra of cfm-core: pip install 'cfm-core[plot]'"
    ) from None


def as_array(values, name: str, shape_hint: str, *, ndim: int, last: int | None = None) -> np.ndarray:
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


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
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


def grid_shape(count: int, ncols: int | None) -> tuple[int, int]:
    """``(rows, columns)`` of ``count`` panels, ``ncols`` to a row (default: up to 4)."""
    cols = min(count, 4) if ncols is None else ncols
    if cols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    return math.ceil(count / cols), cols


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
        xs = as_array(pair[0], f"xs of curve {label!r}", "(K,)", ndim=1)
        ys = as_array(pair[1], f"ys of curve {label!r}", "(K,)", ndim=1)
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
    return save_figure(fig, path, dpi)


#: The curve of each model of an NFE sweep (``row["label"]``), in the order drawn.
SWEEP_CURVES = {"cfm": "CFM (cumulative)", "baseline": "baseline (instantaneous)"}


def save_quality_vs_nfe(
    rows: Sequence[Mapping[str, object]],
    metric: str,
    path: str | os.PathLike,
    *,
    ylabel: str,
    title: str | None = None,
    xlabel: str = "NFE",
    logy: bool | Literal["auto"] = False,
) -> Path | None:
    """``row[metric]`` against ``row["nfe"]`` (log axis), one curve per model of an NFE sweep's
    rows (:func:`cfm_core.evaluation.sweep_table`: ``label`` ``"cfm"`` or ``"baseline"``).

    Values that are ``None`` or not finite are left out, and with ``logy=True`` those not
    positive too; ``logy="auto"``: a log axis when every value left is positive. Returns the
    written path, or None (and writes nothing) when no value is left.
    """
    curves = {}
    for label, name in SWEEP_CURVES.items():
        points = [
            (row["nfe"], row[metric])
            for row in rows
            if row["label"] == label
            and row[metric] is not None
            and math.isfinite(row[metric])
            and (logy is not True or row[metric] > 0)
        ]
        if points:
            curves[name] = tuple(zip(*points, strict=True))
    if not curves:
        return None
    if logy == "auto":
        logy = all(y > 0 for _, ys in curves.values() for y in ys)
    return save_curves(curves, path, xlabel=xlabel, ylabel=ylabel, logx=True, logy=logy, title=title)
