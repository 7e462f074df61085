"""Pictures of point clouds: several clouds, one row of views each, in one PNG."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from cfm_core.plotting import save_point_cloud_views
from PIL import Image

from cfm_geometry.generation import finite_rows


def save_view_rows(
    clouds: Mapping[str, object], path: str | os.PathLike, up_axis: str, point_size: float = 0.3
) -> Path:
    """Write one PNG holding, for each ``title -> (N, 3) points`` of ``clouds`` in order, a row of
    :func:`cfm_core.plotting.save_point_cloud_views` views titled ``title``. Non-finite points
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
