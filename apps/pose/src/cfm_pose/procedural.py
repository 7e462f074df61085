"""Procedural articulated characters: a random skeleton from a template and a capsule surface.

A character is built from a :class:`~cfm_pose.templates.SkeletonTemplate` in four steps:

1. **Proportions.** Each bone's rest length and capsule radius are multiplied by factors drawn
   uniformly from ``1 +- length_jitter`` and ``1 +- radius_jitter``; mirrored bones (``l_x`` and
   ``r_x``) share their factors, and one overall girth factor scales every radius.
2. **Pose.** Every non-root joint gets a local rotation about a uniformly random axis by an angle
   drawn from ``N(0, pose_std_j^2)``; the root turns about the vertical axis by a uniform angle in
   ``+- yaw_range``. Forward kinematics: ``G_j = G_parent(j) L_j`` and
   ``p_j = p_parent(j) + G_parent(j) offset_j``, so a joint's rotation swings its children's bones.
3. **Surface.** One capsule per bone (from the parent joint to the child joint, with the bone's
   radius) plus a ball at the root; ``n_points`` points are sampled uniformly on the outer surface
   of their union (:mod:`cfm_pose.capsules`).
4. **Normalisation.** RigNet's map (:mod:`cfm_pose.normalize`) computed from the exact bounding box
   of the capsule union, applied to joints, points and radii alike.

Each joint's tolerance (used by the joint IoU / precision / recall) is the mean radius of the
capsules that touch it: the distance from the joint to the surface around it, which is what
RigNet's "local shape diameter" ray test measures on a mesh.

Everything is deterministic: character ``i`` of step ``s`` under seed ``k`` is generated from
``numpy.random.default_rng([k, s, i])``, whatever the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfm_pose.capsules import capsule_bounds, sample_capsule_union_surface
from cfm_pose.normalize import Normalization
from cfm_pose.skeleton import Skeleton
from cfm_pose.templates import TEMPLATES, SkeletonTemplate, get_template


@dataclass(frozen=True, eq=False)
class Character:
    """A generated character (normalised): its skeleton, surface points ``(N, 3)``, the radius
    ``(J,)`` of the capsule around the bone ending at each joint (the root's entry: the root ball)
    and the per-joint tolerance ``(J,)``."""

    template: str
    skeleton: Skeleton
    points: np.ndarray
    radii: np.ndarray
    joint_tolerance: np.ndarray


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """The ``(3, 3)`` rotation by ``angle`` radians about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = axis
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _mirror_group(name: str) -> str:
    return name[2:] if name[:2] in ("l_", "r_") else name


def _shared_factors(names: tuple[str, ...], jitter: float, rng: np.random.Generator) -> np.ndarray:
    """One uniform factor in ``1 +- jitter`` per mirror group, spread to the joints of the group."""
    groups = sorted({_mirror_group(n) for n in names})
    drawn = dict(zip(groups, rng.uniform(1 - jitter, 1 + jitter, len(groups)), strict=True))
    return np.array([drawn[_mirror_group(n)] for n in names])


def _pose_joints(
    template: SkeletonTemplate, offsets: np.ndarray, yaw_range: float, rng: np.random.Generator
) -> np.ndarray:
    """Forward kinematics with random local rotations (module doc, step 2)."""
    count = template.num_joints
    axes = rng.normal(size=(count, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angles = rng.normal(size=count) * template.pose_std
    yaw = rng.uniform(-yaw_range, yaw_range)
    global_rot = np.empty((count, 3, 3))
    joints = np.empty((count, 3))
    global_rot[0] = axis_angle_matrix(np.array([0.0, 1.0, 0.0]), yaw)
    joints[0] = template.offsets[0]
    for j in range(1, count):
        parent = template.parents[j]
        joints[j] = joints[parent] + global_rot[parent] @ offsets[j]
        global_rot[j] = global_rot[parent] @ axis_angle_matrix(axes[j], angles[j])
    return joints


def joint_tolerances(parents: np.ndarray, bone_radii: np.ndarray, root_radius: float) -> np.ndarray:
    """Mean radius of the capsules touching each joint (bones ``parent -> j`` and the root ball)."""
    total = np.zeros(len(parents))
    count = np.zeros(len(parents))
    for child in np.flatnonzero(parents >= 0):
        for joint in (parents[child], child):
            total[joint] += bone_radii[child]
            count[joint] += 1
    root = int(np.flatnonzero(parents < 0)[0])
    total[root] += root_radius
    count[root] += 1
    return total / count


def random_character(
    rng: np.random.Generator,
    template: str | None = None,
    n_points: int = 2048,
    length_jitter: float = 0.2,
    radius_jitter: float = 0.2,
    yaw_range: float = 0.5,
) -> Character:
    """A random character (module doc); ``template=None`` picks a template uniformly."""
    name = template if template is not None else str(rng.choice(sorted(TEMPLATES)))
    tpl = get_template(name)
    offsets = tpl.offsets * _shared_factors(tpl.names, length_jitter, rng)[:, None]
    radii = tpl.radii * _shared_factors(tpl.names, radius_jitter, rng)
    radii *= rng.uniform(0.8, 1.25)
    joints = _pose_joints(tpl, offsets, yaw_range, rng)

    children = np.flatnonzero(tpl.parents >= 0)
    starts = np.concatenate([joints[:1], joints[tpl.parents[children]]])
    ends = np.concatenate([joints[:1], joints[children]])
    capsule_radii = np.concatenate([radii[:1], radii[children]])
    points = sample_capsule_union_surface(starts, ends, capsule_radii, n_points, rng)

    norm = Normalization.rignet(*capsule_bounds(starts, ends, capsule_radii))
    tolerance = joint_tolerances(tpl.parents, radii, radii[0]) * norm.scale
    skeleton = Skeleton(norm.apply(joints), tpl.parents, tpl.names)
    return Character(name, skeleton, norm.apply(points), radii * norm.scale, tolerance)


def character_batch(
    step: int,
    batch_size: int,
    seed: int = 0,
    n_points: int = 2048,
    template: str | None = None,
    rows: slice = slice(None),
) -> list[Character]:
    """The ``batch_size`` characters of training step ``step`` (deterministic; module doc), or
    only those at positions ``rows`` of the batch."""
    if step < 0 or batch_size <= 0:
        raise ValueError(f"need step >= 0 and batch_size > 0, got {step} and {batch_size}")
    return [
        random_character(np.random.default_rng([seed, step, i]), template, n_points) for i in range(batch_size)[rows]
    ]
