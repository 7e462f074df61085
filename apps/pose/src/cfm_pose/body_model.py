"""smplx modules for checked model files, posed with the app's pose vectors.

SMPL: ``smplx.SMPL`` built straight from the checked arrays. SMPL-X: ``smplx.SMPLX`` reads only
files, so the checked arrays are written to a temporary clean ``.npz`` (float32, the precision
smplx keeps) that it loads and that is deleted right after. SMPL-X hand poses are full axis-angle
rotations (``use_pca=False``) relative to the flat hand (``flat_hand_mean=True``, AMASS's
convention), and the expression stays zero.

smplx appends extra keypoints (face, feet and finger tips, picked by vertex index) after the
regressed joints; this app keeps only the family's regressed joints, and for a model smaller than
the real meshes (such as the synthetic test models) those vertex indices are pointed at vertex 0.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.utils import Struct

from cfm_pose.body_families import SMPL, BodyFamily
from cfm_pose.smpl_model import BodyModelFile

POSE_ARGUMENTS = {
    "smpl": (("body_pose", 69),),
    "smplx": (
        ("body_pose", 63),
        ("jaw_pose", 3),
        ("leye_pose", 3),
        ("reye_pose", 3),
        ("left_hand_pose", 45),
        ("right_hand_pose", 45),
    ),
}
"""How a family's pose vector (:mod:`cfm_pose.body_families`) splits into smplx's arguments."""


def _smplx_module(model: BodyModelFile, num_betas: int, gender: str) -> torch.nn.Module:
    with tempfile.TemporaryDirectory(prefix="cfm-pose-smplx-") as folder:
        path = Path(folder) / "SMPLX_MODEL.npz"
        np.savez(
            path,
            **{
                key: value.astype(np.float32) if value.dtype == np.float64 else value
                for key, value in model.arrays.items()
            },
        )
        return smplx.SMPLX(str(path), ext="npz", num_betas=num_betas, gender=gender, use_pca=False, flat_hand_mean=True)


def build_body_model(model: BodyModelFile, num_betas: int, gender: str) -> torch.nn.Module:
    """The smplx module of a checked model file (module doc), in eval mode. Its ``num_betas``
    may be below the request: smplx uses at most 10 components of a model that has fewer than
    300 (SMPL) or 400 (SMPL-X, shape plus expression)."""
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note on short shape spaces
        if model.family is SMPL:
            module = smplx.SMPL(str(model.path), data_struct=Struct(**model.arrays), num_betas=num_betas, gender=gender)
        else:
            module = _smplx_module(model, num_betas, gender)
    keypoints = module.vertex_joint_selector.extra_joints_idxs
    if keypoints.numel() and int(keypoints.max()) >= len(model.arrays["v_template"]):
        keypoints.zero_()
    return module.eval()


@torch.no_grad()
def pose_bodies(
    module: torch.nn.Module, family: BodyFamily, betas: np.ndarray, poses: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posed ``vertices (B, V, 3)`` and the family's regressed ``joints (B, J, 3)`` for shape
    parameters ``betas (B, module.num_betas)`` and pose vectors ``poses (B, family.pose_dim)``
    (root rotation and translation zero)."""
    batch = len(betas)
    names, widths = zip(*POSE_ARGUMENTS[family.key], strict=True)
    parts = torch.split(torch.as_tensor(poses, dtype=torch.float32), widths, dim=1)
    arguments = dict(zip(names, parts, strict=True))
    if family is not SMPL:
        arguments["expression"] = torch.zeros(batch, module.num_expression_coeffs)
    output = module(
        betas=torch.as_tensor(betas, dtype=torch.float32),
        global_orient=torch.zeros(batch, 3),
        transl=torch.zeros(batch, 3),
        **arguments,
    )
    return (output.vertices.double().numpy(), output.joints[:, : family.num_joints].double().numpy())
