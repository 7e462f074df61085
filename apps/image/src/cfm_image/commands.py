"""``cfm image train | sample | eval | demo | info``: the image app, end to end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from cfm_core.cli import ConfigError, config_from_dict
from cfm_core.cli import skeleton as app_skeleton
from cfm_core.cli.skeleton import default_device, demo_run, device_of, from_argv, load_run
from cfm_core.evaluation import sweep_table
from cfm_core.flow_map import FlowMap
from cfm_core.io import check_output_dir, check_output_file
from cfm_core.loss import CFMLoss
from cfm_core.method import build_cfm
from cfm_core.nn import time_features_for
from cfm_core.training import Trainer, load_checkpoint
from torch import Tensor

from cfm_image.classifier import builtin_classifier
from cfm_image.config import (
    TRAIN_PRESETS,
    ImageDataConfig,
    ImageDemoConfig,
    ImageEvalConfig,
    ImageSampleConfig,
    ImageTrainConfig,
)
from cfm_image.fid import SKIP_REASON as FID_SKIP_REASON
from cfm_image.fid import InceptionFID
from cfm_image.pictures import save_grid, save_individual, save_panels
from cfm_image.report import (
    grid_columns,
    one_column_per_class,
    print_rows,
    save_comparison,
    save_json,
    save_quality_curve,
    save_run_grids,
)
from cfm_image.scores import ImageScorer
from cfm_image.sources import (
    checked_stored_data,
    held_out_images,
    open_training_data,
    reference_images,
    training_batches,
)
from cfm_image.unet import UNet, unet_config, unet_from_config

APP = "image"
#: What a distillation teacher must share with its student: the image shape and the classes.
TEACHER_MUST_MATCH = ("data.resolution", "data.channels", "data.num_classes")
OWN_FIELD = "the CFM model's own r = t field (instantaneous sampler)"


# ------------------------------------------------------------------------------ building --
def architecture(cfg: ImageTrainConfig) -> dict[str, Any]:
    """The UNet architecture (JSON) of a train config whose data config is resolved."""
    data = cfg.data
    if data.resolution is None or data.channels is None:
        raise ConfigError("the data config is not resolved (resolution and channels unknown)")
    try:
        return unet_config(
            cfg.net.preset,
            **cfg.net.overrides(),
            in_channels=data.channels,
            resolution=data.resolution,
            num_classes=data.num_classes,
            time_embedding=time_features_for(cfg.method.formulation, cfg.net.time_embedding),
        )
    except ValueError as err:
        raise ConfigError(f"net: {err}") from None


def build_model(run_config: dict[str, Any]) -> CFMLoss:
    """The loss (and its ``.model``) an image run config describes (fresh weights)."""
    cfg = config_from_dict(ImageTrainConfig, run_config)
    try:
        net: UNet = unet_from_config(architecture(cfg))
    except ValueError as err:
        raise ConfigError(f"net: {err}") from None
    classes = cfg.data.num_classes
    return build_cfm(net, cfg.method, None if classes is None else torch.tensor(classes))


def generation_labels(
    num_classes: int | None, n: int, labels: Sequence[int] | None = None, unconditional: bool = False
) -> Tensor | None:
    """The class of each of ``n`` generated images: ``labels`` repeated, ``0, 1, 2, ...`` in
    turn by default, the null class (``num_classes``) with ``unconditional``, ``None`` for an
    unconditional model."""
    if num_classes is None:
        if labels is not None or unconditional:
            raise ConfigError("this model is unconditional: --labels and --unconditional do not apply")
        return None
    if unconditional:
        return torch.full((n,), num_classes, dtype=torch.long)
    if labels is not None and max(labels) >= num_classes:
        raise ConfigError(f"--labels: class {max(labels)} out of range for {num_classes} classes")
    cycle = torch.tensor(list(labels) if labels is not None else range(num_classes))
    return cycle.repeat(-(-n // len(cycle)))[:n]


@torch.no_grad()
def _generate(
    model: FlowMap, noise: Tensor, steps: int, sampler: str, labels: Tensor | None, guidance: float = 1.0
) -> Tensor:
    device = device_of(model)
    cond = None if labels is None else labels.to(device)
    return model.sample(noise.to(device), steps, sampler=sampler, cond=cond, guidance=guidance)


def _sample_hook(data: ImageDataConfig):
    """Every sample_every steps: grids of 1-, 2- and 4-jump samples and of 32 Euler steps of
    the r = t field, from fixed noise (one column per class)."""
    nrow = grid_columns(data.num_classes)
    labels = generation_labels(data.num_classes, 8 * nrow)

    def hook(model: FlowMap, step: int, out: Path) -> None:
        noise = torch.randn(
            8 * nrow, data.channels, data.resolution, data.resolution, generator=torch.Generator().manual_seed(7)
        )
        panels = {f"CFM, {s} step{'s' * (s > 1)}": _generate(model, noise, s, "cumulative", labels) for s in (1, 2, 4)}
        panels["r = t field, Euler 32 steps"] = _generate(model, noise, 32, "euler", labels)
        save_panels(panels, out / "samples" / f"step-{step:07d}.png", nrow, title=f"{data.name}, step {step}")

    return hook


def _check_warm_start(cfg: ImageTrainConfig) -> None:
    """--train.init-from must name an image run with the same UNet, images and formulation."""
    if cfg.train.init_from is None or cfg.train.resume:
        return
    try:
        source = load_checkpoint(cfg.train.init_from, load_optimizer=False)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"train.init_from: {err}") from None
    if source.meta.get("app") != APP:
        raise ConfigError(f"train.init_from: {source.path} was trained by app {source.meta.get('app')!r}, not {APP!r}")
    theirs = config_from_dict(ImageTrainConfig, source.meta["config"])
    if theirs.method.formulation != cfg.method.formulation:
        raise ConfigError(
            f"train.init_from: {source.path} uses formulation "
            f"{theirs.method.formulation!r}, this run {cfg.method.formulation!r}"
        )
    mine, other = architecture(cfg), architecture(theirs)
    differ = sorted(k for k in mine if mine[k] != other[k])
    if differ:
        raise ConfigError(
            f"train.init_from: {source.path} has another UNet or image shape: "
            + ", ".join(f"{k} {other[k]} there, {mine[k]} here" for k in differ)
        )


# ----------------------------------------------------------------------------- commands --
def make_trainer(cfg: ImageTrainConfig) -> Trainer:
    """The trainer of a train config (data opened and resolved, warm start checked)."""
    source, data = open_training_data(cfg.data, seed=cfg.train.seed)
    cfg = replace(cfg, data=data)
    _check_warm_start(cfg)
    trainer = app_skeleton.make_trainer(
        APP,
        cfg,
        build_model,
        training_batches(source, data, cfg.train.batch_size, cfg.train.seed),
        normalisation={"pixels": "x / 127.5 - 1, in [-1, 1]"},
        on_sample=_sample_hook(data),
        teacher_must_match=TEACHER_MUST_MATCH,
    )
    print(
        f"training on {data.name}: {data.channels}x{data.resolution}x{data.resolution}, "
        f"{'unconditional' if data.num_classes is None else f'{data.num_classes} classes'}, "
        f"{sum(p.numel() for p in trainer.unwrapped_model.parameters()) / 1e6:.2f}M parameters, formulation "
        f"{cfg.method.formulation}, r = t share {cfg.method.instantaneous_ratio}"
    )
    return trainer


def train(cfg: ImageTrainConfig) -> dict[str, Any]:
    """Train and return the trainer's summary."""
    return make_trainer(cfg).fit()


