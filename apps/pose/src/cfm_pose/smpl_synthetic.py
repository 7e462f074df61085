"""A small synthetic model in SMPL's format, for tests and demos without the licensed files.

It has SMPL's 24 joints and kinematic tree in a T-pose (y up, facing +z) and a mesh made of a ball
around each joint plus a thin cylinder along each bone. Its parts are exact by construction:

* ``J_regressor`` averages the vertices of each joint's ball, whose centroid is the joint, so the
  regressed rest joints equal the layout;
* ``weights`` bind a ball to its joint and a bone's cylinder to the bone's parent joint, so every
  part moves rigidly with its joint under linear blend skinning;
* ``shapedirs[..., k] = v_template A_k^T`` for small random symmetric ``A_k``: shape parameters
  stretch the body linearly (and the joints with it);
* ``posedirs`` are small random offsets (``pose_blend_scale``), so pose blend shapes are exercised;
* ``kintree_table[0, 0]`` is ``2**32 - 1``, as in the original files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from cfm_pose.smpl_model import SMPL_NUM_JOINTS, SMPL_PARENTS, SMPL_POSE_BASIS, write_smpl_model

SYNTHETIC_REST_JOINTS = np.array([
    [0.0, 0.95, 0.0], [0.09, 0.85, 0.0], [-0.09, 0.85, 0.0], [0.0, 1.05, 0.0],
    [0.1, 0.5, 0.0], [-0.1, 0.5, 0.0], [0.0, 1.18, 0.0], [0.1, 0.1, 0.0], [-0.1, 0.1, 0.0],
    [0.0, 1.3, 0.0], [0.1, 0.03, 0.12], [-0.1, 0.03, 0.12], [0.0, 1.5, 0.0], [0.08, 1.42, 0.0],
    [-0.08, 1.42, 0.0], [0.0, 1.62, 0.03], [0.18, 1.42, 0.0], [-0.18, 1.42, 0.0],
    [0.45, 1.42, 0.0], [-0.45, 1.42, 0.0], [0.7, 1.42, 0.0], [-0.7, 1.42, 0.0],
    [0.8, 1.42, 0.0], [-0.8, 1.42, 0.0],
])


def _bone_cylinder(start: np.ndarray, end: np.ndarray, radius: float, sections: int
                   ) -> trimesh.Trimesh:
    direction = end - start
    cylinder = trimesh.creation.cylinder(radius=radius, height=float(np.linalg.norm(direction)),
                                         sections=sections)
    transform = trimesh.geometry.align_vectors([0.0, 0.0, 1.0], direction)
    transform[:3, 3] = 0.5 * (start + end)
    cylinder.apply_transform(transform)
    return cylinder


def synthetic_smpl_arrays(n_betas: int = 10, seed: int = 0, ball_radius: float = 0.04,
                          bone_radius: float = 0.025, sections: int = 8,
                          pose_blend_scale: float = 1e-3) -> dict[str, np.ndarray]:
    """The arrays of the synthetic model (module doc), keyed like an SMPL file."""
    if n_betas < 1:
        raise ValueError(f"n_betas must be at least 1, got {n_betas}")
    rng = np.random.default_rng(seed)
    parts, owners, ball_of = [], [], []
    for joint, centre in enumerate(SYNTHETIC_REST_JOINTS):
        ball = trimesh.creation.icosphere(subdivisions=1, radius=ball_radius)
        ball.apply_translation(centre)
        parts.append(ball)
        owners.append(np.full(len(ball.vertices), joint))
        ball_of.append(joint)
    for child in range(1, SMPL_NUM_JOINTS):
        parent = SMPL_PARENTS[child]
        parts.append(_bone_cylinder(SYNTHETIC_REST_JOINTS[parent], SYNTHETIC_REST_JOINTS[child],
                                    bone_radius, sections))
        owners.append(np.full(len(parts[-1].vertices), parent))
        ball_of.append(-1)
    mesh = trimesh.util.concatenate(parts)
    vertices = np.asarray(mesh.vertices)
    count = len(vertices)
    part_of_vertex = np.concatenate([np.full(len(p.vertices), k) for k, p in enumerate(parts)])

    regressor = np.zeros((SMPL_NUM_JOINTS, count))
    for joint in range(SMPL_NUM_JOINTS):
        members = part_of_vertex == ball_of.index(joint)
        regressor[joint, members] = 1.0 / members.sum()
    weights = np.zeros((count, SMPL_NUM_JOINTS))
    weights[np.arange(count), np.concatenate(owners)] = 1.0

    stretch = rng.normal(scale=0.03, size=(n_betas, 3, 3))
    stretch = 0.5 * (stretch + stretch.transpose(0, 2, 1))
    shapedirs = np.einsum("vi,kji->vjk", vertices, stretch)
    posedirs = rng.normal(scale=pose_blend_scale, size=(count, 3, SMPL_POSE_BASIS))
    kintree = np.stack([SMPL_PARENTS, np.arange(SMPL_NUM_JOINTS)]).astype(np.int64)
    kintree[0, 0] = 2**32 - 1
    return {
        "v_template": vertices, "shapedirs": shapedirs, "posedirs": posedirs,
        "J_regressor": regressor, "weights": weights, "kintree_table": kintree,
        "f": np.asarray(mesh.faces, np.int64),
    }


def write_synthetic_smpl_model(path: str | Path, n_betas: int = 10, seed: int = 0) -> Path:
    """Write the synthetic model (module doc) as a clean SMPL ``.pkl`` that smplx loads."""
    return write_smpl_model(synthetic_smpl_arrays(n_betas, seed), path)
