"""Held-out procedural shapes and the scores of a generated field against one of them.

Scores (negative inside everywhere):

* ``chamfer``: the Chamfer distance between points sampled on the generated mesh and on the exact
  surface, the mean of the two one-sided mean distances (:func:`cfm_core.metrics.chamfer_distance`,
  ``.mean``); ``nan`` when the field has no zero level set (no mesh).
* ``fscore``: F-score at a distance threshold (:func:`cfm_core.metrics.f_score`); 0 without mesh.
* ``iou``: volumetric IoU of the inside regions on the marching-cubes grid, against the analytic
  SDF on the same grid (:func:`cfm_sdf.meshing.volumetric_iou`).
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
from cfm_sdf.meshing import extract_mesh, sdf_grid, volumetric_iou
from cfm_sdf.representation import RepresentationConfig, analytic_record, draw_sample


@dataclass
class HeldOutShape:
    """A held-out shape, its training-style sample (context, condition, query points with their
    encoded SDF values) and exact surface points for Chamfer and F-score."""

    shape: Shape
    sample: dict[str, np.ndarray]
    surface: np.ndarray  # (n_surface, 3)


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
        shapes.append(HeldOutShape(shape, sample, shape.sample_surface(n_surface, rng)))
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
    grid: np.ndarray,
    mesh: trimesh.Trimesh | None,
    truth_grid: np.ndarray,
    truth_surface: np.ndarray,
    query_values: np.ndarray,
    truth_query_values: np.ndarray,
    truncation: float,
    threshold: float,
    seed: int = 0,
) -> dict[str, float]:
    """The scores of one generated shape (see the module docstring). Values are network units."""
    if query_values.shape != truth_query_values.shape:
        raise ValueError(f"query values {query_values.shape} do not match the truth "
                         f"{truth_query_values.shape}")
    error = np.abs(np.clip(query_values, -1.0, 1.0) - truth_query_values).mean() * truncation
    scores = {"iou": volumetric_iou(grid, truth_grid), "sdf_error": float(error)}
    if mesh is None:
        return {**scores, "chamfer": math.nan, "fscore": 0.0}
    points, _ = trimesh.sample.sample_surface(mesh, len(truth_surface), seed=seed)
    return {
        **scores,
        "chamfer": chamfer_distance(points, truth_surface).mean,
        "fscore": f_score(points, truth_surface, threshold)[0],
    }