def sample(cfg: ImageSampleConfig) -> dict[str, Any]:
    """Sample a trained model; write a grid and/or individual PNGs; return what was written."""
    if cfg.grid is not None:
        check_output_file(cfg.grid, "--grid", (".png",))
    if cfg.individual_dir is not None:
        check_output_dir(cfg.individual_dir, "--individual-dir")
    model, ckpt, run = load_run(
        cfg.checkpoint, build_model, APP, ImageTrainConfig, ema_decay=cfg.ema_decay, use_ema=cfg.ema
    )
    data = checked_stored_data(run.data, ckpt.path)
    labels = generation_labels(data.num_classes, cfg.n, cfg.labels, cfg.unconditional)
    if cfg.guidance != 1.0 and (labels is None or cfg.unconditional):
        raise ConfigError("--guidance needs a class-conditional model and class labels")
    noise = torch.randn(
        cfg.n, data.channels, data.resolution, data.resolution, generator=torch.Generator().manual_seed(cfg.seed)
    )
    chunks = []
    for start in range(0, cfg.n, cfg.batch_size):
        part = None if labels is None else labels[start : start + cfg.batch_size]
        chunks.append(
            _generate(model, noise[start : start + cfg.batch_size], cfg.steps, cfg.sampler, part, cfg.guidance).cpu()
        )
    images = torch.cat(chunks)
    written: dict[str, Any] = {"n": cfg.n, "steps": cfg.steps, "sampler": cfg.sampler}
    if cfg.grid is not None:
        by_class = cfg.labels is None and labels is not None and not cfg.unconditional
        nrow = cfg.nrow or (grid_columns(data.num_classes) if by_class else None)
        written["grid"] = str(save_grid(images, cfg.grid, nrow))
    if cfg.individual_dir is not None:
        written["individual"] = [str(p) for p in save_individual(images, cfg.individual_dir)]
    if not torch.isfinite(images).all():
        print("warning: some samples are not finite (NaN/inf); they are drawn grey/black/white")
    print(
        f"sampled {cfg.n} images ({cfg.sampler}, {cfg.steps} step(s)) from {ckpt.path}; wrote "
        + ", ".join(filter(None, [written.get("grid"), cfg.individual_dir]))
    )
    return written


