"""The sdf app end to end through the ``cfm`` command (tiny decoder, a few steps, CPU), and its
error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh
from cfm_core.cli import main
from cfm_core.training import load_checkpoint, read_log
from cfm_sdf.config import TRAIN_PRESETS
from cfm_sdf.families import random_shape
from PIL import Image

TINY = [
    "--net.preset",
    "tiny",
    "--data.n-context",
    "128",
    "--data.n-query-near",
    "64",
    "--data.n-query-surface",
    "16",
    "--data.noise-grid",
    "8",
    "--train.steps",
    "20",
    "--train.batch-size",
    "4",
    "--train.lr",
    "3e-3",
    "--train.warmup-steps",
    "0",
    "--train.log-every",
    "10",
    "--train.checkpoint-every",
    "20",
    "--train.sample-every",
    "0",
]
PREPARE_SIZES = ["--n-surface", "256", "--n-volume", "512", "--n-near", "128"]


def train(path, *extra):
    assert main(["sdf", "train", *TINY, "--train.output-dir", str(path), *extra]) == 0
    return path


def mesh_folder(root, broken_only=False):
    """A ball (a shape a tiny decoder learns in 20 steps) and a box with a hole."""
    root.mkdir()
    hole = trimesh.creation.box()
    hole.update_faces(np.arange(len(hole.faces)) >= 2)
    hole.export(root / "broken.stl")
    if not broken_only:
        trimesh.creation.icosphere(subdivisions=3, radius=2.0).export(root / "ball.obj")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Models trained on a prepared folder holding one ball: 20 steps give them a surface."""
    root = tmp_path_factory.mktemp("runs")
    records = root / "records"
    assert main(["sdf", "prepare", str(mesh_folder(root / "meshes")), str(records), *PREPARE_SIZES]) == 0
    folder = ["--data.folder", str(records)]
    return {
        "cfm": train(root / "cfm", *folder),
        "baseline": train(root / "baseline", *folder, "--method.instantaneous-ratio", "1.0"),
        "unconditional": train(root / "unconditional", *folder, "--unconditional"),
        "dropout": train(root / "dropout", *folder, "--method.cond-dropout", "0.5"),
        "records": records,
    }


@pytest.fixture(scope="module")
def chair_points(tmp_path_factory):
    path = tmp_path_factory.mktemp("points") / "p.npy"
    shape = random_shape("chair", np.random.default_rng(5))
    np.save(path, shape.sample_surface(100, np.random.default_rng(0)))
    return path


def test_train_writes_checkpoint_and_training_picture(runs):
    run = runs["cfm"]
    meta = json.loads((run / "step-0000020" / "meta.json").read_text())
    assert meta["app"] == "sdf" and meta["config"]["method"]["formulation"] == "x1"
    assert meta["normalisation"]["truncation"] == 0.2
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert np.isfinite([r["loss"] for r in log if "loss" in r]).all()
    assert Image.open(run / "samples" / "step-0000020.png").size[0] > 200


def test_training_on_a_family_scores_its_picture(tmp_path):
    run = train(tmp_path / "family", "--data.family", "chair", "--train.steps", "2", "--train.checkpoint-every", "2")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert 0.0 <= log[-1]["sample/iou"] <= 1.0
    assert (run / "samples" / "step-0000002.png").is_file()


def test_training_with_correlated_noise_resumes_exactly(tmp_path):
    """4 steps straight == 2 steps, then resumed to 4: the noise sampler draws from the trainer's
    per-step seeds, so the losses and the weights match exactly."""
    short = ["--data.family", "stool", "--train.log-every", "1", "--train.checkpoint-every", "2"]
    straight = train(tmp_path / "straight", *short, "--train.steps", "4")
    resumed = train(tmp_path / "resumed", *short, "--train.steps", "2")
    train(resumed, *short, "--train.steps", "4", "--train.resume")
    losses = [[r["loss"] for r in read_log(run) if "loss" in r] for run in (straight, resumed)]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    for use_ema in (False, True):
        weights = [load_checkpoint(run / "step-0000004").state_dict(use_ema=use_ema) for run in (straight, resumed)]
        for name, value in weights[0].items():
            assert torch.equal(value, weights[1][name]), name


