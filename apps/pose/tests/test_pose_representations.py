"""Fixed-topology vectors and PDT per-point targets."""

import numpy as np
import pytest
import torch
from cfm_pose.capsules import segment_distances
from cfm_pose.procedural import character_batch
from cfm_pose.representations import (
    fixed_topology_batch,
    joints_to_vector,
    pdt_batch,
    pdt_targets,
    vector_to_joints,
)
from cfm_pose.skeleton import Skeleton

# a long vertical bone and a short slanted one from the same root
FORK = Skeleton(np.array([[0.0, 0, 0], [0, 2, 0], [0.5, 1, 0]]), np.array([-1, 0, 0]))


def test_bone_rule_and_joint_rule_differ_where_a_joint_is_near_another_bone():
    point = np.array([[0.05, 1.0, 0]])
    np.testing.assert_allclose(pdt_targets(point, FORK, "bone"), [[0, 0, 0]])
    np.testing.assert_allclose(pdt_targets(point, FORK, "joint"), [[0.5, 1, 0]])
    np.testing.assert_allclose(pdt_targets(np.array([[0.05, 1.1, 0]]), FORK), [[0, 2, 0]])
    with pytest.raises(ValueError, match="unknown PDT target rule"):
        pdt_targets(point, FORK, "nearest")


def test_bone_rule_matches_brute_force_on_a_character():
    character = character_batch(0, 1, seed=5, n_points=400)[0]
    skeleton, points = character.skeleton, character.points
    targets = pdt_targets(points, skeleton)
    pairs = skeleton.bone_pairs()
    for point, target in zip(points, targets, strict=True):
        best = np.inf
        for parent, child in pairs:
            a, b = skeleton.joints[parent], skeleton.joints[child]
            distance = segment_distances(point[None], a[None], b[None])[0, 0]
            if distance < best:
                best = distance
                along = np.dot(point - a, b - a) / np.dot(b - a, b - a)
                expected = a if along <= 0.5 else b
        np.testing.assert_array_equal(target, expected)


def test_every_joint_collects_points_when_the_surface_is_dense():
    character = character_batch(0, 1, seed=2, n_points=2048, template="quadruped")[0]
    targets = pdt_targets(character.points, character.skeleton)
    assert len(np.unique(targets, axis=0)) == character.skeleton.num_joints


def test_batches_have_the_documented_shapes():
    characters = character_batch(1, 3, seed=0, n_points=64, template="biped")
    clouds, skeletons = [c.points for c in characters], [c.skeleton for c in characters]
    points, x = fixed_topology_batch(clouds, skeletons)
    assert points.shape == (3, 64, 3) and x.shape == (3, 66) and x.dtype == torch.float32
    np.testing.assert_allclose(vector_to_joints(x)[1].numpy(), characters[1].skeleton.joints, atol=1e-6)
    assert torch.equal(joints_to_vector(vector_to_joints(x)), x)
    points, targets = pdt_batch(clouds, skeletons)
    assert points.shape == targets.shape == (3, 64, 3)
    mixed = character_batch(0, 8, seed=0, n_points=16)
    assert len({c.template for c in mixed}) > 1
    with pytest.raises(ValueError, match="one template"):
        fixed_topology_batch([c.points for c in mixed], [c.skeleton for c in mixed])
    with pytest.raises(ValueError, match=r"\(B, J\*3\)"):
        vector_to_joints(torch.zeros(2, 5))
