"""Image benchmark: CFM vs its own multi-step baseline on the built-in 16x16 digits (CPU).

For every formulation both models share the UNet (the quick preset's micro UNet), the training
budget, the batches and the seed; the baseline is trained with r = t only (instantaneous ratio
1.0). Both are scored by ``cfm image eval``'s metrics: the Frechet distance in the feature space of
a small digit classifier trained on the training split (lower is better), the classifier's
accuracy on the class-conditional samples and the entropy of the predicted-class histogram.
CFM is sampled at 1, 2, 4 jumps, the baseline with its Euler (DDIM for ddim) solver at 1..128
steps; sampling time is wall time per image. The training step time of CFM and of the baseline is
measured in one process, alternating the two step by step on the same batches (the ratio is
robust to other load on the machine).

``--cifar-gpu`` additionally times the cifar preset (DDPM's 39M UNet, 3x32x32, batch 128, bf16)
on random images when CUDA is available: step time and peak memory, CFM and baseline.
``--fid-weights PATH`` adds an FID column (torchmetrics, a local Inception-v3 file; nothing is
downloaded, and without it the notes say that FID was skipped).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from cfm_core.cli import config_to_dict
from cfm_core.io import atomic_path
from cfm_image.commands import build_model, evaluate, make_trainer, open_fid
from cfm_image.config import (
    TRAIN_PRESETS,
    ImageDataConfig,
    ImageEvalConfig,
    ImageTrainConfig,
)
from cfm_image.fid import SKIP_REASON as FID_SKIP_REASON
from cfm_image.sources import open_training_data, training_batches
from harness import RESULTS, Report, Table

FORMULATIONS = ("u", "ddim")
CFM_STEPS = (1, 2, 4)
BASELINE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
FIGURES = RESULTS / "image"


def _config(formulation: str, ratio: float, steps: int, out: Path) -> ImageTrainConfig:
    """The quick preset with ``formulation``, r = t share ``ratio`` and ``steps`` steps."""
    quick = TRAIN_PRESETS["quick"]
    return replace(
        quick,
        method=replace(quick.method, formulation=formulation, instantaneous_ratio=ratio),
        train=replace(quick.train, steps=steps, output_dir=str(out), checkpoint_every=steps, sample_every=steps),
    )


def _digit_batches(cfg: ImageTrainConfig):
    """The resolved config and the training batches of a digits config."""
    source, data = open_training_data(cfg.data, seed=cfg.train.seed)
    return replace(cfg, data=data), training_batches(source, data, cfg.train.batch_size)


def step_times(configs: dict[str, ImageTrainConfig], data, rounds: int, device: str = "cpu"):
    """Median seconds per training step (loss, backward, AdamW) of each config (resolved data
    configs), alternating the configs step by step on the same batches ``data(step)``; and the
    peak CUDA memory of each step (bytes; None on the CPU)."""
    models, optimizers = {}, {}
    for name, cfg in configs.items():
        torch.manual_seed(0)
        models[name] = build_model(config_to_dict(cfg)).to(device).train()
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)
    times = {name: [] for name in configs}
    peaks = dict.fromkeys(configs)
    for step in range(rounds + 3):  # three warm-up rounds
        x, cond = (t.to(device) for t in data(step))
        for name, model in models.items():
            bf16 = configs[name].train.mixed_precision == "bf16"
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = model(x, cond)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            if device == "cuda":
                torch.cuda.synchronize()
                peaks[name] = torch.cuda.max_memory_allocated()
            if step >= 3:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, peaks


def _quality_tables(formulation: str, result: dict, rows: list, curves: dict, fid: bool) -> None:
    by_key = {(r["label"], r["nfe"]): r for r in result["rows"]}
    for label, steps in (("cfm", CFM_STEPS), ("baseline", BASELINE_STEPS)):
        name = "CFM" if label == "cfm" else "baseline"
        for nfe in steps:
            r = by_key[(label, nfe)]
            fid_cell = [r["fid"]] if fid else []
            rows.append(
                [
                    formulation,
                    name,
                    nfe,
                    r["classifier_fd"],
                    r["classifier_accuracy"],
                    r["class_entropy_marginal"],
                    *fid_cell,
                    r["ms_per_sample"],
                ]
            )
        curves[f"{formulation} {name}"] = (list(steps), [by_key[(label, s)]["classifier_fd"] for s in steps])


def _cifar_gpu() -> tuple[Table | None, str]:
    """Step time and peak memory of the cifar preset on random images (CUDA only)."""
    if not torch.cuda.is_available():
        return None, "--cifar-gpu skipped: CUDA is not available on this machine."
    cifar = TRAIN_PRESETS["cifar"]
    data = ImageDataConfig(resolution=32, channels=3, num_classes=10)
    batch = cifar.train.batch_size
    generator = torch.Generator().manual_seed(0)

    def random_batches(step: int):
        return (
            torch.rand(batch, 3, 32, 32, generator=generator) * 2 - 1,
            torch.randint(0, 10, (batch,), generator=generator),
        )

    configs = {
        f"{form} {kind}": replace(
            cifar, data=data, method=replace(cifar.method, formulation=form, instantaneous_ratio=ratio)
        )
        for form in FORMULATIONS
        for kind, ratio in (("CFM", 0.5), ("baseline", 1.0))
    }
    times, peaks = step_times(configs, random_batches, rounds=20, device="cuda")
    rows = []
    for form in FORMULATIONS:
        cfm, base = f"{form} CFM", f"{form} baseline"
        rows.append(
            [
                form,
                1000 * times[base],
                1000 * times[cfm],
                times[cfm] / times[base],
                peaks[base] / 2**30,
                peaks[cfm] / 2**30,
            ]
        )
    table = Table(
        f"cifar preset on {torch.cuda.get_device_name(0)}: 39M UNet, 3x32x32 random "
        f"images, batch {batch}, bf16 autocast (median of 20 steps)",
        ["formulation", "baseline ms/step", "CFM ms/step", "ratio", "baseline peak GiB", "CFM peak GiB"],
        rows,
    )
    return table, "cifar preset timed on random images (no CIFAR-10 download is possible)."


def run(argv: list[str]) -> Report:
    """Train, score and time as the module docstring says; ``--help`` lists the options."""
    parser = argparse.ArgumentParser(prog="run.py image", description=__doc__)
    parser.add_argument("--steps", type=int, default=600, help="training steps of every model")
    parser.add_argument("--n", type=int, default=300, help="generated images per NFE")
    parser.add_argument("--timing-rounds", type=int, default=20)
    parser.add_argument("--formulations", nargs="+", default=list(FORMULATIONS))
    parser.add_argument("--quick", action="store_true", help="60 steps, 100 images: a smoke run")
    parser.add_argument(
        "--cifar-gpu", action="store_true", help="also time the cifar preset on the GPU (skipped without CUDA)"
    )
    parser.add_argument(
        "--fid-weights",
        metavar="PATH",
        help="also report FID with this local Inception-v3 file (torch-fidelity's "
        "weights-inception-2015-12-05-6726825d.pth; slow on a CPU)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.n, args.timing_rounds = 60, 100, 5
    fid = open_fid(args.fid_weights)  # a wrong weights file fails before any training

    quality_rows, cost_rows, curves, headline = [], [], {}, []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for f in args.formulations:
            runs = {}
            for kind, ratio in (("cfm", 0.5), ("baseline", 1.0)):
                runs[kind] = Path(tmp) / f"{f}-{kind}"
                print(f"== {f} {kind}: {args.steps} steps", flush=True)
                make_trainer(_config(f, ratio, args.steps, runs[kind])).fit()
            result = evaluate(
                ImageEvalConfig(
                    checkpoint=str(runs["cfm"]),
                    baseline=str(runs["baseline"]),
                    cfm_steps=CFM_STEPS,
                    baseline_steps=BASELINE_STEPS,
                    n=args.n,
                    fid_weights=args.fid_weights,
                    out=str(Path(tmp) / f"{f}-eval"),
                ),
                fid,
            )
            _copy(Path(tmp) / f"{f}-eval" / "samples.png", FIGURES / f"samples-{f}.png")
            _quality_tables(f, result, quality_rows, curves, fid is not None)
            cfm_cfg, data = _digit_batches(_config(f, 0.5, 1, Path(tmp) / "t"))
            base_cfg, _ = _digit_batches(_config(f, 1.0, 1, Path(tmp) / "t"))
            times, _ = step_times({"cfm": cfm_cfg, "baseline": base_cfg}, data, args.timing_rounds)
            fd = {(r["label"], r["nfe"]): r["classifier_fd"] for r in result["rows"]}
            best_base = min(BASELINE_STEPS, key=lambda s: fd[("baseline", s)])
            needed = min((s for s in BASELINE_STEPS if fd[("baseline", s)] <= fd[("cfm", 1)]), default=None)
            cost_rows.append(
                [
                    f,
                    1000 * times["baseline"],
                    1000 * times["cfm"],
                    times["cfm"] / times["baseline"],
                    fd[("cfm", 1)],
                    fd[("baseline", best_base)],
                    best_base,
                    "never" if needed is None else needed,
                ]
            )
            headline.append(result.get("held_out", {}))
    figure = _curves(curves)
    tables = [
        Table(
            "Digit-classifier Frechet distance (lower is better), classifier accuracy on the "
            "class-conditional samples, entropy of the predicted-class histogram (ln 10 = "
            f"2.303 is uniform) and sampling time, {args.n} images per row",
            ["formulation", "model", "NFE", "classifier FD", "accuracy", "H(class histogram)"]
            + ["FID"] * (fid is not None)
            + ["ms/image"],
            quality_rows,
        ),
        Table(
            "Training step time (median, alternating CFM and baseline steps) and the headline "
            "comparison: the baseline NFE needed to match CFM's 1-step FD",
            [
                "formulation",
                "baseline ms/step",
                "CFM ms/step",
                "CFM/baseline",
                "CFM FD @1",
                "baseline best FD",
                "at NFE",
                "baseline NFE to match CFM @1",
            ],
            cost_rows,
        ),
    ]
    notes = [
        f"Small CPU budget: {args.steps} steps of batch 64 per model (the quick preset's micro "
        "UNet, 0.18M parameters) on 16x16 digits; far from converged, so absolute numbers are "
        "only comparable within this table.",
        "For scale: the classifier's accuracy on the 180 real test digits is "
        f"{headline[0].get('classifier_accuracy', float('nan')):.3g} and their class-histogram "
        f"entropy {headline[0].get('class_entropy_marginal', float('nan')):.3g}.",
        f"Total wall time {time.perf_counter() - started:.0f} s on this CPU, one thread.",
        f"FID against {result['fid']['reference_images']} training digits with {args.fid_weights}."
        if fid is not None
        else f"FID skipped: {FID_SKIP_REASON}.",
    ]
    if args.cifar_gpu:
        table, message = _cifar_gpu()
        if table is not None:
            tables.append(table)
        notes.append(message)
    return Report(
        name="image",
        title="Image: CFM vs multi-step baseline on the built-in digits (small CPU budget)",
        settings={
            "data": "digits 16x16, class-conditional, label dropout 0.1",
            "net": "UNet micro (quick preset)",
            "train_steps": args.steps,
            "batch": 64,
            "lr": TRAIN_PRESETS["quick"].train.lr,
            "eval_images": args.n,
            "baseline_solver": "euler (DDIM step for ddim)",
            "guidance": 1.0,
            "formulations": " ".join(args.formulations),
        },
        tables=tables,
        figures=[str(figure)] + [str(FIGURES / f"samples-{f}.png") for f in args.formulations],
        notes=notes,
    )


def _copy(source: Path, target: Path) -> None:
    """Copy a file atomically (a temporary file beside the target, then renamed)."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _curves(curves: dict) -> Path:
    from cfm_core.plotting import save_curves

    return save_curves(
        curves,
        FIGURES / "quality_vs_nfe.png",
        xlabel="NFE",
        ylabel="digit-classifier FD (lower is better)",
        logx=True,
        logy=True,
        title="digits 16x16: CFM vs multi-step baseline (small CPU budget)",
    )
