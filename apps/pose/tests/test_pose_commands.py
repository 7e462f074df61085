"""The pose app end to end through the ``cfm`` command (tiny networks, a few steps, CPU)."""

from __future__ import annotations

import json
import pickle
import typing

import numpy as np
import trimesh
from cfm_core.cli import main
from cfm_pose.body_families import SMPL_JOINT_NAMES, SMPL_PARENTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from cfm_pose.config import TRAIN_PRESETS, Template
from cfm_pose.smpl_synthetic import (
    synthetic_smpl_arrays,
    synthetic_smplx_arrays,
    write_synthetic_smpl_model,
    write_synthetic_smplx_model,
)
from cfm_pose.templates import TEMPLATES, get_template

TINY = [
    "--n-points",
    "64",
    "--net.hidden",
    "16",
    "--net.depth",
    "1",
    "--net.time-dim",
    "16",
    "--net.code-dim",
    "16",
    "--net.encoder-hidden",
    "16",
    "--net.encoder-depth",
    "1",
    "--net.fourier-levels",
    "2",
    "--train.batch-size",
    "2",
    "--train.log-every",
    "2",
]


def _train(tmp_path, name, *extra, steps=3):
    out = tmp_path / name
    code = main(["pose", "train", *TINY, "--train.steps", str(steps), "--train.output-dir", str(out), *extra])
    assert code == 0
    return out


def _sample(run, shape, out, *extra):
    assert main(["pose", "sample", "--checkpoint", str(run), "--input", str(shape), "--out", str(out), *extra]) == 0
    record = json.loads(out.read_text())
    joints = np.load(out.with_suffix(".npy"))
    assert out.with_suffix(".png").is_file()
    np.testing.assert_allclose(record["joints"], joints.reshape(-1, 3), atol=1e-12)
    return record, joints


def _eval(run, out, *extra):
    assert (
        main(
            [
                "pose",
                "eval",
                "--checkpoint",
                str(run),
                "--n-shapes",
                "3",
                "--figure-shapes",
                "2",
                "--cfm-steps",
                "1",
                "2",
                "--baseline-steps",
                "1",
                "3",
                "--out",
                str(out),
                *extra,
            ]
        )
        == 0
    )
    assert (out / "predictions.png").is_file()
    return json.loads((out / "metrics.json").read_text())


def test_template_choices_are_the_templates():
    assert set(typing.get_args(Template)) == {"mixed", *TEMPLATES}


def test_variable_topology_train_sample_eval(tmp_path):
    """Mixed templates: per-point targets, mean-shift joints, MST edges, IoU / P / R."""
    run = _train(tmp_path, "mixed")
    assert (run / "samples" / "step-0000003.png").is_file()
    meta = json.loads((run / "step-0000003" / "meta.json").read_text())
    assert meta["normalisation"]["representation"] == "per_point"
    assert meta["config"]["method"]["formulation"] == "ddim"

    cloud = trimesh.creation.capsule(height=1.0, radius=0.2, count=[8, 8]).sample(500, seed=0)
    trimesh.PointCloud(cloud).export(tmp_path / "shape.ply")
    record, joints = _sample(
        run,
        tmp_path / "shape.ply",
        tmp_path / "joints.json",
        "--extraction.min-count",
        "1",
        "--extraction.bandwidth",
        "0.2",
    )
    assert record["representation"] == "per_point" and "names" not in record
    assert len(joints) >= 1 and len(record["mst_edges"]) == len(joints) - 1
    assert joints.shape == (record["num_joints"], 3)

    metrics = _eval(run, tmp_path / "eval", "--extraction.min-count", "1")
    assert [(r["label"], r["nfe"]) for r in metrics["rows"]] == [
        ("cfm", 1),
        ("cfm", 2),
        ("baseline", 1),
        ("baseline", 3),
    ]
    for row in metrics["rows"]:
        assert 0 <= row["iou"] <= 1 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
        assert row["total_ms_per_shape"] >= row["ms_per_shape"] > 0
    assert metrics["representation"] == "per_point" and metrics["n_shapes"] == 3


