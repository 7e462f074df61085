"""Loading, validation, normalisation, area-weighted sampling, the point bank and point output."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import trimesh
from cfm_core.testing import assert_rows_match_global_batch
from cfm_geometry.commands import point_batches
from cfm_geometry.data import (
    Normalisation,
    PointBank,
    SurfaceError,
    load_surface,
    sample_surface_points,
    save_points,
    surface_from_spec,
)
from cfm_geometry.surface import Surface


def two_squares(small: float = 1.0, large: float = 3.0) -> trimesh.Trimesh:
    """Two disjoint axis-aligned squares of areas ``small`` (at z = 0) and ``large`` (at z = 1)."""
    a, b = np.sqrt(small), np.sqrt(large)
    vertices = np.array(
        [[0, 0, 0], [a, 0, 0], [a, a, 0], [0, a, 0], [0, 0, 1], [b, 0, 1], [b, b, 1], [0, b, 1]], dtype=float
    )
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    return trimesh.Trimesh(vertices, faces, process=False)


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".stl", ".off", ".glb"])
def test_load_mesh_formats(tmp_path, suffix):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    path = tmp_path / f"box{suffix}"
    box.export(path)
    surface = load_surface(path)
    assert surface.is_mesh and surface.source == str(path)
    assert surface.mesh.area == pytest.approx(2 * (1 * 2 + 2 * 3 + 1 * 3), rel=1e-6)
    np.testing.assert_allclose(surface.bounds, [[-0.5, -1, -1.5], [0.5, 1, 1.5]], atol=1e-6)


def test_load_point_cloud_formats(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3))
    normals = rng.normal(size=(50, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    colors = rng.integers(0, 256, size=(50, 3)) / 255.0

    save_points(tmp_path / "cloud.ply", points, normals, colors)
    np.savetxt(tmp_path / "cloud.xyz", np.concatenate([points, normals], axis=1))
    np.savetxt(tmp_path / "plain.xyz", points)
    np.save(tmp_path / "cloud.npy", points)
    np.savez(tmp_path / "cloud.npz", points=points, colors=colors)

    ply = load_surface(tmp_path / "cloud.ply")
    assert not ply.is_mesh and ply.has_normals and ply.has_colors
    np.testing.assert_allclose(ply.points, points, atol=1e-6)
    np.testing.assert_allclose(ply.normals, normals, atol=1e-6)
    np.testing.assert_allclose(ply.colors, colors, atol=1e-9)
    xyz = load_surface(tmp_path / "cloud.xyz")
    np.testing.assert_allclose(xyz.points, points, rtol=1e-6)
    np.testing.assert_allclose(xyz.normals, normals, rtol=1e-6, atol=1e-7)
    assert load_surface(tmp_path / "plain.xyz").normals is None
    npy = load_surface(tmp_path / "cloud.npy")
    np.testing.assert_array_equal(npy.points, points)
    assert not npy.has_normals and not npy.has_colors
    npz = load_surface(tmp_path / "cloud.npz")
    np.testing.assert_array_equal(npz.colors, colors)


def test_format_detected_by_content(tmp_path):
    """A file's signature wins over a wrong or missing extension."""
    np.save(tmp_path / "points.npy", np.eye(3))
    (tmp_path / "points.npy").rename(tmp_path / "points.bin")
    np.testing.assert_array_equal(load_surface(tmp_path / "points.bin").points, np.eye(3))
    trimesh.creation.box().export(tmp_path / "box.ply")
    (tmp_path / "box.ply").rename(tmp_path / "box.obj")
    assert load_surface(tmp_path / "box.obj").mesh.area == pytest.approx(6.0)


DEGENERATE_FILES = {
    "empty.obj": ("", "no mesh faces and no points"),
    "nan.obj": ("v nan 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 2 4 3\n", "NaN or inf"),
    "flat.obj": ("v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nf 1 2 3\nf 2 3 4\n", "zero area"),
    "garbage.ply": ("this is not a ply file", "cannot read as PLY"),
    "few_columns.xyz": ("1 2\n3 4\n", r"\(N, 3\)"),
    "shape.unknown": ("1 2 3\n", "unknown shape format"),
}


@pytest.mark.parametrize("name", sorted(DEGENERATE_FILES))
def test_degenerate_inputs_name_the_file(tmp_path, name):
    content, reason = DEGENERATE_FILES[name]
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SurfaceError, match=re.escape(str(path)) + ".*" + reason):
        load_surface(path)


def test_degenerate_arrays_and_missing_file(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(SurfaceError, match="empty.npy: empty point cloud"):
        load_surface(tmp_path / "empty.npy")
    np.save(tmp_path / "inf.npy", np.array([[0.0, 0, 0], [np.inf, 0, 0]]))
    with pytest.raises(SurfaceError, match="inf.npy: 1 of 2 point rows hold NaN or inf"):
        load_surface(tmp_path / "inf.npy")
    np.savez(tmp_path / "nokey.npz", xyz=np.eye(3))
    with pytest.raises(SurfaceError, match="nokey.npz: NPZ needs a 'points' array"):
        load_surface(tmp_path / "nokey.npz")
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        load_surface(tmp_path / "missing.obj")


def test_normalisation_follows_geometry_distributions():
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(2000, 3)) * [3.0, 1.0, 0.5] + [10.0, -2.0, 4.0]
    bounds = np.stack([samples.min(0), samples.max(0)])
    norm = Normalisation.fit(bounds, samples)
    # GD's two steps, written out: bbox centre and 0.99 max-abs scale, then scalar mean/std.
    centre = bounds.mean(0)
    boxed = (samples - centre) * (0.99 / np.abs(samples - centre).max())
    assert np.abs(boxed).max() == pytest.approx(0.99)
    expected = (boxed - boxed.mean()) / boxed.std()
    np.testing.assert_allclose(norm.apply(samples), expected, atol=1e-10)
    assert norm.apply(samples).std() == pytest.approx(1.0)


