"""Exact signed distance functions of axis-aligned boxes and capped cylinders.

Sign convention of the whole app: **negative inside, positive outside, zero on the surface**
(trimesh's ``proximity.signed_distance`` is the opposite: positive inside).

Each primitive gives the exact Euclidean signed distance everywhere (inside and outside), samples
points uniformly on its surface, and builds a trimesh mesh of itself (exact for a box, a polygon
approximation with ``sections`` sides for a cylinder; used by the tests as the reference).
Points are ``(N, 3)`` numpy arrays or torch tensors; the distances come back as the same type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import trimesh
from torch import Tensor

Points = TypeVar("Points", np.ndarray, Tensor)
AXES = (0, 1, 2)


def evaluate_points(fn: Callable[[Tensor], Tensor], points: Points) -> Points:
    """Apply a torch function ``(N, 3) -> (N,)`` to a numpy array or a tensor; same type back.

    Numpy input is computed in float64 and returned as float64.
    """
    if isinstance(points, Tensor):
        _check_points(points.shape)
        return fn(points)
    array = np.asarray(points, dtype=np.float64)
    _check_points(array.shape)
    return fn(torch.from_numpy(array)).numpy()


def _check_points(shape: tuple[int, ...] | torch.Size) -> None:
    if len(shape) != 2 or shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {tuple(shape)}")


def _vector(values: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _rounded_box_distance(q: Tensor) -> Tensor:
    """Exact signed distance from per-axis offsets ``q`` (positive = outside along that axis)."""
    return q.clamp_min(0.0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0.0)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box with ``center`` and ``half_size`` (both 3-tuples)."""

    center: tuple[float, float, float]
    half_size: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.center) != 3 or len(self.half_size) != 3:
            raise ValueError(f"box center and half_size need 3 values, got {self}")
        if min(self.half_size) <= 0:
            raise ValueError(f"box half sizes must be positive, got {self.half_size}")

    def sdf(self, points: Points) -> Points:
        """Exact signed distance (negative inside) at ``points`` ``(N, 3)``."""

        def distance(p: Tensor) -> Tensor:
            q = (p - _vector(self.center, p)).abs() - _vector(self.half_size, p)
            return _rounded_box_distance(q)

        return evaluate_points(distance, points)

    def surface_area(self) -> float:
        hx, hy, hz = self.half_size
        return 8.0 * (hx * hy + hy * hz + hx * hz)

    def bounds(self) -> np.ndarray:
        """``(2, 3)`` array of the lower and upper corners."""
        c, h = np.asarray(self.center), np.asarray(self.half_size)
        return np.stack([c - h, c + h])

    def sample_surface(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points uniform (by area) on the box surface, ``(n, 3)`` float64."""
        h = np.asarray(self.half_size)
        # face pair normal to axis a has area 4 * h_b * h_c per face
        pair_areas = np.array([h[1] * h[2], h[0] * h[2], h[0] * h[1]])
        axis = rng.choice(3, size=n, p=pair_areas / pair_areas.sum())
        points = rng.uniform(-1.0, 1.0, size=(n, 3)) * h
        side = rng.choice(np.array([-1.0, 1.0]), size=n)
        rows = np.arange(n)
        points[rows, axis] = side * h[axis]
        return points + np.asarray(self.center)

    def scaled(self, factor: float, offset: np.ndarray) -> Box:
        """The box under ``p -> factor * (p + offset)``."""
        center = factor * (np.asarray(self.center) + offset)
        return Box(_tuple3(center), _tuple3(factor * np.asarray(self.half_size)))

    def to_trimesh(self) -> trimesh.Trimesh:
        """The exact box mesh."""
        mesh = trimesh.creation.box(extents=2.0 * np.asarray(self.half_size))
        mesh.apply_translation(self.center)
        return mesh


@dataclass(frozen=True)
class Cylinder:
    """Capped cylinder along coordinate axis ``axis`` (0 = x, 1 = y, 2 = z)."""

    center: tuple[float, float, float]
    radius: float
    half_height: float
    axis: int = 1

    def __post_init__(self) -> None:
        if len(self.center) != 3:
            raise ValueError(f"cylinder center needs 3 values, got {self.center}")
        if self.radius <= 0 or self.half_height <= 0:
            raise ValueError(f"cylinder radius and half_height must be positive, got {self}")
        if self.axis not in AXES:
            raise ValueError(f"cylinder axis must be 0, 1 or 2, got {self.axis}")

    def _radial_axes(self) -> list[int]:
        return [a for a in AXES if a != self.axis]

    def sdf(self, points: Points) -> Points:
        """Exact signed distance (negative inside) at ``points`` ``(N, 3)``."""

        def distance(p: Tensor) -> Tensor:
            d = p - _vector(self.center, p)
            radial = d[:, self._radial_axes()].norm(dim=-1) - self.radius
            axial = d[:, self.axis].abs() - self.half_height
            return _rounded_box_distance(torch.stack([radial, axial], dim=-1))

        return evaluate_points(distance, points)

    def surface_area(self) -> float:
        return 2.0 * math.pi * self.radius * (self.radius + 2.0 * self.half_height)

    def bounds(self) -> np.ndarray:
        h = np.full(3, self.radius)
        h[self.axis] = self.half_height
        c = np.asarray(self.center)
        return np.stack([c - h, c + h])

    def sample_surface(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points uniform (by area) on the side and the two caps, ``(n, 3)`` float64."""
        side_area = 4.0 * math.pi * self.radius * self.half_height
        cap_area = math.pi * self.radius**2
        on_side = rng.uniform(size=n) < side_area / (side_area + 2.0 * cap_area)
        angle = rng.uniform(0.0, 2.0 * math.pi, size=n)
        # uniform on a disc: radius ~ sqrt(U); on the side: radius = R
        rho = np.where(on_side, self.radius, self.radius * np.sqrt(rng.uniform(size=n)))
        cap_side = rng.choice(np.array([-1.0, 1.0]), size=n) * self.half_height
        height = np.where(on_side, rng.uniform(-self.half_height, self.half_height, size=n), cap_side)
        points = np.empty((n, 3))
        a, b = self._radial_axes()
        points[:, a] = rho * np.cos(angle)
        points[:, b] = rho * np.sin(angle)
        points[:, self.axis] = height
        return points + np.asarray(self.center)

    def scaled(self, factor: float, offset: np.ndarray) -> Cylinder:
        """The cylinder under ``p -> factor * (p + offset)``."""
        center = factor * (np.asarray(self.center) + offset)
        return Cylinder(_tuple3(center), factor * self.radius, factor * self.half_height, self.axis)

    def to_trimesh(self, sections: int = 256) -> trimesh.Trimesh:
        """A ``sections``-gon prism inscribed in the cylinder.

        Its surface lies within ``r (1 - cos(pi / sections))`` of the cylinder.
        """
        mesh = trimesh.creation.cylinder(radius=self.radius, height=2.0 * self.half_height, sections=sections)
        direction = np.zeros(3)
        direction[self.axis] = 1.0
        mesh.apply_transform(trimesh.geometry.align_vectors([0.0, 0.0, 1.0], direction))
        mesh.apply_translation(self.center)
        return mesh


Primitive = Box | Cylinder


def _tuple3(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))
