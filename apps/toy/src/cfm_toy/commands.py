"""``cfm toy train | sample | eval | demo | info``: the 2-D toy app, end to end."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cfm_core.cli.app import ConfigError
from cfm_core.cli.config import config_from_dict
from cfm_core.cli.skeleton import TrainedRun, default_device, demo_run, device_of, from_argv, load_run, train_run
from cfm_core.evaluation import SweepEntry, sweep_table
from cfm_core.flow_map import FlowMap
from cfm_core.io import check_output_dir, check_output_file, save_json, write_atomically
from cfm_core.loss import CFMLoss
from cfm_core.method import build_cfm
from cfm_core.metrics import energy_distance, sliced_wasserstein
from cfm_core.nn import time_features_for
from cfm_core.plotting import save_quality_vs_nfe
from cfm_core.training import load_checkpoint

from cfm_toy.backbone import ToyMLP
from cfm_toy.config import (
    TRAIN_PRESETS,
    ToyDemoConfig,
    ToyEvalConfig,
    ToySampleConfig,
    ToyTrainConfig,
)
from cfm_toy.data import sample_toy
from cfm_toy.plots import save_scatter_panels

APP = "toy"


# ------------------------------------------------------------------------------ building --
def build_model(run_config: dict[str, Any], auto_features: str | None = None) -> CFMLoss:
    """The loss (and its ``.model``) a toy run config describes (fresh weights). ``auto_features``:
    what the config's ``auto`` time features stand for (default: the rule of
    :func:`~cfm_core.nn.time_features_for`)."""
    cfg = config_from_dict(ToyTrainConfig, run_config)
    if cfg.net.time_embedding == "auto" and auto_features is not None:
        time_embedding = auto_features
    else:
        time_embedding = time_features_for(cfg.method.formulation, cfg.net.time_embedding)
    net = ToyMLP(
        dim=2,
        hidden=cfg.net.hidden,
        depth=cfg.net.depth,
        time_embedding=time_embedding,
        fourier_levels=cfg.net.fourier_levels,
    )
    return build_cfm(net, cfg.method)


#: A weight only Fourier time features store (sinusoidal ones compute theirs).
_FOURIER_WEIGHT = "net.time_embed.emb_t.features.freqs"


def _load(path: str, option: str = "--checkpoint", **options: Any) -> TrainedRun:
    """:func:`~cfm_core.cli.skeleton.load_run` for toy runs, built with the time features they
    trained with: the toy's ``auto`` meant Fourier features for every formulation before it
    followed the apps' rule, so a run whose config says ``auto`` and whose weights hold Fourier
    features is built with them."""
    try:
        weights = load_checkpoint(path, load_optimizer=False).model
    except (FileNotFoundError, ValueError, KeyError, OSError):
        weights = {}  # load_run names the problem
    build = partial(build_model, auto_features="fourier") if _FOURIER_WEIGHT in weights else build_model
    return load_run(path, build, APP, ToyTrainConfig, option=option, **options)


def toy_batches(name: str, batch_size: int):
    """``data(step)``: a fresh batch of the toy distribution (the trainer seeds each step)."""
    return lambda step: sample_toy(name, batch_size)


def _sample_hook(name: str):
    """Every sample_every steps: a scatter of 1-, 2- and 4-jump samples beside the data."""

    def hook(model: FlowMap, step: int, out: Path) -> dict[str, float]:
        gen = torch.Generator().manual_seed(7)
        noise = torch.randn(2000, 2, generator=gen)
        data = sample_toy(name, 2000, generator=gen)
        panels = {"data": data}
        scores = {}
        for steps in (1, 2, 4):
            x = model.sample(noise.to(device_of(model)), steps=steps).cpu()
            panels[f"{steps} step{'s' * (steps > 1)}"] = x
            scores[f"energy_{steps}step"] = energy_distance(x, data)
        save_scatter_panels(panels, out / "samples" / f"step-{step:07d}.png", title=f"{name}, step {step}")
        return scores

    return hook


# ----------------------------------------------------------------------------- commands --
def train(cfg: ToyTrainConfig) -> dict[str, Any]:
    """Train (distilling ``--method.teacher`` if given; it must have learnt the same distribution)
    and return the trainer's summary."""
    return train_run(
        APP,
        cfg,
        build_model,
        toy_batches(cfg.data, cfg.train.batch_size),
        on_sample=_sample_hook(cfg.data),
        teacher_must_match=("data",),
    )


def sample(cfg: ToySampleConfig) -> Path:
    """Sample a trained model; write NPY and PNG; return the NPY path."""
    out = check_output_file(cfg.out, "--out", (".npy",))
    model, _, _ = _load(cfg.checkpoint, ema_decay=cfg.ema_decay, use_ema=cfg.ema)
    noise = torch.randn(cfg.n, 2, generator=torch.Generator().manual_seed(cfg.seed)).to(default_device())
    x, nfe = model.sample(noise, cfg.steps, sampler=cfg.sampler, return_nfe=True)
    x = x.cpu()
    write_atomically(out, lambda file: np.save(file, x.numpy()))
    png = save_scatter_panels({f"{cfg.sampler}, {cfg.steps} step(s), NFE {nfe}": x}, out.with_suffix(".png"))
    print(f"wrote {out} ({cfg.n} samples, NFE {nfe}) and {png}")
    return out


