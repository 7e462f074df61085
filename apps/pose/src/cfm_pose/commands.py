"""``cfm pose train | sample | eval | convert-smpl | info``: skeleton joints from point clouds."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cfm_core.cli.app import ConfigError
from cfm_core.cli.common import require_path
from cfm_core.cli.config import config_from_dict, config_to_dict
from cfm_core.cli.skeleton import default_device, device_of, from_argv, load_run, train_run
from cfm_core.evaluation import SweepEntry, sweep_table
from cfm_core.flow_map import FlowMap
from cfm_core.io import check_output_dir, check_output_file
from cfm_core.loss import CFMLoss
from cfm_core.method import build_cfm
from cfm_core.nn import time_features_for
from cfm_core.plotting import save_quality_vs_nfe
from tqdm import tqdm

from cfm_pose.backbone import PoseMLP
from cfm_pose.config import (
    TRAIN_PRESETS,
    ConvertSmplConfig,
    ExtractionConfig,
    PoseEvalConfig,
    PoseSampleConfig,
    PoseTrainConfig,
)
from cfm_pose.encoding import PoseEncoding, encoding_for
from cfm_pose.outputs import (
    Prediction,
    save_prediction_grid,
    save_prediction_png,
    skeleton_edges,
    skeleton_record,
    write_json,
    write_npy,
)
from cfm_pose.scoring import score_predictions
from cfm_pose.shape_input import load_input_shape
from cfm_pose.smpl_model import convert_smpl_pkl
from cfm_pose.sources import ShapeBatch, ShapeSource, make_source, with_detected_model_type

APP = "pose"
#: What a distillation teacher must share with its student: the data and how joints are encoded.
TEACHER_MUST_MATCH = ("data", "n_points", "data_scale", "pdt_rule")
PREVIEW_SHAPES = 4


# ------------------------------------------------------------------------------ building --
def build_model(run_config: dict[str, Any]) -> CFMLoss:
    """The loss (and its ``.model``) a pose run config describes (fresh weights)."""
    cfg = config_from_dict(PoseTrainConfig, run_config)
    encoding = encoding_for(cfg)
    net = PoseMLP(
        data_dim=encoding.data_dim,
        mode="vector" if encoding.kind == "fixed" else "per_point",
        hidden=cfg.net.hidden,
        depth=cfg.net.depth,
        time_dim=cfg.net.time_dim,
        time_features=time_features_for(cfg.method.formulation),
        code_dim=cfg.net.code_dim,
        encoder_hidden=cfg.net.encoder_hidden,
        encoder_depth=cfg.net.encoder_depth,
        fourier_levels=cfg.net.fourier_levels,
    )
    return build_cfm(net, cfg.method)


def pose_batches(source: ShapeSource, encoding: PoseEncoding, batch_size: int, seed: int):
    """``data(step, rows)``: ``(x, surface points)`` of the rows ``rows`` of the step's shapes
    (deterministic in the step; only those shapes are built)."""

    def data(step: int, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        return encoding.encode(source.shapes(step, batch_size, seed, rows))

    return data


def _predict(
    model: FlowMap,
    encoding: PoseEncoding,
    shapes: ShapeBatch,
    steps: int,
    extraction: ExtractionConfig,
    seed: int,
) -> list[np.ndarray]:
    """Predicted joint sets of ``shapes`` with ``steps`` cumulative jumps."""
    x, cond = encoding.encode(shapes)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    device = device_of(model)
    with torch.no_grad():
        sample = model.sample(noise.to(device), steps=steps, cond=cond.to(device))
    return encoding.joints(sample, extraction)


def _predictions(
    shapes: ShapeBatch, joint_sets: Sequence[np.ndarray], encoding: PoseEncoding, count: int
) -> list[Prediction]:
    return [
        Prediction(shapes.points[b], joints, skeleton_edges(joints, encoding.layout))
        for b, joints in enumerate(joint_sets[:count])
    ]


def _ground_truth(shapes: ShapeBatch, count: int) -> list[Prediction]:
    return [Prediction(shapes.points[b], s.joints, s.bone_pairs()) for b, s in enumerate(shapes.skeletons[:count])]


def _sample_hook(source: ShapeSource, encoding: PoseEncoding, seed: int):
    """Every sample_every steps: predictions of a few held-out shapes at 1 and 2 jumps."""
    shapes = source.held_out(PREVIEW_SHAPES, seed)

    def hook(model: FlowMap, step: int, out: Path) -> dict[str, float]:
        rows = {"ground truth": _ground_truth(shapes, PREVIEW_SHAPES)}
        scores = {}
        for steps in (1, 2):
            joints = _predict(model, encoding, shapes, steps, ExtractionConfig(), seed=7)
            rows[f"{steps} jump{'s' * (steps > 1)}"] = _predictions(shapes, joints, encoding, PREVIEW_SHAPES)
            cd = score_predictions(joints, shapes, encoding.layout)["cd_j2j"]
            if cd is not None:
                scores[f"cd_j2j_{steps}step"] = cd
        save_prediction_grid(rows, out / "samples" / f"step-{step:07d}.png", title=f"held-out shapes, step {step}")
        return scores

    return hook


# ----------------------------------------------------------------------------- commands --
def train(cfg: PoseTrainConfig) -> dict[str, Any]:
    """Train and return the trainer's summary; data files are checked before anything else."""
    source = make_source(cfg, read_all=True)
    cfg = with_detected_model_type(cfg, source)
    encoding = encoding_for(cfg)
    return train_run(
        APP,
        cfg,
        build_model,
        pose_batches(source, encoding, cfg.train.batch_size, cfg.train.seed),
        normalisation=encoding.normalisation(),
        on_sample=_sample_hook(source, encoding, cfg.train.seed + 1),
        teacher_must_match=TEACHER_MUST_MATCH,
    )


