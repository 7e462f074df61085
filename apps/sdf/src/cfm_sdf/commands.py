"""``cfm sdf train | sample | eval | prepare | info``: generating SDFs with CFM, end to end."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh
from cfm_core.cli import ConfigError, config_to_dict
from cfm_core.cli.common import require_path
from cfm_core.cli.skeleton import device_of, from_argv, load_run, train_run
from cfm_core.flow_map import FlowMap
from cfm_core.io import check_output_dir, check_output_file
from cfm_core.plotting import save_quality_vs_nfe
from tqdm.auto import tqdm

from cfm_sdf.config import (
    TRAIN_PRESETS,
    SdfDataConfig,
    SdfEvalConfig,
    SdfPrepareConfig,
    SdfSampleConfig,
    SdfTrainConfig,
)
from cfm_sdf.generation import GeneratedFields, generate_fields
from cfm_sdf.inputs import load_condition_points
from cfm_sdf.meshing import (
    MESH_SUFFIXES,
    grid_points,
    save_mesh,
    volumetric_iou,
    write_atomic,
)
from cfm_sdf.model import EXTRA_POINTS_KEY, build_model
from cfm_sdf.pipeline import SdfFolderDataset, prepare_mesh_folder
from cfm_sdf.render import Panel, render_mesh_grid_png, render_mesh_png
from cfm_sdf.representation import RecordSource, batch, draw_sample
from cfm_sdf.scoring import (
    HeldOutShape,
    held_out_records,
    held_out_shapes,
    reference_grid,
    score_shape,
    timed_mesh,
)

APP = "sdf"
#: What a distillation teacher must share with its student: the point and grid shapes, the
#: truncation and the conditioning.
TEACHER_MUST_MATCH = (
    "data.n_context",
    "data.n_condition",
    "data.truncation",
    "data.noise_grid",
    "unconditional",
)
#: The training-time picture: shapes, grid resolution, seed and the baseline's solver steps.
HOOK_SHAPES, HOOK_RESOLUTION, HOOK_SEED, HOOK_BASELINE_STEPS = 4, 48, 7, 16
#: Shapes drawn in the evaluation picture, and the grid of their true meshes (thin parts vanish
#: from coarse grids).
PICTURE_SHAPES, TRUTH_PICTURE_RESOLUTION = 4, 80
SCORES = ("chamfer", "fscore", "iou", "sdf_error")


class EmptyShapeError(RuntimeError):
    """The generated field has no zero level set, so there is no surface to mesh."""


def _generate(
    model: FlowMap,
    samples: Sequence[dict[str, np.ndarray]],
    conditional: bool,
    extra_points: np.ndarray,
    steps: int,
    sampler: str,
    noise_grid: int,
    seed: int,
    guidance: float = 1.0,
) -> GeneratedFields:
    """Generate one field per sample (its context points and, if ``conditional``, its surface
    points; otherwise the null condition) and read it at ``extra_points`` ``(B, Ne, 3)``; the
    noise is seeded by ``seed``."""
    device = device_of(model)

    def stack(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([s[key] for s in samples])).float().to(device)

    cond = {"context_points": stack("context_points")}
    if conditional:
        cond["surface_points"] = stack("surface_points")
    extra = torch.from_numpy(np.ascontiguousarray(extra_points)).float().to(device)
    generator = torch.Generator().manual_seed(int(seed))
    return generate_fields(model, cond, extra, steps, sampler, noise_grid, generator, guidance)


def _grids(values: torch.Tensor, resolution: int) -> list[np.ndarray]:
    """The first ``resolution^3`` extra values of each row as ``(R, R, R)`` grids."""
    count = resolution**3
    return [row[:count].cpu().numpy().reshape((resolution,) * 3) for row in values]


# ----------------------------------------------------------------------------- training --
def _open_folder(folder: str, option: str) -> SdfFolderDataset:
    """The records of a prepared folder, or a :class:`ConfigError` naming ``option``."""
    require_path(folder, "prepared SDF folder", option)
    try:
        return SdfFolderDataset(folder)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"{option}: {err}") from None


def training_source(data: SdfDataConfig) -> str | RecordSource:
    """The family name, or the prepared folder's records."""
    if data.folder is None:
        return data.family
    return _open_folder(data.folder, "--data.folder")


