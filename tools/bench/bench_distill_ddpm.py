"""Distillation of an epsilon-prediction DDPM teacher: pose and SDF (``--app pose`` / ``--app sdf``).

The teacher is the baseline PDT and Functional Diffusion train: DDPM's path with epsilon-prediction
(``--method.formulation ddim --method.formulation-options prediction epsilon``), r = t only, DDPM's
plain noise loss, trained at the app's benchmark section's network, data and budget (``bench_pose``,
``bench_sdf``), and sampled with deterministic DDIM steps at 1 .. 64 steps (and 1000 for pose). The
student is the app's CFM on the same path with x0-prediction (pose: the app's default method; SDF:
the app's default with ``--method.formulation ddim``, since its default x1 has another path), the
same network and budget, distilling the teacher by the Eulerian objective; it starts fresh (the
teacher's weights predict the noise, the student's x0). Both are scored by the app's own ``eval``
on the held-out shapes and noise of the app's section: pose CD-J2J, IoU, precision, recall; SDF
IoU, Chamfer, F-score and truncated-SDF error. Training time is the trainer's wall time of each run;
the teacher's late training loss (its noise MSE) says how much of the noise it learnt to predict.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from cfm_core.plotting import save_curves
from cfm_core.training import read_log
from harness import RESULTS, Report, Table

TEACHER_STEPS = (1, 2, 4, 8, 16, 32, 64)
POSE_TEACHER_STEPS = (*TEACHER_STEPS, 1000)
STUDENT_STEPS = (1, 2, 4)
EPSILON = {"prediction": "epsilon"}
#: Each app's quality columns: (label, key in the eval rows, lower is better).
METRICS = {
    "pose": (("CD-J2J", "cd_j2j", True), ("IoU", "iou", False), ("precision", "precision", False),
             ("recall", "recall", False), ("joints", "joints", False)),
    "sdf": (("IoU", "iou", False), ("Chamfer", "chamfer", True), ("F-score", "fscore", False),
            ("SDF error", "sdf_error", True), ("shapes without a surface", "empty_shapes", True)),
}  # fmt: skip


def _pose(args: argparse.Namespace, tmp: Path) -> tuple[list[dict], dict[str, dict], dict[str, Any]]:
    import bench_pose
    from cfm_core.method import MethodConfig
    from cfm_pose.commands import evaluate, train
    from cfm_pose.config import ExtractionConfig, PoseEvalConfig, PoseTrainConfig

    pose = bench_pose.parser().parse_args([])
    if args.quick:
        pose.steps, pose.n_shapes = 30, 4
    base = bench_pose.train_config(pose, "ddim", 1.0, tmp / "teacher")
    teacher = replace(
        base, method=MethodConfig(formulation="ddim", instantaneous_ratio=1.0, formulation_options=EPSILON)
    )
    student_method = replace(PoseTrainConfig().method, teacher=str(tmp / "teacher"))
    student = replace(base, method=student_method, train=replace(base.train, output_dir=str(tmp / "student")))
    summaries = {"teacher": train(teacher), "student": train(student)}
    result = evaluate(
        PoseEvalConfig(
            checkpoint=str(tmp / "student"),
            baseline=str(tmp / "teacher"),
            cfm_steps=STUDENT_STEPS,
            baseline_steps=(1, 8) if args.quick else POSE_TEACHER_STEPS,
            n_shapes=pose.n_shapes,
            seed=1234,
            extraction=ExtractionConfig(bandwidth=pose.bandwidth),
            out=str(tmp / "eval"),
        )
    )
    settings = {
        "data": f"procedural, template {pose.template}",
        "n_points": pose.n_points,
        "net": f"PoseMLP per-point {pose.hidden}x{pose.depth}, code 128, encoder 64 (the pose section's)",
        "train_steps": pose.steps,
        "batch": pose.batch_size,
        "teacher": "ddim, prediction epsilon, r = t only (DDPM's noise loss)",
        "student": f"the app's default (ddim x0, r = t share {student_method.instantaneous_ratio}, "
        f"derivative {student_method.derivative}), objective eulerian, fresh weights",
        "held_out_shapes": pose.n_shapes,
        "extraction": f"mean shift bandwidth {pose.bandwidth}",
    }
    return result["rows"], summaries, settings


def _sdf(args: argparse.Namespace, tmp: Path) -> tuple[list[dict], dict[str, dict], dict[str, Any]]:
    import bench_sdf
    from cfm_sdf.commands import evaluate, train
    from cfm_sdf.config import SdfEvalConfig

    sdf = bench_sdf.parser().parse_args(["--formulation", "ddim"])
    if args.quick:
        sdf.steps, sdf.shapes, sdf.resolution = 100, 4, 32
    base = bench_sdf.train_config(sdf, 1.0, tmp / "teacher")
    teacher = replace(base, method=replace(base.method, formulation_options=EPSILON))
    student_cfg = bench_sdf.train_config(sdf, 0.5, tmp / "student")
    student = replace(student_cfg, method=replace(student_cfg.method, teacher=str(tmp / "teacher")))
    summaries = {"teacher": train(teacher), "student": train(student)}
    result = evaluate(
        SdfEvalConfig(
            checkpoint=str(tmp / "student"),
            baseline=str(tmp / "teacher"),
            cfm_steps=STUDENT_STEPS,
            baseline_steps=(1, 8) if args.quick else TEACHER_STEPS,
            n_shapes=sdf.shapes,
            resolution=sdf.resolution,
            out=str(tmp / "eval"),
        )
    )
    settings = {
        "family": sdf.family,
        "net": sdf.net,
        "train_steps": sdf.steps,
        "batch": sdf.batch,
        "lr": sdf.lr,
        "context_points": sdf.context,
        "teacher": "ddim, prediction epsilon, r = t only (DDPM's noise loss)",
        "student": f"the app's default with formulation ddim (x0, r = t share {student.method.instantaneous_ratio}, "
        f"derivative {student.method.derivative}), objective eulerian, fresh weights",
        "held_out_shapes": sdf.shapes,
        "grid": f"{sdf.resolution}^3",
    }
    return result["rows"], summaries, settings


def quality_rows(app: str, rows: list[dict]) -> list[list]:
    """The quality table's rows: the teacher's DDIM steps, then the student's jumps."""
    names = {"baseline": "teacher (epsilon DDPM, DDIM steps)", "cfm": "student (x0 CFM, eulerian)"}
    ordered = [r for r in rows if r["label"] == "baseline"] + [r for r in rows if r["label"] == "cfm"]
    return [
        [
            names[r["label"]],
            r["sampler"],
            r["nfe"],
            *("-" if r.get(key) is None else r[key] for _, key, _ in METRICS[app]),
        ]
        for r in ordered
    ]


