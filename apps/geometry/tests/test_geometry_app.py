"""The geometry app end to end through the ``cfm`` command, its scores and its error messages."""

from __future__ import annotations

import json
import typing

import numpy as np
import pytest
import torch
from cfm_core import FlowMap
from cfm_core.cli import ConfigError, config_to_dict, main, parse_config
from cfm_core.cli.common import load_trained
from cfm_core.diagnostics import jump_gap
from cfm_core.training import load_checkpoint
from cfm_geometry.backbones import PointMLP
from cfm_geometry.commands import build_model
from cfm_geometry.config import (
    TRAIN_PRESETS,
    BuiltinShapeName,
    GeometryEvalConfig,
    GeometryTrainConfig,
)
from cfm_geometry.data import PointBank, load_surface, sample_surface_points
from cfm_geometry.generation import flatten_points, generate_points, point_noise
from cfm_geometry.normalisation import Normalisation
from cfm_geometry.scoring import Units, score_points
from cfm_geometry.shapes import BUILTIN_SHAPES, builtin_shape
from cfm_geometry.surface import Surface

TINY = [
    "--net.width",
    "16",
    "--net.depth",
    "1",
    "--net.fourier-levels",
    "2",
    "--points",
    "3000",
    "--preview-points",
    "0",
    "--train.steps",
    "4",
    "--train.batch-size",
    "256",
    "--train.checkpoint-every",
    "2",
    "--train.log-every",
    "2",
    "--train.warmup-steps",
    "0",
]


def train(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["geometry", "train", *TINY, "--train.output-dir", str(out), *extra]) == 0
    return out


def brute_force_scores(generated: np.ndarray, reference: np.ndarray, threshold: float):
    """Chamfer (sum), F-score and Hausdorff from the full distance matrix."""
    d = torch.cdist(torch.from_numpy(generated), torch.from_numpy(reference)).numpy()
    gen_to_ref, ref_to_gen = d.min(1), d.min(0)
    precision, recall = (gen_to_ref < threshold).mean(), (ref_to_gen < threshold).mean()
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return gen_to_ref.mean() + ref_to_gen.mean(), f, max(gen_to_ref.max(), ref_to_gen.max())


