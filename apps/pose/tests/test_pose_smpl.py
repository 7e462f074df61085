"""SMPL files: chumpy-free conversion, the synthetic model, and the body sampler."""

import contextlib
import io
import os
import pickle

import numpy as np
import pytest
import smplx
import torch
from cfm_pose.normalize import Normalization
from cfm_pose.smpl_model import convert_smpl_pkl, read_smpl_model
from cfm_pose.smpl_sampler import SmplBodySampler
from cfm_pose.smpl_synthetic import (
    SYNTHETIC_REST_JOINTS,
    synthetic_smpl_arrays,
    write_synthetic_smpl_model,
)

VERTEX_IDS = {name: 0 for name in smplx.vertex_ids.vertex_ids["smplh"]}


def _smplx_model(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.SMPL(model_path=str(path), vertex_ids=VERTEX_IDS)


@pytest.fixture(scope="module")
def arrays():
    return synthetic_smpl_arrays(n_betas=10, seed=0)


def test_synthetic_model_loads_in_smplx_with_exact_rest_joints(tmp_path):
    path = write_synthetic_smpl_model(tmp_path / "SMPL_NEUTRAL.pkl")
    output = _smplx_model(path)()
    np.testing.assert_allclose(output.joints[0, :24].detach().numpy(), SYNTHETIC_REST_JOINTS, atol=1e-6)
    assert not list(tmp_path.glob(".*tmp"))


def test_chumpy_pickle_converts_to_a_file_smplx_loads(tmp_path, arrays, write_chumpy_style):
    original = tmp_path / "basicmodel_neutral.pkl"
    write_chumpy_style(original, arrays)
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.loads(original.read_bytes())
    converted = convert_smpl_pkl(original, tmp_path / "SMPL_NEUTRAL.pkl").path
    assert converted == tmp_path / "SMPL_NEUTRAL.pkl"
    clean = pickle.loads(converted.read_bytes())
    assert set(clean) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(clean[key], value, err_msg=key)
    betas = torch.randn(2, 10, generator=torch.Generator().manual_seed(0))
    pose = 0.3 * torch.randn(2, 69, generator=torch.Generator().manual_seed(1))
    parameters = {"betas": betas, "body_pose": pose, "global_orient": torch.zeros(2, 3)}
    from_converted = _smplx_model(converted)(**parameters).joints
    direct = write_synthetic_smpl_model(tmp_path / "direct" / "SMPL_NEUTRAL.pkl")
    from_clean_arrays = _smplx_model(direct)(**parameters).joints
    # same arrays, two model objects: equal up to float32 reduction order across threads
    np.testing.assert_allclose(from_converted.detach().numpy(), from_clean_arrays.detach().numpy(), atol=1e-6)
    npz = convert_smpl_pkl(original, tmp_path / "model.npz").path
    np.testing.assert_array_equal(read_smpl_model(npz).arrays["J_regressor"], arrays["J_regressor"])


def test_a_chumpy_expression_is_reported_by_key(tmp_path, arrays, write_chumpy_style):
    original = tmp_path / "expr.pkl"
    write_chumpy_style(original, arrays, expression_key="shapedirs")
    with pytest.raises(ValueError, match=r"expr.pkl: 'shapedirs' is a chumpy expression"):
        convert_smpl_pkl(original, tmp_path / "out.pkl")


def test_bad_model_files_raise_errors_naming_them(tmp_path, arrays, expect_model_rejections):
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        read_smpl_model(tmp_path / "missing.pkl")
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x00\x01 not a pickle")
    with pytest.raises(ValueError, match="garbage.pkl: not a readable SMPL pickle"):
        read_smpl_model(garbage)
    unsafe = tmp_path / "unsafe.pkl"
    unsafe.write_bytes(pickle.dumps({**arrays, "f": os.getcwd}))
    with pytest.raises(ValueError, match="unsafe.pkl.*posix.getcwd is not allowed"):
        read_smpl_model(unsafe)
    cases = {
        "nokey.pkl": ({k: v for k, v in arrays.items() if k != "weights"}, "missing keys"),
        "joints.pkl": ({**arrays, "J_regressor": arrays["J_regressor"][:23]}, "'J_regressor'"),
        "smplx.pkl": (
            {**arrays, "J_regressor": np.zeros((55, len(arrays["v_template"])))},
            r"not an SMPL-X model \(55 joints in 'J_regressor'\), missing keys",
        ),
        "smplh.pkl": (
            {**arrays, "J_regressor": np.zeros((52, len(arrays["v_template"])))},
            "52 joints: an SMPL-H model",
        ),
        "tree.pkl": (
            {
                **arrays,
                "kintree_table": np.stack(
                    [[-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 20], np.arange(24)]
                ),
            },
            r"not SMPL's hierarchy: joint 23 \(right_hand\) has parent 20",
        ),
        "faces.pkl": ({**arrays, "f": arrays["f"] + 10**6}, "'f' has vertex indices"),
        "cycle.pkl": ({**arrays, "kintree_table": np.stack([[0, 2, 1] + list(range(0, 21)), np.arange(24)])}, "cycle"),
        "nan.pkl": ({**arrays, "v_template": np.full_like(arrays["v_template"], np.nan)}, "NaN"),
    }
    expect_model_rejections(tmp_path, cases)
    with pytest.raises(ValueError, match="must end in"):
        convert_smpl_pkl(garbage, tmp_path / "out.txt")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smpl")
    write_synthetic_smpl_model(folder / "SMPL_NEUTRAL.pkl")
    return folder


def test_sampler_bodies_are_deterministic_normalised_and_consistent(model_folder):
    sampler = SmplBodySampler(model_folder, n_points=500)
    bodies = sampler.bodies(step=2, batch_size=3, seed=4)
    assert bodies.points.shape == (3, 500, 3) and bodies.joints.shape == (3, 24, 3)
    # independent of the batch size, up to float32 reduction order in smplx's batched matmuls
    np.testing.assert_allclose(bodies.points[1], sampler.bodies(2, 2, seed=4).points[1], atol=1e-6)
    extent = bodies.vertices.max(axis=1) - bodies.vertices.min(axis=1)
    np.testing.assert_allclose(extent.max(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(bodies.vertices[..., 1].min(axis=1), 0.0, atol=1e-9)
    # each joint's ball (the first 42 * 24 vertices) moves rigidly with the joint
    balls = bodies.vertices[:, : 42 * 24].reshape(3, 24, 42, 3).mean(axis=2)
    np.testing.assert_allclose(balls, bodies.joints, atol=3e-3)
    assert np.abs(bodies.joints - sampler.bodies(3, 3, seed=4).joints).max() > 0.05


def test_sampler_at_rest_reproduces_the_template(model_folder):
    sampler = SmplBodySampler(model_folder / "SMPL_NEUTRAL.pkl", beta_std=0.0, pose_std=0.0)
    bodies = sampler.bodies(0, 1)
    rest = Normalization.rignet_of_points(synthetic_smpl_arrays()["v_template"])
    np.testing.assert_allclose(bodies.joints[0], rest.apply(SYNTHETIC_REST_JOINTS), atol=1e-5)


def test_sampler_takes_poses_from_a_motion_file(model_folder, tmp_path):
    poses = np.zeros((4, 156))
    poses[:, 3 * 18 : 3 * 18 + 3] = [0.0, 0.0, 1.2]  # left elbow bent in every frame
    np.savez(tmp_path / "motion.npz", poses=poses, betas=np.zeros(16))
    sampler = SmplBodySampler(model_folder, motion_path=tmp_path / "motion.npz", normalize=False)
    joints = sampler.bodies(0, 2).joints
    body_pose = torch.zeros(1, 69)
    body_pose[0, 3 * 17 : 3 * 17 + 3] = torch.tensor([0.0, 0.0, 1.2])
    model = _smplx_model(model_folder / "SMPL_NEUTRAL.pkl")
    expected = model(body_pose=body_pose).joints[0, :24].detach().numpy()
    np.testing.assert_allclose(joints[1], expected, atol=1e-5)
    for width in (10, 100):  # too short, and no SMPL-family joint count
        np.savez(tmp_path / "odd.npz", poses=np.zeros((4, width)))
        with pytest.raises(ValueError, match=rf"odd.npz: 'poses' must have shape .*got \(4, {width}\)"):
            SmplBodySampler(model_folder, motion_path=tmp_path / "odd.npz")
    np.savez(tmp_path / "nopose.npz", trans=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="nopose.npz: a motion file needs a 'poses' array"):
        SmplBodySampler(model_folder, motion_path=tmp_path / "nopose.npz")
    (tmp_path / "garbage.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="garbage.npz: not a readable .npz motion file"):
        SmplBodySampler(model_folder, motion_path=tmp_path / "garbage.npz")
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        SmplBodySampler(model_folder, motion_path=tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="SMPL_FEMALE.pkl"):
        SmplBodySampler(model_folder, gender="female")
