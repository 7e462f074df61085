"""The toy app end to end through the ``cfm`` command, and its error messages."""

from __future__ import annotations

import json

import numpy as np
from cfm_core.cli import app_version, main


def _train(tmp_path, name="run", *extra):
    out = tmp_path / name
    code = main(
        [
            "toy",
            "train",
            "--data",
            "two_moons",
            "--net.hidden",
            "32",
            "--net.depth",
            "1",
            "--train.steps",
            "6",
            "--train.batch-size",
            "32",
            "--train.checkpoint-every",
            "3",
            "--train.log-every",
            "3",
            "--train.output-dir",
            str(out),
            *extra,
        ]
    )
    assert code == 0
    return out


def test_cfm_help_lists_every_app(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for app in ("toy", "image", "geometry", "pose", "sdf"):
        assert f"  {app}" in text
    assert "demo" in text and "train" in text


def test_train_sample_eval_info(tmp_path, capsys):
    cfm_run = _train(tmp_path, "cfm")
    base_run = _train(tmp_path, "base", "--method.instantaneous-ratio", "1.0")
    assert (cfm_run / "step-0000006" / "meta.json").is_file()
    assert (cfm_run / "samples" / "step-0000006.png").is_file()

    out = tmp_path / "s.npy"
    assert (
        main(
            [
                "toy",
                "sample",
                "--checkpoint",
                str(cfm_run),
                "--steps",
                "2",
                "--n",
                "50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    samples = np.load(out)
    assert samples.shape == (50, 2) and np.isfinite(samples).all()
    assert out.with_suffix(".png").is_file()

    eval_dir = tmp_path / "eval"
    assert (
        main(
            [
                "toy",
                "eval",
                "--checkpoint",
                str(cfm_run),
                "--baseline",
                str(base_run),
                "--n",
                "64",
                "--baseline-steps",
                "1",
                "4",
                "--out",
                str(eval_dir),
            ]
        )
        == 0
    )
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    nfes = [(r["label"], r["nfe"]) for r in metrics["rows"]]
    assert nfes == [("cfm", 1), ("cfm", 2), ("cfm", 4), ("baseline", 1), ("baseline", 4)]
    assert all(np.isfinite(r["energy_distance"]) for r in metrics["rows"])
    assert (eval_dir / "samples.png").is_file() and (eval_dir / "quality_vs_nfe.png").is_file()

    capsys.readouterr()
    assert main(["toy", "info", "--checkpoint", str(cfm_run)]) == 0
    info = capsys.readouterr().out
    assert "formulation" in info and '"two_moons"' in info and "t = 0 is noise" in info
    assert app_version("toy") is not None and f"app version      {app_version('toy')}" in info


def test_bad_inputs_fail_before_work_with_the_option_named(tmp_path, capsys):
    assert main(["toy", "sample", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "--checkpoint: checkpoint or run directory not found" in capsys.readouterr().err
    assert main(["toy", "nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert main(["nope"]) == 2
    assert main(["toy", "train", "--data", "circles"]) == 2
    assert "invalid choice 'circles'" in capsys.readouterr().err
    assert main(["toy", "train", "--preset", "fast"]) == 2
    assert "unknown preset 'fast'" in capsys.readouterr().err
    assert main(["toy", "train", "--train.lr", "-1"]) == 2
    assert "lr" in capsys.readouterr().err
    assert main(["toy", "train", "--net.fourier-levels", "-1"]) == 2
    assert "net.fourier_levels must be >= 0" in capsys.readouterr().err


def test_eval_refuses_a_checkpoint_of_another_app(tmp_path, capsys):
    run = _train(tmp_path)
    meta = run / "step-0000006" / "meta.json"
    data = json.loads(meta.read_text())
    data["app"] = "image"
    meta.write_text(json.dumps(data))
    assert main(["toy", "eval", "--checkpoint", str(run / "step-0000006")]) == 2
    assert "trained by app 'image'" in capsys.readouterr().err


def _losses(run):
    return [row["loss"] for row in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in row]


def test_a_fresh_run_reproduces_whatever_ran_before_it_in_the_process(tmp_path):
    first = _losses(_train(tmp_path, "first"))
    np.random.rand(3)
    __import__("torch").randn(7)  # draws that must not reach the initial weights
    assert _losses(_train(tmp_path, "second")) == first
    assert _losses(_train(tmp_path, "other-seed", "--train.seed", "1")) != first


def _sample(run, out) -> np.ndarray:
    argv = ["toy", "sample", "--checkpoint", str(run), "--steps", "2", "--n", "20", "--out", str(out)]
    assert main(argv) == 0
    return np.load(out)


def test_a_run_whose_auto_time_features_were_fourier_loads_as_it_trained(tmp_path):
    """The toy's ``auto`` once meant Fourier features for every formulation; such a run (its config
    says ``auto``, its weights hold Fourier features) samples as the same run saying ``fourier``."""
    run = _train(tmp_path, "fourier", "--net.time-embedding", "fourier")
    trained = _sample(run, tmp_path / "fourier.npy")
    for meta_file in run.glob("step-*/meta.json"):
        meta = json.loads(meta_file.read_text())
        meta["config"]["net"]["time_embedding"] = "auto"
        meta_file.write_text(json.dumps(meta))
    np.testing.assert_array_equal(_sample(run, tmp_path / "auto.npy"), trained)


def test_a_run_with_auto_time_features_now_sinusoidal_for_u_loads(tmp_path):
    run = _train(tmp_path, "auto", "--net.time-embedding", "auto")
    assert np.isfinite(_sample(run, tmp_path / "auto.npy")).all()