def test_fixed_topology_joints_follow_the_input_frame(tmp_path):
    """One template: a joint vector with names and parents; the input's own frame is kept."""
    run = _train(tmp_path, "biped", "--procedural.template", "biped")
    base = _train(tmp_path, "biped-base", "--procedural.template", "biped", "--method.instantaneous-ratio", "1.0")
    points = np.random.default_rng(0).uniform([-0.3, 0, -0.1], [0.3, 1, 0.1], (64, 3))
    np.save(tmp_path / "unit.npy", points)
    np.save(tmp_path / "moved.npy", 10 * points + [5.0, -2.0, 1.0])
    record, unit = _sample(run, tmp_path / "unit.npy", tmp_path / "unit.json", "--steps", "2")
    _, moved = _sample(run, tmp_path / "moved.npy", tmp_path / "moved.json", "--steps", "2")
    template = get_template("biped")
    assert record["names"] == list(template.names)
    assert record["parents"] == template.parents.tolist()
    assert unit.shape == (template.num_joints, 3)
    np.testing.assert_allclose(moved, 10 * unit + [5.0, -2.0, 1.0], rtol=1e-5, atol=1e-4)

    metrics = _eval(run, tmp_path / "eval", "--baseline", str(base))
    assert metrics["baseline"] == str(base)
    for row in metrics["rows"]:
        assert row["mpjpe"] > 0 and row["bone_length_error"] >= 0 and row["joints"] == 22


def test_smpl_convert_train_sample_eval(tmp_path):
    """The synthetic SMPL-format model through convert-smpl, then the SMPL data path."""
    original = write_synthetic_smpl_model(tmp_path / "SMPL_NEUTRAL.pkl")
    converted = tmp_path / "converted" / "smpl.npz"
    assert main(["pose", "convert-smpl", str(original), str(converted)]) == 0
    arrays = np.load(converted)
    for key, value in synthetic_smpl_arrays().items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)

    run = _train(tmp_path, "smpl", "--data", "smpl", "--smpl.model", str(converted), steps=2)
    mesh = trimesh.Trimesh(synthetic_smpl_arrays()["v_template"], synthetic_smpl_arrays()["f"])
    mesh.export(tmp_path / "body.obj")
    record, joints = _sample(run, tmp_path / "body.obj", tmp_path / "body.json")
    assert record["names"] == list(SMPL_JOINT_NAMES)
    assert record["parents"] == SMPL_PARENTS.tolist() and joints.shape == (24, 3)
    metrics = _eval(run, tmp_path / "eval", "--baseline-steps", "2")
    assert [r["nfe"] for r in metrics["rows"]] == [1, 2, 2]
    assert all(r["mpjpe"] > 0 for r in metrics["rows"])


def test_smplx_convert_train_sample_eval_with_a_motion(tmp_path, capsys):
    """An SMPL-X model folder and an SMPL-X motion: 55 named joints; the detected type is saved."""
    original = write_synthetic_smplx_model(tmp_path / "smplx_original.pkl")
    folder = tmp_path / "models"
    assert main(["pose", "convert-smpl", str(original), str(folder / "SMPLX_NEUTRAL.npz")]) == 0
    assert "(SMPL-X model, 55 joints)" in capsys.readouterr().out
    np.savez(tmp_path / "motion.npz", poses=np.random.default_rng(0).normal(scale=0.2, size=(5, 165)))
    run = _train(
        tmp_path,
        "smplx",
        "--data",
        "smpl",
        "--smpl.model",
        str(folder),
        "--smpl.motion",
        str(tmp_path / "motion.npz"),
        steps=2,
    )
    meta = json.loads((run / "step-0000002" / "meta.json").read_text())
    assert meta["config"]["smpl"]["model_type"] == "smplx"
    arrays = synthetic_smplx_arrays()
    trimesh.Trimesh(arrays["v_template"], arrays["f"]).export(tmp_path / "body.ply")
    record, joints = _sample(run, tmp_path / "body.ply", tmp_path / "body.json")
    assert record["names"] == list(SMPLX_JOINT_NAMES) and record["num_joints"] == 55
    assert record["parents"] == SMPLX_PARENTS.tolist() and joints.shape == (55, 3)
    metrics = _eval(run, tmp_path / "eval", "--baseline-steps", "2")
    assert all(r["mpjpe"] > 0 and r["joints"] == 55 for r in metrics["rows"])
    smpl = write_synthetic_smpl_model(tmp_path / "SMPL_NEUTRAL.pkl")
    assert f"--data-path: {smpl}: an SMPL model (24 joints), expected SMPL-X" in _error(
        capsys, "eval", "--checkpoint", str(run), "--data-path", str(smpl)
    )


RIG = """joints hips 0.0 0.5 0.0
joints spine 0.0 0.8 0.0
joints leg 0.0 0.2 0.0
root hips
hier hips spine
hier hips leg
"""


def test_rignet_folder_trains_and_evaluates(tmp_path):
    root = tmp_path / "rignet"
    for sub in ("obj", "rig_info"):
        (root / sub).mkdir(parents=True)
    for name, height in (("1", 1.0), ("2", 1.2)):
        box = trimesh.creation.box(extents=(0.3, height, 0.3))
        box.apply_translation([0, height / 2, 0])
        box.export(root / "obj" / f"{name}.obj")
        (root / "rig_info" / f"{name}.txt").write_text(RIG)
    run = _train(
        tmp_path,
        "rignet",
        "--data",
        "rignet",
        "--rignet.root",
        str(root),
        "--rignet.split",
        "all",
        "--rignet.eval-split",
        "all",
        steps=2,
    )
    metrics = _eval(run, tmp_path / "eval", "--extraction.min-count", "1", "--n-shapes", "5")
    assert metrics["n_shapes"] == 2 and metrics["data"] == "rignet"
    assert all(r["gt_joints"] == 3 and "iou" in r for r in metrics["rows"])


