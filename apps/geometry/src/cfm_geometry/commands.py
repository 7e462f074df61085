"""``cfm geometry train | sample | eval``: one shape as a distribution of surface points.

``train`` draws surface samples of a mesh (or a built-in shape) once, normalises them to unit
variance and trains a CFM (or the multi-step baseline) on them; the normalisation goes into every
checkpoint. ``sample`` generates millions of points in batches and writes them in the shape's
original units. ``eval`` scores CFM at a few NFE and the baseline at many against dense surface
samples of the input (see :mod:`cfm_geometry.scoring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cfm_core.cli import ConfigError, config_from_dict
from cfm_core.cli.common import require_path
from cfm_core.cli.skeleton import device_of, from_argv, load_run, train_run
from cfm_core.diagnostics import jump_gap
from cfm_core.evaluation import SweepEntry, sweep_table
from cfm_core.flow_map import FlowMap
from cfm_core.io import check_output_dir, check_output_file, save_json
from cfm_core.loss import CFMLoss
from cfm_core.method import build_cfm
from cfm_core.metrics import chamfer_distance
from cfm_core.nn import time_features_for
from cfm_core.plotting import save_quality_vs_nfe
from cfm_core.training import Checkpoint

from cfm_geometry.backbones import backbone_from_config
from cfm_geometry.config import (
    TRAIN_PRESETS,
    GeometryEvalConfig,
    GeometryNetConfig,
    GeometrySampleConfig,
    GeometryTrainConfig,
    with_app_defaults,
)
from cfm_geometry.data import (
    POINT_OUTPUT_FORMATS,
    PointBank,
    Surface,
    SurfaceError,
    sample_surface_points,
    save_points,
    surface_from_spec,
)
from cfm_geometry.generation import finite_rows, flatten_points, generate_points, point_noise
from cfm_geometry.normalisation import Normalisation
from cfm_geometry.scoring import Units, score_points
from cfm_geometry.shapes import BUILTIN_SHAPES
from cfm_geometry.views import save_point_cloud_views, save_view_rows

APP = "geometry"
#: What a distillation teacher must share with its student: the surface its points come from.
TEACHER_MUST_MATCH = ("mesh", "shape")
#: CFM jump counts the training previews are scored at.
PREVIEW_STEPS = (1, 2, 4)


# ------------------------------------------------------------------------------ building --
def backbone_config(net: GeometryNetConfig, formulation: str) -> dict[str, Any]:
    """The :func:`~cfm_geometry.backbones.backbone_from_config` dict of ``net``."""
    shared = {
        "kind": net.backbone,
        "channels": 3,
        "depth": net.depth,
        "fourier_levels": net.fourier_levels,
        "time_embedding": time_features_for(formulation, net.time_embedding),
    }
    if net.backbone == "point_mlp":
        return {**shared, "hidden": net.width}
    return {**shared, "width": net.width, "heads": net.heads}


def build_model(run_config: dict[str, Any]) -> CFMLoss:
    """The loss (and its ``.model``) a geometry run config describes (fresh weights)."""
    cfg = config_from_dict(GeometryTrainConfig, run_config)
    net = backbone_from_config(backbone_config(cfg.net, cfg.method.formulation))
    return build_cfm(net, with_app_defaults(cfg.method))


def set_size(cfg: GeometryTrainConfig) -> int | None:
    """Points per set of a set network; None for the per-point network."""
    return cfg.net.set_size if cfg.net.backbone == "point_transformer" else None


def load_surface_option(spec: str, option: str) -> Surface:
    """The built-in shape or file ``spec``; errors become :class:`ConfigError` naming ``option``."""
    if spec not in BUILTIN_SHAPES:
        require_path(spec, "shape file", option)
    try:
        return surface_from_spec(spec)
    except (SurfaceError, FileNotFoundError) as err:
        raise ConfigError(f"{option}: {err}") from None


def resolve_up_axis(up_axis: str, spec: str) -> str:
    """``auto``: z for the built-in shapes (modelled z-up), y for files (the OBJ/PLY habit)."""
    if up_axis != "auto":
        return up_axis
    return "z" if spec in BUILTIN_SHAPES else "y"


def point_batches(bank: PointBank, batch_size: int, seed: int, points_per_set: int | None):
    """``data(step, rows)`` for the trainer: the rows ``rows`` of the step's batch of normalised
    surface points, as rows ``(B, 3)`` or as sets ``(B / set_size, set_size, 3)``
    (:meth:`~cfm_geometry.data.PointBank.batch_for_step`)."""

    def data(step: int, rows: slice = slice(None)) -> torch.Tensor:
        return bank.batch_for_step(step, batch_size, seed, set_size=points_per_set, rows=rows)

    return data


def _preview_hook(cfg: GeometryTrainConfig, bank: PointBank, up_axis: str):
    """Every sample_every steps: the Chamfer distance (model units, summed form) of 1-, 2- and
    4-jump samples to the training points, and a PNG of the 1-jump cloud in original units
    (None when ``cfg.preview_points`` is 0)."""
    if cfg.preview_points == 0:
        return None
    reference = bank.points[: cfg.preview_points].cpu()
    per_set = set_size(cfg)

    def hook(model: FlowMap, step: int, out: Path) -> dict[str, float]:
        noise = point_noise(cfg.preview_points, per_set, seed=7)
        scores = {}
        for steps in PREVIEW_STEPS:
            x = flatten_points(model.sample(noise.to(device_of(model)), steps=steps).cpu(), cfg.preview_points)
            points, _ = finite_rows(x)
            scores[f"chamfer_{steps}step"] = chamfer_distance(points, reference).sum if len(points) else float("nan")
            if steps == 1 and len(points):
                path = out / "samples" / f"step-{step:07d}.png"
                save_point_cloud_views(
                    bank.decode(points), path, point_size=0.5, up_axis=up_axis, title=f"1 step, training step {step}"
                )
        return scores

    return hook


# ----------------------------------------------------------------------------- commands --
def train(cfg: GeometryTrainConfig) -> dict[str, Any]:
    """Sample the shape, train, and return the trainer's summary."""
    option = "--mesh" if cfg.mesh is not None else "--shape"
    surface = load_surface_option(cfg.surface_spec, option)
    bank = PointBank.from_surface(surface, cfg.points, cfg.data_seed)
    up_axis = resolve_up_axis(cfg.up_axis, cfg.surface_spec)
    return train_run(
        APP,
        cfg,
        build_model,
        point_batches(bank, cfg.train.batch_size, cfg.train.seed, set_size(cfg)),
        normalisation=bank.normalisation.to_dict(),
        on_sample=_preview_hook(cfg, bank, up_axis),
        extra={"surface": surface.source, "bounds": surface.bounds.tolist(), "up_axis": up_axis},
        teacher_must_match=TEACHER_MUST_MATCH,
    )


