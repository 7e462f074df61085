"""SMPL bodies through smplx: random or motion-capture shapes and poses -> surface points, joints.

Each body gets shape parameters ``betas`` and a body pose, either random (``betas ~ N(0,
beta_std^2)``, each axis-angle component of the 23 body joints ``~ N(0, pose_std^2)``) or from an
AMASS-style ``.npz`` (``poses (T, P)`` and optionally ``betas``): a uniformly random frame, whose
``poses`` row is read as SMPL's 24 joints when ``P == 72`` and otherwise (SMPL-H ``P = 156``,
SMPL-X ``P = 165``; any other width is refused) as root plus 21 body joints with SMPL's two hand
joints left at rest. The root
orientation is always zero, so bodies stand upright in the model's frame (AMASS files are z-up).
smplx poses the mesh on the CPU; ``n_points`` points are sampled uniformly on its surface, and the
first 24 joints of smplx's output (the regressed SMPL joints) are the ground truth. With
``normalize=True`` points and joints go through RigNet's normalisation of the posed vertices.

Body ``i`` of step ``s`` under seed ``k`` is drawn from ``numpy.random.default_rng([k, s, i])``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.utils import Struct
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from cfm_pose.files import load_npz
from cfm_pose.normalize import Normalization
from cfm_pose.smpl_model import SMPL_NUM_JOINTS, read_smpl_model, resolve_smpl_path
from cfm_pose.surface import sample_mesh_surface

SMPL_VERTEX_COUNT = 6890
SMPL_BODY_POSE_DIM = 3 * (SMPL_NUM_JOINTS - 1)
SMPLH_BODY_JOINTS = 22
MOTION_POSE_WIDTHS = {72: "SMPL", 156: "SMPL-H", 165: "SMPL-X"}


@dataclass(frozen=True, eq=False)
class SmplBodies:
    """A batch of posed bodies: surface ``points (B, N, 3)``, ``joints (B, 24, 3)``,
    ``vertices (B, V, 3)`` (all in the same, possibly normalised, frame) and ``faces (F, 3)``."""

    points: np.ndarray
    joints: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray


def _motion_poses(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(T, 72)`` SMPL pose rows and the optional ``betas`` of an AMASS-style file."""
    data = load_npz(path, "motion file")
    if "poses" not in data:
        raise ValueError(f"{path}: a motion file needs a 'poses' array")
    poses = np.asarray(data["poses"], np.float64)
    betas = np.asarray(data["betas"], np.float64).reshape(-1) if "betas" in data else None
    if poses.ndim != 2 or len(poses) == 0 or poses.shape[1] not in MOTION_POSE_WIDTHS:
        widths = ", ".join(f"(T, {w}) ({name})" for w, name in MOTION_POSE_WIDTHS.items())
        raise ValueError(f"{path}: 'poses' must have shape {widths}, got {poses.shape}")
    if not np.isfinite(poses).all():
        raise ValueError(f"{path}: 'poses' contains NaN or inf")
    if poses.shape[1] != 3 * SMPL_NUM_JOINTS:
        body = poses[:, : 3 * SMPLH_BODY_JOINTS]
        poses = np.concatenate([body, np.zeros((len(poses), 6))], axis=1)
    return poses, betas


class SmplBodySampler:
    """Posed SMPL bodies from a model file (original, converted or synthetic; module doc).

    Args:
        model_path: an SMPL ``.pkl``/``.npz`` file, or a folder holding ``SMPL_<GENDER>.pkl``.
        gender: picks the file inside a folder.
        num_betas: shape parameters used (at most the model's).
        n_points: surface points per body.
        beta_std, pose_std: spreads of the random shapes and poses.
        motion_path: an AMASS-style ``.npz`` to take poses (and betas, when present) from.
        normalize: apply RigNet's normalisation per body.
    """

    def __init__(self, model_path: str | Path, gender: str = "neutral", num_betas: int = 10,
                 n_points: int = 2048, beta_std: float = 1.0, pose_std: float = 0.2,
                 motion_path: str | Path | None = None, normalize: bool = True) -> None:
        self.model_path = resolve_smpl_path(model_path, gender)
        arrays = read_smpl_model(self.model_path)
        self.num_betas = min(num_betas, arrays["shapedirs"].shape[-1])
        count = arrays["v_template"].shape[0]
        ids = None if count >= SMPL_VERTEX_COUNT else {
            name: 0 for name in SMPLX_VERTEX_IDS["smplh"]}
        with contextlib.redirect_stdout(io.StringIO()):
            self.model = smplx.SMPL(str(self.model_path), data_struct=Struct(**arrays),
                                    num_betas=self.num_betas, gender=gender, vertex_ids=ids)
        self.model.eval()
        self.faces = arrays["f"]
        self.n_points, self.beta_std, self.pose_std = n_points, beta_std, pose_std
        self.normalize = normalize
        self.motion = _motion_poses(Path(motion_path)) if motion_path is not None else None

    def _parameters(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(betas (num_betas,), body_pose (69,))`` of one body."""
        betas = rng.normal(scale=self.beta_std, size=self.num_betas)
        if self.motion is None:
            return betas, rng.normal(scale=self.pose_std, size=SMPL_BODY_POSE_DIM)
        poses, motion_betas = self.motion
        if motion_betas is not None:
            betas = np.zeros(self.num_betas)
            used = min(self.num_betas, len(motion_betas))
            betas[:used] = motion_betas[:used]
        return betas, poses[rng.integers(len(poses)), 3:]

    @torch.no_grad()
    def bodies(self, step: int, batch_size: int, seed: int = 0) -> SmplBodies:
        """The ``batch_size`` bodies of step ``step`` (deterministic; module doc)."""
        if step < 0 or batch_size <= 0:
            raise ValueError(f"need step >= 0 and batch_size > 0, got {step} and {batch_size}")
        rngs = [np.random.default_rng([seed, step, i]) for i in range(batch_size)]
        betas, body_pose = map(np.stack, zip(*(self._parameters(r) for r in rngs), strict=True))
        output = self.model(betas=torch.as_tensor(betas, dtype=torch.float32),
                            body_pose=torch.as_tensor(body_pose, dtype=torch.float32),
                            global_orient=torch.zeros(batch_size, 3),
                            transl=torch.zeros(batch_size, 3))
        vertices = output.vertices.double().numpy()
        joints = output.joints[:, :SMPL_NUM_JOINTS].double().numpy()
        points = np.stack([sample_mesh_surface(v, self.faces, self.n_points, r)
                           for v, r in zip(vertices, rngs, strict=True)])
        if self.normalize:
            maps = [Normalization.rignet_of_points(v) for v in vertices]
            points, joints, vertices = (
                np.stack([m.apply(a) for m, a in zip(maps, arr, strict=True)])
                for arr in (points, joints, vertices))
        return SmplBodies(points, joints, vertices, self.faces)
