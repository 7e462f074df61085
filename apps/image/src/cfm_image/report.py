"""What ``cfm image eval`` writes: per-run grids, the comparison panels, the quality curve, the
printed table and ``metrics.json`` (every file atomically)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from cfm_core.evaluation import SweepEntry
from cfm_core.io import atomic_path
from cfm_core.plotting import save_quality_vs_nfe
from torch import Tensor

from cfm_image.pictures import save_grid, save_panels

SHORT_NAMES = {
    "classifier_fd": "classifier FD",
    "classifier_accuracy": "accuracy",
    "class_entropy_mean": "H(y|x) mean",
    "class_entropy_marginal": "H(y) hist",
    "pixel_energy": "pixel energy",
    "fid": "FID",
}
"""Column titles of the printed table."""
GRID_IMAGES = 100
"""Images per grid in the evaluation's pictures."""


def grid_columns(num_classes: int | None) -> int:
    """Images per grid row: one column per class for up to 10 classes (labels run 0, 1, 2, ...
    in turn), else 10."""
    return num_classes if num_classes is not None and num_classes <= 10 else 10


def one_column_per_class(images: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``images`` reordered as class 0, 1, ..., K-1, then the next image of each class again, so
    that a grid with ``num_classes`` columns shows one class per column."""
    rank = torch.zeros_like(labels)
    for k in range(num_classes):
        rank[labels == k] = torch.arange(int((labels == k).sum()))
    return images[torch.argsort(rank * num_classes + labels)]


def entry_name(entry: SweepEntry) -> str:
    """A panel title: ``CFM, 2 steps`` or ``baseline euler, NFE 64``."""
    if entry.label == "cfm":
        return f"CFM, {entry.steps} step{'s' * (entry.steps > 1)}"
    return f"baseline {entry.sampler}, NFE {entry.nfe}"


def save_run_grids(entries: Sequence[SweepEntry], folder: Path, nrow: int) -> None:
    """``folder/cfm-<steps>.png`` and ``folder/baseline-<sampler>-<steps>.png``."""
    for entry in entries:
        name = f"cfm-{entry.steps}" if entry.label == "cfm" else (f"baseline-{entry.sampler}-{entry.steps}")
        save_grid(entry.samples[:GRID_IMAGES], folder / f"{name}.png", nrow)


def save_comparison(entries: Sequence[SweepEntry], real: Tensor | None, path: Path, nrow: int, title: str) -> Path:
    """Panels: the real images, CFM at each jump count, and the baseline at CFM's largest NFE
    and at its own largest."""
    panels = {} if real is None else {"data (held out)": real[:GRID_IMAGES]}
    cfm = [e for e in entries if e.label == "cfm"]
    base = [e for e in entries if e.label == "baseline"]
    chosen = cfm[:]
    if base and cfm:
        chosen += [e for e in base if e.nfe <= max(c.nfe for c in cfm)][-1:]
    if base:
        chosen.append(max(base, key=lambda e: e.nfe))
    for entry in chosen:
        panels[entry_name(entry)] = entry.samples[:GRID_IMAGES]
    return save_panels(panels, path, nrow, title=title)


def save_quality_curve(rows: Sequence[dict], metric: str, path: Path, title: str) -> None:
    """``metric`` against NFE for CFM and the baseline (log axes; y linear if any value <= 0)."""
    save_quality_vs_nfe(
        rows, metric, path, ylabel=f"{SHORT_NAMES.get(metric, metric)} (lower is better)", title=title, logy="auto"
    )


def print_rows(rows: Sequence[dict], metrics: Sequence[str], held_out: dict | None = None) -> None:
    """The sweep as a text table (and the held-out data's scores for scale)."""
    print(
        f"{'model':<9} {'sampler':<10} {'steps':>5} {'NFE':>4} "
        + " ".join(f"{SHORT_NAMES.get(m, m):>12.12}" for m in metrics)
        + f" {'ms/image':>9}"
    )
    for r in rows:
        print(
            f"{r['label']:<9} {r['sampler']:<10} {r['steps']:>5} {r['nfe']:>4} "
            + " ".join(f"{r[m]:>12.4f}" for m in metrics)
            + f" {r['ms_per_sample']:>9.3f}"
        )
    if held_out is not None:
        cells = [f"{held_out[m]:>12.4f}" if m in held_out else f"{'-':>12}" for m in metrics]
        print(
            f"{'data':<9} {'held out':<10} {'':>5} {'':>4} "
            + " ".join(cells)
            + f"   ({held_out['images']} real test images)"
        )


def save_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (NaN and inf become null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(clean(data), indent=2))