def _trained(
    path: str, option: str = "--checkpoint", **options: Any
) -> tuple[FlowMap, Checkpoint, GeometryTrainConfig, Normalisation]:
    """A trained model (EMA weights unless ``use_ema=False``, on the default device), its
    checkpoint, run config and normalisation."""
    model, ckpt, run = load_run(path, build_model, APP, GeometryTrainConfig, option=option, **options)
    try:
        normalisation = Normalisation.from_dict(ckpt.meta["normalisation"])
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(f"{option}: {ckpt.path} holds no usable geometry normalisation: {err}") from None
    return model, ckpt, run, normalisation


def _run_up_axis(ckpt: Checkpoint, run: GeometryTrainConfig) -> str:
    """The up axis the training run drew its pictures with."""
    stored = ckpt.meta.get("extra", {}).get("up_axis")
    return stored or resolve_up_axis(run.up_axis, run.surface_spec)


def sample(cfg: GeometrySampleConfig) -> Path:
    """Generate ``cfg.points`` points in the shape's original units; write them (PLY, and NPY /
    PNG when asked); return the output path."""
    out = check_output_file(cfg.out, "--out", POINT_OUTPUT_FORMATS)
    model, ckpt, run, normalisation = _trained(cfg.checkpoint, ema_decay=cfg.ema_decay, use_ema=cfg.ema)
    points, nfe, seconds = generate_points(
        model, cfg.points, cfg.steps, cfg.sampler, cfg.batch_size, cfg.seed, set_size(run)
    )
    xyz, dropped = finite_rows(normalisation.invert(points.double()))
    if dropped:
        print(f"warning: {dropped} of {cfg.points} generated points are not finite; left out")
    written = [save_points(out, xyz)]
    if cfg.npy and out.suffix.lower() != ".npy":
        written.append(save_points(out.with_suffix(".npy"), xyz))
    if cfg.png:
        up_axis = cfg.up_axis if cfg.up_axis != "auto" else _run_up_axis(ckpt, run)
        written.append(
            save_point_cloud_views(
                xyz,
                out.with_suffix(".png"),
                up_axis=up_axis,
                point_size=0.3,
                title=f"{cfg.sampler}, {cfg.steps} step(s), NFE {nfe}, {len(xyz)} points",
            )
        )
    print(
        f"generated {len(xyz)} points ({cfg.sampler}, {cfg.steps} step(s), NFE {nfe}) in "
        f"{seconds:.2f} s; wrote {', '.join(map(str, written))}"
    )
    return out


