"""Geometry benchmark: one thin-feature shape as a distribution of surface points (Geometry
Distributions), CFM-EDM, CFM-x1 and CFM-u against the EDM multi-step baseline.

All four models share the per-point network (PointMLP), the surface samples, the batches, the
budget, the learning-rate schedule (the app's: half cosine) and the seed; the baseline is EDM
trained with r = t only (instantaneous_ratio 1.0) and sampled with EDM's Heun solver (NFE =
2 steps - 1), CFM with cumulative jumps (its cumulative target built from its own r = t field, the
app's default). ``cfm geometry
eval`` scores every run against dense surface samples of the input with the same noise: the
two-sided Chamfer distance (GD's summed form) in GD's normalised-mesh units, in the unit-variance
model units and in the shape's units, the F-score at 1% of the bounding-box diagonal and the
Hausdorff distance. Sampling is then timed separately for one million points at each NFE, through
the app's own generation path (``generate_points``: the app's default batches, 2^12 points on
the CPU, one time embedding per batch), for every row up to ``--timing-max-nfe``. The training
step (loss, backward, AdamW) is timed in one process, the models interleaved, on the same batches.
The CPU configuration is deliberately small (a 96 x 3 MLP, 6000 steps of 2048 points) so that
the whole run stays under half an hour; its absolute quality is far from GD's (512 x 6, 512k steps
of 1M points).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from cfm_core.cli import config_to_dict
from cfm_core.cli.common import load_trained
from cfm_core.method import MethodConfig
from cfm_core.plotting import save_curves
from cfm_core.training import TrainConfig
from cfm_geometry.commands import APP, build_model, evaluate, point_batches, train
from cfm_geometry.config import (
    CFM_INSTANTANEOUS_RATIO,
    CFM_TARGET_FIELD,
    EDM_SIGMA_DATA,
    LR_SCHEDULE,
    GeometryEvalConfig,
    GeometryNetConfig,
    GeometryTrainConfig,
)
from cfm_geometry.data import PointBank, surface_from_spec
from cfm_geometry.generation import default_batch_points, generate_points
from harness import RESULTS, Report, Table
from timing import interleaved_step_times, optimizer_step

CFM_STEPS = (1, 2, 3, 6)
BASELINE_STEPS = (1, 2, 4, 8, 16, 32)  # Heun: NFE 1, 3, 7, 15, 31, 63
#: name -> (formulation, instantaneous_ratio); the first is the baseline, the others use the
#: app's default share of r = t rows.
MODELS = {
    "baseline": ("edm", 1.0),
    "CFM-EDM": ("edm", CFM_INSTANTANEOUS_RATIO),
    "CFM-x1": ("x1", CFM_INSTANTANEOUS_RATIO),
    "CFM-u": ("u", CFM_INSTANTANEOUS_RATIO),
}
#: Training steps of the default run (section ``geometry``).
DEFAULT_STEPS = 6000
#: Seed of the timed sampling runs' noise.
TIMING_SEED = 99


def model_config(args: argparse.Namespace, name: str, out: Path) -> GeometryTrainConfig:
    """The training config of the model ``name`` (a key of ``MODELS``) under the benchmark's
    options ``args``, writing its run to ``out``."""
    formulation, ratio = MODELS[name]
    return GeometryTrainConfig(
        shape=args.shape,
        points=args.points,
        preview_points=0,
        net=GeometryNetConfig(width=args.width, depth=args.depth),
        method=MethodConfig(formulation=formulation, instantaneous_ratio=ratio, target_field=CFM_TARGET_FIELD),
        train=TrainConfig(
            steps=args.steps,
            batch_size=args.batch,
            lr=args.lr,
            warmup_steps=100,
            lr_schedule=LR_SCHEDULE,
            ema_decays=(0.999,),
            ema_warmup_power=0.75,
            checkpoint_every=args.steps,
            log_every=max(1, args.steps // 20),
            output_dir=str(out),
            cpu=args.cpu,
        ),
    )


def _sampling_seconds(run_dir: str, rows: list[dict], points: int, max_nfe: int) -> dict[tuple[str, int], float]:
    """Wall seconds of generating ``points`` points with the trained model in ``run_dir`` at the
    (sampler, steps) of each row whose NFE is at most ``max_nfe``, through the app's generation
    path (the app's default batch size for the device, with a progress bar)."""
    model, _ = load_trained(run_dir, build_model, APP)
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    seconds = {}
    for row in rows:
        if row["nfe"] <= max_nfe:
            _, _, seconds[row["sampler"], row["steps"]] = generate_points(
                model, points, row["steps"], row["sampler"], None, TIMING_SEED
            )
    return seconds


def _step_times(configs: dict[str, GeometryTrainConfig], bank: PointBank, repeats: int) -> dict[str, float]:
    """Median seconds per training step of each config on the same batches, the models timed in
    interleaved rounds (:func:`timing.interleaved_step_times`)."""
    steps = {}
    for name, cfg in configs.items():
        model = build_model(config_to_dict(cfg))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        steps[name] = optimizer_step(model, optimizer, point_batches(bank, cfg.train.batch_size, 0, None))
    return interleaved_step_times(steps, repeats)


def parser() -> argparse.ArgumentParser:
    """The benchmark's options; their defaults are the ``geometry`` section's settings."""
    parser = argparse.ArgumentParser(prog="run.py geometry", description=__doc__)
    parser.add_argument("--shape", default="torus_knot", help="built-in shape (thin tube)")
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help="training steps of every model (another value than the default "
        "records its own section, geometry-<steps>steps)",
    )
    parser.add_argument("--batch", type=int, default=2048, help="points per training step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--points", type=int, default=1 << 18, help="surface samples (training)")
    parser.add_argument(
        "--eval-points", type=int, default=100_000, help="generated points per scored run and reference surface samples"
    )
    parser.add_argument("--timing-points", type=int, default=1_000_000, help="generated points per timed sampling run")
    parser.add_argument(
        "--timing-max-nfe",
        type=int,
        default=63,
        help="time sampling only for the rows with at most this NFE (to shorten "
        "the run: the baseline's 63-NFE row takes about two minutes at 1M "
        "points on one CPU core)",
    )
    parser.add_argument("--timing-steps", type=int, default=20)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    parser.add_argument("--quick", action="store_true", help="200 steps, 10k scored and 100k timed points: a smoke run")
    return parser


