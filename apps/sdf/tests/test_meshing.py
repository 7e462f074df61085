"""Grid evaluation, marching cubes, mesh files and volumetric IoU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from cfm_sdf.meshing import extract_mesh, grid_points, save_mesh, sdf_grid, volumetric_iou


def sphere(radius: float, center=(0.0, 0.0, 0.0)):
    c = torch.tensor(center)
    return lambda p: (p - c.to(p)).norm(dim=-1) - radius


def test_sdf_grid_order_and_chunking():
    def linear(p):
        return p[:, 0] + 2 * p[:, 1] + 3 * p[:, 2]

    grid = sdf_grid(linear, 9, batch=50)
    axis = np.linspace(-1, 1, 9)
    expected = axis[:, None, None] + 2 * axis[None, :, None] + 3 * axis[None, None, :]
    np.testing.assert_allclose(grid, expected, atol=1e-6)
    np.testing.assert_array_equal(grid, sdf_grid(lambda p: linear(p).numpy(), 9, batch=10**6))
    assert grid_points(9).shape == (729, 3)


def test_sdf_grid_rejects_wrong_output_shape():
    with pytest.raises(ValueError, match="one value per point"):
        sdf_grid(lambda p: p, 4)


def test_marching_cubes_of_a_sphere_has_the_right_radius():
    radius, resolution = 0.5, 64
    mesh = extract_mesh(sdf_grid(sphere(radius, (0.1, 0.0, -0.05)), resolution))
    assert mesh.is_watertight and mesh.volume > 0
    distances = np.linalg.norm(mesh.vertices - np.array([0.1, 0.0, -0.05]), axis=1)
    # vertices interpolate |p| - r linearly along grid edges: error ~ h^2 / (2 r)
    h = 2 / (resolution - 1)
    assert np.abs(distances - radius).max() < h**2 / radius
    assert math.isclose(mesh.volume, 4 / 3 * math.pi * radius**3, rel_tol=0.01)


def test_shape_touching_the_grid_boundary_is_capped():
    mesh = extract_mesh(sdf_grid(sphere(0.8, (0.6, 0.0, 0.0)), 32))
    assert mesh.is_watertight
    assert mesh.bounds[1, 0] <= 1.0 + 2 / 31 + 1e-9


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_empty_level_set_is_an_error(value):
    with pytest.raises(ValueError, match="empty level set"):
        extract_mesh(np.full((8, 8, 8), value))


def test_extract_mesh_rejects_nan():
    grid = np.ones((8, 8, 8))
    grid[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        extract_mesh(grid)


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_save_mesh_round_trip(tmp_path, suffix):
    mesh = extract_mesh(sdf_grid(sphere(0.5), 24))
    path = save_mesh(mesh, tmp_path / "out" / f"shape{suffix}")
    loaded = trimesh.load(path, force="mesh")
    assert math.isclose(loaded.volume, mesh.volume, rel_tol=1e-4)
    assert sorted(p.name for p in path.parent.iterdir()) == [f"shape{suffix}"]  # no temp files


def test_save_mesh_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unsupported mesh format '.stl'"):
        save_mesh(trimesh.creation.box(), tmp_path / "shape.stl")


def test_volumetric_iou():
    grid = sdf_grid(sphere(0.5), 32)
    assert volumetric_iou(grid, grid) == 1.0
    far = sdf_grid(sphere(0.3, (0.6, 0.6, 0.6)), 32)
    near = sdf_grid(sphere(0.3, (-0.6, -0.6, -0.6)), 32)
    assert volumetric_iou(far, near) == 0.0
    # half spaces x < 0 and x < 0.5 on 41 nodes per axis: 20 and 30 node layers inside
    x = np.linspace(-1, 1, 41)[:, None, None] * np.ones((1, 41, 41))
    assert math.isclose(volumetric_iou(x, x - 0.5), 2 / 3)


def test_volumetric_iou_errors():
    with pytest.raises(ValueError, match="same shape"):
        volumetric_iou(np.ones((4, 4, 4)), np.ones((5, 5, 5)))
    with pytest.raises(ValueError, match="both fields are empty"):
        volumetric_iou(np.ones((4, 4, 4)), np.ones((4, 4, 4)))


def test_render_mesh_png(tmp_path):
    from cfm_sdf.render import render_mesh_png
    from PIL import Image

    mesh = extract_mesh(sdf_grid(sphere(0.5), 24))
    path = render_mesh_png(mesh, tmp_path / "view.png", points=np.zeros((4, 3)), size=128)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (128, 128, 3)
    assert (image.min(axis=2) < 200).mean() > 0.1  # the sphere covers part of the picture
    with pytest.raises(ValueError, match=".png"):
        render_mesh_png(mesh, tmp_path / "view.jpg")
