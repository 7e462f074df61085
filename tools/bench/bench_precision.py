"""Precision benchmark: does bf16 autocast training cost quality, app by app? (a CPU measurement)

For every app (toy, image, geometry, pose, sdf) the same small configuration (the app's quick
CPU preset, or its benchmark's settings, at a short budget) is trained four times: in float32 and
under bf16 autocast (``--train.mixed-precision bf16``: accelerate's autocast around the loss; the
derivative pass of the cumulative target stays float32 either way), each with training seeds 0
and 1. Every run is scored by the app's own ``eval`` command with its headline metric at one step
and at a few steps (cumulative jumps), on the same held-out data and noise.

The seed-to-seed difference is the noise of this measurement: bf16 is counted as costing quality
at an NFE when its mean over the two seeds is worse than float32's by more than the larger of
the two seed spreads. On this CPU bf16 is a quality measurement only; its speed on a GPU is
another matter (``tools/bench/gpu.py``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from harness import Report, Table

PRECISIONS = ("no", "bf16")
SEEDS = (0, 1)


@dataclass(frozen=True)
class AppCase:
    """How to train and score one app: ``train(out, precision, seed, steps)`` trains a run into
    ``out``; ``evaluate(run, out, few)`` returns the eval rows of CFM at 1 and ``few`` jumps;
    ``metrics`` are ``(row key, name, lower is better)`` of the app's headline metrics;
    ``gpu_presets`` the precision (``--train.mixed-precision``) each GPU-scale preset trains with."""

    app: str
    setting: str
    steps: int
    few: int
    metrics: tuple[tuple[str, str, bool], ...]
    train: Callable[[Path, str, int, int], Any]
    evaluate: Callable[[Path, Path, int], list[dict]]
    gpu_presets: dict[str, str]


def _train_options(train, out: Path, precision: str, seed: int, steps: int, **extra):
    return replace(
        train,
        steps=steps,
        seed=seed,
        mixed_precision=precision,
        output_dir=str(out),
        checkpoint_every=steps,
        sample_every=0,
        log_every=max(1, steps // 10),
        **extra,
    )


def _toy() -> AppCase:
    from cfm_toy.commands import evaluate, train
    from cfm_toy.config import TRAIN_PRESETS, ToyEvalConfig

    quick = TRAIN_PRESETS["quick"]

    def fit(out, precision, seed, steps):
        return train(replace(quick, train=_train_options(quick.train, out, precision, seed, steps)))

    def score(run, out, few):
        cfg = ToyEvalConfig(checkpoint=str(run), cfm_steps=(1, few), baseline_steps=(), n=2000, out=str(out))
        return evaluate(cfg)["rows"]

    net = quick.net
    setting = f"quick preset: checkerboard, ToyMLP {net.hidden}x{net.depth}, batch {quick.train.batch_size}"
    return AppCase("toy", setting, 400, 4, (("energy_distance", "energy distance", True),), fit, score, {})


def _image() -> AppCase:
    from cfm_image.commands import evaluate, train
    from cfm_image.config import TRAIN_PRESETS, ImageEvalConfig

    quick = TRAIN_PRESETS["quick"]

    def fit(out, precision, seed, steps):
        return train(replace(quick, train=_train_options(quick.train, out, precision, seed, steps)))

    def score(run, out, few):
        cfg = ImageEvalConfig(
            checkpoint=str(run),
            cfm_steps=(1, few),
            baseline_steps=(),
            n=300,
            out=str(out),
            classifier_cache=str(out.parent.parent / "classifier"),
        )
        return evaluate(cfg)["rows"]

    setting = f"quick preset: digits 16x16, micro UNet, batch {quick.train.batch_size}"
    gpu = {"cifar": TRAIN_PRESETS["cifar"].train.mixed_precision}
    return AppCase("image", setting, 300, 4, (("classifier_fd", "digit-classifier FD", True),), fit, score, gpu)


def _geometry() -> AppCase:
    from cfm_geometry.commands import evaluate, train
    from cfm_geometry.config import TRAIN_PRESETS, GeometryEvalConfig

    quick = TRAIN_PRESETS["quick"]

    def fit(out, precision, seed, steps):
        options = _train_options(quick.train, out, precision, seed, steps)
        return train(replace(quick, train=options, preview_points=0))

    def score(run, out, few):
        cfg = GeometryEvalConfig(
            checkpoint=str(run), cfm_steps=(1, few), baseline_steps=(), points=20000, gap_points=0, out=str(out)
        )
        return evaluate(cfg)["rows"]

    setting = f"quick preset: torus_knot, PointMLP {quick.net.width}x{quick.net.depth}, {quick.train.batch_size} points"
    gpu = {"gd": TRAIN_PRESETS["gd"].train.mixed_precision}
    return AppCase("geometry", setting, 800, 3, (("chamfer_sum", "Chamfer (sum form)", True),), fit, score, gpu)


def _pose() -> AppCase:
    from cfm_pose.commands import evaluate, train
    from cfm_pose.config import TRAIN_PRESETS, PoseEvalConfig

    quick = replace(TRAIN_PRESETS["quick"], n_points=256)

    def fit(out, precision, seed, steps):
        options = _train_options(quick.train, out, precision, seed, steps, batch_size=8)
        return train(replace(quick, train=options))

    def score(run, out, few):
        cfg = PoseEvalConfig(checkpoint=str(run), cfm_steps=(1, few), baseline_steps=(), n_shapes=16, out=str(out))
        return evaluate(cfg)["rows"]

    setting = f"quick preset (mixed templates, PoseMLP {quick.net.hidden}x{quick.net.depth}), 256 points, batch 8"
    return AppCase("pose", setting, 400, 5, (("cd_j2j", "CD-J2J", True),), fit, score, {})


def _sdf() -> AppCase:
    from cfm_sdf.commands import evaluate, train
    from cfm_sdf.config import TRAIN_PRESETS, SdfDataConfig, SdfEvalConfig, SdfNetConfig, SdfTrainConfig

    base = SdfTrainConfig(
        data=SdfDataConfig(family="table", n_context=1024, noise_grid=12), net=SdfNetConfig(preset="tiny")
    )

    def fit(out, precision, seed, steps):
        options = _train_options(base.train, out, precision, seed, steps, batch_size=16, lr=1e-3, warmup_steps=100)
        return train(replace(base, train=options))

    def score(run, out, few):
        cfg = SdfEvalConfig(
            checkpoint=str(run), cfm_steps=(1, few), baseline_steps=(), n_shapes=8, resolution=32, out=str(out)
        )
        return evaluate(cfg)["rows"]

    setting = "sdf benchmark's settings: table family, tiny decoder, 1024 context points, batch 16"
    metrics = (("iou", "volumetric IoU", False), ("sdf_error", "truncated-SDF error", True))
    gpu = {name: TRAIN_PRESETS[name].train.mixed_precision for name in ("base", "base-baseline")}
    return AppCase("sdf", setting, 600, 4, metrics, fit, score, gpu)


CASES: dict[str, Callable[[], AppCase]] = {
    "toy": _toy,
    "image": _image,
    "geometry": _geometry,
    "pose": _pose,
    "sdf": _sdf,
}


def _scores(case: AppCase, steps: int, tmp: Path) -> dict[tuple[str, str, int, int], float]:
    """``{(metric, precision, seed, jumps): value}`` of the four runs of one app."""
    scores = {}
    for precision in PRECISIONS:
        for seed in SEEDS:
            run = tmp / case.app / f"{precision}-seed{seed}"
            print(f"== {case.app}: {precision}, seed {seed}, {steps} steps", flush=True)
            case.train(run, precision, seed, steps)
            for row in case.evaluate(run, tmp / case.app / f"{precision}-seed{seed}-eval", case.few):
                if row["label"] == "cfm":
                    for key, _, _ in case.metrics:
                        scores[(key, precision, seed, row["steps"])] = float(row[key])
    return scores


def verdict(
    app: str, metric: tuple[str, str, bool], scores: dict[tuple[str, str, int, int], float], jumps: int
) -> tuple[list[Any], bool]:
    """The table row of one app's metric at ``jumps`` and whether bf16 is within the seed noise there."""
    key, name, lower_is_better = metric
    per = {p: [scores[(key, p, s, jumps)] for s in SEEDS] for p in PRECISIONS}
    means = {p: statistics.fmean(v) for p, v in per.items()}
    spread = max(max(v) - min(v) for v in per.values())
    worse_by = (means["bf16"] - means["no"]) * (1 if lower_is_better else -1)
    within = worse_by <= spread
    row = [app, name, jumps, *per["no"], *per["bf16"], means["no"], means["bf16"], spread, within]
    return row, within


