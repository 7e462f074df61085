"""Per-joint tolerance on a mesh: the local shape radius around each joint (for IoU / P / R).

RigNet's evaluation measures the "local shape diameter" at a ground-truth joint by casting rays
from the joint perpendicular to each bone that touches it (14 per bone, evenly spread around the
bone) and averaging the distances to the first surface hit. This module does the same with
trimesh's ray tests. Rays that hit nothing are ignored; a joint none of whose rays hit (a joint
outside the mesh, or a skeleton of one joint) gets its distance to the nearest surface point.
"""

from __future__ import annotations

import numpy as np
import trimesh

from cfm_pose.procedural import axis_angle_matrix
from cfm_pose.skeleton import Skeleton


def _perpendicular_directions(bone: np.ndarray, count: int) -> np.ndarray:
    """``count`` unit vectors perpendicular to ``bone``, evenly spaced around it."""
    axis = bone / np.linalg.norm(bone)
    helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 else np.array([0, 1.0, 0])
    first = np.cross(axis, helper)
    first /= np.linalg.norm(first)
    angles = 2 * np.pi * np.arange(count) / count
    return np.stack([axis_angle_matrix(axis, a) @ first for a in angles])


def local_shape_radius(mesh: trimesh.Trimesh, skeleton: Skeleton, rays_per_bone: int = 14) -> np.ndarray:
    """``(J,)`` mean first-hit distance of rays cast from each joint across its bones."""
    origins, directions, owners = [], [], []
    for parent, child in skeleton.bone_pairs():
        bone = skeleton.joints[child] - skeleton.joints[parent]
        if np.linalg.norm(bone) == 0:
            continue
        ring = _perpendicular_directions(bone, rays_per_bone)
        for joint in (parent, child):
            origins.append(np.repeat(skeleton.joints[joint][None], rays_per_bone, axis=0))
            directions.append(ring)
            owners.append(np.full(rays_per_bone, joint))
    total = np.zeros(skeleton.num_joints)
    hits = np.zeros(skeleton.num_joints)
    if origins:
        origins_all, owners_all = np.concatenate(origins), np.concatenate(owners)
        locations, ray_index, _ = mesh.ray.intersects_location(
            origins_all, np.concatenate(directions), multiple_hits=False
        )
        distance = np.linalg.norm(locations - origins_all[ray_index], axis=1)
        np.add.at(total, owners_all[ray_index], distance)
        np.add.at(hits, owners_all[ray_index], 1)
    radius = np.divide(total, hits, out=np.zeros_like(total), where=hits > 0)
    missing = hits == 0
    if missing.any():
        _, nearest, _ = trimesh.proximity.closest_point(mesh, skeleton.joints[missing])
        radius[missing] = nearest
    return radius