def _sweep(
    model: FlowMap,
    label: str,
    steps_list: Sequence[int],
    sampler: str,
    run: GeometryTrainConfig,
    cfg: GeometryEvalConfig,
) -> list[SweepEntry]:
    """One timed :func:`generate_points` run (batched, with a progress bar) per step count, all
    from the same noise."""
    entries = []
    for steps in steps_list:
        points, nfe, seconds = generate_points(
            model, cfg.points, steps, sampler, cfg.batch_size, cfg.seed, set_size(run)
        )
        entries.append(SweepEntry(label, sampler, int(steps), nfe, seconds, points))
    return entries


def evaluate(cfg: GeometryEvalConfig) -> dict[str, Any]:
    """Chamfer / F-score / Hausdorff of CFM at ``cfg.cfm_steps`` jumps and of the baseline at
    ``cfg.baseline_steps`` solver steps; writes metrics.json and two PNGs; returns the result."""
    if cfg.out is not None:
        check_output_dir(cfg.out, "--out")
    model, ckpt, run, normalisation = _trained(cfg.checkpoint)
    if cfg.baseline is not None:
        baseline, base_ckpt, base_run, base_norm = _trained(cfg.baseline, "--baseline")
        if base_run.surface_spec != run.surface_spec:
            raise ConfigError(
                f"--baseline was trained on {base_run.surface_spec!r}, --checkpoint on {run.surface_spec!r}"
            )
    else:
        baseline, base_ckpt, base_run, base_norm = model, ckpt, run, normalisation
    method = cfg.baseline_method
    if method == "auto":
        method = "heun" if base_run.method.formulation == "edm" else "euler"
    if cfg.reference is not None:
        surface = load_surface_option(cfg.reference, "--reference")
    else:
        surface = load_surface_option(run.surface_spec, "--checkpoint (its training shape; pass --reference FILE)")
    reference = sample_surface_points(surface, cfg.reference_points or cfg.points, cfg.seed)
    reference = reference[:, :3].astype(np.float64)
    bounds = np.asarray(ckpt.meta.get("extra", {}).get("bounds", surface.bounds))

    entries, rows = [], []
    for label, net, net_run, norm, steps, sampler in (
        ("cfm", model, run, normalisation, cfg.cfm_steps, "cumulative"),
        ("baseline", baseline, base_run, base_norm, cfg.baseline_steps, method),
    ):
        units = Units.of(norm, bounds)
        part = _sweep(net, label, steps, sampler, net_run, cfg)
        for entry in part:
            entry.samples = torch.from_numpy(norm.invert(entry.samples.double().numpy()))
        scores = [score_points(e.samples, reference, units, cfg.f_threshold) for e in part]
        rows += sweep_table(part, scores)
        entries += part
    for row, entry in zip(rows, entries, strict=True):
        row["seconds"] = entry.seconds
        row["seconds_per_million_points"] = entry.seconds * 1e6 / cfg.points
    units = Units.of(normalisation, bounds)
    gaps = _jump_gaps(model, run, cfg, units)
    out = cfg.out_dir(ckpt)
    result = {
        "checkpoint": str(ckpt.path),
        "baseline": str(base_ckpt.path),
        "surface": surface.source,
        "points": cfg.points,
        "reference_points": cfg.reference_points or cfg.points,
        "seed": cfg.seed,
        "baseline_method": method,
        "device": str(device_of(model)),
        "units": {
            "box_per_original": units.box,
            "model_per_original": units.model,
            "bounding_box_diagonal": units.diagonal,
        },
        "f_threshold": {
            "fraction_of_diagonal": cfg.f_threshold,
            "original": cfg.f_threshold * units.diagonal,
            "box": cfg.f_threshold * units.diagonal * units.box,
        },
        "definitions": METRIC_DEFINITIONS,
        "rows": rows,
        "jump_gap": gaps,
    }
    save_json(out / "metrics.json", result)
    _figures(entries, rows, reference, out, _run_up_axis(ckpt, run), Path(run.surface_spec).name)
    _print_rows(rows)
    _print_gaps(gaps)
    print(f"wrote {out / 'metrics.json'}, {out / 'samples.png'} and {out / 'quality_vs_nfe.png'}")
    return result