def _load(path: str, option: str = "--checkpoint", **options: Any):
    """``(model on the device, checkpoint, train config)`` of a pose checkpoint."""
    return load_run(path, build_model, APP, PoseTrainConfig, option=option, **options)


def sample(cfg: PoseSampleConfig) -> Path:
    """Predict the joints of ``cfg.input``; write JSON, NPY and PNG; return the JSON path."""
    check_output_file(cfg.out, "--out", (".json",))
    require_path(cfg.input, "shape file", "--input")
    model, ckpt, run = _load(cfg.checkpoint, ema_decay=cfg.ema_decay, use_ema=cfg.ema)
    encoding = encoding_for(run)
    shape = load_input_shape(cfg.input, run.n_points, cfg.seed)
    cond = torch.as_tensor(shape.normalized_points, dtype=torch.float32)[None].to(default_device())
    noise = torch.randn((1, *encoding.data_shape(run.n_points)), generator=torch.Generator().manual_seed(cfg.seed)).to(
        default_device()
    )
    with torch.no_grad():
        x, nfe = model.sample(noise, cfg.steps, sampler=cfg.sampler, cond=cond, return_nfe=True)
    joints = shape.normalization.invert(encoding.joints(x, cfg.extraction)[0])
    out = Path(cfg.out)
    record = {
        "input": str(cfg.input),
        "checkpoint": str(ckpt.path),
        "sampler": cfg.sampler,
        "steps": cfg.steps,
        "nfe": nfe,
        "representation": encoding.kind,
        "frame": "the input file's own coordinates",
        "input_normalisation": shape.normalization.to_dict(),
        **skeleton_record(joints, encoding.layout),
    }
    if encoding.kind == "per_point":
        record["extraction"] = config_to_dict(cfg.extraction)
    write_json(out, record)
    write_npy(out.with_suffix(".npy"), joints)
    prediction = Prediction(shape.points, joints, skeleton_edges(joints, encoding.layout))
    png = save_prediction_png(
        prediction,
        out.with_suffix(".png"),
        title=f"{Path(cfg.input).name}: {len(joints)} joints, {cfg.sampler} {cfg.steps} step(s), NFE {nfe}",
    )
    print(f"wrote {out} ({len(joints)} joints, NFE {nfe}), {out.with_suffix('.npy')} and {png}")
    return out


def _check_baseline(run: PoseTrainConfig, base: PoseTrainConfig) -> None:
    ours, theirs = encoding_for(run), encoding_for(base)
    if (run.data, ours.kind, ours.data_dim, run.n_points) != (base.data, theirs.kind, theirs.data_dim, base.n_points):
        raise ConfigError("--baseline was trained on other data or another representation than --checkpoint")


def _held_out(cfg: PoseEvalConfig, run: PoseTrainConfig) -> ShapeBatch:
    if run.data != "rignet" and cfg.seed == run.train.seed:
        raise ConfigError(f"--seed {cfg.seed} is the training seed; held-out shapes need another one")
    return make_source(run, cfg.data_path).held_out(cfg.n_shapes, cfg.seed)