def sdf_batches(cfg: SdfTrainConfig, source: str | RecordSource) -> Callable[..., tuple]:
    """``data(step, rows)``: the values at the context and then the query points (the state), and
    the condition with the query points under ``EXTRA_POINTS_KEY``, where the model's noise sampler
    reads the correlated noise (see :mod:`cfm_sdf.model`), of the samples at positions ``rows`` of
    the step's batch (only those are built); a pure function of the step and the seed."""
    representation = cfg.data.representation()

    def data(step: int, rows: slice = slice(None)) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b = batch(step, cfg.train.batch_size, cfg.train.seed, source, representation, rows)
        cond = b.cond(conditional=not cfg.unconditional)
        cond[EXTRA_POINTS_KEY] = b.query_points
        return torch.cat([b.context_values, b.query_values], dim=1), cond

    return data


def _hook_samples(cfg: SdfTrainConfig, source: str | RecordSource):
    """The training picture's samples, and their true shapes when the data are procedural."""
    representation = cfg.data.representation()
    if isinstance(source, str):
        shapes = held_out_shapes(source, HOOK_SHAPES, HOOK_SEED, representation, n_surface=1)
        return [s.sample for s in shapes], [s.shape for s in shapes]
    rng = np.random.default_rng(HOOK_SEED)
    samples = [draw_sample(source[i % len(source)], rng, representation) for i in range(HOOK_SHAPES)]
    return samples, None


def _sample_hook(cfg: SdfTrainConfig, source: str | RecordSource):
    """Every sample_every steps: meshes of a few shapes (1 jump; the baseline: 16 Euler steps)
    beside the true shapes, and their mean volumetric IoU when the data are procedural."""
    samples, shapes = _hook_samples(cfg, source)
    truths = None if shapes is None else [reference_grid(s, HOOK_RESOLUTION) for s in shapes]
    truth_meshes = None if shapes is None else [s.to_mesh(TRUTH_PICTURE_RESOLUTION) for s in shapes]
    grid = grid_points(HOOK_RESOLUTION).astype(np.float32)
    sampler, steps = ("euler", HOOK_BASELINE_STEPS) if cfg.method.is_baseline else ("cumulative", 1)
    conditional = not cfg.unconditional

    def hook(model: FlowMap, step: int, out: Path) -> dict[str, float]:
        extra = np.broadcast_to(grid, (len(samples), *grid.shape))
        fields = _generate(model, samples, conditional, extra, steps, sampler, cfg.data.noise_grid, HOOK_SEED)
        panels, ious = [], []
        for index, values in enumerate(_grids(fields.extra_values, HOOK_RESOLUTION)):
            points = samples[index]["surface_points"] if conditional else None
            if truths is not None:
                panels.append(Panel("truth", truth_meshes[index], points))
                ious.append(volumetric_iou(values, truths[index]))
            panels.append(Panel(f"{sampler}, {steps} step(s)", timed_mesh(values)[0], points))
        render_mesh_grid_png(
            panels, out / "samples" / f"step-{step:07d}.png", columns=4 if truths is not None else HOOK_SHAPES
        )
        return {"iou": float(np.mean(ious))} if ious else {}

    return hook


def train(cfg: SdfTrainConfig) -> dict[str, Any]:
    """Train and return the trainer's summary."""
    source = training_source(cfg.data)
    data = sdf_batches(cfg, source)
    try:
        data(0)
    except ValueError as err:
        raise ConfigError(f"--data: {err}") from None
    normalisation = {
        "frame": "bounding box centred at the origin, longest half-extent 0.9",
        "values": "clamp(sdf / truncation, -1, 1), negative inside",
        "truncation": cfg.data.truncation,
    }
    return train_run(
        APP,
        cfg,
        build_model,
        data,
        normalisation=normalisation,
        on_sample=_sample_hook(cfg, source),
        teacher_must_match=TEACHER_MUST_MATCH,
    )