def run(argv: list[str]) -> Report:
    net = GeometryNetConfig()
    args = parser().parse_args(argv)
    if args.quick:
        args.steps, args.eval_points, args.timing_steps = 200, 10_000, 5
        args.timing_points = 100_000
    timed = _count(args.timing_points)

    rows, cost_rows, curves = [], [], {}
    section = "geometry" if args.steps == DEFAULT_STEPS or args.quick else f"geometry-{args.steps}steps"
    eval_dir = RESULTS / f"{section}_eval"
    with tempfile.TemporaryDirectory() as tmp:
        configs = {name: model_config(args, name, Path(tmp) / name) for name in MODELS}
        seconds = {}
        for name, cfg in configs.items():
            print(
                f"== training {name} ({cfg.method.formulation}, r=t share "
                f"{cfg.method.instantaneous_ratio}) on {args.shape}",
                flush=True,
            )
            seconds[name] = train(cfg)["seconds"]
        results, sampling = {}, {}
        for name in list(MODELS)[1:]:
            print(f"== evaluating {name}", flush=True)
            with_baseline = name == "CFM-EDM"
            results[name] = evaluate(
                GeometryEvalConfig(
                    checkpoint=configs[name].train.output_dir,
                    baseline=configs["baseline"].train.output_dir if with_baseline else None,
                    points=args.eval_points,
                    cfm_steps=CFM_STEPS,
                    baseline_steps=BASELINE_STEPS if with_baseline else (),
                    out=str(eval_dir if with_baseline else Path(tmp) / f"eval-{name}"),
                )
            )
        for name in MODELS:
            label = "baseline" if name == "baseline" else "cfm"
            source = results["CFM-EDM" if label == "baseline" else name]["rows"]
            print(f"== timing {name}: {timed} points per run", flush=True)
            sampling[name] = _sampling_seconds(
                configs[name].train.output_dir,
                [r for r in source if r["label"] == label],
                args.timing_points,
                args.timing_max_nfe,
            )
        bank = PointBank.from_surface(surface_from_spec(args.shape), args.points, 0)
        times = _step_times(configs, bank, args.timing_steps)

    for name, result in results.items():
        for row in result["rows"]:  # only CFM-EDM's evaluation holds baseline rows
            model = name if row["label"] == "cfm" else "baseline"
            timing = sampling[model].get((row["sampler"], row["steps"]), "not timed")
            rows.append(
                [
                    model,
                    row["sampler"],
                    row["steps"],
                    row["nfe"],
                    row["chamfer_sum_box"],
                    row["chamfer_sum_model"],
                    row["chamfer_sum"],
                    row["f_score"],
                    row["hausdorff_box"],
                    timing,
                ]
            )
    rows.sort(key=lambda r: (list(MODELS).index(r[0]), r[3]))
    for model in MODELS:
        points = [(r[3], r[4]) for r in rows if r[0] == model and r[4] > 0]
        if points:
            curves[model] = tuple(zip(*points, strict=True))
    for name in MODELS:
        cost_rows.append([name, 1000 * times[name], times[name] / times["baseline"], seconds[name]])
    figure = save_curves(
        curves,
        RESULTS / f"{section}_quality_vs_nfe.png",
        xlabel="NFE (network evaluations per point)",
        ylabel="Chamfer, summed, box units (lower is better)",
        logx=True,
        logy=True,
        title=f"{args.shape}: CFM vs the EDM multi-step baseline",
    )

    return Report(
        name=section,
        title=f"Geometry: CFM vs the EDM multi-step baseline on `{args.shape}` (CPU, "
        f"{'small budget' if section == 'geometry' else f'{args.steps} steps of {args.batch} points'})",
        settings={
            "shape": args.shape,
            "surface_samples": args.points,
            "net": f"PointMLP {args.width}x{args.depth}, Fourier point features {net.fourier_levels} levels",
            "train_steps": args.steps,
            "batch_points": args.batch,
            "lr": args.lr,
            "lr_schedule": LR_SCHEDULE,
            "cfm_instantaneous_ratio": CFM_INSTANTANEOUS_RATIO,
            "cfm_target_field": CFM_TARGET_FIELD,
            "eval_points": args.eval_points,
            "reference_points": args.eval_points,
            "timing_points": args.timing_points,
            "f_threshold": "1% of bbox diagonal",
            "baseline_solver": "EDM Heun (NFE = 2 steps - 1)",
            "edm_sigma_data": EDM_SIGMA_DATA,
        },
        tables=[
            Table(
                f"Quality at each NFE (Chamfer: summed two-sided form, {_count(args.eval_points)} "
                f"generated vs {_count(args.eval_points)} reference points; lower is better) "
                f"and the wall time of sampling {timed} points",
                [
                    "model",
                    "sampler",
                    "steps",
                    "NFE",
                    "Chamfer (box)",
                    "Chamfer (model)",
                    "Chamfer (shape units)",
                    "F-score@1%",
                    "Hausdorff (box)",
                    f"s / {timed} points",
                ],
                rows,
            ),
            Table(
                "Jump gap (box units): mean distance between one jump to the data end and the "
                "same network's own 64-step ODE (its r = t field), both from that ODE's state at "
                "the start time (unit time, 0 = noise); `cfm geometry eval`'s diagnostic",
                ["model", *(f"from {g['start']:.2f}" for g in results["CFM-EDM"]["jump_gap"]), "ODE endpoints' spread"],
                [
                    [name, *(g["gap_box"] for g in result["jump_gap"]), result["jump_gap"][0]["spread_box"]]
                    for name, result in results.items()
                ],
            ),
            Table(
                "Training cost: ms per step (same batches, interleaved timing) and ratio to "
                "the baseline; wall time of the whole training run",
                ["model", "ms / step", "ratio to baseline", "training s"],
                cost_rows,
            ),
        ],
        figures=[str(figure), str(eval_dir / "samples.png")],
        notes=_notes(results["CFM-EDM"], args, rows),
    )


