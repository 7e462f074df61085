"""Capsule surfaces, templates and procedural characters."""

import numpy as np
import pytest
from cfm_pose.capsules import capsule_bounds, sample_capsule_union_surface, segment_distances
from cfm_pose.procedural import character_batch, joint_tolerances, random_character
from cfm_pose.templates import TEMPLATES, get_template


def test_segment_distances_match_dense_sampling():
    rng = np.random.default_rng(0)
    points, starts, ends = (rng.normal(size=shape) for shape in ((20, 3), (4, 3), (4, 3)))
    ends[3] = starts[3]
    along = np.linspace(0, 1, 20001)
    dense = starts[:, None] + along[None, :, None] * (ends - starts)[:, None]
    brute = np.linalg.norm(points[:, None, None] - dense[None], axis=-1).min(axis=-1)
    np.testing.assert_allclose(segment_distances(points, starts, ends), brute, atol=1e-4)


def test_single_capsule_samples_lie_on_it_with_area_weighted_parts():
    starts, ends, radii = np.array([[0.0, 0, 0]]), np.array([[0.0, 0, 3]]), np.array([0.5])
    points = sample_capsule_union_surface(starts, ends, radii, 20000, np.random.default_rng(1))
    np.testing.assert_allclose(segment_distances(points, starts, ends)[:, 0], 0.5, atol=1e-12)
    on_cylinder = np.mean((points[:, 2] > 0) & (points[:, 2] < 3))
    expected = (2 * np.pi * 0.5 * 3) / (2 * np.pi * 0.5 * 3 + 4 * np.pi * 0.25)
    assert abs(on_cylinder - expected) < 0.015
    # the caps are uniform too: the top hemisphere gets half the cap samples
    top = np.mean(points[:, 2] >= 3) / (1 - on_cylinder)
    assert abs(top - 0.5) < 0.03


def test_union_surface_excludes_the_inside_of_other_capsules():
    starts = np.array([[0.0, 0, 0], [0.0, 0, 0], [0.6, 0, 0]])
    ends = np.array([[1.0, 0, 0], [0.0, 1.0, 0], [0.6, 0, 0]])
    radii = np.array([0.2, 0.15, 0.3])
    points = sample_capsule_union_surface(starts, ends, radii, 3000, np.random.default_rng(2))
    gap = segment_distances(points, starts, ends) - radii
    assert gap.min() > -1e-9
    np.testing.assert_allclose(gap.min(axis=1), 0.0, atol=1e-12)
    lower, upper = capsule_bounds(starts, ends, radii)
    np.testing.assert_allclose(lower, [-0.2, -0.3, -0.3])
    np.testing.assert_allclose(upper, [1.2, 1.15, 0.3])
    assert np.all(points >= lower - 1e-12) and np.all(points <= upper + 1e-12)


def test_templates_are_trees_in_topological_order():
    counts = {name: get_template(name).num_joints for name in TEMPLATES}
    assert counts == {"biped": 22, "quadruped": 25, "tailed_biped": 27, "four_armed_biped": 30}
    with pytest.raises(ValueError, match="unknown skeleton template"):
        get_template("octopus")


def test_joint_tolerance_is_the_mean_radius_of_touching_capsules():
    tolerance = joint_tolerances(np.array([-1, 0, 1, 1]), np.array([9.0, 2.0, 4.0, 6.0]), 1.0)
    np.testing.assert_allclose(tolerance, [(1 + 2) / 2, (2 + 4 + 6) / 3, 4.0, 6.0])


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_character_is_normalised_and_its_points_are_on_its_capsules(template):
    character = random_character(np.random.default_rng(3), template, n_points=1500)
    skeleton, points = character.skeleton, character.points
    assert character.template == template and points.shape == (1500, 3)
    pairs = skeleton.bone_pairs()
    starts = np.concatenate([skeleton.joints[:1], skeleton.joints[pairs[:, 0]]])
    ends = np.concatenate([skeleton.joints[:1], skeleton.joints[pairs[:, 1]]])
    radii = np.concatenate([character.radii[:1], character.radii[pairs[:, 1]]])
    gap = segment_distances(points, starts, ends) - radii
    assert gap.min() > -1e-9
    np.testing.assert_allclose(gap.min(axis=1), 0.0, atol=1e-9)
    lower, upper = capsule_bounds(starts, ends, radii)
    assert abs(lower[1]) < 1e-12 and abs((upper - lower).max() - 1) < 1e-12
    np.testing.assert_allclose((lower + upper)[[0, 2]], 0.0, atol=1e-12)
    assert points[:, 1].min() > -1e-9 and points[:, 1].min() < 0.05
    expected = joint_tolerances(skeleton.parents, character.radii, character.radii[0])
    np.testing.assert_allclose(character.joint_tolerance, expected)


def test_mirrored_bones_share_their_length_after_posing():
    skeleton = random_character(np.random.default_rng(4), "biped").skeleton
    lengths = dict(zip([skeleton.names[c] for c in skeleton.bone_pairs()[:, 1]], skeleton.bone_lengths(), strict=True))
    for bone in ("elbow", "wrist", "knee", "ankle", "toe"):
        assert lengths[f"l_{bone}"] == pytest.approx(lengths[f"r_{bone}"], rel=1e-12)
    assert len(set(np.round(list(lengths.values()), 9))) > 5


def test_batches_are_deterministic_and_independent_of_batch_size():
    first = character_batch(step=3, batch_size=3, seed=7, n_points=200)
    again = character_batch(step=3, batch_size=2, seed=7, n_points=200)
    for a, b in zip(first[:2], again, strict=True):
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.skeleton.joints, b.skeleton.joints)
    other = character_batch(step=4, batch_size=1, seed=7, n_points=200)[0]
    assert not np.array_equal(other.points, first[0].points)
    fixed = character_batch(0, 4, seed=1, n_points=100, template="quadruped")
    assert {c.template for c in fixed} == {"quadruped"}
    with pytest.raises(ValueError, match="batch_size"):
        character_batch(0, 0)
