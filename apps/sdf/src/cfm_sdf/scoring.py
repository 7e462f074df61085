"""Shapes to score (held-out procedural shapes or prepared mesh records) and the scores of a
generated field against one of them.

Scores (negative inside everywhere):

* ``chamfer``: the Chamfer distance between points sampled on the generated mesh and reference
  surface points (exact for procedural shapes, the prepared samples for records), the mean of the
  two one-sided mean distances (:func:`cfm_core.metrics.chamfer_distance`, ``.mean``); ``nan``
  when the field has no zero level set (no mesh).
* ``fscore``: F-score at a distance threshold (:func:`cfm_core.metrics.f_score`); 0 without mesh.
* ``iou``: volumetric IoU of the inside regions (:func:`cfm_sdf.meshing.inside_iou`): for
  procedural shapes on the marching-cubes grid against the analytic SDF there; for records at
  their uniform volume points against the prepared signed distances (a Monte-Carlo estimate).
* ``sdf_error``: mean absolute error of the truncated SDF, ``|clamp(pred) - clamp(true)|`` in
  distance units (network values times the truncation), at uniform and near-surface points.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import trimesh
from cfm_core.metrics import chamfer_distance, f_score

from cfm_sdf.families import Shape, random_shape
from cfm_sdf.meshing import extract_mesh, inside_iou, sdf_grid
from cfm_sdf.representation import (
    RecordSource,
    RepresentationConfig,
    analytic_record,
    draw_sample,
)


@dataclass
class HeldOutShape:
    """A shape to score: its training-style sample (context, condition, query points with their
    encoded SDF values), reference surface points for Chamfer and F-score, and the truth of the
    IoU: an analytic ``shape`` (IoU on the grid) or uniform ``volume_points`` with their raw
    ``volume_sdf`` (IoU at those points); exactly one of the two."""

    name: str
    sample: dict[str, np.ndarray]
    surface: np.ndarray  # (n_surface, 3)
    shape: Shape | None = None
    volume_points: np.ndarray | None = None  # (M, 3)
    volume_sdf: np.ndarray | None = None  # (M,)

    def __post_init__(self) -> None:
        has_volume = self.volume_points is not None and self.volume_sdf is not None
        if (self.shape is None) == (not has_volume):
            raise ValueError(
                f"{self.name}: give an analytic shape or volume points with their SDF, exactly one of the two"
            )

    @property
    def iou_points(self) -> np.ndarray:
        """Where the generated field must be read for the IoU besides the grid: the volume points
        of a record, none for an analytic shape (its IoU uses the grid)."""
        return np.zeros((0, 3), np.float32) if self.volume_points is None else self.volume_points

    def iou_truth(self, resolution: int) -> np.ndarray:
        """The true SDF where the IoU is computed: on the ``resolution^3`` grid (flattened) for an
        analytic shape, at :attr:`iou_points` for a record."""
        if self.shape is not None:
            return reference_grid(self.shape, resolution).ravel()
        return self.volume_sdf

    def truth_mesh(self, resolution: int) -> trimesh.Trimesh | None:
        """The true surface as a mesh (analytic shapes), or ``None`` (records keep no mesh)."""
        return None if self.shape is None else self.shape.to_mesh(resolution)


def held_out_shapes(
    family: str, count: int, seed: int, config: RepresentationConfig, n_surface: int
) -> list[HeldOutShape]:
    """``count`` shapes of ``family``; shape ``i`` is drawn from
    ``SeedSequence(seed, spawn_key=(i,))``: one-element spawn keys, never equal to the training
    stream's ``(step, index)`` keys."""
    shapes = []
    for index in range(int(count)):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(index,)))
        shape = random_shape(family, rng)
        sample = draw_sample(analytic_record(shape, rng, config), rng, config)
        shapes.append(HeldOutShape(f"{family}-{index}", sample, shape.sample_surface(n_surface, rng), shape=shape))
    return shapes


def held_out_records(
    source: RecordSource, count: int, seed: int, config: RepresentationConfig, n_surface: int
) -> list[HeldOutShape]:
    """The first ``count`` records of ``source`` (all of them when it holds fewer) as shapes to
    score. Record ``i``'s sample is drawn from ``SeedSequence(seed, spawn_key=(i,))``; Chamfer and
    F-score use up to ``n_surface`` of its surface points, the IoU its uniform volume points (as
    many as the smallest of these records holds, so that the shapes batch together). Raises
    ``ValueError`` naming a record whose pools are too small for the sample."""
    records = [source[index] for index in range(min(int(count), len(source)))]
    if not records:
        raise ValueError("no records to score")
    n_volume = min(len(r.volume_points) for r in records)
    shapes = []
    for index, record in enumerate(records):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(index,)))
        sample = draw_sample(record, rng, config)
        surface = record.surface_points[rng.permutation(len(record.surface_points))[:n_surface]]
        shapes.append(
            HeldOutShape(
                record.name or f"record-{index}",
                sample,
                surface,
                volume_points=record.volume_points[:n_volume],
                volume_sdf=record.volume_sdf[:n_volume],
            )
        )
    return shapes


def timed_mesh(grid: np.ndarray) -> tuple[trimesh.Trimesh | None, float]:
    """Marching cubes of a generated grid and its wall time; ``None`` when the level set is
    empty (the field never changes sign)."""
    start = time.perf_counter()
    try:
        mesh = extract_mesh(grid)
    except ValueError as err:
        if not str(err).startswith("empty level set"):
            raise
        mesh = None
    return mesh, time.perf_counter() - start


def reference_grid(shape: Shape, resolution: int) -> np.ndarray:
    """The analytic SDF on the marching-cubes grid."""
    return sdf_grid(shape.sdf, resolution)


def score_shape(
    mesh: trimesh.Trimesh | None,
    truth_surface: np.ndarray,
    iou_values: np.ndarray,
    truth_iou_values: np.ndarray,
    query_values: np.ndarray,
    truth_query_values: np.ndarray,
    truncation: float,
    threshold: float,
    seed: int = 0,
) -> dict[str, float]:
    """The scores of one generated shape (see the module docstring): its mesh (``None``: empty
    level set), the generated and true fields at the IoU points (any units with the surface at
    0) and the generated and true encoded values at the query points."""
    if query_values.shape != truth_query_values.shape:
        raise ValueError(f"query values {query_values.shape} do not match the truth {truth_query_values.shape}")
    error = np.abs(np.clip(query_values, -1.0, 1.0) - truth_query_values).mean() * truncation
    scores = {"iou": inside_iou(iou_values, truth_iou_values), "sdf_error": float(error)}
    if mesh is None:
        return {**scores, "chamfer": math.nan, "fscore": 0.0}
    points, _ = trimesh.sample.sample_surface(mesh, len(truth_surface), seed=seed)
    return {
        **scores,
        "chamfer": chamfer_distance(points, truth_surface).mean,
        "fscore": f_score(points, truth_surface, threshold)[0],
    }
