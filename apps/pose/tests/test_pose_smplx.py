"""SMPL-X files: the joint layout, the synthetic model, posing, motion files, conversion, errors."""

import contextlib
import io
import pickle

import numpy as np
import pytest
import smplx
import torch
from cfm_pose.body_families import SMPL, SMPL_PARENTS, SMPLX, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from cfm_pose.body_model import POSE_ARGUMENTS, build_body_model, pose_bodies
from cfm_pose.smpl_model import convert_smpl_pkl, read_smpl_model, resolve_smpl_path
from cfm_pose.smpl_motion import read_motion
from cfm_pose.smpl_sampler import SmplBodySampler
from cfm_pose.smpl_synthetic import (
    SYNTHETIC_SMPLX_REST_JOINTS,
    synthetic_smplx_arrays,
    write_synthetic_smpl_model,
    write_synthetic_smplx_model,
)
from scipy.spatial.transform import Rotation
from smplx.joint_names import JOINT_NAMES

BALL_VERTICES = 12
HAND_KEYS = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")


def forward_kinematics(rest, parents, rotations):
    """Posed joints of rest joints ``(J, 3)`` under per-joint axis-angle ``rotations (J, 3)``."""
    frames, posed = [None] * len(rest), np.zeros_like(rest)
    for joint, parent in enumerate(parents):
        local = Rotation.from_rotvec(rotations[joint]).as_matrix()
        if parent < 0:
            frames[joint], posed[joint] = local, rest[joint]
        else:
            frames[joint] = frames[parent] @ local
            posed[joint] = posed[parent] + frames[parent] @ (rest[joint] - rest[parent])
    return posed


@pytest.fixture(scope="module")
def arrays():
    return synthetic_smplx_arrays()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smplx")
    write_synthetic_smplx_model(folder / "SMPLX_NEUTRAL.npz")
    return folder


def test_layout_is_smplx_with_fingers_hanging_from_the_wrists():
    assert [name.replace("_smplhf", "") for name in JOINT_NAMES[:55]] == list(SMPLX_JOINT_NAMES)
    np.testing.assert_array_equal(SMPLX_PARENTS[:22], SMPL_PARENTS[:22])
    assert SMPLX_PARENTS[22:25].tolist() == [15, 15, 15]  # jaw and eyes on the head
    for joint in range(25, 55):
        wrist = 20 if joint < 40 else 21
        assert SMPLX_PARENTS[joint] == (wrist if (joint - 25) % 3 == 0 else joint - 1)
    for family in (SMPL, SMPLX):
        assert sum(width for _, width in family.pose_parts) == family.pose_dim
        assert sum(width for _, width in POSE_ARGUMENTS[family.key]) == family.pose_dim
    assert SMPLX.pose_dim == 162 and SMPLX.pose_basis == 486


def test_zero_pose_joints_are_the_regressor_applied_to_the_shaped_template(model_folder, arrays):
    model = read_smpl_model(model_folder / "SMPLX_NEUTRAL.npz")
    assert model.family is SMPLX and set(model.arrays) == set(arrays)
    module = build_body_model(model, num_betas=16, gender="neutral")
    assert module.num_betas == 10  # a 20-component shapedirs: 10 shape + 10 expression
    betas = np.random.default_rng(0).normal(size=(3, 10))
    vertices, joints = pose_bodies(module, SMPLX, betas, np.zeros((3, SMPLX.pose_dim)))
    shaped = arrays["v_template"] + np.einsum("vck,bk->bvc", arrays["shapedirs"][..., :10], betas)
    np.testing.assert_allclose(vertices, shaped, atol=1e-5)
    np.testing.assert_allclose(joints, arrays["J_regressor"] @ shaped, atol=1e-5)
    # at zero betas the hands are flat (not the model's mean hand): the rest layout
    _, rest = pose_bodies(module, SMPLX, np.zeros((1, 10)), np.zeros((1, SMPLX.pose_dim)))
    np.testing.assert_allclose(rest[0], SYNTHETIC_SMPLX_REST_JOINTS, atol=1e-6)


