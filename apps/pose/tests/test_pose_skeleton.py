"""Skeleton validation and bone geometry."""

import numpy as np
import pytest
from cfm_pose.skeleton import Skeleton

JOINTS = np.array([[0.0, 0, 0], [0, 1, 0], [0, 1, 2], [3, 1, 4]])


def test_bones_and_lengths_of_a_small_tree():
    skeleton = Skeleton(JOINTS, np.array([-1, 0, 1, 1]), ("a", "b", "c", "d"))
    assert skeleton.root == 0
    np.testing.assert_array_equal(skeleton.bone_pairs(), [[0, 1], [1, 2], [1, 3]])
    np.testing.assert_allclose(skeleton.bones()[2], [[0, 1, 0], [3, 1, 4]])
    np.testing.assert_allclose(skeleton.bone_lengths(), [1.0, 2.0, 5.0])


def test_default_names_and_root_in_the_middle():
    skeleton = Skeleton(JOINTS, np.array([1, -1, 1, 2]))
    assert skeleton.root == 1
    assert skeleton.names == ("joint_0", "joint_1", "joint_2", "joint_3")


@pytest.mark.parametrize(
    ("parents", "message"),
    [
        ([-1, 0, -1, 1], "exactly one root"),
        ([0, 0, 1, 1], "exactly one root"),
        ([-1, 2, 3, 1], "cycle"),
        ([-1, 1, 0, 0], "cycle"),
        ([-1, 0, 7, 0], "outside"),
        ([-1, 0, -3, 0], "outside"),
    ],
)
def test_invalid_hierarchies_are_rejected(parents, message):
    with pytest.raises(ValueError, match=message):
        Skeleton(JOINTS, np.array(parents))


def test_invalid_arrays_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        Skeleton(JOINTS[:, :2], np.array([-1, 0, 1, 1]))
    with pytest.raises(ValueError, match="parents must have shape"):
        Skeleton(JOINTS, np.array([-1, 0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        Skeleton(np.where(JOINTS == 4, np.nan, JOINTS), np.array([-1, 0, 1, 1]))
    with pytest.raises(ValueError, match="unique"):
        Skeleton(JOINTS, np.array([-1, 0, 1, 1]), ("a", "b", "b", "c"))
    with pytest.raises(ValueError, match="integers"):
        Skeleton(JOINTS, np.array([-1.0, 0, 1, 1]))