#: Start times (unit time, 0 = noise) and ODE steps of the jump-gap diagnostic.
GAP_STARTS, GAP_STEPS = (0.0, 0.25, 0.5, 0.75), 64


def _jump_gaps(
    model: FlowMap, run: GeometryTrainConfig, cfg: GeometryEvalConfig, units: Units
) -> list[dict[str, float]]:
    """:func:`cfm_core.diagnostics.jump_gap` of the CFM model in box units (empty for set
    networks, whose samples are sets, and with --gap-points 0)."""
    if cfg.gap_points == 0 or set_size(run) is not None:
        return []
    noise = point_noise(cfg.gap_points, None, cfg.seed).to(device_of(model))
    method = "ddim" if run.method.formulation == "ddim" else "heun"
    box_per_model = units.box / units.model
    return [
        {"start": g.start, "t": g.t, "gap_box": g.gap * box_per_model, "spread_box": g.spread * box_per_model}
        for g in jump_gap(model, noise, GAP_STARTS, GAP_STEPS, method)
    ]


METRIC_DEFINITIONS = {
    "chamfer_sum": "mean over generated points of the distance to the nearest reference point "
    "plus the reverse (GD's summed two-sided form), original units",
    "chamfer_mean": "half of chamfer_sum (the 0.5-averaged form), original units",
    "_box": "suffix: the same in GD's normalised-mesh units (bounding box centred, largest |coordinate| 0.99)",
    "_model": "suffix: the same in the unit-variance units the network learns in",
    "f_score": "harmonic mean of precision (generated points within the threshold of the "
    "reference) and recall (reference points within the threshold of the generated)",
    "hausdorff": "largest nearest-neighbour distance either way, original units",
    "nfe": "network evaluations per point (EDM Heun: 2 steps - 1)",
    "jump_gap": "mean distance (box units) between one CFM jump to the data end and the CFM "
    "network's own 64-step ODE (its r = t field), both from the ODE's state at unit "
    "time `start` (0 = noise); spread_box: RMS distance of the ODE endpoints from "
    "their mean",
}


# ------------------------------------------------------------------------------ outputs --
def _figures(
    entries: Sequence[SweepEntry], rows: Sequence[dict], reference: np.ndarray, out: Path, up_axis: str, shape: str
) -> None:
    cfm = [e for e in entries if e.label == "cfm"]
    base = [e for e in entries if e.label == "baseline"]
    clouds = {"reference surface samples": reference}
    first = min(cfm, key=lambda e: e.nfe)
    clouds[f"CFM, {first.steps} step(s), NFE {first.nfe}"] = first.samples
    for entry in (min(base, key=lambda e: e.nfe), max(base, key=lambda e: e.nfe)) if base else ():
        clouds[f"baseline {entry.sampler}, {entry.steps} step(s), NFE {entry.nfe}"] = entry.samples
    save_view_rows(clouds, out / "samples.png", up_axis)
    save_quality_vs_nfe(
        rows,
        "chamfer_sum_box",
        out / "quality_vs_nfe.png",
        xlabel="NFE (network evaluations)",
        ylabel="Chamfer (sum, box units; lower is better)",
        logy=True,
        title=f"{shape}: quality vs NFE",
    )


def _print_rows(rows: Sequence[dict]) -> None:
    print(
        f"{'model':<9} {'sampler':<10} {'steps':>5} {'NFE':>4} {'CD sum':>10} {'CD box':>9} "
        f"{'F-score':>7} {'Hausdorff':>9} {'s/1M pts':>9}"
    )
    for r in rows:
        print(
            f"{r['label']:<9} {r['sampler']:<10} {r['steps']:>5} {r['nfe']:>4} "
            f"{r['chamfer_sum']:>10.4g} {r['chamfer_sum_box']:>9.4g} {r['f_score']:>7.3f} "
            f"{r['hausdorff']:>9.4g} {r['seconds_per_million_points']:>9.3g}"
        )


def _print_gaps(gaps: Sequence[dict]) -> None:
    if gaps:
        print(
            "jump gap to the model's own ODE (box units; start in unit time, 0 = noise): "
            + " | ".join(f"{g['start']:.2f}: {g['gap_box']:.4g}" for g in gaps)
            + f" (ODE endpoints' spread {gaps[0]['spread_box']:.3g})"
        )


# ------------------------------------------------------------------------------ argv glue --
run_train = from_argv(train, GeometryTrainConfig, "cfm geometry train", TRAIN_PRESETS)
run_sample = from_argv(sample, GeometrySampleConfig, "cfm geometry sample")
run_eval = from_argv(evaluate, GeometryEvalConfig, "cfm geometry eval")