def _check_guidance(guidance: float, runs: Sequence[tuple[SdfTrainConfig, str]]) -> None:
    """Guidance needs an unconditional mode: every ``(run config, path)`` trained with condition
    dropout."""
    if guidance == 1.0:
        return
    for run, path in runs:
        if run.unconditional or run.method.cond_dropout == 0:
            raise ConfigError(
                f"--guidance: {path} was trained without condition dropout, so it has no "
                "unconditional mode to guide against; train with --method.cond-dropout 0.1 "
                "(for example) or leave --guidance at 1"
            )


# ----------------------------------------------------------------------------- sampling --
def _resolve_sampler(sampler: str, steps: int | None, run: SdfTrainConfig) -> tuple[str, int]:
    """``auto`` -> euler for a baseline checkpoint, cumulative otherwise; default steps 1 or 64."""
    if sampler == "auto":
        sampler = "euler" if run.method.is_baseline else "cumulative"
    return sampler, steps if steps is not None else (1 if sampler == "cumulative" else 64)


def sample(cfg: SdfSampleConfig) -> Path:
    """Generate one shape, mesh it, write the mesh and a PNG; return the mesh path."""
    out = check_output_file(cfg.out, "--out", MESH_SUFFIXES)
    model, ckpt, run = load_run(
        cfg.checkpoint, build_model, APP, SdfTrainConfig, ema_decay=cfg.ema_decay, use_ema=cfg.ema
    )
    conditional = cfg.points is not None
    if run.unconditional and conditional:
        raise ConfigError(f"--points: {ckpt.path} was trained unconditionally; leave out --points")
    if not run.unconditional and not conditional and run.method.cond_dropout == 0:
        raise ConfigError(
            f"--points: {ckpt.path} generates shapes from surface points and was "
            "trained without condition dropout (no unconditional mode); pass "
            "--points (an .npy (N, 3) array or a mesh)"
        )
    if cfg.guidance != 1.0 and not conditional:
        raise ConfigError("--guidance: guidance steers towards surface points; pass --points")
    _check_guidance(cfg.guidance, [(run, str(ckpt.path))])
    rng = np.random.default_rng(cfg.seed)
    condition = None
    if conditional:
        condition, note = load_condition_points(cfg.points, cfg.n_points, cfg.normalize, rng)
        if note:
            print(f"note: {note}")
    sampler, steps = _resolve_sampler(cfg.sampler, cfg.steps, run)
    context = rng.uniform(-1.0, 1.0, size=(run.data.n_context, 3)).astype(np.float32)
    item = {"context_points": context}
    if condition is not None:
        item["surface_points"] = condition.points
    grid = grid_points(cfg.resolution).astype(np.float32)
    fields = _generate(
        model, [item], conditional, grid[None], steps, sampler, run.data.noise_grid, cfg.seed, cfg.guidance
    )
    mesh, mesh_seconds = timed_mesh(_grids(fields.extra_values, cfg.resolution)[0])
    if mesh is None:
        raise EmptyShapeError(
            f"the generated field has no zero level set (no surface) with {sampler} at {steps} step(s); nothing written"
        )
    png = render_mesh_png(mesh, out.with_suffix(".png"), points=None if condition is None else condition.points)
    if condition is not None:
        mesh = trimesh.Trimesh(condition.to_original(mesh.vertices), mesh.faces, process=False)
    save_mesh(mesh, out)
    print(f"wrote {out} ({len(mesh.faces)} faces) and {png}")
    guided = f", guidance {cfg.guidance:g}" if cfg.guidance != 1.0 else ""
    print(
        f"network {fields.seconds:.3f} s ({sampler}, {steps} step(s){guided}, NFE {fields.nfe}), "
        f"meshing {mesh_seconds:.3f} s (marching cubes at {cfg.resolution}^3)"
    )
    return out