def _count(points: int) -> str:
    """``1M``, ``100k`` or the plain number."""
    for size, suffix in ((1_000_000, "M"), (1000, "k")):
        if points % size == 0:
            return f"{points // size}{suffix}"
    return str(points)


def _notes(edm_result: dict, args: argparse.Namespace, rows: list[list]) -> list[str]:
    """The units, the timing conditions and the headline comparison, from the measured numbers."""
    units = edm_result["units"]
    chamfer = {(r["label"], r["nfe"]): r["chamfer_sum_box"] for r in edm_result["rows"]}
    best = max(nfe for label, nfe in chamfer if label == "baseline")
    cfm1, base1 = chamfer[("cfm", 1)], chamfer[("baseline", 1)]
    base_best = chamfer[("baseline", best)]
    verdict = "beats" if cfm1 <= base_best else "does not reach"
    untimed = [f"{r[0]} NFE {r[3]}" for r in rows if isinstance(r[-1], str)]
    timing = (
        f"Sampling times: wall time of generating {args.timing_points} points on the "
        f"{edm_result['device']} in batches of "
        f"{default_batch_points(torch.device(edm_result['device']))}, measured for every row"
    )
    if untimed:
        timing += f" with NFE <= {args.timing_max_nfe}; not timed (to keep the benchmark short): {', '.join(untimed)}"
    return [
        "Chamfer (box): GD's normalised mesh units (bounding box centred, largest |coordinate| "
        f"0.99); (model): the unit-variance units the network learns in (= box x "
        f"{units['model_per_original'] / units['box_per_original']:.4g}); (shape units): the "
        f"shape's own (= box / {units['box_per_original']:.4g}). The 0.5-averaged Chamfer is half "
        "of each summed value (every form is in metrics.json).",
        timing + ".",
        f"CFM-EDM at 1 NFE: Chamfer {cfm1:.4g}; the baseline at 1 NFE {base1:.4g} and at {best} "
        f"NFE {base_best:.4g}: CFM at 1 NFE {verdict} the baseline at {best} NFE in this small "
        "CPU budget.",
    ]
