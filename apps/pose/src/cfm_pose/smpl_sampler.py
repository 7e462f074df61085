"""SMPL and SMPL-X bodies through smplx: random or motion-capture shapes and poses -> surface
points and joints.

Each body gets shape parameters ``betas`` and a pose vector (the axis-angle rotations of every
non-root joint, :mod:`cfm_pose.body_families`), either random (``betas ~ N(0, beta_std^2)``, each
pose component ``~ N(0, pose_std^2)``: SMPL's 23 joints, or SMPL-X's 21 body joints, jaw, eyes
and 30 finger joints about the flat hand) or from an AMASS-style ``.npz``
(:mod:`cfm_pose.smpl_motion`): a uniformly random frame, with the file's ``betas`` when it has
them. The root orientation is always zero, so bodies stand upright in the model's frame, and an
SMPL-X body's expression is zero. smplx poses the mesh on the CPU (:mod:`cfm_pose.body_model`);
``n_points`` points are sampled uniformly on its surface, and the family's regressed joints
(SMPL: 24, SMPL-X: 55) are the ground truth. With ``normalize=True`` points and joints go
through RigNet's normalisation of the posed vertices.

Body ``i`` of step ``s`` under seed ``k`` is drawn from ``numpy.random.default_rng([k, s, i])``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cfm_pose.body_families import BodyFamily
from cfm_pose.body_model import build_body_model, pose_bodies
from cfm_pose.normalize import Normalization
from cfm_pose.smpl_model import read_smpl_model, resolve_smpl_path
from cfm_pose.smpl_motion import read_motion
from cfm_pose.surface import sample_mesh_surface


@dataclass(frozen=True, eq=False)
class SmplBodies:
    """A batch of posed bodies: surface ``points (B, N, 3)``, ``joints (B, J, 3)``,
    ``vertices (B, V, 3)`` (all in the same, possibly normalised, frame) and ``faces (F, 3)``."""

    points: np.ndarray
    joints: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray


class SmplBodySampler:
    """Posed SMPL or SMPL-X bodies from a model file (original, converted or synthetic; module
    doc); ``family`` says which.

    Args:
        model_path: an SMPL / SMPL-X ``.pkl`` or ``.npz`` file, or a folder holding
            ``SMPL_<GENDER>.pkl`` or ``SMPLX_<GENDER>.npz`` (:func:`~cfm_pose.smpl_model.
            resolve_smpl_path`).
        gender: picks the file inside a folder.
        num_betas: shape parameters used (at most what smplx takes from the model).
        n_points: surface points per body.
        beta_std, pose_std: spreads of the random shapes and poses.
        motion_path: an AMASS-style ``.npz`` to take poses (and betas, when present) from.
        normalize: apply RigNet's normalisation per body.
        model_type: ``"auto"`` (detect from the file), ``"smpl"`` or ``"smplx"`` (refuse the
            other family).
    """

    def __init__(
        self,
        model_path: str | Path,
        gender: str = "neutral",
        num_betas: int = 10,
        n_points: int = 2048,
        beta_std: float = 1.0,
        pose_std: float = 0.2,
        motion_path: str | Path | None = None,
        normalize: bool = True,
        model_type: str = "auto",
    ) -> None:
        self.model_path = resolve_smpl_path(model_path, gender, model_type)
        model = read_smpl_model(self.model_path, model_type)
        self.family: BodyFamily = model.family
        self.model = build_body_model(model, num_betas, gender)
        self.num_betas = self.model.num_betas
        self.faces = model.arrays["f"]
        self.n_points, self.beta_std, self.pose_std = n_points, beta_std, pose_std
        self.normalize = normalize
        self.motion = read_motion(Path(motion_path), self.family) if motion_path else None

    def _parameters(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(betas (num_betas,), pose (family.pose_dim,))`` of one body."""
        betas = rng.normal(scale=self.beta_std, size=self.num_betas)
        if self.motion is None:
            return betas, rng.normal(scale=self.pose_std, size=self.family.pose_dim)
        if self.motion.betas is not None:
            betas = np.zeros(self.num_betas)
            used = min(self.num_betas, len(self.motion.betas))
            betas[:used] = self.motion.betas[:used]
        return betas, self.motion.poses[rng.integers(len(self.motion.poses))]

    def bodies(self, step: int, batch_size: int, seed: int = 0, rows: slice = slice(None)) -> SmplBodies:
        """The ``batch_size`` bodies of step ``step`` (deterministic; module doc), or only those at
        positions ``rows`` of the batch."""
        if step < 0 or batch_size <= 0:
            raise ValueError(f"need step >= 0 and batch_size > 0, got {step} and {batch_size}")
        rngs = [np.random.default_rng([seed, step, i]) for i in range(batch_size)[rows]]
        betas, poses = map(np.stack, zip(*(self._parameters(r) for r in rngs), strict=True))
        vertices, joints = pose_bodies(self.model, self.family, betas, poses)
        points = np.stack(
            [sample_mesh_surface(v, self.faces, self.n_points, r) for v, r in zip(vertices, rngs, strict=True)]
        )
        if self.normalize:
            maps = [Normalization.rignet_of_points(v) for v in vertices]
            points, joints, vertices = (
                np.stack([m.apply(a) for m, a in zip(maps, arr, strict=True)]) for arr in (points, joints, vertices)
            )
        return SmplBodies(points, joints, vertices, self.faces)