# ---------------------------------------------------------------------------- evaluation --
def _load_models(cfg: SdfEvalConfig):
    """The CFM model, the baseline (default: the CFM model's own r = t field), the run config and
    the paths of both checkpoints."""
    model, ckpt, run = load_run(cfg.checkpoint, build_model, APP, SdfTrainConfig)
    if run.unconditional:
        raise ConfigError(
            f"--checkpoint: {ckpt.path} is unconditional; eval scores shapes "
            "generated from the surface points of the shapes it scores"
        )
    baseline, base_run, base_path = model, run, str(ckpt.path)
    if cfg.baseline is not None:
        baseline, base_ckpt, base_run = load_run(cfg.baseline, build_model, APP, SdfTrainConfig, option="--baseline")
        if base_run.unconditional or config_to_dict(base_run.data) != config_to_dict(run.data):
            raise ConfigError(
                "--baseline was trained on other data (or sample sizes, or unconditionally) than --checkpoint"
            )
        base_path = str(base_ckpt.path)
    _check_guidance(cfg.guidance, [(run, str(ckpt.path)), (base_run, base_path)])
    return model, baseline, run, str(ckpt.path), base_path


def _eval_shapes(cfg: SdfEvalConfig, run: SdfTrainConfig) -> tuple[list[HeldOutShape], dict]:
    """The shapes to score (--family, --folder, or the checkpoint's training data) and their
    description for metrics.json."""
    half = cfg.n_query // 2
    representation = run.data.representation(n_query_volume=half, n_query_near=cfg.n_query - half, n_query_surface=0)
    folder = cfg.folder
    if cfg.family is None and folder is None:
        folder = run.data.folder
    if folder is None:
        family = cfg.family or run.data.family
        shapes = held_out_shapes(family, cfg.n_shapes, cfg.seed, representation, cfg.n_surface_samples)
        return shapes, {
            "family": family,
            "folder": None,
            "held_out": True,
            "iou": f"on the {cfg.resolution}^3 marching-cubes grid, against the analytic SDF",
        }
    records = _open_folder(folder, "--folder")
    held_out = run.data.folder is None or Path(folder).resolve() != Path(run.data.folder).resolve()
    if not held_out:
        print(
            f"note: scoring the training records of {folder} (not held out); prepare held-out "
            "meshes with `cfm sdf prepare` and pass --folder for held-out scores"
        )
    try:
        shapes = held_out_records(records, cfg.n_shapes, cfg.seed, representation, cfg.n_surface_samples)
    except ValueError as err:
        raise ConfigError(
            f"--folder: {err} (a shape's sample holds --data.n-context context "
            "points and --n-query query points, half uniform, half near the "
            "surface)"
        ) from None
    n_points = len(shapes[0].iou_points)
    return shapes, {
        "family": None,
        "folder": str(folder),
        "held_out": held_out,
        "iou": f"at the {n_points} uniform volume points of each record, against "
        "their prepared signed distances (Monte Carlo)",
    }