def test_motion_frames_pose_body_jaw_and_fingers_by_forward_kinematics(model_folder, tmp_path):
    rotations = np.zeros((55, 3))
    rotations[18] = [0.0, 0.0, 1.2]  # left elbow
    rotations[21] = [0.5, 0.0, 0.0]  # right wrist
    rotations[22] = [0.4, 0.0, 0.0]  # jaw
    rotations[25] = [0.0, 0.3, 0.8]  # left index1
    rotations[53] = [0.0, 0.0, -0.6]  # right thumb2
    poses = np.tile(rotations.reshape(1, 165), (3, 1))
    poses[:, :3] = [0.3, 0.2, 0.1]  # the root rotation is dropped
    np.savez(tmp_path / "walk.npz", poses=poses, betas=np.zeros(16))
    sampler = SmplBodySampler(model_folder, motion_path=tmp_path / "walk.npz", normalize=False, n_points=100)
    bodies = sampler.bodies(0, 2)
    expected = forward_kinematics(SYNTHETIC_SMPLX_REST_JOINTS, SMPLX_PARENTS, rotations)
    assert np.abs(expected - SYNTHETIC_SMPLX_REST_JOINTS).max() > 0.1
    for joints in bodies.joints:
        np.testing.assert_allclose(joints, expected, atol=1e-5)
    # every joint's ball (the first 12 * 55 vertices) moves rigidly with its joint
    balls = bodies.vertices[:, : BALL_VERTICES * 55].reshape(2, 55, BALL_VERTICES, 3).mean(axis=2)
    np.testing.assert_allclose(balls, bodies.joints, atol=3e-3)
    assert bodies.points.shape == (2, 100, 3)


def test_motion_widths_map_onto_each_familys_pose_vector(tmp_path):
    rng = np.random.default_rng(1)
    for width in (72, 156, 165):
        np.savez(tmp_path / f"m{width}.npz", poses=rng.normal(size=(2, width)))
    smpl, smplh, smplx_rows = (np.load(tmp_path / f"m{w}.npz")["poses"] for w in (72, 156, 165))
    zeros = np.zeros

    def poses(width, family):
        return read_motion(tmp_path / f"m{width}.npz", family).poses

    np.testing.assert_array_equal(poses(165, SMPLX), smplx_rows[:, 3:])
    np.testing.assert_array_equal(poses(72, SMPL), smpl[:, 3:])
    np.testing.assert_array_equal(poses(156, SMPLX), np.hstack([smplh[:, 3:66], zeros((2, 9)), smplh[:, 66:]]))
    np.testing.assert_array_equal(poses(72, SMPLX), np.hstack([smpl[:, 3:66], zeros((2, 99))]))
    np.testing.assert_array_equal(poses(165, SMPL), np.hstack([smplx_rows[:, 3:66], zeros((2, 6))]))


def test_random_bodies_are_deterministic_and_normalised(model_folder):
    sampler = SmplBodySampler(model_folder, n_points=200, pose_std=0.3)
    bodies = sampler.bodies(step=1, batch_size=3, seed=2)
    assert bodies.joints.shape == (3, 55, 3) and bodies.points.shape == (3, 200, 3)
    np.testing.assert_allclose(bodies.joints[1], sampler.bodies(1, 2, seed=2).joints[1], atol=1e-6)
    extent = bodies.vertices.max(axis=1) - bodies.vertices.min(axis=1)
    np.testing.assert_allclose(extent.max(axis=1), 1.0, atol=1e-9)
    fingers = bodies.joints[:, 26] - bodies.joints[:, 25]  # left index: random finger poses
    assert np.abs(fingers - fingers[0]).max() > 1e-3