def test_sample_from_points_writes_mesh_and_png(runs, chair_points, tmp_path, capsys):
    out = tmp_path / "chair.obj"
    args = [
        "sdf",
        "sample",
        "--checkpoint",
        str(runs["cfm"]),
        "--points",
        str(chair_points),
        "--resolution",
        "24",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "network" in printed and "meshing" in printed and "NFE 1" in printed
    mesh = trimesh.load(out, force="mesh")
    assert len(mesh.faces) > 0 and np.abs(mesh.vertices).max() <= 1.0 + 2.0 / 23
    assert Image.open(out.with_suffix(".png")).size == (512, 512)
    assert main([*args[:-2], "--out", str(tmp_path / "again.obj")]) == 0
    again = trimesh.load(tmp_path / "again.obj", force="mesh")
    np.testing.assert_array_equal(again.vertices, mesh.vertices)  # seeded: reproducible


def test_sample_from_a_mesh_maps_the_shape_back_to_its_frame(runs, tmp_path):
    source = random_shape("chair", np.random.default_rng(2)).to_mesh(24)
    source.apply_scale(10.0)
    source.apply_translation((5.0, -3.0, 2.0))
    source.export(tmp_path / "big.obj")
    out = tmp_path / "big-out.ply"
    assert (
        main(
            [
                "sdf",
                "sample",
                "--checkpoint",
                str(runs["cfm"]),
                "--points",
                str(tmp_path / "big.obj"),
                "--resolution",
                "16",
                "--steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    mesh = trimesh.load(out, force="mesh")
    center = source.bounds.mean(axis=0)
    scale = 0.9 / (source.extents.max() / 2.0)  # model frame -> input frame: / scale + center
    reach = (1.0 + 2.0 / 15) / scale
    assert np.all(np.abs(mesh.vertices - center) <= reach + 1e-6)
    assert np.abs(mesh.vertices - center).max() > 0.5 * reach  # the shape is at the input scale


def test_baseline_and_unconditional_sampling(runs, chair_points, tmp_path, capsys):
    out = tmp_path / "base.obj"
    assert (
        main(
            [
                "sdf",
                "sample",
                "--checkpoint",
                str(runs["baseline"]),
                "--points",
                str(chair_points),
                "--resolution",
                "16",
                "--steps",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "euler, 3 step(s), NFE 3" in capsys.readouterr().out
    out = tmp_path / "free.obj"
    assert (
        main(["sdf", "sample", "--checkpoint", str(runs["unconditional"]), "--resolution", "16", "--out", str(out)])
        == 0
    )
    assert len(trimesh.load(out, force="mesh").faces) > 0


def test_eval_against_a_baseline(runs, tmp_path):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "sdf",
                "eval",
                "--checkpoint",
                str(runs["cfm"]),
                "--baseline",
                str(runs["baseline"]),
                "--family",
                "chair",
                "--n-shapes",
                "3",
                "--batch-size",
                "2",
                "--cfm-steps",
                "1",
                "2",
                "--baseline-steps",
                "4",
                "--resolution",
                "16",
                "--n-surface-samples",
                "300",
                "--n-query",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(r["label"], r["sampler"], r["nfe"]) for r in metrics["rows"]] == [
        ("cfm", "cumulative", 1),
        ("cfm", "cumulative", 2),
        ("baseline", "euler", 4),
    ]
    for row in metrics["rows"]:
        assert 0.0 <= row["iou"] <= 1.0 and 0.0 <= row["fscore"] <= 1.0
        assert 0.0 <= row["sdf_error"] <= 2 * 0.2  # |clamped values| <= 1, times the truncation
        assert row["network_ms_per_shape"] > 0 and row["meshing_ms_per_shape"] >= 0
        assert len(row["per_shape"]["iou"]) == 3
        assert row["empty_shapes"] + sum(c is not None for c in row["per_shape"]["chamfer"]) == 3
    assert metrics["family"] == "chair"
    assert Image.open(out / "shapes.png").size[0] > 400
    assert (out / "quality_vs_nfe.png").is_file()


def test_guided_and_unconditional_sampling_of_a_dropout_model(runs, chair_points, tmp_path, capsys):
    run = json.loads((runs["dropout"] / "step-0000020" / "meta.json").read_text())
    assert run["config"]["method"]["cond_dropout"] == 0.5
    base = ["sdf", "sample", "--checkpoint", str(runs["dropout"]), "--resolution", "16"]
    assert main([*base, "--points", str(chair_points), "--out", str(tmp_path / "plain.obj")]) == 0
    assert "NFE 1)" in capsys.readouterr().out
    guided = tmp_path / "guided.obj"
    assert main([*base, "--points", str(chair_points), "--guidance", "3", "--out", str(guided)]) == 0
    assert "guidance 3, NFE 2" in capsys.readouterr().out  # a conditioned and a null call
    plain = trimesh.load(tmp_path / "plain.obj", force="mesh")
    assert not np.array_equal(trimesh.load(guided, force="mesh").vertices, plain.vertices)
    assert main([*base, "--out", str(tmp_path / "free.obj")]) == 0  # no points: the null condition
    assert (tmp_path / "free.png").is_file()


def test_eval_on_a_prepared_folder(runs, tmp_path, capsys):
    held_out = tmp_path / "held-out"
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.creation.icosphere(subdivisions=3, radius=1.0).export(meshes / "small-ball.obj")
    trimesh.creation.box(extents=(2.0, 1.0, 1.0)).export(meshes / "brick.ply")
    assert main(["sdf", "prepare", str(meshes), str(held_out), *PREPARE_SIZES]) == 0
    small = [
        "--n-shapes",
        "4",
        "--cfm-steps",
        "1",
        "--baseline-steps",
        "2",
        "--resolution",
        "16",
        "--n-surface-samples",
        "300",
        "--n-query",
        "64",
    ]
    out = tmp_path / "train-eval"
    assert main(["sdf", "eval", "--checkpoint", str(runs["cfm"]), *small, "--out", str(out)]) == 0
    assert "not held out" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["folder"] == str(runs["records"]) and metrics["held_out"] is False
    assert metrics["family"] is None and metrics["n_shapes"] == 1  # the folder holds one ball
    assert metrics["n_surface_samples"] == 256  # capped at the record's surface points
    assert "512 uniform volume points" in metrics["iou"]
    out = tmp_path / "held-out-eval"
    assert (
        main(["sdf", "eval", "--checkpoint", str(runs["cfm"]), "--folder", str(held_out), *small, "--out", str(out)])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out"] is True and metrics["shapes"][0].endswith("brick__ply.npz")
    for row in metrics["rows"]:
        assert len(row["per_shape"]["iou"]) == 2
        assert all(0.0 <= v <= 1.0 for v in row["per_shape"]["iou"])
        assert 0.0 <= row["sdf_error"] <= 2 * 0.2
    # the ball model scores the ball better than the brick
    ball, brick = metrics["rows"][0]["per_shape"]["iou"][::-1]
    assert ball > brick
    assert Image.open(out / "shapes.png").size[0] > 400


def test_prepare_reports_and_skips_the_broken_mesh(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["sdf", "prepare", str(mesh_folder(tmp_path / "meshes")), str(out), *PREPARE_SIZES]) == 0
    printed = capsys.readouterr()
    assert "prepared 1" in printed.out and "skipped 1" in printed.out
    assert "skipped broken.stl: not watertight" in printed.err + printed.out
    report = json.loads((out / "report.json").read_text())
    assert [s["source"] for s in report["skipped"]] == ["broken.stl"]
    assert sorted(p.name for p in out.glob("*.npz")) == ["ball__obj.npz"]


def test_prepare_fails_when_every_mesh_is_broken(tmp_path, capsys):
    folder = mesh_folder(tmp_path / "meshes", broken_only=True)
    assert main(["sdf", "prepare", str(folder), str(tmp_path / "out")]) == 2
    assert "no usable mesh" in capsys.readouterr().err
    assert main(["sdf", "prepare", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "mesh folder not found" in capsys.readouterr().err


def test_bad_inputs_fail_before_work_with_the_option_named(runs, chair_points, tmp_path, capsys):
    def fails(args, message):
        try:
            code = main(["sdf", *args])
        except SystemExit as exit:  # tyro reports errors of the configs' own checks this way
            code = exit.code
        assert code == 2
        assert message in " ".join(capsys.readouterr().err.split())  # tyro wraps lines

    cfm, free = str(runs["cfm"]), str(runs["unconditional"])
    fails(["sample", "--checkpoint", str(tmp_path / "missing")], "--checkpoint: checkpoint")
    fails(["sample", "--checkpoint", cfm], "--points: ")
    fails(["sample", "--checkpoint", free, "--points", str(chair_points)], "unconditionally")
    fails(["sample", "--checkpoint", cfm, "--points", str(tmp_path / "nope.npy")], "not found")
    np.save(tmp_path / "flat.npy", np.zeros((5, 2)))
    fails(["sample", "--checkpoint", cfm, "--points", str(tmp_path / "flat.npy")], "(N, 3)")
    np.save(tmp_path / "far.npy", np.full((5, 3), 7.0) + np.eye(5, 3))
    fails(["sample", "--checkpoint", cfm, "--points", str(tmp_path / "far.npy")], "bbox")
    fails(["sample", "--checkpoint", cfm, "--points", str(chair_points), "--out", "x.stl"], "--out: ")
    fails(["eval", "--checkpoint", free], "unconditional")
    fails(["eval", "--checkpoint", cfm, "--baseline", free], "--baseline")
    fails(["eval", "--checkpoint", cfm], "--folder: record")  # 4096 query points: too many
    fails(["eval", "--checkpoint", cfm, "--family", "chair", "--folder", "x"], "not both")
    fails(["eval", "--checkpoint", cfm, "--folder", str(tmp_path / "none")], "--folder: ")
    fails(["eval", "--checkpoint", cfm, "--family", "chair", "--guidance", "2"], "--guidance: ")
    fails(
        ["sample", "--checkpoint", cfm, "--points", str(chair_points), "--guidance", "2"], "without condition dropout"
    )
    fails(["sample", "--checkpoint", str(runs["dropout"]), "--guidance", "2"], "pass --points")
    fails(
        ["sample", "--checkpoint", str(runs["dropout"]), "--points", str(chair_points), "--guidance", "nan"], "finite"
    )
    fails(["train", "--data.folder", str(tmp_path / "none")], "--data.folder")
    fails(["train", "--unconditional", "--method.cond-dropout", "0.1"], "no condition to drop")
    fails(["train", "--preset", "huge"], "unknown preset")
    fails(["train", "--data.noise-grid", "1"], "--data.noise-grid must be at least 2")
    fails(["train", *TINY, "--net.width", "31", "--train.output-dir", str(tmp_path / "w")], "--net: ")


def test_distil_an_epsilon_ddpm_teacher_into_a_ddim_student(tmp_path, capsys):
    """The quick-ddpm-baseline preset's method (ddim, epsilon-prediction, r = t only) trains a teacher
    that an x0 ddim student distils; the app's default x1 student is refused."""
    method = TRAIN_PRESETS["quick-ddpm-baseline"].method
    assert (method.formulation, method.formulation_options, method.is_baseline) == (
        "ddim",
        {"prediction": "epsilon"},
        True,
    )
    ddpm = ["--method.formulation", "ddim", "--method.formulation-options", "prediction", "epsilon"]
    teacher = train(tmp_path / "teacher", *ddpm, "--method.instantaneous-ratio", "1.0", "--train.steps", "2")
    student = train(
        tmp_path / "student", "--method.formulation", "ddim", "--method.teacher", str(teacher), "--train.steps", "2"
    )
    meta = json.loads((student / "step-0000002" / "meta.json").read_text())
    assert meta["formulation"]["name"] == "ddim" and "prediction" not in meta["formulation"]
    argv = ["sdf", "train", *TINY, "--train.output-dir", str(tmp_path / "x"), "--method.teacher", str(teacher)]
    assert main(argv) == 2
    assert "distil within one formulation" in capsys.readouterr().err


def test_distil_a_baseline_and_refuse_another_conditioning(tmp_path, capsys):
    teacher = train(tmp_path / "teacher", "--method.instantaneous-ratio", "1.0", "--train.steps", "2")
    student = train(tmp_path / "student", "--method.teacher", str(teacher), "--train.steps", "2")
    meta = json.loads((student / "step-0000002" / "meta.json").read_text())
    assert len(meta["extra"]["teacher"]["weights_sha256"]) == 64
    argv = ["sdf", "train", *TINY, "--train.output-dir", str(tmp_path / "x"), "--method.teacher", str(teacher)]
    assert main([*argv, "--unconditional"]) == 2
    assert "unconditional = false, the student has unconditional = true" in capsys.readouterr().err