def _same_images(a: ImageDataConfig, b: ImageDataConfig) -> bool:
    keys = ("builtin", "folder", "shards", "resolution", "channels", "num_classes")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _scorer(
    data: ImageDataConfig, cfg: ImageEvalConfig, fid: InceptionFID | None
) -> tuple[ImageScorer, dict[str, Any]]:
    """The scorer of a data config, and what it rests on (classifier, FID) for the report."""
    real, _ = reference_images(data, max(cfg.n, 2000))
    notes: dict[str, Any] = {"reference_images": int(real.shape[0])}
    classifier = None
    if data.is_builtin and data.builtin == "digits":
        cached = builtin_classifier(data.builtin, data.resolution, cfg.classifier_cache)
        classifier = cached.model
        notes["classifier"] = {"path": str(cached.path), "test_accuracy": cached.test_accuracy}
    if fid is None:
        notes["fid"] = {"status": "skipped", "reason": FID_SKIP_REASON}
        print(f"FID skipped: {FID_SKIP_REASON}")
    else:
        print(f"FID: Inception features of {real.shape[0]} reference images ({fid.weights})")
        notes["fid"] = {"status": "computed", "weights": str(fid.weights), "reference_images": int(real.shape[0])}
    return ImageScorer(real, classifier, fid), notes


def open_fid(weights: str | None, verify: bool = True) -> InceptionFID | None:
    """The FID metric of ``--fid-weights`` (``None`` without it), on the GPU when there is one;
    a missing, wrong or (with ``verify``) unpublished weights file raises :class:`ConfigError` at once."""
    if weights is None:
        return None
    return InceptionFID(weights, default_device(), verify=verify)