def _error(capsys, *argv):
    """stderr of a failing command (config checks inside the dataclasses exit via tyro)."""
    try:
        code = main(["pose", *argv])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    return " ".join(capsys.readouterr().err.replace("│", " ").split())


def test_broken_rignet_characters_stop_training_before_any_step(tmp_path, capsys):
    """Every character of both splits is read before training; errors name the option and file."""
    root = tmp_path / "rignet"
    for sub in ("obj", "rig_info"):
        (root / sub).mkdir(parents=True)
    for name in ("1", "2", "3"):
        trimesh.creation.box(extents=(0.3, 1.0, 0.3)).export(root / "obj" / f"{name}.obj")
        (root / "rig_info" / f"{name}.txt").write_text(RIG)
    (root / "train_final.txt").write_text("1\n2\n")
    (root / "test_final.txt").write_text("3\n")
    train = [
        "train",
        *TINY,
        "--train.steps",
        "1",
        "--train.output-dir",
        str(tmp_path / "run"),
        "--data",
        "rignet",
        "--rignet.root",
        str(root),
    ]
    (root / "rig_info" / "2.txt").write_text(RIG + "hier spine hips\n")
    assert f"--rignet.root: {root / 'rig_info' / '2.txt'}:7: joint 'hips' is the root" in _error(capsys, *train)
    (root / "rig_info" / "2.txt").write_text(RIG)
    (root / "rig_info" / "3.txt").write_text(RIG.replace("hier hips leg\n", "hier leg hips\n"))
    assert f"--rignet.root: {root / 'rig_info' / '3.txt'}:6: joint 'hips' is the root" in _error(capsys, *train)
    (root / "rig_info" / "3.txt").write_text(RIG)
    (root / "obj" / "1.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    assert f"{root / 'obj' / '1.obj'}: the mesh has NaN or inf vertices or no surface area" in (_error(capsys, *train))
    assert not (tmp_path / "run").exists()


def test_bad_options_name_the_option(capsys):
    for argv, message in [
        (("train", "--n-points", "8"), "--n-points must be at least 16, got 8"),
        (("train", "--data-scale", "0"), "--data-scale must be positive, got 0.0"),
        (("train", "--net.encoder-depth", "0"), "--net.encoder-depth must be positive, got 0"),
        (("train", "--net.time-dim", "15"), "--net.time-dim must be even, got 15"),
        (("train", "--smpl.pose-std", "-1"), "--smpl.pose-std must not be negative, got -1.0"),
        (("train", "--smpl.num-betas", "0"), "--smpl.num-betas must be at least 1, got 0"),
        (("train", "--smpl.gender", "alien"), "invalid choice 'alien' for argument '--smpl.gender'"),
        (
            ("sample", "--checkpoint", "c", "--input", "i", "--extraction.min-count", "0"),
            "--extraction.min-count must be positive, got 0",
        ),
        (("eval", "--checkpoint", "c", "--figure-shapes", "0"), "--figure-shapes must be positive"),
        (
            ("eval", "--checkpoint", "c", "--baseline-steps", "2", "0"),
            "--baseline-steps must be positive integers, got [2, 0]",
        ),
    ]:
        assert message in _error(capsys, *argv), argv


def test_bad_inputs_fail_before_work_with_the_file_named(tmp_path, capsys):
    def error(*argv):
        return _error(capsys, *argv)

    assert "--data smpl needs --smpl.model" in error("train", "--data", "smpl")
    missing = tmp_path / "absent.pkl"
    assert f"--smpl.model: SMPL model file not found: {missing}" in error(
        "train", "--data", "smpl", "--smpl.model", str(missing)
    )
    model = write_synthetic_smpl_model(tmp_path / "SMPL_NEUTRAL.pkl")
    assert "--smpl.motion: motion file not found" in error(
        "train", "--data", "smpl", "--smpl.model", str(model), "--smpl.motion", str(tmp_path / "walk.npz")
    )
    smplx_model = write_synthetic_smplx_model(tmp_path / "SMPLX_NEUTRAL.npz")
    assert f"--smpl.model: {smplx_model}: an SMPL-X model (55 joints), expected SMPL" in error(
        "train", "--data", "smpl", "--smpl.model", str(smplx_model), "--smpl.model-type", "smpl"
    )
    cyclic = tmp_path / "cyclic.npz"
    table = np.load(smplx_model)["kintree_table"].copy()
    table[0, 12], table[0, 9] = 15, 12  # neck under the head, spine3 under the neck
    np.savez(cyclic, **{**np.load(smplx_model), "kintree_table": table})
    assert f"--smpl.model: {cyclic}: 'kintree_table': the hierarchy has a cycle" in error(
        "train", "--data", "smpl", "--smpl.model", str(cyclic)
    )
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}))
    assert "broken.pkl: not an SMPL-family model, missing key 'J_regressor'" in error(
        "train", "--data", "smpl", "--smpl.model", str(broken)
    )
    assert f"RigNet folder not found: {tmp_path / 'nowhere'}" in error(
        "train", "--data", "rignet", "--rignet.root", str(tmp_path / "nowhere")
    )
    assert not (tmp_path / "runs").exists()

    assert "SRC: SMPL model file not found" in error("convert-smpl", str(missing), "out.npz")
    assert "must end in .pkl or .npz" in error("convert-smpl", str(model), str(tmp_path / "out.txt"))
    blocked = tmp_path / "file" / "out.pkl"
    (tmp_path / "file").write_text("a file, not a folder")
    assert f"cannot write {blocked}: {blocked.parent} is a file" in error("convert-smpl", str(model), str(blocked))
    assert "--checkpoint: checkpoint or run directory not found" in error(
        "sample", "--checkpoint", str(tmp_path / "run"), "--input", str(model)
    )
    assert "--out must name a .json file" in error("sample", "--checkpoint", "x", "--input", "y", "--out", "joints.npy")

    run = _train(tmp_path, "run", steps=1)
    assert "--input: shape file not found" in error(
        "sample", "--checkpoint", str(run), "--input", str(tmp_path / "none.ply")
    )
    np.save(tmp_path / "flat.npy", np.zeros((10, 2)))
    assert "flat.npy must hold an (N, 3) array" in error(
        "sample", "--checkpoint", str(run), "--input", str(tmp_path / "flat.npy")
    )
    (tmp_path / "junk.obj").write_text("this is not a mesh\n")
    assert "junk.obj" in error("sample", "--checkpoint", str(run), "--input", str(tmp_path / "junk.obj"))
    assert "--seed 0 is the training seed" in error("eval", "--checkpoint", str(run), "--seed", "0")
    assert "unknown preset 'fast'" in error("train", "--preset", "fast")