def test_train_sample_eval_info_on_a_builtin_shape(tmp_path, capsys):
    cfm_run = train(tmp_path, "cfm", "--shape", "saddle", "--preview-points", "256")
    base_run = train(tmp_path, "base", "--shape", "saddle", "--method.instantaneous-ratio", "1.0")
    assert (cfm_run / "step-0000004" / "meta.json").is_file()
    assert (cfm_run / "samples" / "step-0000004.png").is_file()
    log = [json.loads(line) for line in (cfm_run / "log.jsonl").read_text().splitlines()]
    assert {"sample/chamfer_1step", "sample/chamfer_4step"} <= set(log[-1])

    # The checkpoint stores the normalisation of the training samples (and the sampling undoes it).
    meta = load_checkpoint(cfm_run, load_optimizer=False).meta
    bank = PointBank.from_surface(Surface.from_mesh(builtin_shape("saddle"), "saddle"), 3000, 0)
    assert Normalisation.from_dict(meta["normalisation"]) == bank.normalisation
    assert meta["extra"]["up_axis"] == "z" and meta["formulation"]["sigma_data"] == 1.0

    out = tmp_path / "gen" / "saddle.ply"
    assert (
        main(
            [
                "geometry",
                "sample",
                "--checkpoint",
                str(cfm_run),
                "--points",
                "1000",
                "--steps",
                "2",
                "--batch-size",
                "300",
                "--out",
                str(out),
                "--npy",
                "--png",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    cloud = load_surface(out)
    assert cloud.points.shape == (1000, 3) and out.with_suffix(".png").is_file()
    np.testing.assert_allclose(np.load(out.with_suffix(".npy")), cloud.points, atol=1e-6)
    model, _ = load_trained(cfm_run, build_model, "geometry")
    noise = point_noise(1000, None, seed=5)
    expected = bank.normalisation.invert(model.sample(noise, steps=2).double().numpy())
    np.testing.assert_allclose(cloud.points, expected, rtol=1e-4, atol=1e-5)

    eval_dir = tmp_path / "eval"
    assert (
        main(
            [
                "geometry",
                "eval",
                "--checkpoint",
                str(cfm_run),
                "--baseline",
                str(base_run),
                "--points",
                "400",
                "--baseline-steps",
                "1",
                "2",
                "--out",
                str(eval_dir),
            ]
        )
        == 0
    )
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    runs = [(r["label"], r["sampler"], r["nfe"]) for r in metrics["rows"]]
    assert runs == [
        ("cfm", "cumulative", 1),
        ("cfm", "cumulative", 2),
        ("cfm", "cumulative", 3),
        ("cfm", "cumulative", 6),
        ("baseline", "heun", 1),
        ("baseline", "heun", 3),
    ]
    assert (eval_dir / "samples.png").is_file() and (eval_dir / "quality_vs_nfe.png").is_file()
    # the jump gap: the core's jump_gap of the same model and noise, in box units
    gaps = metrics["jump_gap"]
    assert [g["start"] for g in gaps] == [0.0, 0.25, 0.5, 0.75]
    (direct,) = jump_gap(model, point_noise(10_000, None, seed=1234), starts=(0.5,), steps=64)
    box_per_model = metrics["units"]["box_per_original"] / metrics["units"]["model_per_original"]
    assert gaps[2]["gap_box"] == pytest.approx(direct.gap * box_per_model, rel=1e-4)

    # Eval's scores of the 1-step row equal a brute-force computation on the same point sets.
    reference = sample_surface_points(Surface.from_mesh(builtin_shape("saddle"), "saddle"), 400, 1234).astype(
        np.float64
    )
    noise = point_noise(400, None, seed=1234)
    generated = bank.normalisation.invert(model.sample(noise, steps=1).double().numpy())
    threshold = metrics["f_threshold"]["original"]
    chamfer, f, hausdorff = brute_force_scores(generated, reference, threshold)
    row = metrics["rows"][0]
    assert row["chamfer_sum"] == pytest.approx(chamfer, rel=1e-4)
    assert row["chamfer_mean"] == pytest.approx(chamfer / 2, rel=1e-4)
    assert row["f_score"] == pytest.approx(f, abs=2.5e-3)  # within one point of 400
    assert row["hausdorff"] == pytest.approx(hausdorff, rel=1e-4)

    capsys.readouterr()
    assert main(["geometry", "info", "--checkpoint", str(cfm_run)]) == 0
    assert '"saddle"' in capsys.readouterr().out


def test_point_transformer_and_x1_through_the_app(tmp_path):
    run = train(
        tmp_path,
        "set",
        "--shape",
        "sphere",
        "--net.backbone",
        "point_transformer",
        "--net.heads",
        "2",
        "--net.set-size",
        "64",
        "--method.formulation",
        "x1",
    )
    meta = load_checkpoint(run, load_optimizer=False).meta
    assert meta["formulation"]["name"] == "x1" and meta["config"]["net"]["set_size"] == 64
    model, _ = load_trained(run, build_model, "geometry")
    assert model.net.config()["time_embedding"] == "sinusoidal"
    out = tmp_path / "set.npy"
    assert (
        main(["geometry", "sample", "--checkpoint", str(run), "--points", "100", "--steps", "1", "--out", str(out)])
        == 0
    )
    assert np.load(out).shape == (100, 3)  # two sets of 64, cut to 100 points


def test_a_mesh_file_with_its_own_units(tmp_path):
    mesh = builtin_shape("blob")
    mesh.apply_scale(250.0)
    mesh.apply_translation([1000.0, -40.0, 7.0])
    path = tmp_path / "blob.obj"
    mesh.export(path)
    run = train(tmp_path, "blob", "--mesh", str(path))
    norm = Normalisation.from_dict(load_checkpoint(run, load_optimizer=False).meta["normalisation"])
    samples = sample_surface_points(load_surface(path), 3000, 0)
    np.testing.assert_allclose(norm.apply(samples).std(), 1.0, rtol=1e-5)
    out = tmp_path / "blob.ply"
    assert main(["geometry", "sample", "--checkpoint", str(run), "--points", "50", "--out", str(out)]) == 0
    centre = load_surface(out).points.mean(0)
    assert np.abs(centre - [1000.0, -40.0, 7.0]).max() < 400  # original units, not normalised


def test_score_points_matches_brute_force_in_every_unit():
    rng = np.random.default_rng(0)
    generated, reference = rng.normal(size=(300, 3)) * 2 + 5, rng.normal(size=(200, 3)) * 2 + 5
    norm = Normalisation(centre=(5.0, 5.0, 5.0), scale=2.5)
    bounds = np.array([[0.0, 1.0, 2.0], [8.0, 4.0, 3.0]])
    units = Units.of(norm, bounds)
    assert units.box == pytest.approx(0.99 / 4) and units.model == pytest.approx(1 / 2.5)
    scores = score_points(generated, reference, units, f_threshold=0.05)
    chamfer, f, hausdorff = brute_force_scores(generated, reference, 0.05 * np.sqrt(64 + 9 + 1))
    assert scores["chamfer_sum"] == pytest.approx(chamfer, rel=1e-9)
    assert scores["chamfer_mean"] == pytest.approx(chamfer / 2, rel=1e-9)
    assert scores["chamfer_sum_box"] == pytest.approx(chamfer * 0.99 / 4, rel=1e-9)
    # model units = the Chamfer distance of the normalised point sets
    normalised = brute_force_scores(norm.apply(generated), norm.apply(reference), 1.0)[0]
    assert scores["chamfer_sum_model"] == pytest.approx(normalised, rel=1e-9)
    assert scores["f_score"] == pytest.approx(f) and scores["hausdorff"] == pytest.approx(hausdorff)
    generated[:10] = np.nan
    dropped = score_points(generated, reference, units, f_threshold=0.05)
    assert dropped["nonfinite_points"] == 10 and np.isfinite(dropped["chamfer_sum"])


def test_noise_does_not_depend_on_the_batch_and_sets_flatten():
    whole = point_noise(40000, None, seed=3)
    parts = [point_noise(min(7000, 40000 - start), None, seed=3, first_point=start) for start in range(0, 40000, 7000)]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)
    assert not torch.equal(point_noise(10, None, seed=4), whole[:10])
    assert abs(float(whole.std()) - 1) < 0.02 and whole.shape == (40000, 3)
    sets = point_noise(100, 64, seed=0)
    assert sets.shape == (2, 64, 3) and flatten_points(sets, 100).shape == (100, 3)
    torch.testing.assert_close(point_noise(64, 64, seed=0, first_point=64)[0], sets[1])


@pytest.mark.parametrize("sampler,steps", [("cumulative", 2), ("heun", 3)])
def test_generate_points_streams_batches_of_the_same_noise(sampler, steps):
    torch.manual_seed(0)
    net = PointMLP(hidden=32, depth=2)
    with torch.no_grad():  # the zero-initialised gains and output layer made random
        for parameter in net.parameters():
            if (parameter == 0).all():
                parameter.normal_(0, 0.3)
    model = FlowMap(net, "edm")
    whole, nfe, seconds = generate_points(model, 1000, steps, sampler, batch_size=1000, seed=5)
    batched, _, _ = generate_points(model, 1000, steps, sampler, batch_size=300, seed=5)
    noise = point_noise(1000, None, seed=5)
    with net.shared_times():  # per-row vs shared embedding: test_shared_times_gives_the_per_row_outputs
        direct = model.sample(noise, steps=steps, sampler=sampler)
    assert whole.shape == (1000, 3) and nfe == (steps if sampler == "cumulative" else 2 * steps - 1)
    assert seconds > 0 and not net._shared_times
    torch.testing.assert_close(batched, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(whole, direct, rtol=1e-5, atol=1e-5)


def test_presets_and_shape_names():
    assert set(typing.get_args(BuiltinShapeName)) == set(BUILTIN_SHAPES)
    gd = parse_config(GeometryTrainConfig, ["--preset", "gd"], prog="t", presets=TRAIN_PRESETS)
    assert (gd.net.width, gd.net.depth, gd.points) == (512, 6, 1 << 25)
    assert gd.train.mixed_precision == "bf16" and TRAIN_PRESETS["quick"].train.mixed_precision == "no"
    parameters = sum(p.numel() for p in build_model(config_to_dict(gd)).parameters())
    assert 5.5e6 < parameters < 6.5e6  # GD: 5.53M (our two-time embedding adds a little)
    quick = parse_config(
        GeometryTrainConfig, ["--preset", "quick", "--method.formulation", "u"], prog="t", presets=TRAIN_PRESETS
    )
    assert quick.method.formulation == "u" and quick.method.formulation_options == {}
    assert TRAIN_PRESETS["quick-baseline"].method.is_baseline


def test_bad_inputs_fail_with_the_option_named(tmp_path, capsys):
    assert main(["geometry", "train", "--mesh", str(tmp_path / "missing.obj")]) == 2
    assert "--mesh: shape file not found" in capsys.readouterr().err
    broken = tmp_path / "broken.obj"
    broken.write_text("v 0 0 0\nf 1 1 1\n")
    assert main(["geometry", "train", "--mesh", str(broken), *TINY, "--train.output-dir", str(tmp_path / "x")]) == 2
    assert f"--mesh: {broken}" in capsys.readouterr().err
    assert main(["geometry", "sample", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "--checkpoint: checkpoint or run directory not found" in capsys.readouterr().err
    run = train(tmp_path, "run", "--shape", "sphere")
    assert main(["geometry", "sample", "--checkpoint", str(run), "--out", "x.obj"]) == 2
    assert "--out: x.obj must end in .ply or" in capsys.readouterr().err
    other = train(tmp_path, "other", "--shape", "blob")
    assert main(["geometry", "eval", "--checkpoint", str(run), "--baseline", str(other)]) == 2
    assert "--baseline was trained on 'blob'" in capsys.readouterr().err
    assert main(["geometry", "train", "--net.backbone", "point_transformer", "--train.batch-size", "100"]) == 2
    assert "must be a multiple of net.set_size" in capsys.readouterr().err
    assert main(["geometry", "train", "--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert main(["geometry", "train", "--shape", "teapot"]) == 2
    assert "invalid choice 'teapot'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--f-threshold"):
        GeometryEvalConfig(checkpoint="x", f_threshold=2.0)


def test_ddim_with_the_apps_model_target_is_refused_clearly(tmp_path, capsys):
    """The app trains with target_field model; ddim diverges with it, so the command refuses
    (exit status 2, the option named) before it writes anything."""
    argv = ["--method.formulation", "ddim", "--train.output-dir", str(tmp_path / "run")]
    assert main(["geometry", "train", *argv]) == 2
    err = capsys.readouterr().err
    assert "method.target_field" in err and "diverges" in err and not (tmp_path / "run").exists()
    ddim = parse_config(GeometryTrainConfig, [*argv, "--method.target-field", "conditional"], prog="t")
    assert ddim.method.formulation == "ddim" and ddim.method.target_field == "conditional"


def test_distil_a_baseline_and_refuse_another_shape(tmp_path, capsys):
    teacher = train(tmp_path, "teacher", "--shape", "saddle", "--method.instantaneous-ratio", "1.0")
    student = train(tmp_path, "student", "--shape", "saddle", "--method.teacher", str(teacher))
    meta = json.loads((student / "step-0000004" / "meta.json").read_text())
    assert len(meta["extra"]["teacher"]["weights_sha256"]) == 64 and meta["extra"]["surface"]
    assert meta["config"]["train"]["init_from"].endswith("step-0000004")
    code = main(
        ["geometry", "train", *TINY, "--train.output-dir", str(tmp_path / "x"), "--method.teacher", str(teacher)]
    )
    assert code == 2
    assert 'shape = "saddle", the student has shape = "torus_knot"' in capsys.readouterr().err