def test_normalisation_round_trip_and_dict():
    norm = Normalisation(centre=(1.0, -2.0, 0.5), scale=3.0)
    points = np.random.default_rng(2).normal(size=(10, 6))
    normalised = norm.apply(points)
    np.testing.assert_array_equal(normalised[:, 3:], points[:, 3:])  # extra channels untouched
    np.testing.assert_allclose(normalised[:, :3], (points[:, :3] - [1.0, -2.0, 0.5]) / 3.0)
    np.testing.assert_allclose(norm.invert(normalised), points, atol=1e-12)
    tensor = torch.from_numpy(points).float()
    torch.testing.assert_close(norm.invert(norm.apply(tensor)), tensor)
    restored = Normalisation.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert restored == norm
    with pytest.raises(ValueError, match="centre and scale"):
        Normalisation.from_dict({"centre": [0, 0, 0]})
    with pytest.raises(ValueError, match="positive"):
        Normalisation(centre=(0, 0, 0), scale=0.0)
    with pytest.raises(ValueError, match="zero extent"):
        Normalisation.fit(np.zeros((2, 3)), np.zeros((5, 3)))


def test_area_weighted_sampling_on_surface():
    surface = Surface.from_mesh(two_squares(1.0, 3.0), "two_squares")
    points = sample_surface_points(surface, 40_000, seed=0)
    assert points.shape == (40_000, 3) and points.dtype == np.float32
    on_small = points[:, 2] < 0.5
    # binomial std of the share is sqrt(0.25 * 0.75 / 40000) = 0.0022
    assert on_small.mean() == pytest.approx(0.25, abs=0.01)
    assert points[on_small, :2].max() <= 1.0 + 1e-6 and points[~on_small, :2].max() > 1.0
    _, distance, _ = trimesh.proximity.closest_point(surface.mesh, points[:300, :3])
    assert distance.max() < 1e-6
    np.testing.assert_array_equal(points, sample_surface_points(surface, 40_000, 0))
    assert not np.array_equal(points, sample_surface_points(surface, 40_000, 1))


def test_point_cloud_resampling_with_replacement():
    cloud = np.random.default_rng(3).normal(size=(20, 3))
    surface = Surface.from_points(cloud, "cloud")
    points = sample_surface_points(surface, 4000, seed=0)
    rows = np.abs(points[:, None, :] - cloud[None].astype(np.float32)).max(-1) < 1e-6
    assert (rows.sum(1) == 1).all()  # every sample is one of the cloud's points
    assert rows.sum(0).min() > 100  # each point drawn about 200 times


def test_point_bank_is_normalised_and_deterministic_per_step():
    surface = surface_from_spec("torus_knot")
    assert surface.source == "builtin:torus_knot"
    bank = PointBank.from_surface(surface, 5000, seed=0)
    assert bank.points.shape == (5000, 3) and bank.points.dtype == torch.float32
    xyz = bank.points[:, :3].double()
    assert xyz.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert xyz.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    later = bank.batch_for_step(7, 64, seed=3)
    earlier = bank.batch_for_step(2, 64, seed=3)
    torch.testing.assert_close(bank.batch_for_step(7, 64, seed=3), later)  # order does not matter
    assert not torch.equal(earlier, later)
    assert not torch.equal(later, bank.batch_for_step(7, 64, seed=4))
    assert (later[:, None, :] == bank.points[None]).all(-1).any(-1).all()  # rows of the bank
    original = sample_surface_points(surface, 5000, seed=0)
    np.testing.assert_allclose(bank.decode(bank.points), original, atol=1e-5)


@pytest.mark.parametrize("points_per_set", [None, 4])
def test_each_process_gathers_only_its_rows_of_the_global_batch(points_per_set):
    bank = PointBank.from_surface(surface_from_spec("torus_knot"), 500, seed=0)
    data = point_batches(bank, 32, seed=3, points_per_set=points_per_set)
    assert data(5).shape == ((32, 3) if points_per_set is None else (8, 4, 3))
    assert_rows_match_global_batch(data, step=5, world=2)


@pytest.mark.parametrize("suffix", [".ply", ".npz", ".npy", ".xyz"])
def test_save_points_round_trip_and_atomic(tmp_path, suffix):
    rng = np.random.default_rng(4)
    points, normals = rng.normal(size=(30, 3)), np.tile([0.0, 0.0, 1.0], (30, 1))
    path = save_points(tmp_path / f"out{suffix}", points, normals)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]  # no temp file left
    loaded = load_surface(path)
    np.testing.assert_allclose(loaded.points, points, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.normals, normals, atol=1e-6)


def test_save_points_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="cannot hold colours"):
        save_points(tmp_path / "a.npy", np.zeros((2, 3)), colors=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown point format"):
        save_points(tmp_path / "a.stl", np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"normals must have shape \(2, 3\)"):
        save_points(tmp_path / "a.ply", np.zeros((2, 3)), normals=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        save_points(tmp_path / "a.ply", np.full((2, 3), np.nan))