def _score_setting(
    model: FlowMap,
    sampler: str,
    steps: int,
    shapes: Sequence[HeldOutShape],
    truths: Sequence[np.ndarray],
    cfg: SdfEvalConfig,
    run: SdfTrainConfig,
    bar: tqdm,
) -> tuple[dict[str, Any], list[trimesh.Trimesh | None]]:
    """Generate every shape with one sampler setting and score it (``truths``: the true SDF at
    each shape's IoU points, :meth:`HeldOutShape.iou_truth`)."""
    grid = grid_points(cfg.resolution).astype(np.float32)
    n_grid = len(grid)
    per_shape: dict[str, list[float]] = {k: [] for k in SCORES}
    network = meshing = 0.0
    nfe, meshes = 0, []
    for first in range(0, len(shapes), cfg.batch_size):
        part = shapes[first : first + cfg.batch_size]
        samples = [s.sample for s in part]
        n_query = samples[0]["query_points"].shape[0]
        extra = np.stack([np.concatenate([grid, s.sample["query_points"], s.iou_points]) for s in part])
        fields = _generate(
            model, samples, True, extra, steps, sampler, run.data.noise_grid, cfg.seed + first, cfg.guidance
        )
        network += fields.seconds
        nfe = fields.nfe
        values = fields.extra_values.cpu().numpy()
        for offset, row in enumerate(values):
            index = first + offset
            shape = shapes[index]
            grid_values = row[:n_grid].reshape((cfg.resolution,) * 3)
            mesh, seconds = timed_mesh(grid_values)
            meshing += seconds
            # analytic shapes score the IoU on the grid, records at their volume points
            iou_values = row[:n_grid] if shape.shape is not None else row[n_grid + n_query :]
            scores = score_shape(
                mesh,
                shape.surface,
                iou_values,
                truths[index],
                row[n_grid : n_grid + n_query],
                shape.sample["query_values"],
                run.data.truncation,
                cfg.fscore_threshold,
                seed=index,
            )
            for key in SCORES:
                per_shape[key].append(scores[key])
            if index < PICTURE_SHAPES:
                meshes.append(mesh)
        bar.update(1)
    chamfers = [c for c in per_shape["chamfer"] if not math.isnan(c)]
    row = {
        "sampler": sampler,
        "steps": steps,
        "nfe": nfe,
        "chamfer": float(np.mean(chamfers)) if chamfers else None,
        **{key: float(np.mean(per_shape[key])) for key in ("fscore", "iou", "sdf_error")},
        "empty_shapes": len(shapes) - len(chamfers),
        "network_ms_per_shape": 1000.0 * network / len(shapes),
        "meshing_ms_per_shape": 1000.0 * meshing / len(shapes),
        "per_shape": {k: [None if math.isnan(v) else v for v in vs] for k, vs in per_shape.items()},
    }
    return row, meshes