def _preset_note(app: str, presets: dict[str, str], within: bool) -> str:
    """What the GPU-scale presets of ``app`` train with, beside the measured verdict."""
    measured = "within the noise" if within else "worse than float32 beyond the noise"
    if not presets:
        return f"{app}: no GPU-scale preset (bf16 {measured}; --train.mixed-precision bf16 is available)"
    chosen = ", ".join(f"{name} {'float32' if p == 'no' else p}" for name, p in presets.items())
    return f"{app}: {chosen} (bf16 {measured})"


def run(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="run.py precision", description=__doc__)
    parser.add_argument("--apps", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--quick", action="store_true", help="a tenth of the steps: a smoke run")
    args = parser.parse_args(argv)

    rows, decisions, settings, seconds, presets = [], {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.apps:
            case = CASES[name]()
            steps = max(10, case.steps // 10) if args.quick else case.steps
            started = time.perf_counter()
            scores = _scores(case, steps, Path(tmp))
            seconds[name] = time.perf_counter() - started
            within = []
            for metric in case.metrics:
                for jumps in (1, case.few):
                    row, ok = verdict(case.app, metric, scores, jumps)
                    rows.append(row)
                    within.append(ok)
            decisions[name] = all(within)
            presets[name] = case.gpu_presets
            settings[name] = f"{case.setting}, {steps} steps"
            print(f"{name}: bf16 within the seed noise: {decisions[name]}", flush=True)
    notes = [
        "A CPU measurement of quality, not of speed: bf16 autocast on this CPU says nothing about its "
        "speed on a GPU (see tools/bench/gpu.py).",
        "Each app trains four runs of the same configuration (float32 / bf16 autocast x training "
        "seeds 0 / 1) and scores CFM at 1 and at a few jumps with its eval command; 'within noise' "
        "means that bf16's mean over the seeds is not worse than float32's by more than the larger "
        "seed spread (two seeds: a coarse estimate of the noise).",
        "bf16 within the seed noise at every NFE: "
        + ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in decisions.items())
        + ".",
        "Decided: the GPU-scale presets train with "
        + "; ".join(_preset_note(name, presets[name], decisions[name]) for name in decisions)
        + ". Every CPU preset trains in float32.",
        "Wall time per app (4 runs with evaluation): "
        + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
        + f"; torch threads {torch.get_num_threads()}.",
    ]
    return Report(
        name="precision",
        title="Precision: float32 vs bf16 autocast training, quality per app (CPU, small budgets)",
        settings={**settings, "seeds": " ".join(map(str, SEEDS)), "derivative_pass": "float32 (outside autocast)"},
        tables=[
            Table(
                "CFM quality at 1 and a few jumps, float32 ('no') vs bf16 autocast, training seeds 0 and 1 "
                "(lower is better but for IoU); within noise = bf16 mean no worse than float32 mean by "
                "more than the larger seed spread",
                [
                    "app",
                    "metric",
                    "jumps",
                    "fp32 seed 0",
                    "fp32 seed 1",
                    "bf16 seed 0",
                    "bf16 seed 1",
                    "fp32 mean",
                    "bf16 mean",
                    "seed spread",
                    "bf16 within noise",
                ],
                rows,
            )
        ],
        notes=notes,
    )
