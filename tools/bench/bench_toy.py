"""Toy benchmark: CFM vs its own multi-step baseline for each formulation, on a 2-D distribution.

For every formulation both models share the network (ToyMLP), the budget and the seed; the baseline
is trained with r = t only (instantaneous_ratio 1.0). Quality is the energy distance to held-out
data at NFE 1, 2, 4 (CFM) and 1..128 (baseline, its Euler/DDIM solver). The training cost of one
step (loss, backward, optimizer) is timed in one process for CFM with the derivative backends jvp,
jvp_one_pass and finite_difference and for the baseline, interleaved, on the same batches.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from cfm_core.cli.config import config_to_dict
from cfm_core.coupling import COUPLINGS
from cfm_core.evaluation import nfe_sweep
from cfm_core.metrics import energy_distance
from cfm_core.plotting import save_curves
from cfm_core.training import Trainer, seed_initial_weights
from cfm_toy.commands import build_model, toy_batches
from cfm_toy.config import ToyTrainConfig, toy_method
from harness import RESULTS, Report, Table
from timing import interleaved_step_times, optimizer_step

FORMULATIONS = ("u", "x1", "edm", "ddim")
DEFAULT_COUPLING = toy_method().coupling
CFM_STEPS = (1, 2, 4)
#: Fresh data samples scored against the held-out set: the metric's noise floor.
FLOOR_DRAWS = 10
BASELINE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128)


def _config(
    formulation: str,
    ratio: float,
    data: str,
    steps: int,
    out: Path,
    derivative: str = "jvp",
    coupling: str = DEFAULT_COUPLING,
):
    options = {"sigma_data": 1.0} if formulation == "edm" else {}
    base = ToyTrainConfig(data=data)
    return replace(
        base,
        method=toy_method(
            formulation=formulation,
            formulation_options=options,
            instantaneous_ratio=ratio,
            derivative=derivative,
            coupling=coupling,
        ),
        train=replace(
            base.train,
            steps=steps,
            output_dir=str(out),
            checkpoint_every=steps,
            log_every=max(1, steps // 10),
        ),
    )


def _train(cfg: ToyTrainConfig):
    run_config = config_to_dict(cfg)
    seed_initial_weights(cfg.train.seed)
    model = build_model(run_config)
    trainer = Trainer(
        model,
        toy_batches(cfg.data, cfg.train.batch_size),
        cfg.train,
        run_config=run_config,
        app="toy",
    )
    summary = trainer.fit()
    return trainer.sampling_model(), summary


def _step_times(configs: dict[str, ToyTrainConfig], repeats: int) -> dict[str, float]:
    """Seconds per training step (loss, backward, AdamW) of each config, timed interleaved."""
    steps = {}
    for name, cfg in configs.items():
        model = build_model(config_to_dict(cfg))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        steps[name] = optimizer_step(model, optimizer, toy_batches(cfg.data, cfg.train.batch_size))
    return interleaved_step_times(steps, repeats)


def run(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="run.py toy", description=__doc__)
    parser.add_argument("--data", default="checkerboard")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of every model")
    parser.add_argument("--n", type=int, default=5000, help="samples per evaluation")
    parser.add_argument("--timing-steps", type=int, default=50)
    parser.add_argument("--formulations", nargs="+", default=list(FORMULATIONS))
    parser.add_argument(
        "--coupling",
        choices=COUPLINGS,
        default=DEFAULT_COUPLING,
        help="noise-data pairing of both models (another than the toy default records the section toy-<coupling>)",
    )
    parser.add_argument("--quick", action="store_true", help="300 steps, 1000 samples: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.n, args.timing_steps = 300, 1000, 10

    quality_rows, cost_rows, curves = [], [], {}
    gen = torch.Generator().manual_seed(1234)
    noise = torch.randn(args.n, 2, generator=gen)
    from cfm_toy.data import sample_toy

    held_out = sample_toy(args.data, args.n, generator=gen)
    floor = [energy_distance(sample_toy(args.data, args.n, generator=gen), held_out) for _ in range(FLOOR_DRAWS)]
    floor_mean, floor_sd = float(np.mean(floor)), float(np.std(floor, ddof=1))
    with tempfile.TemporaryDirectory() as tmp:
        for f in args.formulations:
            cfm, _ = _train(_config(f, 0.5, args.data, args.steps, Path(tmp) / f"{f}-cfm", coupling=args.coupling))
            base, _ = _train(_config(f, 1.0, args.data, args.steps, Path(tmp) / f"{f}-base", coupling=args.coupling))
            entries = nfe_sweep(noise, cfm, CFM_STEPS, base, BASELINE_STEPS, "euler")
            scores = {(e.label, e.nfe): energy_distance(e.samples, held_out) for e in entries}
            ms = {(e.label, e.nfe): 1000 * e.seconds_per_sample for e in entries}
            for label in ("cfm", "baseline"):
                steps = CFM_STEPS if label == "cfm" else BASELINE_STEPS
                quality_rows.append(
                    [f, "CFM" if label == "cfm" else "baseline"] + [scores.get((label, s), "") for s in BASELINE_STEPS]
                )
                curves[f"{f} {'CFM' if label == 'cfm' else 'baseline'}"] = (
                    list(steps),
                    [scores[(label, s)] for s in steps],
                )
            times = _step_times(
                {
                    name: _config(f, ratio, args.data, 1, Path(tmp) / "t", derivative, args.coupling)
                    for name, ratio, derivative in (
                        ("baseline", 1.0, "jvp"),
                        ("jvp", 0.5, "jvp"),
                        ("one_pass", 0.5, "jvp_one_pass"),
                        ("fd", 0.5, "finite_difference"),
                    )
                },
                args.timing_steps // 5,
            )
            cost_rows.append(
                [
                    f,
                    1000 * times["baseline"],
                    1000 * times["jvp"],
                    times["jvp"] / times["baseline"],
                    1000 * times["one_pass"],
                    times["one_pass"] / times["baseline"],
                    1000 * times["fd"],
                    times["fd"] / times["baseline"],
                    scores[("cfm", 1)] <= scores[("baseline", 64)] + 2 * floor_sd,
                    ms[("cfm", 1)],
                    ms[("baseline", 64)],
                ]
            )
            print(
                f"{f}: CFM@1 {scores[('cfm', 1)]:.4f}, baseline@64 {scores[('baseline', 64)]:.4f}, "
                f"step ratio jvp {times['jvp'] / times['baseline']:.2f}",
                flush=True,
            )
    net = ToyTrainConfig().net
    name = "toy" if args.coupling == DEFAULT_COUPLING else f"toy-{args.coupling}"
    figure = save_curves(
        curves,
        RESULTS / f"{name}_quality_vs_nfe.png",
        xlabel="NFE",
        ylabel="energy distance (lower is better)",
        logx=True,
        symlog_y=max(floor_sd, 1e-6),
        title=f"{args.data}: CFM vs multi-step baseline (linear within the noise floor's sd)",
    )
    return Report(
        name=name,
        title=f"Toy: CFM vs multi-step baseline on {args.data}, {args.coupling} coupling (CPU)",
        settings={
            "data": args.data,
            "train_steps": args.steps,
            "batch": 512,
            "net": f"ToyMLP {net.hidden}x{net.depth}, point features {net.fourier_levels} octaves",
            "coupling": f"{args.coupling} (both models; an assignment is part of every timed step)"
            if args.coupling == "minibatch_ot"
            else args.coupling,
            "eval_samples": args.n,
            "baseline_solver": "euler (DDIM step for ddim)",
        },
        tables=[
            Table(
                "Energy distance to held-out data (lower is better) at each NFE",
                ["formulation", "model"] + [f"NFE {s}" for s in BASELINE_STEPS],
                quality_rows,
            ),
            Table(
                "Training step time (ms) and ratio to the baseline; sampling ms per sample",
                [
                    "formulation",
                    "baseline ms",
                    "CFM-jvp ms",
                    "jvp ratio",
                    "CFM-jvp-one-pass ms",
                    "one-pass ratio",
                    "CFM-fd ms",
                    "fd ratio",
                    "CFM@1 <= baseline@64 + 2 sd(floor)",
                    "CFM@1 ms/sample",
                    "baseline@64 ms/sample",
                ],
                cost_rows,
            ),
        ],
        figures=[str(figure)],
        notes=[
            "Targets: CFM at 1 NFE at least as good as the baseline at 64 NFE; a training step "
            "at most 1.5x the baseline's.",
            f"Noise floor of the metric: the energy distance of {FLOOR_DRAWS} fresh data samples of "
            f"{args.n} points to the held-out set: mean {floor_mean:.2g}, sd {floor_sd:.2g}. Rows "
            "closer than two sd are not told apart by this metric; the target column allows that.",
            "jvp: the tangent pass (no_grad) then the ordinary forward; jvp_one_pass: one dual pass with "
            "gradients gives both (autograd then also keeps the tangent's intermediate tensors); "
            "fd: one extra forward pass. The quality rows are trained with jvp.",
        ],
    )