def comparisons(app: str, rows: list[dict], seconds: dict[str, float]) -> list[str]:
    """Notes computed from the rows (the app's first metric): the teacher at 1 step, at 64 steps (or
    its most) and at its best step count, the student's jumps and their ratio to the teacher, and
    the training times."""
    label, key, lower = METRICS[app][0]
    teacher = {r["nfe"]: r[key] for r in rows if r["label"] == "baseline"}
    student = {r["nfe"]: r[key] for r in rows if r["label"] == "cfm"}
    most = max(teacher)
    at = 64 if 64 in teacher else most
    scored = {n: v for n, v in teacher.items() if v is not None}
    best_at = (min if lower else max)(scored, key=scored.get) if scored else None
    shown = [1, at, *([most] if most != at else [])]
    notes = [
        f"{label} ({'lower' if lower else 'higher'} is better): the teacher at "
        + ", ".join(f"{n} DDIM step(s) {_fmt(teacher[n])}" for n in shown)
        + (f", best {_fmt(scored[best_at])} at {best_at} step(s)" if best_at is not None else "")
        + "; the student at "
        + ", ".join(f"{n} jump(s) {_fmt(v)}" for n, v in sorted(student.items()))
        + "."
    ]
    if student.get(1) is not None and best_at is not None:
        one_step = (
            f"{_ratio(student[1], teacher[1])}x its 1 step"
            if teacher[1] is not None
            else "the teacher's 1 step has nothing to score"
        )
        notes.append(
            f"The student's 1 jump is {_ratio(student[1], teacher[at])}x the teacher's {label} at {at} DDIM "
            f"steps and {_ratio(student[1], scored[best_at])}x its best ({best_at} steps); {one_step}."
        )
    notes.append(
        f"Training: teacher {seconds['teacher']:.0f} s, student {seconds['student']:.0f} s, total "
        f"{seconds['teacher'] + seconds['student']:.0f} s (1 CPU thread)."
    )
    return notes


def late_loss(log: list[dict]) -> float:
    """The mean ``loss`` of the training records logged in the second half of a run's steps."""
    last = max(r["step"] for r in log)
    late = [r["loss"] for r in log if "loss" in r and r["step"] > last / 2]
    return float(sum(late) / len(late))


def _fmt(value: float | None) -> str:
    return "nothing to score" if value is None else f"{value:.4g}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.3g}"


def run(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="run.py distill_ddpm", description=__doc__)
    parser.add_argument("--app", default="pose", choices=tuple(METRICS))
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few steps and shapes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows, summaries, settings = (_pose if args.app == "pose" else _sdf)(args, Path(tmp))
        teacher_loss = late_loss(read_log(Path(tmp) / "teacher"))
    seconds = {name: summary["seconds"] for name, summary in summaries.items()}
    label, key, _ = METRICS[args.app][0]
    curves = {}
    for tag, name in (("baseline", "teacher (epsilon DDPM, DDIM)"), ("cfm", "student (eulerian)")):
        scored = [r for r in rows if r["label"] == tag and r[key] is not None]  # None: nothing found to score
        curves[name] = ([r["nfe"] for r in scored], [r[key] for r in scored])
    figure = save_curves(
        curves,
        RESULTS / f"distill-ddpm-{args.app}_quality_vs_nfe.png",
        xlabel="NFE",
        ylabel=f"{label} ({'lower' if METRICS[args.app][0][2] else 'higher'} is better)",
        logx=True,
        title=f"{args.app}: epsilon-DDPM teacher vs distilled student",
    )
    columns = ["model", "sampler", "NFE", *(name for name, _, _ in METRICS[args.app])]
    tables = [
        Table(
            "Held-out quality at each NFE (the app's eval; '-': no joint or surface found to score)",
            columns,
            quality_rows(args.app, rows),
        ),
        Table(
            "Training wall time (s, 1 CPU thread) and the teacher's training loss (DDPM's noise MSE, the mean "
            "of the batches logged in the second half of training; 1 is the loss of predicting no noise)",
            ["teacher s", "student s", "total s", "teacher's loss"],
            [
                [
                    seconds["teacher"],
                    seconds["student"],
                    seconds["teacher"] + seconds["student"],
                    teacher_loss,
                ]
            ],
        ),
    ]
    settings["torch_threads"] = torch.get_num_threads()
    return Report(
        name=f"distill-ddpm-{args.app}",
        title=f"Distillation: an epsilon-prediction DDPM teacher, {args.app} (CPU)",
        settings=settings,
        tables=tables,
        figures=[str(figure)],
        notes=comparisons(args.app, rows, seconds),
    )