def evaluate(cfg: ImageEvalConfig, fid: InceptionFID | None = None) -> dict[str, Any]:
    """The NFE sweep of a CFM model (and a baseline), scored against real images; ``fid`` is
    the metric of ``cfg.fid_weights`` when the caller has already opened it."""
    if cfg.out is not None:
        check_output_dir(cfg.out, "--out")
    if fid is None:
        # before any other work: a wrong file fails at once
        fid = open_fid(cfg.fid_weights, not cfg.allow_unverified_fid_weights)
    model, ckpt, run = load_run(cfg.checkpoint, build_model, APP, ImageTrainConfig)
    data = checked_stored_data(run.data, ckpt.path)
    baseline, baseline_name = model, OWN_FIELD
    if cfg.baseline is not None:
        baseline, base_ckpt, base_run = load_run(cfg.baseline, build_model, APP, ImageTrainConfig, option="--baseline")
        if not _same_images(base_run.data, data):
            raise ConfigError("--baseline was trained on other images than --checkpoint")
        baseline_name = str(base_ckpt.path)
    labels = generation_labels(data.num_classes, cfg.n)
    if cfg.guidance != 1.0 and labels is None:
        raise ConfigError("--guidance needs a class-conditional model")
    scorer, notes = _scorer(data, cfg, fid)
    device = default_device()
    noise = torch.randn(
        cfg.n, data.channels, data.resolution, data.resolution, generator=torch.Generator().manual_seed(cfg.seed)
    )
    for warm_up in (model, baseline):  # one-off costs (allocations, kernels) stay out of timings
        _generate(warm_up, noise[:2], 1, "cumulative", generation_labels(data.num_classes, 2))
    cond = None if labels is None else labels.to(device)
    with torch.no_grad():
        entries = cfg.sweep(
            noise.to(device), model, baseline, cond=cond, guidance=cfg.guidance, batch_size=cfg.batch_size
        )
    for entry in entries:
        entry.samples = entry.samples.cpu()
    rows = sweep_table(entries, [scorer(e.samples, labels) for e in entries])
    held_out = held_out_images(data)
    if held_out is not None:
        real, real_labels = held_out
        # no Frechet distances: from 180 images they would mostly measure small-sample bias
        scores = scorer(real, None if labels is None else real_labels, frechet=False)
        notes["held_out"] = {"images": int(real.shape[0]), **scores}
    out = cfg.out_dir(ckpt)
    result = {
        "checkpoint": str(ckpt.path),
        "baseline": baseline_name,
        "data": data.name,
        "n": cfg.n,
        "seed": cfg.seed,
        "guidance": cfg.guidance,
        "baseline_method": cfg.baseline_method,
        "primary_metric": scorer.primary,
        **notes,
        "rows": rows,
    }
    save_json(out / "metrics.json", result)
    nrow = grid_columns(data.num_classes)
    save_run_grids(entries, out / "grids", nrow)
    real = None
    if held_out is not None:
        real = (
            held_out[0]
            if data.num_classes is None
            else one_column_per_class(held_out[0], held_out[1], data.num_classes)
        )
    save_comparison(entries, real, out / "samples.png", nrow, data.name)
    save_quality_curve(rows, scorer.primary, out / "quality_vs_nfe.png", f"{data.name}: quality vs network evaluations")
    print_rows(rows, scorer.metric_names(labels is not None), notes.get("held_out"))
    print(f"baseline: {baseline_name}")
    print(f"wrote {out / 'metrics.json'}, {out / 'samples.png'}, {out / 'quality_vs_nfe.png'} and {out / 'grids'}/")
    return result


def demo(cfg: ImageDemoConfig) -> dict[str, Any]:
    """Train CFM on the built-in digits (quick preset), then evaluate it at 1, 2 and 4 steps
    beside the multi-step baseline (its own r = t field, or a trained one)."""
    check_output_dir(cfg.out, "--out")
    # a wrong weights file fails before the training
    fid = open_fid(cfg.fid_weights, not cfg.allow_unverified_fid_weights)
    out = Path(cfg.out)
    runs = {}
    labels = (("cfm", 0.5), ("baseline", 1.0)) if cfg.baseline == "trained" else (("cfm", 0.5),)
    for label, ratio in labels:
        run = demo_run(
            TRAIN_PRESETS["quick"],
            out / label,
            steps=cfg.steps,
            seed=cfg.seed,
            sample_every=cfg.steps,
            formulation=cfg.formulation,
            instantaneous_ratio=ratio,
        )
        print(f"== training {label} ({cfg.formulation}, r = t share {ratio}) on the digits")
        train(run)
        runs[label] = str(out / label)
    print("== evaluating")
    return evaluate(
        ImageEvalConfig(
            checkpoint=runs["cfm"],
            baseline=runs.get("baseline"),
            baseline_steps=cfg.baseline_steps,
            n=cfg.n,
            classifier_cache=cfg.classifier_cache,
            fid_weights=cfg.fid_weights,
            allow_unverified_fid_weights=cfg.allow_unverified_fid_weights,
            out=str(out / "eval"),
        ),
        fid,
    )


# ------------------------------------------------------------------------------ argv glue --
run_train = from_argv(train, ImageTrainConfig, "cfm image train", TRAIN_PRESETS)
run_sample = from_argv(sample, ImageSampleConfig, "cfm image sample")
run_eval = from_argv(evaluate, ImageEvalConfig, "cfm image eval")
run_demo = from_argv(demo, ImageDemoConfig, "cfm image demo")
