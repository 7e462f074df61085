"""Condition points from files, held-out shapes, the scores of a generated shape, grid pictures."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from cfm_core.cli import ConfigError
from cfm_sdf.families import random_shape
from cfm_sdf.inputs import load_condition_points
from cfm_sdf.meshing import extract_mesh, volumetric_iou
from cfm_sdf.render import Panel, render_mesh_grid_png
from cfm_sdf.representation import RepresentationConfig, analytic_record, batch, encode_sdf
from cfm_sdf.scoring import (
    HeldOutShape,
    held_out_records,
    held_out_shapes,
    reference_grid,
    score_shape,
    timed_mesh,
)
from PIL import Image

CONFIG = RepresentationConfig(n_context=64, n_query_volume=128, n_query_near=128, n_query_surface=0)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_npy_points_subset_and_frames(tmp_path):
    points = rng().uniform(-0.5, 0.5, size=(100, 3))
    np.save(tmp_path / "p.npy", points)
    loaded, note = load_condition_points(tmp_path / "p.npy", 64, "auto", rng())
    assert note is None and loaded.points.shape == (64, 3) and loaded.scale == 1.0
    rows = [np.flatnonzero(np.all(np.isclose(points, p, atol=1e-6), axis=1)) for p in loaded.points]
    assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 64  # a subset
    few, note = load_condition_points(tmp_path / "p.npy", 200, "auto", rng())
    assert len(few.points) == 100 and "fewer than --n-points 200" in note
    boxed, _ = load_condition_points(tmp_path / "p.npy", 200, "bbox", rng())
    assert np.isclose(np.abs(boxed.points).max(axis=0).max(), 0.9, atol=1e-6)
    np.testing.assert_allclose(boxed.to_original(boxed.points), points, atol=1e-5)


def test_mesh_points_lie_on_the_mesh_and_map_back(tmp_path):
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    box.apply_translation((10.0, 0.0, -3.0))
    box.export(tmp_path / "box.obj")
    loaded, _ = load_condition_points(tmp_path / "box.obj", 64, "auto", rng())
    assert loaded.points.shape == (64, 3) and np.isclose(loaded.scale, 0.45)
    original = loaded.to_original(loaded.points.astype(np.float64))
    distance = np.abs(trimesh.proximity.signed_distance(box, original))
    assert distance.max() < 1e-5


@pytest.mark.parametrize(
    "content, message",
    [
        (np.zeros((4, 2)), "(N, 3)"),
        (np.full((4, 3), np.nan), "NaN"),
        (np.full((4, 3), 5.0), "bbox"),
    ],
)
def test_bad_point_files_name_the_problem(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(ConfigError, match="--points") as err:
        load_condition_points(tmp_path / "bad.npy", 64, "none", rng())
    assert message in str(err.value)


def test_unreadable_or_unknown_files_name_the_problem(tmp_path):
    (tmp_path / "junk.obj").write_text("not a mesh\n")
    with pytest.raises(ConfigError, match="--points: .*junk.obj"):
        load_condition_points(tmp_path / "junk.obj", 64, "auto", rng())
    (tmp_path / "points.txt").write_text("0 0 0\n")
    with pytest.raises(ConfigError, match="neither .npy nor a mesh"):
        load_condition_points(tmp_path / "points.txt", 64, "auto", rng())
    with pytest.raises(ConfigError, match="file not found"):
        load_condition_points(tmp_path / "missing.npy", 64, "auto", rng())


def test_held_out_shapes_are_reproducible_and_not_training_shapes():
    first = held_out_shapes("chair", 3, 5, CONFIG, n_surface=50)
    again = held_out_shapes("chair", 3, 5, CONFIG, n_surface=50)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.sample["context_points"], b.sample["context_points"])
        np.testing.assert_array_equal(a.surface, b.surface)
        assert np.abs(a.shape.sdf(a.surface)).max() < 1e-9
        np.testing.assert_allclose(
            a.sample["query_values"], encode_sdf(a.shape.sdf(a.sample["query_points"]), 0.2), atol=1e-5
        )
    training = batch(0, 3, 5, "chair", CONFIG)
    assert not np.allclose(training.context_points[0].numpy(), first[0].sample["context_points"])


def test_scores_of_the_truth_and_of_a_shifted_shape():
    shape = held_out_shapes("stool", 1, 0, CONFIG, n_surface=4000)[0]
    truth = shape.iou_truth(40)
    np.testing.assert_array_equal(truth, reference_grid(shape.shape, 40).ravel())
    values = encode_sdf(truth.reshape((40,) * 3), 0.2)
    mesh, seconds = timed_mesh(values)
    queries = shape.sample["query_values"]

    def score(grid, query_values):
        return score_shape(timed_mesh(grid)[0], shape.surface, grid.ravel(), truth, query_values, queries, 0.2, 0.05)

    perfect = score(values, queries)
    assert perfect["iou"] == 1.0 and perfect["sdf_error"] == 0.0 and seconds >= 0
    assert perfect["chamfer"] < 0.02 and perfect["fscore"] > 0.95
    shifted = np.roll(values, 3, axis=1)  # 3 grid steps (0.15) up
    worse = score(shifted, queries + 0.5)
    assert np.isclose(worse["iou"], volumetric_iou(shifted, truth.reshape(shifted.shape)))
    assert worse["iou"] < 0.8 and worse["chamfer"] > 2 * perfect["chamfer"]
    expected = np.abs(np.minimum(queries + 0.5, 1.0) - queries).mean() * 0.2  # clamped at 1
    assert worse["fscore"] < perfect["fscore"] and np.isclose(worse["sdf_error"], expected)
    none = score(np.ones_like(values), queries)
    assert np.isnan(none["chamfer"]) and none["fscore"] == 0.0 and none["iou"] == 0.0


def test_records_score_the_iou_at_their_volume_points():
    """A record of an analytic stool: its Monte-Carlo IoU at 20k uniform points agrees with the
    IoU on a fine grid, for the truth and for a dilated shape."""
    stool = random_shape("stool", rng(3))
    big = RepresentationConfig(n_context=64, n_query_volume=20000, n_query_near=128, n_query_surface=200)
    records = [analytic_record(stool, rng(4), big), analytic_record(stool, rng(5), big)]
    shapes = held_out_records(records, 5, 0, CONFIG, n_surface=100)
    assert len(shapes) == 2 and shapes[0].shape is None and shapes[0].truth_mesh(16) is None
    assert shapes[0].surface.shape == (100, 3) and shapes[0].iou_points.shape == (20064, 3)
    np.testing.assert_allclose(
        shapes[0].sample["query_values"], encode_sdf(stool.sdf(shapes[0].sample["query_points"]), 0.2), atol=1e-5
    )
    again = held_out_records(records, 5, 0, CONFIG, n_surface=100)
    np.testing.assert_array_equal(again[1].sample["context_points"], shapes[1].sample["context_points"])
    points, truth = shapes[0].iou_points, shapes[0].iou_truth(resolution=8)
    np.testing.assert_allclose(truth, stool.sdf(points), atol=1e-5)
    queries = shapes[0].sample["query_values"]
    dilated = stool.sdf(points) - 0.03
    scores = score_shape(None, shapes[0].surface, dilated, truth, queries, queries, 0.2, 0.05)
    grid = reference_grid(stool, 96)
    assert abs(scores["iou"] - volumetric_iou(grid - 0.03, grid)) < 0.03
    assert scores["iou"] < 0.9  # the dilation is visible
    with pytest.raises(ValueError, match="exactly one"):
        HeldOutShape("x", shapes[0].sample, shapes[0].surface)
    with pytest.raises(ValueError, match="volume points"):
        held_out_records(records, 1, 0, RepresentationConfig(n_context=30000), n_surface=10)


def test_render_mesh_grid_png(tmp_path):
    mesh = extract_mesh(reference_grid(random_shape("stool", rng(1)), 24))
    panels = [
        Panel("a", mesh, np.zeros((3, 3))),
        Panel("b", None),
        Panel("c", None, np.zeros((3, 3)), cloud=mesh.vertices),
    ]
    path = render_mesh_grid_png(panels, tmp_path / "grid.png", columns=2, panel_size=1.0)
    assert Image.open(path).size == (200, 200)
    with pytest.raises(ValueError, match=".png"):
        render_mesh_grid_png(panels, tmp_path / "grid.jpg", columns=2)
    with pytest.raises(ValueError, match="at least one panel"):
        render_mesh_grid_png([], tmp_path / "grid.png", columns=2)
