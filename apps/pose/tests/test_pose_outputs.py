"""What `cfm pose sample` writes: minimum-spanning-tree edges and the skeleton picture."""

import numpy as np
from cfm_pose.outputs import Prediction, mst_edges, save_prediction_png
from PIL import Image


def test_mst_edges_follow_a_bent_chain():
    # an L-shaped chain given out of order: the tree links neighbours along the chain only
    joints = np.array([[0.0, 0, 0], [2, 0, 0], [1, 0, 0], [2, 1, 0], [2, 2, 0]])
    edges = {tuple(sorted(e)) for e in mst_edges(joints).tolist()}
    assert edges == {(0, 2), (1, 2), (1, 3), (3, 4)}
    # tiny units too (scipy reads dense entries below ~1e-8 as missing edges)
    assert {tuple(sorted(e)) for e in mst_edges(1e-9 * joints).tolist()} == edges
    assert mst_edges(joints[:1]).shape == (0, 2)
    # coincident joints stay connected
    assert len(mst_edges(np.zeros((3, 3)))) == 2


def _red_pixels(path):
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).sum())


def test_picture_draws_joints_and_bones_in_red_over_the_points(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.uniform([-0.3, 0, -0.1], [0.3, 1, 0.1], (400, 3))
    joints = np.array([[0.0, 0.5, 0], [0.0, 0.9, 0], [0.2, 0.1, 0]])
    edges = np.array([[0, 1], [0, 2]])
    bare = save_prediction_png(Prediction(points, joints[:0], edges[:0]), tmp_path / "bare.png", title="no joints")
    dots = save_prediction_png(Prediction(points, joints, edges[:0]), tmp_path / "dots.png", title="joints")
    bones = save_prediction_png(Prediction(points, joints, edges), tmp_path / "bones.png", title="skeleton")
    assert _red_pixels(bare) == 0
    # each joint is a visible dot in each of the three views, and bones add lines
    assert _red_pixels(dots) > 3 * 3 * 10
    assert _red_pixels(bones) > _red_pixels(dots) + 200
    assert not list(tmp_path.glob(".*tmp"))
