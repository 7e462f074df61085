"""The SMPL-family body models this app reads: SMPL (24 joints) and SMPL-X (55 joints).

A :class:`BodyFamily` fixes everything that does not depend on a particular model file: the joint
names and hierarchy (the fixed topology the app generates), the arrays a model file must hold,
and how a pose vector splits into the parts that motion files provide. Both families use the
same pose vector: the axis-angle rotations of joints ``1 .. J-1`` in joint order (the root's
rotation is kept at zero by the app), so SMPL's has ``3 * 23 = 69`` numbers and SMPL-X's
``3 * 54 = 162``: 21 body joints, jaw, left and right eye, 15 left-hand and 15 right-hand joints
(smplx's ``full_pose`` order without the root).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMPL_JOINT_NAMES = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)
SMPL_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
BODY_JOINTS = 22
"""Pelvis to wrists: the joints SMPL, SMPL-H and SMPL-X share (names and hierarchy)."""
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
"""SMPL-X's finger order; each finger is a chain of three joints hanging from the wrist."""
HEAD, LEFT_WRIST, RIGHT_WRIST = 15, 20, 21


def _smplx_layout() -> tuple[tuple[str, ...], np.ndarray]:
    names = list(SMPL_JOINT_NAMES[:BODY_JOINTS]) + ["jaw", "left_eye", "right_eye"]
    parents = list(SMPL_PARENTS[:BODY_JOINTS]) + [HEAD, HEAD, HEAD]
    for side, wrist in (("left", LEFT_WRIST), ("right", RIGHT_WRIST)):
        for finger in FINGERS:
            for segment in (1, 2, 3):
                names.append(f"{side}_{finger}{segment}")
                parents.append(wrist if segment == 1 else len(parents) - 1)
    return tuple(names), np.array(parents)


SMPLX_JOINT_NAMES, SMPLX_PARENTS = _smplx_layout()

SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
SMPLX_EXTRA_KEYS = (
    "hands_componentsl",
    "hands_componentsr",
    "hands_meanl",
    "hands_meanr",
    "lmk_faces_idx",
    "lmk_bary_coords",
)
SMPLX_OPTIONAL_KEYS = ("dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords")
"""Only smplx's ``use_face_contour=True`` reads these; kept (checked) when a file has them."""


@dataclass(frozen=True, eq=False)
class BodyFamily:
    """One SMPL-family model kind (module doc).

    ``key`` is the ``--smpl.model-type`` value, ``label`` the name in messages, ``file_prefix``
    the stem of its files in a model folder (``SMPLX_NEUTRAL.npz``), ``extensions`` the file
    endings looked for there (first found wins), ``keys`` / ``optional_keys`` the arrays of a
    model file, and ``pose_parts`` the ``(part, width)`` pieces of the pose vector, in order.
    """

    key: str
    label: str
    file_prefix: str
    extensions: tuple[str, ...]
    names: tuple[str, ...]
    parents: np.ndarray
    keys: tuple[str, ...]
    optional_keys: tuple[str, ...]
    pose_parts: tuple[tuple[str, int], ...]

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def pose_dim(self) -> int:
        """Numbers in a pose vector: three per non-root joint."""
        return 3 * (self.num_joints - 1)

    @property
    def pose_basis(self) -> int:
        """Columns of ``posedirs``: nine rotation-matrix entries per non-root joint."""
        return 9 * (self.num_joints - 1)


SMPL = BodyFamily(
    "smpl",
    "SMPL",
    "SMPL",
    (".pkl", ".npz"),
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    SMPL_KEYS,
    (),
    (("body", 63), ("smpl_hands", 6)),
)
SMPLX = BodyFamily(
    "smplx",
    "SMPL-X",
    "SMPLX",
    (".npz", ".pkl"),
    SMPLX_JOINT_NAMES,
    SMPLX_PARENTS,
    SMPL_KEYS + SMPLX_EXTRA_KEYS,
    SMPLX_OPTIONAL_KEYS,
    (("body", 63), ("face", 9), ("fingers", 90)),
)
FAMILIES = {family.key: family for family in (SMPL, SMPLX)}
OTHER_FAMILIES = {52: "SMPL-H"}
"""Joint counts of SMPL-family models this app does not read (reported by name)."""
