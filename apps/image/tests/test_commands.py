"""The image app end to end through the ``cfm`` command (tiny runs on CPU), and its errors."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from cfm_core.cli import ConfigError, main, parse_config
from cfm_core.training import load_checkpoint
from cfm_image.classifier import ClassifierRecipe, builtin_classifier
from cfm_image.commands import make_trainer
from cfm_image.config import ImageTrainConfig
from cfm_image.data import write_shards
from cfm_image.sources import reference_images
from PIL import Image

# 8x8 digits, the micro UNet: a few seconds per command on one CPU thread.
TINY = [
    "--net.preset",
    "micro",
    "--net.base-channels",
    "8",
    "--data.resolution",
    "8",
    "--train.batch-size",
    "16",
    "--train.log-every",
    "2",
    "--train.sample-every",
    "0",
]


def train(out, *extra, steps=2):
    code = main(
        [
            "image",
            "train",
            *TINY,
            "--train.steps",
            str(steps),
            "--train.checkpoint-every",
            str(steps),
            "--train.output-dir",
            str(out),
            *extra,
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def cfm_run(tmp_path_factory):
    """A class-conditional CFM run on the 8x8 digits (4 steps)."""
    return train(tmp_path_factory.mktemp("runs") / "cfm", steps=4)


def test_train_sample_eval_info(cfm_run, tmp_path, capsys, monkeypatch):
    assert (cfm_run / "step-0000004" / "meta.json").is_file()
    assert (cfm_run / "samples" / "step-0000004.png").is_file()  # the end-of-run hook
    meta = json.loads((cfm_run / "step-0000004" / "meta.json").read_text())
    data = meta["config"]["data"]  # resolved from the data and stored for sampling
    assert (data["resolution"], data["channels"], data["num_classes"]) == (8, 1, 10)

    grid, folder = tmp_path / "grid.png", tmp_path / "each"
    assert (
        main(
            [
                "image",
                "sample",
                "--checkpoint",
                str(cfm_run),
                "--steps",
                "2",
                "--n",
                "12",
                "--labels",
                "3",
                "7",
                "--guidance",
                "2.0",
                "--grid",
                str(grid),
                "--individual-dir",
                str(folder),
            ]
        )
        == 0
    )
    pixels = np.asarray(Image.open(grid))
    assert pixels.shape == (3 * 9 + 1, 4 * 9 + 1)  # 12 images of 8x8, 4 per row, 1 px gaps
    files = sorted(folder.glob("*.png"))
    assert [f.name for f in files] == [f"{k:05d}.png" for k in range(12)]
    assert np.asarray(Image.open(files[0])).shape == (8, 8)

    monkeypatch.setenv("CFM_CACHE_DIR", str(tmp_path / "cache"))
    eval_dir = tmp_path / "eval"
    assert (
        main(
            [
                "image",
                "eval",
                "--checkpoint",
                str(cfm_run),
                "--n",
                "20",
                "--baseline-steps",
                "1",
                "3",
                "--out",
                str(eval_dir),
            ]
        )
        == 0
    )
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert [(r["label"], r["nfe"]) for r in metrics["rows"]] == [
        ("cfm", 1),
        ("cfm", 2),
        ("cfm", 4),
        ("baseline", 1),
        ("baseline", 3),
    ]
    assert metrics["baseline"].startswith("the CFM model's own r = t field")
    assert metrics["primary_metric"] == "classifier_fd"
    for row in metrics["rows"]:
        assert row["classifier_fd"] > 0 and 0 <= row["classifier_accuracy"] <= 1
        assert 0 <= row["class_entropy_marginal"] <= np.log(10) + 1e-6
    assert metrics["held_out"]["classifier_accuracy"] > 0.8  # the classifier works
    assert "classifier_fd" not in metrics["held_out"]  # 180 images: mostly small-sample bias
    assert metrics["fid"]["status"] == "skipped" and "--fid-weights PATH" in metrics["fid"]["reason"]
    assert "FID skipped: no Inception weights given" in capsys.readouterr().out
    assert list((tmp_path / "cache" / "image").glob("classifier-digits-8px-*.safetensors"))
    for name in ("samples.png", "quality_vs_nfe.png", "grids/cfm-1.png", "grids/baseline-euler-3.png"):
        assert (eval_dir / name).is_file()

    capsys.readouterr()
    assert main(["image", "info", "--checkpoint", str(cfm_run)]) == 0
    assert '"preset": "micro"' in capsys.readouterr().out


def test_warm_start_from_the_baseline(tmp_path):
    base = train(tmp_path / "base", "--method.instantaneous-ratio", "1.0")
    argv = [*TINY, "--train.steps", "2", "--train.output-dir", str(tmp_path / "warm"), "--train.init-from", str(base)]
    trainer = make_trainer(parse_config(ImageTrainConfig, argv, prog="test"))
    ema = load_checkpoint(base, load_optimizer=False).state_dict(use_ema=True)
    state = trainer.unwrapped_model.state_dict()
    assert set(state) == set(ema)
    for name, value in state.items():  # the CFM run starts from the baseline's EMA weights
        assert torch.equal(value, ema[name]), name
    assert trainer.unwrapped_loss.recipe.instantaneous_ratio == 0.5
    assert trainer.fit()["trained_steps"] == 2


@pytest.mark.parametrize("options", [["x1"], ["edm", "--method.formulation-options", "sigma_data", "0.5"]])
def test_every_formulation_trains_and_samples(options, tmp_path):
    run = train(tmp_path / "run", "--method.formulation", *options)
    config = json.loads((run / "step-0000002" / "meta.json").read_text())["config"]
    assert config["method"]["formulation"] == options[0]
    if options[0] == "edm":
        assert config["method"]["formulation_options"] == {"sigma_data": 0.5}
    folder = tmp_path / "each"
    assert (
        main(
            [
                "image",
                "sample",
                "--checkpoint",
                str(run),
                "--steps",
                "2",
                "--n",
                "3",
                "--grid",
                "None",
                "--individual-dir",
                str(folder),
            ]
        )
        == 0
    )
    assert len(list(folder.glob("*.png"))) == 3


def test_initial_weights_follow_the_training_seed(tmp_path):
    def initial_state(seed):
        argv = [*TINY, "--train.seed", str(seed), "--train.output-dir", str(tmp_path / "r")]
        return make_trainer(parse_config(ImageTrainConfig, argv, prog="test")).unwrapped_model

    torch.manual_seed(123)  # the global RNG state must not matter
    first = initial_state(0).state_dict()
    torch.manual_seed(456)
    second, other = initial_state(0).state_dict(), initial_state(1).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_warm_start_refuses_another_unet(cfm_run, tmp_path, capsys):
    code = main(
        [
            "image",
            "train",
            *TINY,
            "--net.base-channels",
            "16",
            "--train.steps",
            "1",
            "--train.output-dir",
            str(tmp_path / "x"),
            "--train.init-from",
            str(cfm_run),
        ]
    )
    assert code == 2
    assert "another UNet" in capsys.readouterr().err


def test_folder_with_labels_and_shards(labelled_folder, grid_dataset, tmp_path, capsys):
    run = train(tmp_path / "folder", "--data.folder", str(labelled_folder), "--data.labels")
    data = json.loads((run / "step-0000002" / "meta.json").read_text())["config"]["data"]
    assert (data["channels"], data["num_classes"]) == (3, 2)

    write_shards(grid_dataset, str(tmp_path / "shards" / "shard-%03d.tar"), maxcount=6)
    pattern = str(tmp_path / "shards" / "shard-{000..001}.tar")
    assert (
        main(
            [
                "image",
                "train",
                *TINY,
                "--data.shards",
                pattern,
                "--data.labels",
                "--train.steps",
                "1",
                "--train.output-dir",
                str(tmp_path / "s0"),
            ]
        )
        == 2
    )
    assert "data.num_classes" in capsys.readouterr().err  # no meta.json beside these shards
    run = train(
        tmp_path / "shards-run",
        "--data.shards",
        pattern,
        "--data.labels",
        "--data.num-classes",
        "3",
        "--data.channels",
        "3",
    )
    data = json.loads((run / "step-0000002" / "meta.json").read_text())["config"]["data"]
    assert (data["resolution"], data["channels"], data["num_classes"]) == (8, 3, 3)

    packed = tmp_path / "packed"  # the pack tool's folder: classes and channels from meta.json
    assert (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cfm_image.pack_shards",
                str(labelled_folder),
                str(packed),
                "--resolution",
                "8",
                "--maxcount",
                "5",
                "--labels",
            ]
        ).returncode
        == 0
    )
    run = train(tmp_path / "packed-run", "--data.shards", str(packed), "--data.labels")
    data = json.loads((run / "step-0000002" / "meta.json").read_text())["config"]["data"]
    assert (data["channels"], data["num_classes"]) == (3, 2)

    # faces: unlabelled, so unconditional; eval has no classifier there
    eval_dir = tmp_path / "faces-eval"
    run = train(tmp_path / "faces", "--data.builtin", "faces")
    assert (
        main(
            [
                "image",
                "eval",
                "--checkpoint",
                str(run),
                "--n",
                "10",
                "--cfm-steps",
                "1",
                "--baseline-steps",
                "2",
                "--out",
                str(eval_dir),
            ]
        )
        == 0
    )
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["primary_metric"] == "pixel_energy" and "classifier" not in metrics
    assert set(metrics["rows"][0]) >= {"pixel_energy", "ms_per_sample"}


def test_eval_with_fid(cfm_run, fake_inception_weights, tmp_path, monkeypatch, capsys):
    from cfm_image import commands

    fast = functools.partial(builtin_classifier, recipe=ClassifierRecipe(epochs=1, width=8))
    monkeypatch.setattr(commands, "builtin_classifier", fast)
    monkeypatch.setattr(
        commands,
        "reference_images",  # 4 real images: Inception is slow on CPU
        lambda data, limit: reference_images(data, 4),
    )
    monkeypatch.setenv("CFM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    argv = [
        "image",
        "eval",
        "--checkpoint",
        str(cfm_run),
        "--n",
        "10",
        "--cfm-steps",
        "1",
        "--baseline-steps",
        "--out",
        str(out),
        "--fid-weights",
    ]
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"not weights")
    for weights, message in [
        (tmp_path / "missing.pth", "Inception weights file not found"),
        (damaged, f"{damaged} is not the published"),
    ]:
        assert main([*argv, str(weights)]) == 2  # before any work: nothing written
        assert f"--fid-weights: {message}" in capsys.readouterr().err and not out.exists()

    assert main([*argv, str(fake_inception_weights), "--allow-unverified-fid-weights"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fid"] == {"status": "computed", "weights": str(fake_inception_weights), "reference_images": 4}
    assert [row["label"] for row in metrics["rows"]] == ["cfm"]
    assert metrics["rows"][0]["fid"] > 0 and metrics["primary_metric"] == "classifier_fd"
    assert "fid" not in metrics["held_out"]
    assert "FID" in capsys.readouterr().out  # a column of the printed table


def test_demo_with_a_trained_baseline(tmp_path, monkeypatch, capsys):
    from cfm_image import commands

    fast = functools.partial(builtin_classifier, recipe=ClassifierRecipe(epochs=1, width=8))
    monkeypatch.setattr(commands, "builtin_classifier", fast)
    monkeypatch.setenv("CFM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert (
        main(
            [
                "image",
                "demo",
                "--out",
                str(out),
                "--steps",
                "2",
                "--n",
                "10",
                "--baseline",
                "trained",
                "--baseline-steps",
                "1",
                "2",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["baseline"].startswith(str(out / "baseline"))
    assert [(r["label"], r["nfe"]) for r in metrics["rows"]][-2:] == [("baseline", 1), ("baseline", 2)]
    assert (out / "cfm" / "samples" / "step-0000002.png").is_file()
    assert "baseline: " + str(out / "baseline") in capsys.readouterr().out


def test_bad_inputs_fail_before_work_with_the_option_named(cfm_run, tmp_path, capsys):
    assert main(["image", "sample", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "--checkpoint: checkpoint or run directory not found" in capsys.readouterr().err
    assert main(["image", "sample", "--checkpoint", str(cfm_run), "--labels", "10"]) == 2
    assert "out of range for 10 classes" in capsys.readouterr().err
    assert main(["image", "train", "--data.folder", str(tmp_path / "nope")]) == 2
    assert "data.folder" in capsys.readouterr().err
    assert main(["image", "train", "--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    for argv, message in [
        (["sample", "--checkpoint", str(cfm_run), "--grid", "None"], "nothing to write"),
        (["train", "--data.folder", "a", "--data.shards", "b"], "not both"),
        (["train", "--data.channels", "3"], "grey"),
        (["train", "--method.formulation", "flow"], "flow"),
        (["eval", "--checkpoint", str(cfm_run), "--n", "3"], "--n must be at least 10"),
    ]:
        assert main(["image", *argv]) == 2
        assert message in capsys.readouterr().err


def test_distil_the_baseline(tmp_path):
    """--method.teacher: the student starts from the teacher's EMA weights and records the teacher;
    a teacher of another class count is refused before training."""
    base = train(tmp_path / "base", "--method.instantaneous-ratio", "1.0")
    argv = [*TINY, "--train.steps", "2", "--train.output-dir", str(tmp_path / "student")]
    trainer = make_trainer(
        parse_config(
            ImageTrainConfig, [*argv, "--method.teacher", str(base), "--method.objective", "lagrangian"], prog="test"
        )
    )
    ema = load_checkpoint(base, load_optimizer=False).state_dict(use_ema=True)
    for name, value in trainer.unwrapped_model.state_dict().items():
        assert torch.equal(value, ema[name]), name
    assert trainer.unwrapped_loss.objective == "lagrangian"
    assert trainer.fit()["trained_steps"] == 2
    record = json.loads((tmp_path / "student" / "step-0000002" / "meta.json").read_text())["extra"]["teacher"]
    assert record["weights_sha256"] == trainer.unwrapped_loss.teacher.weights_sha256
    other = [*argv, "--data.unconditional", "--method.teacher", str(base)]
    with pytest.raises(ConfigError, match="data.num_classes = 10, the student has data.num_classes = null"):
        make_trainer(parse_config(ImageTrainConfig, other, prog="test"))
