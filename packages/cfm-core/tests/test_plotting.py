"""The PNG writers: valid, non-blank images of a sensible size; clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cfm_core.plotting import save_curves, save_point_cloud_views, save_scatter_panels
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path, min_width, min_height):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert min_width <= width <= 4000 and min_height <= height <= 4000
    assert pixels.std() > 5  # something was drawn on the white background
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    return width, height


def test_scatter_panels_row_and_grid(tmp_path):
    g = torch.Generator().manual_seed(0)
    panels = {f"{k} steps": torch.randn(500, 2, generator=g) for k in (1, 2, 4)}
    panels["baseline"] = np.random.default_rng(0).normal(size=(500, 2))
    row = save_scatter_panels(panels, tmp_path / "row.png", title="samples")
    width, height = check_png(row, 800, 200)
    assert width > 2.5 * height  # four panels side by side
    panels["data"] = [[0.0, 0.0], [1.0, 1.0]]
    grid = save_scatter_panels(panels, tmp_path / "sub" / "grid.png", lims=(-3, 3), ncols=3)
    width, height = check_png(grid, 600, 400)
    assert width < 2 * height  # two rows of three


def test_point_cloud_views_with_colours_and_bones(tmp_path):
    g = torch.Generator().manual_seed(1)
    points = torch.randn(3000, 3, generator=g)
    bones = np.array([[[0, -2, 0], [0, 2, 0]], [[0, 1, 0], [1, 1.5, 0]]], dtype=np.float64)
    path = save_point_cloud_views(
        points, tmp_path / "cloud.png", colors=points[:, 1], segments=bones, title="shape", max_points=1000
    )
    width, height = check_png(path, 800, 200)
    assert width > 2.5 * height
    rgb = np.random.default_rng(0).uniform(size=(3000, 3))
    two = save_point_cloud_views(
        points.numpy(), tmp_path / "two.png", views=((30, 45), (0, 0)), colors=rgb, up_axis="z"
    )
    check_png(two, 300, 150)


def test_curves(tmp_path):
    curves = {
        "cfm": ([1, 2, 4], [0.3, 0.1, 0.05]),
        "baseline": (np.array([8, 16, 64]), [0.2, 0.1, 0.04]),
    }
    path = save_curves(
        curves, tmp_path / "quality.png", "NFE", "energy distance", logx=True, title="quality vs NFE", logy=True
    )
    check_png(path, 300, 200)


def test_curves_on_a_symmetric_log_axis_take_values_at_and_below_zero(tmp_path):
    curves = {"cfm": ([1, 2, 4], [0.3, -2e-4, 0.0]), "baseline": ([8, 64], [0.2, -1e-4])}
    path = save_curves(curves, tmp_path / "floor.png", "NFE", "energy distance", logx=True, symlog_y=1e-3)
    check_png(path, 300, 200)
    with pytest.raises(ValueError, match="symlog_y must be positive and excludes logy"):
        save_curves(curves, tmp_path / "x.png", "x", "y", logy=True, symlog_y=1e-3)
    with pytest.raises(ValueError, match="symlog_y must be positive"):
        save_curves(curves, tmp_path / "x.png", "x", "y", symlog_y=0.0)


def test_existing_file_is_replaced(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    save_curves({"a": ([0, 1], [1, 0])}, target, "x", "y")
    check_png(target, 300, 200)


def test_scatter_panels_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"panel 'a' must have shape \(N, 2\)"):
        save_scatter_panels({"a": np.zeros((10, 3))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="panel 'a' contains NaN"):
        save_scatter_panels({"a": np.full((10, 2), np.nan)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="panels is empty"):
        save_scatter_panels({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="lo < hi"):
        save_scatter_panels({"a": np.zeros((3, 2))}, tmp_path / "x.png", lims=(1, -1))
    with pytest.raises(ValueError, match="must end in .png"):
        save_scatter_panels({"a": np.zeros((3, 2))}, tmp_path / "x.jpg")
    assert list(tmp_path.iterdir()) == []


def test_point_cloud_views_reject_bad_input(tmp_path):
    points = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"points must have shape \(N, 3\)"):
        save_point_cloud_views(np.zeros((10, 2)), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"segments must have shape \(K, 2, 3\)"):
        save_point_cloud_views(points, tmp_path / "x.png", segments=np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match=r"colors must have shape \(N,\) or \(N, 3\|4\)"):
        save_point_cloud_views(points, tmp_path / "x.png", colors=np.zeros(9))
    with pytest.raises(ValueError, match=r"colors must lie in \[0, 1\]"):
        save_point_cloud_views(points, tmp_path / "x.png", colors=np.full((10, 3), 2.0))
    with pytest.raises(ValueError, match="up_axis"):
        save_point_cloud_views(points, tmp_path / "x.png", up_axis="w")
    with pytest.raises(ValueError, match="views"):
        save_point_cloud_views(points, tmp_path / "x.png", views=((0, 0, 0),))


def test_curves_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="curve 'a': xs and ys need the same"):
        save_curves({"a": ([1, 2, 3], [1, 2])}, tmp_path / "x.png", "x", "y")
    with pytest.raises(ValueError, match="logx needs positive x"):
        save_curves({"a": ([0, 1], [1, 2])}, tmp_path / "x.png", "x", "y", logx=True)
    with pytest.raises(ValueError, match=r"xs of curve 'a' must have shape \(K,\)"):
        save_curves({"a": (np.zeros((2, 2)), [1, 2])}, tmp_path / "x.png", "x", "y")
    with pytest.raises(ValueError, match="must be a pair"):
        save_curves({"a": [1, 2, 3]}, tmp_path / "x.png", "x", "y")
