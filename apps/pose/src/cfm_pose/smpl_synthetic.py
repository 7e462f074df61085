"""Small synthetic models in SMPL's and SMPL-X's formats, for tests and demos without the
licensed files.

Each has its family's joints and kinematic tree (:mod:`cfm_pose.body_families`) in a T-pose (y up,
facing +z) and a mesh made of a ball around each joint plus a thin cylinder along each bone. Its
parts are exact by construction:

* ``J_regressor`` averages the vertices of each joint's ball, whose centroid is the joint, so the
  regressed rest joints equal the layout;
* ``weights`` bind a ball to its joint and a bone's cylinder to the bone's parent joint, so every
  part moves rigidly with its joint under linear blend skinning;
* ``shapedirs[..., k] = v_template A_k^T`` for small random symmetric ``A_k``: shape parameters
  stretch the body linearly (and the joints with it); the SMPL-X model has 20 such directions,
  which smplx reads as 10 shape and 10 expression directions (SMPL-X v1.0's layout);
* ``posedirs`` are small random offsets (``pose_blend_scale``), so pose blend shapes are exercised;
* ``kintree_table[0, 0]`` is ``2**32 - 1``, as in the original files.

The SMPL-X model also has random orthogonal hand PCA bases, random (non-flat) mean hand poses,
and facial landmarks (plain and contour) on faces of the head's ball.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from cfm_pose.body_families import (
    BODY_JOINTS,
    FINGERS,
    HEAD,
    LEFT_WRIST,
    RIGHT_WRIST,
    SMPL,
    SMPLX,
    BodyFamily,
)
from cfm_pose.smpl_model import write_smpl_model

SYNTHETIC_REST_JOINTS = np.array(
    [
        [0.0, 0.95, 0.0],
        [0.09, 0.85, 0.0],
        [-0.09, 0.85, 0.0],
        [0.0, 1.05, 0.0],
        [0.1, 0.5, 0.0],
        [-0.1, 0.5, 0.0],
        [0.0, 1.18, 0.0],
        [0.1, 0.1, 0.0],
        [-0.1, 0.1, 0.0],
        [0.0, 1.3, 0.0],
        [0.1, 0.03, 0.12],
        [-0.1, 0.03, 0.12],
        [0.0, 1.5, 0.0],
        [0.08, 1.42, 0.0],
        [-0.08, 1.42, 0.0],
        [0.0, 1.62, 0.03],
        [0.18, 1.42, 0.0],
        [-0.18, 1.42, 0.0],
        [0.45, 1.42, 0.0],
        [-0.45, 1.42, 0.0],
        [0.7, 1.42, 0.0],
        [-0.7, 1.42, 0.0],
        [0.8, 1.42, 0.0],
        [-0.8, 1.42, 0.0],
    ]
)
"""The synthetic SMPL model's rest joints."""
FINGER_BASES = {
    "index": (0.06, 0.03),
    "middle": (0.065, 0.01),
    "pinky": (0.05, -0.03),
    "ring": (0.06, -0.01),
    "thumb": (0.02, 0.05),
}
"""Outward (x) and forward (z) offset of each finger's first joint from the wrist."""
FINGER_SEGMENT = 0.025


def _smplx_rest_joints() -> np.ndarray:
    joints = list(SYNTHETIC_REST_JOINTS[:BODY_JOINTS])
    joints += [[0.0, 1.57, 0.06], [0.03, 1.65, 0.07], [-0.03, 1.65, 0.07]]  # jaw, eyes
    for wrist, side in ((LEFT_WRIST, 1.0), (RIGHT_WRIST, -1.0)):
        for finger in FINGERS:
            outward, forward = FINGER_BASES[finger]
            for segment in range(3):
                offset = [side * (outward + segment * FINGER_SEGMENT), 0.0, forward]
                joints.append(SYNTHETIC_REST_JOINTS[wrist] + offset)
    return np.array(joints)


SYNTHETIC_SMPLX_REST_JOINTS = _smplx_rest_joints()
"""The synthetic SMPL-X model's rest joints (SMPL's first 22, jaw, eyes, three joints a finger)."""


def _bone_cylinder(start: np.ndarray, end: np.ndarray, radius: float, sections: int) -> trimesh.Trimesh:
    direction = end - start
    cylinder = trimesh.creation.cylinder(radius=radius, height=float(np.linalg.norm(direction)), sections=sections)
    transform = trimesh.geometry.align_vectors([0.0, 0.0, 1.0], direction)
    transform[:3, 3] = 0.5 * (start + end)
    cylinder.apply_transform(transform)
    return cylinder


