"""Mean-shift joint extraction."""

import numpy as np
import pytest
from cfm_pose.clustering import extract_joints, mean_shift

CENTRES = np.array([[0.0, 0, 0], [0.5, 0, 0], [0, 0.5, 0.5]])


def _clusters(sizes, spread=0.003, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([c + rng.normal(scale=spread, size=(n, 3)) for c, n in zip(CENTRES, sizes, strict=True)])


def test_one_mean_shift_step_matches_a_dense_computation():
    points = np.random.default_rng(1).random((300, 3)) * 0.3
    h = 0.08
    kernel = np.maximum(h**2 - ((points[:, None] - points[None]) ** 2).sum(-1), 0)
    expected = points + 0.3 * (kernel @ points / kernel.sum(1, keepdims=True) - points)
    np.testing.assert_allclose(mean_shift(points, h, max_iter=1), expected, atol=1e-12)


def test_tight_clusters_give_their_centres_in_density_order():
    points = _clusters([60, 40, 3])
    joints = extract_joints(points, bandwidth=0.05, min_count=5)
    assert joints.shape == (2, 3)
    np.testing.assert_allclose(joints, CENTRES[:2], atol=2e-3)
    np.testing.assert_array_equal(joints, extract_joints(points, bandwidth=0.05, min_count=5))
    assert len(extract_joints(points, bandwidth=0.05, min_count=1)) == 3


def test_a_bandwidth_wider_than_the_gaps_merges_clusters():
    points = _clusters([30, 30, 30])
    assert len(extract_joints(points, bandwidth=0.05)) == 3
    assert len(extract_joints(points, bandwidth=0.9)) == 1


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        extract_joints(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        extract_joints(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="bandwidth"):
        extract_joints(np.zeros((4, 3)), bandwidth=0)
    assert extract_joints(np.zeros((0, 3))).shape == (0, 3)
