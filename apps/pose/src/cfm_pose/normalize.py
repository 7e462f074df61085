"""RigNet's shape normalisation, shared by every data source of this app.

RigNet (``quick_start.py normalize_obj``) centres x and z on the bounding box, moves the lowest
point to y = 0 and divides by the largest bounding-box extent. A normalised shape therefore stands
on the plane y = 0, fits in a box of side 1 and is centred in x and z. Joints, surface points and
mesh vertices of one character go through the same map so that they stay consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalization:
    """The affine map ``p -> (p - offset) * scale`` (one scalar scale, so angles are kept)."""

    offset: np.ndarray
    scale: float

    @classmethod
    def rignet(cls, lower: np.ndarray, upper: np.ndarray) -> Normalization:
        """The RigNet map for a shape whose bounding box is ``[lower, upper]`` (each ``(3,)``)."""
        lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
        extent = float((upper - lower).max())
        if not np.isfinite(extent) or extent <= 0:
            raise ValueError(f"cannot normalise a shape with bounding box {lower} .. {upper}")
        centre = 0.5 * (lower + upper)
        return cls(offset=np.array([centre[0], lower[1], centre[2]]), scale=1.0 / extent)

    @classmethod
    def rignet_of_points(cls, points: np.ndarray) -> Normalization:
        """The RigNet map for the bounding box of ``points`` ``(N, 3)`` (e.g. mesh vertices)."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        return cls.rignet(points.min(axis=0), points.max(axis=0))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points of any shape ``(..., 3)``."""
        return (np.asarray(points, np.float64) - self.offset) * self.scale

    def invert(self, points: np.ndarray) -> np.ndarray:
        """The inverse map: normalised points ``(..., 3)`` back to the original frame."""
        return np.asarray(points, np.float64) / self.scale + self.offset

    def to_dict(self) -> dict[str, list[float] | float]:
        """JSON-friendly ``{"offset": [x, y, z], "scale": s}``."""
        return {"offset": [float(v) for v in self.offset], "scale": float(self.scale)}