def evaluate(cfg: SdfEvalConfig) -> dict[str, Any]:
    """Score CFM at each of ``cfg.cfm_steps`` and the baseline at each of ``cfg.baseline_steps``
    on procedural or prepared shapes; write metrics.json, shapes.png and quality_vs_nfe.png."""
    if cfg.out is not None:
        check_output_dir(cfg.out, "--out")
    model, baseline, run, model_path, base_path = _load_models(cfg)
    shapes, source = _eval_shapes(cfg, run)
    device = device_of(model)
    out = Path(cfg.out) if cfg.out else Path(model_path).parent / "eval"
    truths = [s.iou_truth(cfg.resolution) for s in shapes]
    settings = [("cfm", model, "cumulative", s) for s in cfg.cfm_steps]
    settings += [("baseline", baseline, cfg.baseline_method, s) for s in cfg.baseline_steps]
    _generate(
        model, [shapes[0].sample], True, np.zeros((1, 8, 3), np.float32), 1, "cumulative", run.data.noise_grid, cfg.seed
    )  # warm-up: the first call pays for lazy setup
    batches = -(-len(shapes) // cfg.batch_size)
    rows, pictures = [], {}
    with tqdm(total=len(settings) * batches, desc="cfm sdf eval", unit="batch") as bar:
        for label, net, sampler, steps in settings:
            row, meshes = _score_setting(net, sampler, steps, shapes, truths, cfg, run, bar)
            rows.append({"label": label, **row})
            pictures[(label, steps)] = meshes
    result = {
        "checkpoint": model_path,
        "baseline": base_path,
        **source,
        "shapes": [s.name for s in shapes],
        "n_shapes": len(shapes),
        "resolution": cfg.resolution,
        "seed": cfg.seed,
        "guidance": cfg.guidance,
        "fscore_threshold": cfg.fscore_threshold,
        "n_surface_samples": len(shapes[0].surface),
        "n_query": cfg.n_query,
        "baseline_method": cfg.baseline_method,
        "device": str(device),
        "chamfer_definition": "mean of the two one-sided mean distances (ChamferResult.mean)",
        "rows": rows,
    }
    write_atomic(out / "metrics.json", (json.dumps(result, indent=2) + "\n").encode())
    title = source["family"] or Path(source["folder"]).name
    _figures(rows, pictures, shapes, out, title, cfg)
    _print_rows(rows)
    print(f"wrote {out / 'metrics.json'}, {out / 'shapes.png'} and {out / 'quality_vs_nfe.png'}")
    return result


def _figures(rows, pictures, shapes, out: Path, title: str, cfg: SdfEvalConfig) -> None:
    shown = min(PICTURE_SHAPES, len(shapes))
    columns = [("cfm", s) for s in cfg.cfm_steps]
    if cfg.baseline_steps:
        columns.append(("baseline", max(cfg.baseline_steps)))
    panels = []
    for index in range(shown):
        points = shapes[index].sample["surface_points"]
        truth = shapes[index].truth_mesh(TRUTH_PICTURE_RESOLUTION)
        if truth is None:  # a record keeps no mesh: its surface samples stand for it
            panels.append(Panel("truth (surface samples)", None, points, cloud=shapes[index].surface))
        else:
            panels.append(Panel("truth", truth, points))
        for label, steps in columns:
            name = f"{'CFM' if label == 'cfm' else 'baseline'}, {steps} step(s)"
            panels.append(Panel(name, pictures[(label, steps)][index], points))
    render_mesh_grid_png(panels, out / "shapes.png", columns=len(columns) + 1)
    save_quality_vs_nfe(
        rows,
        "iou",
        out / "quality_vs_nfe.png",
        ylabel="volumetric IoU (higher is better)",
        title=f"{title}: reconstruction from surface points vs NFE",
    )


def _print_rows(rows: Sequence[dict[str, Any]]) -> None:
    print(
        f"{'model':<9} {'sampler':<10} {'steps':>5} {'NFE':>4} {'chamfer':>8} {'F':>6} "
        f"{'IoU':>6} {'sdf err':>8} {'empty':>5} {'net ms':>8} {'mesh ms':>8}"
    )
    for r in rows:
        chamfer = "-" if r["chamfer"] is None else f"{r['chamfer']:.4f}"
        print(
            f"{r['label']:<9} {r['sampler']:<10} {r['steps']:>5} {r['nfe']:>4} {chamfer:>8} "
            f"{r['fscore']:>6.3f} {r['iou']:>6.3f} {r['sdf_error']:>8.4f} "
            f"{r['empty_shapes']:>5} {r['network_ms_per_shape']:>8.1f} "
            f"{r['meshing_ms_per_shape']:>8.1f}"
        )


# ----------------------------------------------------------------------------- preparing --
def prepare(cfg: SdfPrepareConfig) -> dict[str, Any]:
    """Prepare a mesh folder (progress bar, report.json); return the report as a dict."""
    require_path(cfg.mesh_folder, "mesh folder", "MESH_FOLDER")
    check_output_dir(cfg.out, "OUT")
    try:
        report = prepare_mesh_folder(
            cfg.mesh_folder,
            cfg.out,
            n_surface=cfg.n_surface,
            n_volume=cfg.n_volume,
            n_near=cfg.n_near,
            seed=cfg.seed,
            near_std=cfg.near_std,
            overwrite=cfg.overwrite,
        )
    except FileNotFoundError as err:
        raise ConfigError(f"MESH_FOLDER: {err}") from None
    report_path = Path(cfg.out) / "report.json"
    print(
        f"prepared {len(report.prepared)}, kept {len(report.cached)} existing, "
        f"fixed {len(report.fixed)}, skipped {len(report.skipped)}; report: {report_path}"
    )
    if not report.prepared and not report.cached:
        raise ConfigError(
            f"MESH_FOLDER: no usable mesh in {cfg.mesh_folder}; every mesh was skipped (reasons in {report_path})"
        )
    return json.loads(report_path.read_text())


# ------------------------------------------------------------------------------ argv glue --
run_train = from_argv(train, SdfTrainConfig, "cfm sdf train", TRAIN_PRESETS)
run_eval = from_argv(evaluate, SdfEvalConfig, "cfm sdf eval")
run_prepare = from_argv(prepare, SdfPrepareConfig, "cfm sdf prepare")


def run_sample(argv: Sequence[str]) -> int:
    """``cfm sdf sample``: exit code 1 (and no file) when the generated field has no surface."""
    try:
        from_argv(sample, SdfSampleConfig, "cfm sdf sample")(argv)
    except EmptyShapeError as err:
        print(f"cfm sdf sample: {err}", file=sys.stderr)
        return 1
    return 0
