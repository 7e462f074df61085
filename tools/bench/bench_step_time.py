"""Step-time benchmark: the CFM / baseline training-step ratio of the toy and image sections, timed
again with the current loss, without re-running their quality measurements.

The settings are those of the ``toy`` and ``image`` sections (their benchmarks' own config
builders): the toy checkerboard with the toy network, batch 512 and minibatch-OT coupling, every
formulation; the image quick preset's micro UNet on the built-in 16x16 digits, batch 64,
formulations u and ddim. Each training step (loss, backward, AdamW; the loss's finiteness checks
off, as the trainer runs every step that does not log) of CFM and of the multi-step baseline
(r = t only) is timed interleaved (:mod:`timing`), and the ratios those sections recorded are put
beside the new ones (read from their results files).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import bench_image
import bench_toy
import torch
from cfm_core.cli.config import config_to_dict
from cfm_image.commands import build_model as build_image_model
from cfm_toy.commands import build_model as build_toy_model
from cfm_toy.commands import toy_batches
from cfm_toy.config import toy_method
from harness import RESULTS, Report, Table
from timing import interleaved_step_times, optimizer_step

TOY_DERIVATIVES = ("jvp", "finite_difference")
TOY_COLUMNS = {"jvp": "jvp ratio", "finite_difference": "fd ratio"}


def _timed(losses: dict, batches, repeats: int, rounds: int) -> dict[str, float]:
    """Seconds per step of each loss (finiteness checks off), interleaved on the same batches."""
    steps = {}
    for name, loss in losses.items():
        loss.check_finite = False
        steps[name] = optimizer_step(loss, torch.optim.AdamW(loss.parameters(), lr=1e-4), batches)
    return interleaved_step_times(steps, repeats, rounds)


def recorded(section: str, caption_start: str) -> dict[str, dict[str, object]]:
    """``{formulation: {column: value}}`` of the table of ``section``'s results file whose caption
    starts with ``caption_start``, and the commit it was recorded at (key ``"commit"``)."""
    payload = json.loads((RESULTS / f"{section}.json").read_text())
    table = next(t for t in payload["tables"] if t["caption"].startswith(caption_start))
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["rows"]}
    return {"commit": payload["machine"]["commit"], **rows}


def _toy_rows(repeats: int, rounds: int) -> tuple[list[list], str]:
    old = recorded("toy", "Training step time")
    default = toy_method().derivative
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in bench_toy.FORMULATIONS:
            configs = {"baseline": bench_toy._config(f, 1.0, "checkerboard", 1, Path(tmp), "jvp")}
            for derivative in TOY_DERIVATIVES:
                configs[derivative] = bench_toy._config(f, 0.5, "checkerboard", 1, Path(tmp), derivative)
            torch.manual_seed(0)
            losses = {name: build_toy_model(config_to_dict(cfg)) for name, cfg in configs.items()}
            times = _timed(losses, toy_batches("checkerboard", configs["baseline"].train.batch_size), repeats, rounds)
            for derivative in TOY_DERIVATIVES:
                rows.append(
                    [
                        "toy",
                        f,
                        derivative + (" (default)" if derivative == default else ""),
                        1000 * times["baseline"],
                        1000 * times[derivative],
                        times[derivative] / times["baseline"],
                        old[f][TOY_COLUMNS[derivative]],
                    ]
                )
            print(f"toy {f}: " + ", ".join(f"{r[2]} {r[5]:.3f} (was {r[6]:.3f})" for r in rows[-2:]), flush=True)
    return rows, str(old["commit"])


def _image_rows(repeats: int, rounds: int) -> tuple[list[list], str]:
    old = recorded("image", "Training step time")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in bench_image.FORMULATIONS:
            cfm, data = bench_image._digit_batches(bench_image._config(f, 0.5, 1, Path(tmp)))
            base, _ = bench_image._digit_batches(bench_image._config(f, 1.0, 1, Path(tmp)))
            torch.manual_seed(0)
            losses = {
                "baseline": build_image_model(config_to_dict(base)),
                "cfm": build_image_model(config_to_dict(cfm)),
            }
            times = _timed(losses, data, repeats, rounds)
            ratio = times["cfm"] / times["baseline"]
            rows.append(
                [
                    "image",
                    f,
                    f"{cfm.method.derivative} (default)",
                    1000 * times["baseline"],
                    1000 * times["cfm"],
                    ratio,
                    old[f]["CFM/baseline"],
                ]
            )
            print(f"image {f}: {ratio:.3f} (was {old[f]['CFM/baseline']:.3f})", flush=True)
    return rows, str(old["commit"])


def run(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="run.py step-time", description=__doc__)
    parser.add_argument("--repeats", type=int, default=2, help="steps per model in each timing round")
    parser.add_argument("--rounds", type=int, default=25, help="short rounds: load spikes fall on every model")
    parser.add_argument("--quick", action="store_true", help="2 steps x 2 rounds: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.rounds = 2, 2
    toy_rows, toy_commit = _toy_rows(args.repeats, args.rounds)
    image_rows, image_commit = _image_rows(args.repeats, args.rounds)
    return Report(
        name="step-time",
        title="Step time: CFM / baseline training-step ratio of the toy and image sections, re-measured (CPU)",
        settings={
            "toy": "checkerboard, batch 512, toy network and coupling of the toy section, every formulation",
            "image": "digits 16x16, quick preset (micro UNet), batch 64, formulations u ddim",
            "timing": f"interleaved, {args.rounds} rounds of {args.repeats} steps per model, median round, "
            "3 warm-up steps",
            "step": "loss (finiteness checks off), backward, AdamW",
        },
        tables=[
            Table(
                "Training step time (ms) of the baseline and of CFM, the ratio now and as its section recorded it",
                ["app", "formulation", "CFM derivative", "baseline ms", "CFM ms", "ratio now", "ratio recorded"],
                toy_rows + image_rows,
            )
        ],
        notes=[
            f"Recorded ratios: the toy section's (commit {toy_commit}) jvp and fd ratio columns and the image "
            f"section's (commit {image_commit}) CFM/baseline column, read from tools/bench/results/toy.json "
            "and image.json; those sections timed the loss with its finiteness checks on in every step.",
            "The image app's CFM derivative is the exact JVP (its default); the toy's default is the core's "
            "finite difference, and its JVP is timed too, for the recorded jvp ratio.",
            "Ratios of one run on a shared 2-core machine: timing interleaves the models so that a change "
            "in load falls on all of them, but differences of a few percent are within its noise.",
        ],
    )
