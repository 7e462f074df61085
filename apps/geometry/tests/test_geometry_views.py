"""The point-cloud views: valid, non-blank PNGs of a sensible size; clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cfm_geometry.views import save_point_cloud_views


def test_point_cloud_views_with_colours_and_bones(tmp_path, check_png):
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
