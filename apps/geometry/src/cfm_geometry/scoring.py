"""Scores of a generated point cloud against dense surface samples of the shape, in three units.

Distances are measured in the shape's **original** units and converted (exactly: every
normalisation here is a translation and one uniform scale) to

* **box** units: Geometry Distributions' normalised mesh (``normalize.py`` step 1: bounding box
  centred, largest absolute coordinate 0.99). GD's ``eval.py`` multiplies its generated points by
  a stored per-shape scale before the Chamfer distance; we read that as undoing the unit-variance
  step, i.e. scoring in these units (our inference: the paper does not state its units);
* **model** units: the unit-variance units the network learns in (box units over the scalar
  standard deviation of the surface samples).

The point metrics themselves are :mod:`cfm_core.metrics`' (k-d tree on the CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from cfm_core.metrics import chamfer_distance, f_score, hausdorff_distance

from cfm_geometry.generation import finite_rows
from cfm_geometry.normalisation import MAX_ABS_COORDINATE, Normalisation

#: The score names :func:`score_points` returns (all floats).
SCORE_NAMES = (
    "chamfer_sum",
    "chamfer_mean",
    "chamfer_gen_to_ref",
    "chamfer_ref_to_gen",
    "chamfer_sum_box",
    "chamfer_mean_box",
    "chamfer_sum_model",
    "chamfer_mean_model",
    "f_score",
    "precision",
    "recall",
    "hausdorff",
    "hausdorff_box",
    "nonfinite_points",
)


@dataclass(frozen=True)
class Units:
    """How one original-unit distance converts to the other units, and the F-score threshold.

    Attributes:
        box: box-unit distance per original-unit distance (``0.99 / half the longest side``).
        model: model-unit distance per original-unit distance (``1 / normalisation.scale``).
        diagonal: the bounding-box diagonal in original units.
    """

    box: float
    model: float
    diagonal: float

    @classmethod
    def of(cls, normalisation: Normalisation, bounds: np.ndarray) -> Units:
        """The units of a shape with ``(2, 3)`` ``bounds`` trained with ``normalisation``."""
        lo, hi = np.asarray(bounds, dtype=np.float64)
        half_extent = float(np.max(hi - lo)) / 2
        if not half_extent > 0:
            raise ValueError(f"the shape has zero extent (bounds {lo} .. {hi})")
        return cls(
            box=MAX_ABS_COORDINATE / half_extent,
            model=1.0 / normalisation.scale,
            diagonal=float(np.linalg.norm(hi - lo)),
        )


def score_points(generated, reference, units: Units, f_threshold: float) -> dict[str, float]:
    """Scores of ``generated`` ``(N, 3)`` points against ``reference`` ``(M, 3)`` surface samples,
    both in original units (see the module docstring for the units).

    ``chamfer_sum`` is the two-sided sum ``mean_gen d(g, ref) + mean_ref d(r, gen)`` (GD),
    ``chamfer_mean`` half of it; ``f_score`` uses the distance ``f_threshold * diagonal``.
    Non-finite generated rows are dropped and counted in ``nonfinite_points`` (all scores are NaN
    when none is finite).
    """
    points, dropped = finite_rows(generated)
    if len(points) == 0:
        return {name: (float(dropped) if name == "nonfinite_points" else math.nan) for name in SCORE_NAMES}
    chamfer = chamfer_distance(points, reference)
    f, precision, recall = f_score(points, reference, f_threshold * units.diagonal)
    hausdorff = hausdorff_distance(points, reference)
    return {
        "chamfer_sum": chamfer.sum,
        "chamfer_mean": chamfer.mean,
        "chamfer_gen_to_ref": chamfer.a_to_b,
        "chamfer_ref_to_gen": chamfer.b_to_a,
        "chamfer_sum_box": chamfer.sum * units.box,
        "chamfer_mean_box": chamfer.mean * units.box,
        "chamfer_sum_model": chamfer.sum * units.model,
        "chamfer_mean_model": chamfer.mean * units.model,
        "f_score": f,
        "precision": precision,
        "recall": recall,
        "hausdorff": hausdorff,
        "hausdorff_box": hausdorff * units.box,
        "nonfinite_points": float(dropped),
    }
