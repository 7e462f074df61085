"""AMASS-style motion files: pose vectors for a body family.

A motion file is an ``.npz`` with ``poses (T, P)`` (axis-angle rotations, root first) and
optionally ``betas``. Three widths are read, named by the model that wrote them:

* ``P = 72`` (SMPL): root, 21 body joints, SMPL's two hand joints;
* ``P = 156`` (SMPL-H): root, 21 body joints, 15 left-hand then 15 right-hand finger joints;
* ``P = 165`` (SMPL-X): root, 21 body joints, jaw, left and right eye, 15 + 15 finger joints.

Each row's root rotation is dropped (the app's bodies stand upright in the model frame; AMASS
files are z-up), and the rest is mapped onto the family's pose vector part by part
(:attr:`~cfm_pose.body_families.BodyFamily.pose_parts`); a part the motion lacks stays at rest
(SMPL's hand joints from an SMPL-H or SMPL-X motion; jaw, eyes or fingers of an SMPL-X body
from an SMPL or SMPL-H motion). SMPL-H and SMPL-X finger rotations are relative to the flat
hand, as AMASS stores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cfm_pose.body_families import BodyFamily
from cfm_pose.files import load_npz

ROOT_DIM = 3
MOTION_LAYOUTS = {
    72: ("SMPL", (("body", 63), ("smpl_hands", 6))),
    156: ("SMPL-H", (("body", 63), ("fingers", 90))),
    165: ("SMPL-X", (("body", 63), ("face", 9), ("fingers", 90))),
}
"""Width of ``poses`` -> (the model that writes it, its parts after the root, in order)."""


@dataclass(frozen=True, eq=False)
class Motion:
    """The frames of a motion file as pose vectors ``(T, family.pose_dim)``, and its optional
    shape parameters ``betas``."""

    poses: np.ndarray
    betas: np.ndarray | None


def read_motion(path: Path, family: BodyFamily) -> Motion:
    """The frames of an AMASS-style ``.npz`` as ``family``'s pose vectors (module doc)."""
    data = load_npz(path, "motion file", keys=("poses", "betas"))
    if "poses" not in data:
        raise ValueError(f"{path}: a motion file needs a 'poses' array")
    poses = np.asarray(data["poses"], np.float64)
    betas = np.asarray(data["betas"], np.float64).reshape(-1) if "betas" in data else None
    if poses.ndim != 2 or len(poses) == 0 or poses.shape[1] not in MOTION_LAYOUTS:
        widths = ", ".join(f"(T, {w}) ({name})" for w, (name, _) in MOTION_LAYOUTS.items())
        raise ValueError(f"{path}: 'poses' must have shape {widths}, got {poses.shape}")
    if not np.isfinite(poses).all():
        raise ValueError(f"{path}: 'poses' contains NaN or inf")
    parts, offset = {}, ROOT_DIM
    for name, width in MOTION_LAYOUTS[poses.shape[1]][1]:
        parts[name] = poses[:, offset : offset + width]
        offset += width
    frames = len(poses)
    vectors = np.concatenate([parts.get(name, np.zeros((frames, width))) for name, width in family.pose_parts], axis=1)
    return Motion(vectors, betas)