def _synthetic_body(
    family: BodyFamily,
    rest_joints: np.ndarray,
    n_shape: int,
    rng: np.random.Generator,
    ball_radius: float,
    ball_subdivisions: int,
    bone_radius: float,
    sections: int,
    pose_blend_scale: float,
) -> dict[str, np.ndarray]:
    """The arrays every family has (module doc), with ``n_shape`` shape directions."""
    joint_count = family.num_joints
    parts, owners, ball_of = [], [], []
    for joint, centre in enumerate(rest_joints):
        ball = trimesh.creation.icosphere(subdivisions=ball_subdivisions, radius=ball_radius)
        ball.apply_translation(centre)
        parts.append(ball)
        owners.append(np.full(len(ball.vertices), joint))
        ball_of.append(joint)
    for child in range(1, joint_count):
        parent = family.parents[child]
        parts.append(_bone_cylinder(rest_joints[parent], rest_joints[child], bone_radius, sections))
        owners.append(np.full(len(parts[-1].vertices), parent))
        ball_of.append(-1)
    mesh = trimesh.util.concatenate(parts)
    vertices = np.asarray(mesh.vertices)
    count = len(vertices)
    part_of_vertex = np.concatenate([np.full(len(p.vertices), k) for k, p in enumerate(parts)])

    regressor = np.zeros((joint_count, count))
    for joint in range(joint_count):
        members = part_of_vertex == ball_of.index(joint)
        regressor[joint, members] = 1.0 / members.sum()
    weights = np.zeros((count, joint_count))
    weights[np.arange(count), np.concatenate(owners)] = 1.0

    stretch = rng.normal(scale=0.03, size=(n_shape, 3, 3))
    stretch = 0.5 * (stretch + stretch.transpose(0, 2, 1))
    shapedirs = np.einsum("vi,kji->vjk", vertices, stretch)
    posedirs = rng.normal(scale=pose_blend_scale, size=(count, 3, family.pose_basis))
    kintree = np.stack([family.parents, np.arange(joint_count)]).astype(np.int64)
    kintree[0, 0] = 2**32 - 1
    return {
        "v_template": vertices,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree,
        "f": np.asarray(mesh.faces, np.int64),
    }


def synthetic_smpl_arrays(
    n_betas: int = 10,
    seed: int = 0,
    ball_radius: float = 0.04,
    bone_radius: float = 0.025,
    sections: int = 8,
    pose_blend_scale: float = 1e-3,
) -> dict[str, np.ndarray]:
    """The arrays of the synthetic SMPL model (module doc), keyed like an SMPL file; each
    joint's ball is a 42-vertex icosphere, the balls come first in joint order."""
    if n_betas < 1:
        raise ValueError(f"n_betas must be at least 1, got {n_betas}")
    return _synthetic_body(
        SMPL,
        SYNTHETIC_REST_JOINTS,
        n_betas,
        np.random.default_rng(seed),
        ball_radius,
        1,
        bone_radius,
        sections,
        pose_blend_scale,
    )


def synthetic_smplx_arrays(
    seed: int = 0,
    ball_radius: float = 0.012,
    bone_radius: float = 0.008,
    sections: int = 4,
    pose_blend_scale: float = 1e-3,
) -> dict[str, np.ndarray]:
    """The arrays of the synthetic SMPL-X model (module doc), keyed like an SMPL-X file; each
    joint's ball is a 12-vertex icosahedron, the balls come first in joint order."""
    rng = np.random.default_rng(seed)
    arrays = _synthetic_body(
        SMPLX, SYNTHETIC_SMPLX_REST_JOINTS, 20, rng, ball_radius, 0, bone_radius, sections, pose_blend_scale
    )
    for side in "lr":
        arrays[f"hands_components{side}"] = np.linalg.qr(rng.normal(size=(45, 45)))[0]
        arrays[f"hands_mean{side}"] = rng.normal(scale=0.3, size=45)
    head_faces = np.flatnonzero(np.isin(arrays["f"], np.flatnonzero(arrays["J_regressor"][HEAD] > 0)).all(axis=1))
    arrays["lmk_faces_idx"] = head_faces[:5]
    arrays["lmk_bary_coords"] = np.full((5, 3), 1.0 / 3.0)
    arrays["dynamic_lmk_faces_idx"] = head_faces[5:11].reshape(2, 3)
    arrays["dynamic_lmk_bary_coords"] = np.full((2, 3, 3), 1.0 / 3.0)
    return arrays


def write_synthetic_smpl_model(path: str | Path, n_betas: int = 10, seed: int = 0) -> Path:
    """Write the synthetic SMPL model (module doc) as a clean ``.pkl`` that smplx loads."""
    return write_smpl_model(synthetic_smpl_arrays(n_betas, seed), path)


def write_synthetic_smplx_model(path: str | Path, seed: int = 0) -> Path:
    """Write the synthetic SMPL-X model (module doc) as a clean ``.npz`` or ``.pkl`` (by
    suffix) that ``smplx.SMPLX`` loads."""
    return write_smpl_model(synthetic_smplx_arrays(seed), path)