def test_distil_a_baseline_and_refuse_another_encoding(tmp_path, capsys):
    teacher = _train(tmp_path, "teacher", "--method.instantaneous-ratio", "1.0")
    student = _train(tmp_path, "student", "--method.teacher", str(teacher), "--method.objective", "lagrangian")
    meta = json.loads((student / "step-0000003" / "meta.json").read_text())
    assert len(meta["extra"]["teacher"]["weights_sha256"]) == 64
    argv = ["pose", "train", *TINY, "--train.steps", "1", "--train.output-dir", str(tmp_path / "x")]
    assert main([*argv, "--method.teacher", str(teacher), "--pdt-rule", "joint"]) == 2
    assert 'pdt_rule = "bone", the student has pdt_rule = "joint"' in capsys.readouterr().err


def test_distil_an_epsilon_ddpm_teacher_into_the_default_student(tmp_path, capsys):
    """The ddpm-baseline preset's method (epsilon-prediction, r = t only) trains a teacher whose
    checkpoint records the prediction; the default x0 student distils it, starting fresh; a u
    student is refused."""
    method = TRAIN_PRESETS["ddpm-baseline"].method
    assert (method.formulation, method.formulation_options, method.is_baseline) == (
        "ddim",
        {"prediction": "epsilon"},
        True,
    )
    teacher = _train(
        tmp_path,
        "teacher",
        "--method.instantaneous-ratio",
        "1.0",
        "--method.formulation-options",
        "prediction",
        "epsilon",
    )
    assert json.loads((teacher / "step-0000003" / "meta.json").read_text())["formulation"]["prediction"] == "epsilon"
    capsys.readouterr()
    student = _train(tmp_path, "student", "--method.teacher", str(teacher))
    assert "predicts another quantity" in capsys.readouterr().out  # the teacher's weights predict the noise
    meta = json.loads((student / "step-0000003" / "meta.json").read_text())
    assert "prediction" not in meta["formulation"] and len(meta["extra"]["teacher"]["weights_sha256"]) == 64
    argv = ["pose", "train", *TINY, "--train.steps", "1", "--train.output-dir", str(tmp_path / "x")]
    assert main([*argv, "--method.teacher", str(teacher), "--method.formulation", "u"]) == 2
    assert "distil within one formulation" in capsys.readouterr().err
