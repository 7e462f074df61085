"""Pose benchmark: skeleton joints of procedural characters, CFM-DDIM and CFM-u vs the DDPM baseline.

Three models share the network (PoseMLP), the data stream, the budget and the seed; they differ
only in the method: the multi-step baseline is DDIM-formulation training with r = t only
(instantaneous_ratio 1.0), sampled with the deterministic DDIM step at 1 .. 1000 steps; CFM-DDIM
and CFM-u are trained with the paper's r = t share 0.5 and sampled with 1, 2, 5, 10 cumulative
jumps. Data: procedural characters of every template (variable topology), so the models
generate one point per input surface point (PDT-style) and joints come out of a fixed mean-shift
extractor (the same bandwidth at every NFE). Scores on held-out characters (a seed the training
never used): CD-J2J, IoU, precision, recall (RigNet/PDT definitions, unit-box units), predicted
joint count, and wall time per shape (sampling, and sampling plus joint extraction).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from cfm_core.method import MethodConfig
from cfm_pose.commands import evaluate, train
from cfm_pose.config import (
    ExtractionConfig,
    PoseEvalConfig,
    PoseNetConfig,
    PoseTrainConfig,
    ProceduralConfig,
)
from harness import RESULTS, Report, Table

CFM_STEPS = (1, 2, 5, 10)
BASELINE_STEPS = (1, 2, 5, 10, 50, 100, 1000)
MODELS = (("baseline", "ddim", 1.0), ("CFM-DDIM", "ddim", 0.5), ("CFM-u", "u", 0.5))
METRICS = ("cd_j2j", "iou", "precision", "recall", "joints")


def train_config(args: argparse.Namespace, formulation: str, ratio: float, out: Path) -> PoseTrainConfig:
    """The section's training config of one model (``args`` from :func:`parser`)."""
    base = PoseTrainConfig(
        procedural=ProceduralConfig(args.template),
        n_points=args.n_points,
        net=PoseNetConfig(hidden=args.hidden, depth=args.depth, code_dim=128, encoder_hidden=64),
    )
    return replace(
        base,
        method=MethodConfig(formulation=formulation, instantaneous_ratio=ratio),
        train=replace(
            base.train,
            steps=args.steps,
            batch_size=args.batch_size,
            warmup_steps=min(100, args.steps // 10),
            seed=0,
            checkpoint_every=args.steps,
            sample_every=0,
            log_every=max(1, args.steps // 10),
            output_dir=str(out),
        ),
    )


def _row(name: str, row: dict) -> list:
    cells = ["-" if row.get(m) is None else row[m] for m in METRICS]
    return [name, row["sampler"], row["nfe"], *cells, row["ms_per_shape"], row["total_ms_per_shape"]]


def parser() -> argparse.ArgumentParser:
    """The section's options (``parse_args([])``: the recorded run's)."""
    parser = argparse.ArgumentParser(prog="run.py pose", description=__doc__)
    parser.add_argument("--steps", type=int, default=500, help="training steps of every model")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-points", type=int, default=256, help="surface points per shape")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--template", default="mixed", help="mixed (variable topology) or one")
    parser.add_argument("--n-shapes", type=int, default=16, help="held-out characters")
    parser.add_argument("--bandwidth", type=float, default=0.04)
    parser.add_argument("--baseline-steps", type=int, nargs="+", default=list(BASELINE_STEPS))
    parser.add_argument("--quick", action="store_true", help="30 steps, 4 shapes: a smoke run")
    return parser


def run(argv: list[str]) -> Report:
    args = parser().parse_args(argv)
    if args.quick:
        args.steps, args.n_shapes, args.baseline_steps = 30, 4, [1, 10]

    extraction = ExtractionConfig(bandwidth=args.bandwidth)
    rows, seconds, results = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, formulation, ratio in MODELS:
            print(f"== training {name}", flush=True)
            summary = train(train_config(args, formulation, ratio, Path(tmp) / name))
            runs[name], seconds[name] = Path(tmp) / name, summary["seconds"]
        for name, baseline_steps in (("CFM-DDIM", tuple(args.baseline_steps)), ("CFM-u", ())):
            print(f"== evaluating {name}", flush=True)
            results[name] = evaluate(
                PoseEvalConfig(
                    checkpoint=str(runs[name]),
                    baseline=str(runs["baseline"]) if baseline_steps else None,
                    cfm_steps=CFM_STEPS,
                    baseline_steps=baseline_steps,
                    n_shapes=args.n_shapes,
                    seed=1234,
                    extraction=extraction,
                    out=str(RESULTS / "pose" / name),
                )
            )
    for name in ("CFM-DDIM", "CFM-u"):
        rows += [_row(name, r) for r in results[name]["rows"] if r["label"] == "cfm"]
    rows += [_row("baseline (DDPM, DDIM sampler)", r) for r in results["CFM-DDIM"]["rows"] if r["label"] == "baseline"]
    gt_joints = results["CFM-DDIM"]["rows"][0]["gt_joints"]
    figures = [str(RESULTS / "pose" / "CFM-DDIM" / f) for f in ("quality_vs_nfe.png", "predictions.png")]
    return Report(
        name="pose",
        title="Pose: joints of procedural characters, CFM-DDIM / CFM-u vs the DDPM baseline (CPU)",
        settings={
            "data": f"procedural, template {args.template}",
            "n_points": args.n_points,
            "train_steps": args.steps,
            "batch": args.batch_size,
            "net": f"PoseMLP per-point {args.hidden}x{args.depth}, code 128, encoder 64",
            "lr": 1e-3,
            "ema": "0.999, warm-up power 0.75",
            "held_out_shapes": args.n_shapes,
            "extraction": f"mean shift bandwidth {args.bandwidth}, min_count 5",
            "torch_threads": torch.get_num_threads(),
        },
        tables=[
            Table(
                "Held-out joint prediction at each NFE (CD-J2J lower is better, unit-box "
                "units; IoU / precision / recall higher is better; joints = mean predicted "
                f"count, ground truth {gt_joints:.1f}); wall time in ms per shape",
                [
                    "model",
                    "sampler",
                    "NFE",
                    "CD-J2J",
                    "IoU",
                    "precision",
                    "recall",
                    "joints",
                    "sampling ms",
                    "sampling + extraction ms",
                ],
                rows,
            ),
            Table(
                "Training wall time (s) of each model, same steps and batch",
                ["model", "seconds"],
                [[k, v] for k, v in seconds.items()],
            ),
        ],
        figures=figures,
        notes=[
            f"Tiny CPU budget ({args.steps} steps of batch {args.batch_size}, {args.n_points} "
            "points per shape) so that the run stays under about 10 minutes: absolute scores are "
            "far from converged; compare the rows with each other.",
            "Per-model metrics.json and figures: tools/bench/results/pose/<model>/.",
        ],
    )