def evaluate(cfg: PoseEvalConfig) -> dict[str, Any]:
    """The NFE sweep of a CFM model (and a baseline), scored on held-out shapes."""
    if cfg.out is not None:
        check_output_dir(cfg.out, "--out")
    model, ckpt, run = _load(cfg.checkpoint)
    if cfg.baseline is not None:
        baseline, _, base_run = _load(cfg.baseline, option="--baseline")
        _check_baseline(run, base_run)
    else:
        baseline = model
    encoding = encoding_for(run)
    shapes = _held_out(cfg, run)
    _, cond = encoding.encode(shapes)
    noise = torch.randn(
        (len(shapes), *encoding.data_shape(run.n_points)), generator=torch.Generator().manual_seed(cfg.seed)
    )
    noise, cond = noise.to(default_device()), cond.to(default_device())
    with torch.no_grad():
        for warm in {id(model): model, id(baseline): baseline}.values():  # first-call overheads
            warm.sample(noise[:1], steps=1, cond=cond[:1])
        entries = cfg.sweep(noise, model, baseline, cond=cond, batch_size=cfg.batch_size)
    scores, predictions = [], {}
    for entry in tqdm(entries, desc="cfm pose eval: joints and scores", unit="run"):
        tic = time.perf_counter()
        joints = encoding.joints(entry.samples, cfg.extraction)
        extract_ms = 1000 * (time.perf_counter() - tic) / len(shapes)
        scores.append(
            {
                **score_predictions(joints, shapes, encoding.layout),
                "extract_ms_per_shape": extract_ms,
                "total_ms_per_shape": 1000 * entry.seconds_per_sample + extract_ms,
            }
        )
        predictions[_label(entry)] = _predictions(shapes, joints, encoding, cfg.figure_shapes)
    rows = [{**row, "ms_per_shape": row.pop("ms_per_sample")} for row in sweep_table(entries, scores)]
    out = cfg.out_dir(ckpt)
    result = {
        "checkpoint": str(ckpt.path),
        "baseline": str(cfg.baseline or ckpt.path),
        "data": run.data,
        "representation": encoding.kind,
        "n_shapes": len(shapes),
        "seed": cfg.seed,
        "baseline_method": cfg.baseline_method,
        "extraction": (config_to_dict(cfg.extraction) if encoding.kind == "per_point" else None),
        "units": "unit-box shape frame (RigNet normalisation)",
        "rows": rows,
    }
    write_json(out / "metrics.json", result)
    _figures(entries, rows, predictions, shapes, encoding, cfg.figure_shapes, out)
    _print_rows(rows)
    print(f"wrote {out / 'metrics.json'}, {out / 'predictions.png'} and {out / 'quality_vs_nfe.png'}")
    return result


def convert_smpl(cfg: ConvertSmplConfig) -> Path:
    """Write a clean copy of an SMPL or SMPL-X model file (no chumpy needed to read it)."""
    require_path(cfg.src, "SMPL model file", "SRC")
    try:
        out = convert_smpl_pkl(cfg.src, cfg.dst)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None
    print(f"wrote {out.path} ({out.family.label} model, {out.family.num_joints} joints)")
    return out.path


# ------------------------------------------------------------------------------ outputs --
def _label(entry: SweepEntry) -> str:
    if entry.label == "cfm":
        return f"CFM, {entry.steps} jump{'s' * (entry.steps > 1)}"
    return f"baseline {entry.sampler}, NFE {entry.nfe}"


def _figures(
    entries: Sequence[SweepEntry],
    rows: Sequence[dict],
    predictions: dict,
    shapes: ShapeBatch,
    encoding: PoseEncoding,
    count: int,
    out: Path,
) -> None:
    grid = {"ground truth": _ground_truth(shapes, count)}
    for label in ("cfm", "baseline"):
        runs = sorted((e for e in entries if e.label == label), key=lambda e: e.nfe)
        for entry in runs[:1] + runs[-1:]:  # the fewest and the most evaluations
            grid[_label(entry)] = predictions[_label(entry)]
    save_prediction_grid(grid, out / "predictions.png", title=f"held-out {encoding.kind} skeletons")
    metric = "mpjpe" if encoding.kind == "fixed" else "cd_j2j"
    save_quality_vs_nfe(
        rows,
        metric,
        out / "quality_vs_nfe.png",
        ylabel=f"{metric} (unit-box units, lower is better)",
        title="joint error vs network evaluations",
    )


def _print_rows(rows: Sequence[dict]) -> None:
    names = [
        k for k in ("cd_j2j", "iou", "precision", "recall", "mpjpe", "bone_length_error", "joints") if k in rows[0]
    ]
    print(
        f"{'model':<9} {'sampler':<10} {'steps':>5} {'NFE':>5} "
        + " ".join(f"{n[:9]:>9}" for n in names)
        + f" {'ms/shape':>9}"
    )
    for r in rows:
        cells = " ".join("        -" if r[n] is None else f"{r[n]:>9.4f}" for n in names)
        print(
            f"{r['label']:<9} {r['sampler']:<10} {r['steps']:>5} {r['nfe']:>5} {cells} {r['total_ms_per_shape']:>9.2f}"
        )


# ------------------------------------------------------------------------------ argv glue --
run_train = from_argv(train, PoseTrainConfig, "cfm pose train", TRAIN_PRESETS)
run_sample = from_argv(sample, PoseSampleConfig, "cfm pose sample")
run_eval = from_argv(evaluate, PoseEvalConfig, "cfm pose eval")
run_convert_smpl = from_argv(convert_smpl, ConvertSmplConfig, "cfm pose convert-smpl")
