"""What the flow model generates, for the two kinds of skeleton.

**Fixed topology** (one template, SMPL's 24 joints or SMPL-X's 55): the data vector is the joints in the
skeleton's fixed order, flattened: ``x = joints.reshape(B, J * 3)``; the condition is the shape's
surface points ``(B, N, 3)``.

**Variable topology** (after PDT): the data is one 3-D point per input surface point,
``x (B, N, 3)``, paired row by row with the input points ``(B, N, 3)`` that condition it. The
training target of a surface point is a joint of the bone it belongs to:

* ``rule="bone"`` (default): the bone segment nearest to the point, then that bone's end (parent or
  child joint) nearer along the bone, i.e. the parent when the point projects on the first half of
  the segment. Points thus follow the skeleton's geometry and a point on a forearm never jumps to
  a nearby hip joint; every joint, leaves included, collects the points around its half-bones.
* ``rule="joint"``: the nearest joint in Euclidean distance.

A trained model moves every point onto a joint; :func:`cfm_pose.clustering.extract_joints` turns
the generated points back into a joint set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cfm_pose.capsules import segment_distances
from cfm_pose.skeleton import Skeleton

PDT_RULES = ("bone", "joint")


def joints_to_vector(joints: torch.Tensor) -> torch.Tensor:
    """``(B, J, 3) -> (B, J * 3)``."""
    if joints.ndim != 3 or joints.shape[-1] != 3:
        raise ValueError(f"joints must have shape (B, J, 3), got {tuple(joints.shape)}")
    return joints.reshape(joints.shape[0], -1)


def vector_to_joints(x: torch.Tensor) -> torch.Tensor:
    """``(B, J * 3) -> (B, J, 3)``."""
    if x.ndim != 2 or x.shape[-1] % 3:
        raise ValueError(f"a joint vector must have shape (B, J*3), got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1, 3)


def pdt_targets(points: np.ndarray, skeleton: Skeleton, rule: str = "bone") -> np.ndarray:
    """``(N, 3)``: the joint each surface point of ``points (N, 3)`` moves to (module doc)."""
    if rule not in PDT_RULES:
        raise ValueError(f"unknown PDT target rule {rule!r}; choose from {PDT_RULES}")
    points = np.asarray(points, np.float64)
    if skeleton.num_joints == 1 or rule == "joint":
        distances = np.linalg.norm(points[:, None] - skeleton.joints[None], axis=-1)
        return skeleton.joints[distances.argmin(axis=1)]
    pairs = skeleton.bone_pairs()
    starts, ends = skeleton.joints[pairs[:, 0]], skeleton.joints[pairs[:, 1]]
    nearest = segment_distances(points, starts, ends).argmin(axis=1)
    direction = ends[nearest] - starts[nearest]
    along = ((points - starts[nearest]) * direction).sum(-1) / np.maximum((direction**2).sum(-1), 1e-300)
    return np.where((along <= 0.5)[:, None], starts[nearest], ends[nearest])


def _stack(arrays: Sequence[np.ndarray], what: str) -> torch.Tensor:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"cannot batch {what} of different shapes {sorted(shapes)}")
    return torch.as_tensor(np.stack(arrays), dtype=torch.float32)


def fixed_topology_batch(
    points: Sequence[np.ndarray], skeletons: Sequence[Skeleton]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points (B, N, 3), x (B, J * 3))`` for shapes whose skeletons share one joint layout."""
    if len({s.names for s in skeletons}) != 1:
        raise ValueError("fixed-topology batches need skeletons of one template (same joints)")
    joints = _stack([s.joints for s in skeletons], "skeletons")
    return _stack(points, "point sets"), joints_to_vector(joints)


def pdt_batch(
    points: Sequence[np.ndarray], skeletons: Sequence[Skeleton], rule: str = "bone"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points (B, N, 3), x (B, N, 3))``: input points and their PDT targets (module doc)."""
    targets = [pdt_targets(p, s, rule) for p, s in zip(points, skeletons, strict=True)]
    return _stack(points, "point sets"), _stack(targets, "targets")