def test_chumpy_smplx_pickle_converts_to_files_smplx_loads(tmp_path, arrays, write_chumpy_style):
    original = tmp_path / "smplx_original.pkl"
    write_chumpy_style(original, arrays, chumpy_keys=("v_template", "shapedirs", "posedirs", "weights", *HAND_KEYS))
    pose = np.random.default_rng(2).normal(scale=0.3, size=(2, SMPLX.pose_dim))
    betas = np.random.default_rng(3).normal(size=(2, 10))
    ours = build_body_model(read_smpl_model(original), 10, "neutral")
    _, expected = pose_bodies(ours, SMPLX, betas, pose)
    for suffix in (".npz", ".pkl"):
        converted = convert_smpl_pkl(original, tmp_path / f"SMPLX_NEUTRAL{suffix}")
        assert converted.family is SMPLX
        clean = np.load(converted.path) if suffix == ".npz" else pickle.loads(converted.path.read_bytes())
        assert set(clean) == set(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(clean[key], value, err_msg=key)
        with contextlib.redirect_stdout(io.StringIO()):
            plain = smplx.SMPLX(str(converted.path), ext=suffix[1:], use_pca=False, flat_hand_mean=True)
        plain.vertex_joint_selector.extra_joints_idxs.zero_()  # keypoints beyond this small mesh
        parts = torch.split(torch.as_tensor(pose, dtype=torch.float32), (63, 3, 3, 3, 45, 45), 1)
        names = ("body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose", "right_hand_pose")
        output = plain(
            betas=torch.as_tensor(betas, dtype=torch.float32),
            global_orient=torch.zeros(2, 3),
            expression=torch.zeros(2, 10),
            **dict(zip(names, parts, strict=True)),
        )
        np.testing.assert_allclose(output.joints[:, :55].detach().numpy(), expected, atol=1e-5)


def test_npz_object_arrays_beside_the_model_are_skipped(tmp_path, arrays):
    path = tmp_path / "SMPLX_MALE.npz"
    np.savez(path, **arrays, joint2num=np.array({"pelvis": 0}, dtype=object))
    assert set(read_smpl_model(path).arrays) == set(arrays)


def test_folders_and_requested_types_pick_the_family(tmp_path, model_folder):
    assert resolve_smpl_path(model_folder) == model_folder / "SMPLX_NEUTRAL.npz"
    both = tmp_path / "both"
    write_synthetic_smplx_model(both / "SMPLX_NEUTRAL.pkl")
    write_synthetic_smpl_model(both / "SMPL_NEUTRAL.pkl")
    with pytest.raises(ValueError, match="holds SMPL_NEUTRAL.pkl and SMPLX_NEUTRAL.pkl: choose"):
        resolve_smpl_path(both)
    assert resolve_smpl_path(both, model_type="smplx") == both / "SMPLX_NEUTRAL.pkl"
    assert SmplBodySampler(both, model_type="smpl").family is SMPL
    with pytest.raises(FileNotFoundError, match="none of SMPLX_FEMALE.npz, SMPLX_FEMALE.pkl"):
        resolve_smpl_path(model_folder, "female", "smplx")
    with pytest.raises(
        ValueError,
        match=r"SMPLX_NEUTRAL.npz: an SMPL-X model \(55 joints\), "
        "expected SMPL",
    ):
        SmplBodySampler(model_folder / "SMPLX_NEUTRAL.npz", model_type="smpl")


def test_bad_smplx_files_raise_errors_naming_them(tmp_path, arrays, expect_model_rejections):
    count, faces = len(arrays["v_template"]), len(arrays["f"])
    cyclic = SMPLX_PARENTS.copy()
    cyclic[20], cyclic[25] = 27, 20  # left wrist under its own index finger
    other_tree = SMPLX_PARENTS.copy()
    other_tree[23] = 12  # left eye on the neck
    cases = {
        "nohands.pkl": (
            {k: v for k, v in arrays.items() if k != "hands_meanr"},
            r"not an SMPL-X model .*missing keys \['hands_meanr'\]",
        ),
        "joints.pkl": (
            {**arrays, "weights": arrays["weights"][:, :54]},
            r"'weights' has shape \(1200, 54\), expected \(1200, 55\)",
        ),
        "rows.pkl": (
            {**arrays, "J_regressor": arrays["J_regressor"][:54]},
            r"'J_regressor' has shape \(54, 1200\), expected 24 rows \(SMPL\) or 55",
        ),
        "cycle.pkl": (
            {**arrays, "kintree_table": np.stack([cyclic, np.arange(55)])},
            "'kintree_table': the hierarchy has a cycle",
        ),
        "tree.pkl": (
            {**arrays, "kintree_table": np.stack([other_tree, np.arange(55)])},
            r"not SMPL-X's hierarchy: joint 23 \(left_eye\) has parent 12, expected 15",
        ),
        "order.pkl": (
            {**arrays, "kintree_table": np.stack([SMPLX_PARENTS, np.arange(55)[::-1]])},
            "row 1 must list the joints 0..54 in order",
        ),
        "hands.pkl": ({**arrays, "hands_meanl": np.zeros(30)}, r"'hands_meanl' has shape \(30,\)"),
        "landmarks.pkl": (
            {**arrays, "lmk_faces_idx": arrays["lmk_faces_idx"] + faces},
            rf"'lmk_faces_idx' has face indices outside \[0, {faces}\)",
        ),
        "bary.pkl": (
            {**arrays, "lmk_bary_coords": np.zeros((4, 3))},
            r"'lmk_bary_coords' has shape \(4, 3\), expected \(5, 3\)",
        ),
        "contour.pkl": (
            {k: v for k, v in arrays.items() if k != "dynamic_lmk_bary_coords"},
            "face-contour landmarks lack",
        ),
        "text.pkl": ({**arrays, "hands_meanl": np.array(["flat"] * 45)}, "'hands_meanl' is not numeric"),
        "shape.pkl": (
            {**arrays, "shapedirs": arrays["shapedirs"][..., :12]},
            "'shapedirs' has 12 components; SMPL-X needs at least 20",
        ),
        "posedirs.pkl": (
            {**arrays, "posedirs": np.zeros((count, 3, 207))},
            r"'posedirs' has shape \(1200, 3, 207\), expected \(1200, 3, 486\)",
        ),
    }
    expect_model_rejections(tmp_path, cases)
