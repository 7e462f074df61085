"""SDF benchmark: CFM vs its own multi-step baseline, generating procedural shapes from 64 surface
points, meshed by marching cubes.

Both models share the decoder, the data stream, the budget and the seed; the baseline is trained
with r = t only (instantaneous_ratio 1.0) and sampled with Euler steps, CFM with cumulative jumps.
Both are scored by ``cfm sdf eval`` on the same held-out shapes with the same noise: Chamfer
distance, F-score, volumetric IoU and the truncated-SDF error, and the time per shape split into
network (sampling and reading the field on the grid) and meshing (marching cubes). The CPU
configuration is deliberately small (tiny decoder, a few thousand steps, a 48^3 grid) so that the
whole run stays near ten minutes; its absolute quality is far from a GPU-trained model's.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from cfm_core.cli import config_to_dict
from cfm_sdf.commands import evaluate, sdf_batches, train
from cfm_sdf.config import SdfDataConfig, SdfEvalConfig, SdfNetConfig, SdfTrainConfig
from cfm_sdf.model import build_model
from harness import RESULTS, Report, Table
from timing import interleaved_step_times, optimizer_step

CFM_STEPS = (1, 2, 4, 10)
BASELINE_STEPS = (1, 2, 4, 10, 64)
COLUMNS = [
    "model",
    "sampler",
    "steps",
    "NFE",
    "Chamfer",
    "F-score",
    "IoU",
    "SDF error",
    "no surface",
    "network ms/shape",
    "meshing ms/shape",
]


def train_config(args: argparse.Namespace, ratio: float, out: Path) -> SdfTrainConfig:
    """The section's training config of one model (``args`` from :func:`parser`)."""
    base = SdfTrainConfig(
        data=SdfDataConfig(family=args.family, n_context=args.context, noise_grid=12),
        net=SdfNetConfig(preset=args.net),
    )
    return replace(
        base,
        method=replace(base.method, formulation=args.formulation, instantaneous_ratio=ratio),
        train=replace(
            base.train,
            steps=args.steps,
            batch_size=args.batch,
            lr=args.lr,
            warmup_steps=100,
            checkpoint_every=args.steps,
            sample_every=args.steps,
            log_every=max(1, args.steps // 20),
            output_dir=str(out),
        ),
    )


def _step_times(configs: dict[str, SdfTrainConfig], repeats: int) -> dict[str, float]:
    """Seconds per training step (loss, backward, AdamW) of each config, timed interleaved."""
    steps = {}
    for name, cfg in configs.items():
        model = build_model(config_to_dict(cfg))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        steps[name] = optimizer_step(model, optimizer, sdf_batches(cfg, cfg.data.family))
    return interleaved_step_times(steps, max(1, repeats // 5))


def parser() -> argparse.ArgumentParser:
    """The section's options (``parse_args([])``: the recorded run's)."""
    parser = argparse.ArgumentParser(prog="run.py sdf", description=__doc__)
    parser.add_argument("--family", default="table", help="procedural family to train and test on")
    parser.add_argument("--formulation", default="x1", choices=("x1", "edm", "u", "ddim"))
    parser.add_argument("--net", default="tiny", choices=("tiny", "small", "base"))
    parser.add_argument("--steps", type=int, default=2000, help="training steps of each model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--context", type=int, default=1024, help="context points per shape")
    parser.add_argument("--shapes", type=int, default=16, help="held-out shapes")
    parser.add_argument("--resolution", type=int, default=48, help="marching-cubes grid")
    parser.add_argument("--timing-steps", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="100 steps, 4 shapes: a smoke run")
    return parser


def run(argv: list[str]) -> Report:
    args = parser().parse_args(argv)
    if args.quick:
        args.steps, args.shapes, args.resolution, args.timing_steps = 100, 4, 32, 3

    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for label, ratio in (("cfm", 0.5), ("baseline", 1.0)):
            runs[label] = Path(tmp) / label
            print(f"== training {label} ({args.formulation}, r = t share {ratio})", flush=True)
            train(train_config(args, ratio, runs[label]))
        print("== evaluating", flush=True)
        result = evaluate(
            SdfEvalConfig(
                checkpoint=str(runs["cfm"]),
                baseline=str(runs["baseline"]),
                cfm_steps=CFM_STEPS,
                baseline_steps=BASELINE_STEPS,
                n_shapes=args.shapes,
                resolution=args.resolution,
                out=str(Path(tmp) / "eval"),
            )
        )
        figures = []
        for name in ("shapes", "quality_vs_nfe"):
            target = RESULTS / f"sdf_{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / "eval" / f"{name}.png", target)
            figures.append(str(target))
        times = _step_times(
            {label: train_config(args, ratio, Path(tmp) / "t") for label, ratio in (("baseline", 1.0), ("cfm", 0.5))},
            args.timing_steps,
        )

    rows = [
        [
            r["label"],
            r["sampler"],
            r["steps"],
            r["nfe"],
            "-" if r["chamfer"] is None else r["chamfer"],
            r["fscore"],
            r["iou"],
            r["sdf_error"],
            f"{r['empty_shapes']}/{args.shapes}",
            r["network_ms_per_shape"],
            r["meshing_ms_per_shape"],
        ]
        for r in result["rows"]
    ]
    best = {
        label: max((r for r in result["rows"] if r["label"] == label), key=lambda r: r["iou"])
        for label in ("cfm", "baseline")
    }
    one = next(r for r in result["rows"] if r["label"] == "cfm" and r["steps"] == 1)
    many = next(r for r in result["rows"] if r["label"] == "baseline" and r["steps"] == 64)
    return Report(
        name="sdf",
        title=f"SDF: CFM vs multi-step baseline, {args.family} from 64 surface points (CPU)",
        settings={
            "family": args.family,
            "formulation": args.formulation,
            "net": args.net,
            "train_steps": args.steps,
            "batch": args.batch,
            "lr": args.lr,
            "context_points": args.context,
            "condition_points": 64,
            "held_out_shapes": args.shapes,
            "grid": f"{args.resolution}^3",
            "fscore_threshold": result["fscore_threshold"],
            "baseline_solver": result["baseline_method"],
            "device": result["device"],
        },
        tables=[
            Table(
                "Held-out shapes: Chamfer (lower is better), F-score and IoU (higher), "
                "truncated-SDF error (lower); time per shape",
                COLUMNS,
                rows,
            ),
            Table(
                "Training step time (ms)",
                ["baseline", "CFM (jvp)", "ratio"],
                [[1000 * times["baseline"], 1000 * times["cfm"], times["cfm"] / times["baseline"]]],
            ),
        ],
        figures=figures,
        notes=[
            f"CFM at 1 step: IoU {one['iou']:.3f}, network {one['network_ms_per_shape']:.0f} "
            f"ms/shape; baseline at 64 steps: IoU {many['iou']:.3f}, network "
            f"{many['network_ms_per_shape']:.0f} ms/shape.",
            f"Best IoU: CFM {best['cfm']['iou']:.3f} at {best['cfm']['steps']} step(s), baseline "
            f"{best['baseline']['iou']:.3f} at {best['baseline']['steps']} step(s).",
            "Chamfer is the mean of the two one-sided mean distances over shapes with a surface; "
            "'no surface' counts generated fields without a zero level set (F-score 0).",
            "A CPU-sized run: the absolute numbers say little about a GPU-trained base decoder.",
        ],
    )