def evaluate(cfg: ToyEvalConfig) -> dict[str, Any]:
    """The NFE sweep of a CFM model (and a baseline), scored against held-out data."""
    if cfg.out is not None:
        check_output_dir(cfg.out, "--out")
    model, ckpt, run = _load(cfg.checkpoint)
    if cfg.baseline is not None:
        baseline, _, base_run = _load(cfg.baseline, option="--baseline")
        if base_run.data != run.data:
            raise ConfigError("--baseline was trained on another distribution than --checkpoint")
    else:
        baseline = model
    name = run.data
    gen = torch.Generator().manual_seed(cfg.seed)
    noise = torch.randn(cfg.n, 2, generator=gen)
    held_out = sample_toy(name, cfg.n, generator=gen)
    entries = cfg.sweep(noise.to(default_device()), model, baseline)
    for entry in entries:
        entry.samples = entry.samples.cpu()
    scores = [
        {
            "energy_distance": energy_distance(e.samples, held_out),
            "sliced_wasserstein": sliced_wasserstein(e.samples, held_out),
        }
        for e in entries
    ]
    rows = sweep_table(entries, scores)
    out = cfg.out_dir(ckpt)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "checkpoint": str(ckpt.path),
        "baseline": str(cfg.baseline or ckpt.path),
        "data": name,
        "n": cfg.n,
        "seed": cfg.seed,
        "baseline_method": cfg.baseline_method,
        "rows": rows,
    }
    save_json(out / "metrics.json", result)
    _figures(entries, rows, held_out, out, name)
    _print_rows(rows)
    print(f"wrote {out / 'metrics.json'}, {out / 'samples.png'} and {out / 'quality_vs_nfe.png'}")
    return result


def demo(cfg: ToyDemoConfig) -> dict[str, Any]:
    """Train CFM and its multi-step baseline side by side (same net and budget), then evaluate."""
    out = check_output_dir(cfg.out, "--out")
    options = {"sigma_data": 1.0} if cfg.formulation == "edm" else {}
    runs = {}
    for label, ratio in (("cfm", 0.5), ("baseline", 1.0)):
        run = demo_run(
            ToyTrainConfig(data=cfg.data),
            out / label,
            steps=cfg.steps,
            seed=cfg.seed,
            formulation=cfg.formulation,
            formulation_options=options,
            instantaneous_ratio=ratio,
        )
        print(f"== training {label} ({cfg.formulation}, r=t share {ratio}) on {cfg.data}")
        train(run)
        runs[label] = out / label
    print("== evaluating")
    return evaluate(ToyEvalConfig(checkpoint=str(runs["cfm"]), baseline=str(runs["baseline"]), out=str(out / "eval")))


# ------------------------------------------------------------------------------ outputs --
def _figures(entries: Sequence[SweepEntry], rows, held_out, out: Path, name: str) -> None:
    panels = {"data": held_out}
    for e in entries:
        if e.label == "cfm":
            panels[f"CFM, {e.steps} step{'s' * (e.steps > 1)}"] = e.samples
    biggest = max((e for e in entries if e.label == "baseline"), key=lambda e: e.nfe, default=None)
    if biggest is not None:
        panels[f"baseline {biggest.sampler}, NFE {biggest.nfe}"] = biggest.samples
    save_scatter_panels(panels, out / "samples.png", title=name)
    save_quality_vs_nfe(
        rows,
        "energy_distance",
        out / "quality_vs_nfe.png",
        ylabel="energy distance (lower is better)",
        title=f"{name}: quality vs network evaluations",
    )


def _print_rows(rows) -> None:
    print(f"{'model':<9} {'sampler':<10} {'steps':>5} {'NFE':>4} {'energy':>9} {'sliced W2':>9} {'ms/sample':>9}")
    for r in rows:
        print(
            f"{r['label']:<9} {r['sampler']:<10} {r['steps']:>5} {r['nfe']:>4} {r['energy_distance']:>9.4f} "
            f"{r['sliced_wasserstein']:>9.4f} {r['ms_per_sample']:>9.4f}"
        )


# ------------------------------------------------------------------------------ argv glue --
run_train = from_argv(train, ToyTrainConfig, "cfm toy train", TRAIN_PRESETS)
run_sample = from_argv(sample, ToySampleConfig, "cfm toy sample")
run_eval = from_argv(evaluate, ToyEvalConfig, "cfm toy eval")
run_demo = from_argv(demo, ToyDemoConfig, "cfm toy demo")
