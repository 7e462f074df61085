"""A skeleton: joint positions plus a parent index per joint, validated to be a rooted tree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def check_parents(parents: np.ndarray, names: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` unless ``parents`` describes one rooted tree.

    ``parents[j]`` is the index of joint ``j``'s parent, ``-1`` for the root. The checks: a 1-D
    integer array, exactly one root, every other entry an index in ``[0, J)`` that is not the joint
    itself, and no cycles (every joint reaches the root by following parents).
    """

    def label(j: int) -> str:
        return f"joint {j} ({names[j]!r})" if names is not None else f"joint {j}"

    if parents.ndim != 1:
        raise ValueError(f"parents must be a 1-D array, got shape {parents.shape}")
    if not np.issubdtype(parents.dtype, np.integer):
        raise ValueError(f"parents must hold integers, got dtype {parents.dtype}")
    count = len(parents)
    roots = np.flatnonzero(parents == -1)
    if len(roots) != 1:
        raise ValueError(f"a skeleton needs exactly one root (parent -1), found {len(roots)}")
    bad = np.flatnonzero((parents < -1) | (parents >= count))
    if len(bad):
        raise ValueError(f"{label(bad[0])} has parent index {parents[bad[0]]} outside [0, {count})")
    for joint in range(count):
        seen = {joint}
        node = parents[joint]
        while node != -1:
            if node in seen:
                raise ValueError(f"the hierarchy has a cycle through {label(joint)}")
            seen.add(node)
            node = parents[node]


@dataclass(frozen=True, eq=False)
class Skeleton:
    """Joints ``(J, 3)`` and their parents ``(J,)`` (``-1`` marks the single root), with names.

    Construction validates the tree (:func:`check_parents`), the shapes and finiteness, and that
    names are unique; any problem raises ``ValueError``. ``names`` defaults to ``joint_0 ...``.
    """

    joints: np.ndarray
    parents: np.ndarray
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        joints = np.asarray(self.joints, dtype=np.float64)
        parents = np.asarray(self.parents)
        if joints.ndim != 2 or joints.shape[1] != 3:
            raise ValueError(f"joints must have shape (J, 3), got {joints.shape}")
        if not np.isfinite(joints).all():
            raise ValueError("joint positions contain NaN or inf")
        if parents.shape != (len(joints),):
            raise ValueError(f"parents must have shape ({len(joints)},), got {parents.shape}")
        names = tuple(self.names) or tuple(f"joint_{j}" for j in range(len(joints)))
        if len(names) != len(joints):
            raise ValueError(f"{len(names)} names for {len(joints)} joints")
        if len(set(names)) != len(names):
            raise ValueError("joint names must be unique")
        check_parents(parents, names)
        object.__setattr__(self, "joints", joints)
        object.__setattr__(self, "parents", parents.astype(np.int64))
        object.__setattr__(self, "names", names)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def root(self) -> int:
        return int(np.flatnonzero(self.parents == -1)[0])

    def bone_pairs(self) -> np.ndarray:
        """``(J-1, 2)`` integer ``(parent, child)`` pairs, in child-index order."""
        children = np.flatnonzero(self.parents >= 0)
        return np.stack([self.parents[children], children], axis=1)

    def bones(self) -> np.ndarray:
        """``(J-1, 2, 3)`` bone segments: start (parent joint) and end (child joint) positions."""
        return self.joints[self.bone_pairs()]

    def bone_lengths(self) -> np.ndarray:
        """``(J-1,)`` Euclidean bone lengths, in :meth:`bone_pairs` order."""
        segments = self.bones()
        return np.linalg.norm(segments[:, 1] - segments[:, 0], axis=-1)
