"""The similarity transform between a shape's own units and the units the network learns in.

Geometry Distributions' ``normalize.py`` recipe, written as one translation and one scalar scale:

1. Centre the bounding box at the origin and scale uniformly so that the largest absolute
   coordinate is 0.99: ``q = (p - b) * s1`` with ``b = (lo + hi) / 2`` (per axis) and
   ``s1 = 0.99 / max_axis((hi - lo) / 2)``.
2. Standardise with **scalar** statistics of surface samples ``q``: ``mu`` is the mean and ``sd``
   the standard deviation of *all* their coordinates pooled (not per axis), and
   ``n = (q - mu) / sd``. The samples then have unit variance, so EDM's ``sigma_data`` is 1.

Together ``n = (p - centre) / scale`` with ``centre = b + mu / s1`` (``mu`` added to every axis)
and ``scale = sd / s1``. Only the first three channels (xyz) are transformed; normals are unchanged
by a uniform scale and translation, and any further channels are left as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

Points = TypeVar("Points", np.ndarray, torch.Tensor)
MAX_ABS_COORDINATE = 0.99


@dataclass(frozen=True)
class Normalisation:
    """``normalised = (points - centre) / scale`` on the xyz channels (see the module docstring).

    Attributes:
        centre: the translation, three floats in the shape's units.
        scale: the positive scalar scale, in the shape's units per normalised unit.
    """

    centre: tuple[float, float, float]
    scale: float

    def __post_init__(self) -> None:
        centre = tuple(float(c) for c in self.centre)
        if len(centre) != 3 or not all(math.isfinite(c) for c in centre):
            raise ValueError(f"normalisation centre must be 3 finite numbers, got {self.centre}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"normalisation scale must be finite and positive, got {self.scale}")
        object.__setattr__(self, "centre", centre)
        object.__setattr__(self, "scale", float(self.scale))

    @classmethod
    def fit(cls, bounds: np.ndarray, samples: np.ndarray) -> Normalisation:
        """GD's normalisation from the shape's ``(2, 3)`` bounding box and surface ``samples``
        (``(N, >=3)``, in the shape's units; only xyz is used)."""
        lo, hi = np.asarray(bounds, dtype=np.float64)
        half_extent = float(np.max(hi - lo)) / 2
        if not half_extent > 0:
            raise ValueError(f"the shape has zero extent (bounds {lo} .. {hi}); cannot normalise")
        box_centre = (lo + hi) / 2
        s1 = MAX_ABS_COORDINATE / half_extent
        boxed = (np.asarray(samples, dtype=np.float64)[:, :3] - box_centre) * s1
        mean, std = float(boxed.mean()), float(boxed.std())
        if not std > 0:
            raise ValueError("the surface samples have zero spread; cannot normalise")
        return cls(centre=tuple(box_centre + mean / s1), scale=std / s1)

    def apply(self, points: Points) -> Points:
        """Shape units -> normalised units, on ``points[..., :3]`` (numpy array or tensor)."""
        return _map_xyz(points, lambda xyz, c: (xyz - c) / self.scale, self.centre)

    def invert(self, points: Points) -> Points:
        """Normalised units -> shape units, on ``points[..., :3]``: the inverse of :meth:`apply`."""
        return _map_xyz(points, lambda xyz, c: xyz * self.scale + c, self.centre)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict for checkpoints: ``{"centre": [x, y, z], "scale": s}``."""
        return {"centre": list(self.centre), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalisation:
        """The inverse of :meth:`to_dict`; raises ``ValueError`` on missing or extra keys."""
        if not isinstance(data, dict) or set(data) != {"centre", "scale"}:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"a normalisation needs exactly the keys centre and scale, got {keys}")
        return cls(centre=tuple(data["centre"]), scale=data["scale"])


def _map_xyz(points: Points, transform, centre: tuple[float, float, float]) -> Points:
    """``transform(xyz, centre)`` on the first three channels; other channels pass through."""
    if points.shape[-1] < 3:
        raise ValueError(f"points need at least 3 channels (xyz), got shape {tuple(points.shape)}")
    if isinstance(points, torch.Tensor):
        c = torch.as_tensor(centre, dtype=points.dtype, device=points.device)
        return torch.cat([transform(points[..., :3], c), points[..., 3:]], dim=-1)
    points = np.asarray(points)
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float64)
    xyz = transform(points[..., :3], np.asarray(centre)).astype(points.dtype, copy=False)
    return np.concatenate([xyz, points[..., 3:]], axis=-1)
