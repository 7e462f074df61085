"""Procedural shape families with analytic SDFs: unlimited training data for demos, tests and the
benchmark.

A :class:`Shape` is a union of axis-aligned boxes and capped cylinders (``primitives.py``), y up,
built with random proportions from a ``numpy.random.Generator`` and normalised like the mesh
pipeline: the bounding box centred at the origin, its longest half-extent scaled to ``0.9``, so
every shape lies in ``[-0.9, 0.9]^3`` (a 0.1 margin inside the ``[-1, 1]^3`` domain).

Union SDF. ``sdf = min_i sdf_i`` over the primitives. **Outside the shape it is exact** (the
distance to a union is the smallest distance to a member). **Inside it is a bound**: ``min_i sdf_i =
-max_i depth_i``, and the true depth below the union's surface is at least the depth inside any
one member, so ``true_sdf <= sdf <= 0`` inside, with equality except where the deepest member's
nearest face is covered by another member (near the joints, e.g. inside a seat right above a leg).
The zero level set (the surface) and the sign are exact everywhere. Parts overlap (legs reach into
the seat's middle) rather than touch, so no internal face lies on the surface.

Families: ``"table"`` (rectangular top on four legs, optional lower shelf; or a round top on a
pedestal), ``"chair"`` (seat, four legs, a panel or post-and-rail back with slats, optional arms),
``"stool"`` (round or square seat on three or four legs, optional rungs), ``"shelf"`` (side panels,
boards, optional back) and ``"mixed"`` (one of the four, uniformly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh

from cfm_sdf.meshing import extract_mesh, sdf_grid
from cfm_sdf.primitives import Box, Cylinder, Points, Primitive, evaluate_points

#: Half-extent of the normalised bounding box (the same as the mesh pipeline's).
NORMALIZED_HALF_EXTENT = 0.9
#: Distance below which a surface sample of one part counts as lying on another part's surface.
_SURFACE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Shape:
    """A union of primitives with an analytic SDF (negative inside)."""

    family: str
    primitives: tuple[Primitive, ...]

    def __post_init__(self) -> None:
        if not self.primitives:
            raise ValueError("a shape needs at least one primitive")

    def sdf(self, points: Points) -> Points:
        """Union SDF ``min_i sdf_i`` at ``points`` ``(N, 3)`` (numpy or torch; same type back).

        Exact outside, a bound (``true <= value <= 0``) inside; see the module docstring.
        """

        def union(p):
            values = [prim.sdf(p) for prim in self.primitives]
            out = values[0]
            for value in values[1:]:
                out = out.minimum(value)
            return out

        return evaluate_points(union, points)

    def bounds(self) -> np.ndarray:
        """``(2, 3)`` lower and upper corners of the bounding box."""
        boxes = np.stack([prim.bounds() for prim in self.primitives])
        return np.stack([boxes[:, 0].min(0), boxes[:, 1].max(0)])

    def normalized(self, half_extent: float = NORMALIZED_HALF_EXTENT) -> Shape:
        """The shape centred on its bounding box, its longest half-extent scaled to ``half_extent``.

        Uniform scaling keeps the SDF exact (``sdf_s(p) = s sdf(p / s)``).
        """
        lo, hi = self.bounds()
        factor = half_extent / float((hi - lo).max() / 2.0)
        offset = -(lo + hi) / 2.0
        return Shape(self.family, tuple(prim.scaled(factor, offset) for prim in self.primitives))

    def sample_surface(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points uniform (by area) on the union's surface, ``(n, 3)`` float64.

        Samples each part's surface by area and rejects points inside another part; a face
        shared by two flush parts is kept for the first of them only (no double density).
        """
        if int(n) != n or n < 0:
            raise ValueError(f"number of surface points must be a non-negative integer, got {n!r}")
        areas = np.array([prim.surface_area() for prim in self.primitives])
        kept: list[np.ndarray] = [np.empty((0, 3))]
        count, rounds = 0, 0
        while count < n:
            rounds += 1
            if rounds > 1000:
                raise RuntimeError(f"could not sample {n} surface points of a {self.family} shape")
            draw = max(2 * (int(n) - count), 64)
            owner = rng.choice(len(self.primitives), size=draw, p=areas / areas.sum())
            points = np.empty((draw, 3))
            for index, prim in enumerate(self.primitives):
                rows = owner == index
                points[rows] = prim.sample_surface(int(rows.sum()), rng)
            accepted = points[self._on_union_surface(points, owner)]
            kept.append(accepted)
            count += accepted.shape[0]
        return np.concatenate(kept)[: int(n)]

    def _on_union_surface(self, points: np.ndarray, owner: np.ndarray) -> np.ndarray:
        keep = np.ones(points.shape[0], dtype=bool)
        for index, prim in enumerate(self.primitives):
            distance = prim.sdf(points)
            earlier = distance > _SURFACE_TOLERANCE  # flush faces belong to the earlier part
            later = distance >= -_SURFACE_TOLERANCE
            keep &= np.where(owner > index, earlier, np.where(owner < index, later, True))
        return keep

    def to_mesh(self, resolution: int = 128) -> trimesh.Trimesh:
        """Marching cubes of the analytic SDF on a ``resolution^3`` grid over ``[-1, 1]^3``.

        The mesh is watertight; its surface lies within about one grid step ``2/(resolution-1)``
        of the exact surface (box edges and corners are cut by up to that much).
        """
        return extract_mesh(sdf_grid(self.sdf, resolution))


# ------------------------------------------------------------------------------ families --
def _legs(x: float, z: float, top: float, half: float, round_legs: bool) -> list[Primitive]:
    """Four vertical legs at ``(+-x, +-z)`` from the floor up to height ``top``."""
    legs: list[Primitive] = []
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            center = (sx * x, top / 2.0, sz * z)
            if round_legs:
                legs.append(Cylinder(center, half, top / 2.0, axis=1))
            else:
                legs.append(Box(center, (half, top / 2.0, half)))
    return legs


def _table(rng: np.random.Generator) -> list[Primitive]:
    height = rng.uniform(0.5, 1.0)
    thickness = rng.uniform(0.04, 0.1)
    top_y = height - thickness / 2.0
    if rng.uniform() < 0.3:
        radius = rng.uniform(0.45, 0.9)
        parts: list[Primitive] = [
            Cylinder((0.0, top_y, 0.0), radius, thickness / 2.0, axis=1),
            Cylinder((0.0, top_y / 2.0, 0.0), rng.uniform(0.04, 0.1), top_y / 2.0, axis=1),
        ]
        foot = rng.uniform(0.3, 0.6) * radius
        base = rng.uniform(0.02, 0.05)
        if rng.uniform() < 0.5:
            parts.append(Cylinder((0.0, base, 0.0), foot, base, axis=1))
        else:
            width = rng.uniform(0.03, 0.06)
            parts.append(Box((0.0, base, 0.0), (foot, base, width)))
            parts.append(Box((0.0, base, 0.0), (width, base, foot)))
        return parts
    width, depth = rng.uniform(0.8, 1.8), rng.uniform(0.5, 1.2)
    leg = rng.uniform(0.025, 0.06)
    inset = rng.uniform(0.0, 0.12)
    x, z = width / 2.0 - leg - inset, depth / 2.0 - leg - inset
    parts = [Box((0.0, top_y, 0.0), (width / 2.0, thickness / 2.0, depth / 2.0))]
    parts += _legs(x, z, top_y, leg, round_legs=rng.uniform() < 0.5)
    if rng.uniform() < 0.35:
        shelf_y = rng.uniform(0.1, 0.4) * height
        parts.append(Box((0.0, shelf_y, 0.0), (x, rng.uniform(0.02, 0.04), z)))
    return parts


def _chair(rng: np.random.Generator) -> list[Primitive]:
    seat_top = rng.uniform(0.4, 0.6)
    thickness = rng.uniform(0.04, 0.1)
    width, depth = rng.uniform(0.45, 0.7), rng.uniform(0.45, 0.7)
    seat_mid = seat_top - thickness / 2.0
    leg = rng.uniform(0.02, 0.04)
    inset = rng.uniform(0.0, 0.05)
    x, z = width / 2.0 - leg - inset, depth / 2.0 - leg - inset
    parts: list[Primitive] = [Box((0.0, seat_mid, 0.0), (width / 2.0, thickness / 2.0, depth / 2.0))]
    parts += _legs(x, z, seat_mid, leg, round_legs=rng.uniform() < 0.4)
    back_top = seat_top + rng.uniform(0.35, 0.8)
    if rng.uniform() < 0.5:
        panel = rng.uniform(0.03, 0.07) / 2.0
        span = (back_top - seat_mid) / 2.0
        parts.append(Box((0.0, seat_mid + span, -depth / 2.0 + panel), (width / 2.0, span, panel)))
    else:
        span = (back_top - seat_mid) / 2.0
        for sx in (-1.0, 1.0):
            parts.append(Box((sx * x, seat_mid + span, -z), (leg, span, leg)))
        rail = rng.uniform(0.03, 0.08)
        rail_mid = back_top - rail
        parts.append(Box((0.0, rail_mid, -z), (x + leg, rail, leg)))
        slats = int(rng.integers(0, 4))
        slat = rng.uniform(0.02, 0.04)
        slat_span = (rail_mid - seat_mid) / 2.0
        for sx in np.linspace(-x, x, slats + 2)[1:-1]:
            parts.append(Box((float(sx), seat_mid + slat_span, -z), (slat, slat_span, 0.6 * leg)))
    if rng.uniform() < 0.3:
        arm_y = seat_top + rng.uniform(0.15, 0.3)
        arm = rng.uniform(0.02, 0.04)
        support = (arm_y - seat_mid) / 2.0
        for sx in (-1.0, 1.0):
            parts.append(Box((sx * x, arm_y, 0.0), (1.2 * leg, arm, z + leg)))
            parts.append(Box((sx * x, seat_mid + support, z), (leg, support, leg)))
    return parts


def _stool(rng: np.random.Generator) -> list[Primitive]:
    height = rng.uniform(0.45, 0.8)
    radius = rng.uniform(0.15, 0.3)
    thickness = rng.uniform(0.04, 0.08)
    seat_mid = height - thickness / 2.0
    leg = rng.uniform(0.02, 0.035)
    if rng.uniform() < 0.5:
        parts: list[Primitive] = [Cylinder((0.0, seat_mid, 0.0), radius, thickness / 2.0, axis=1)]
    else:
        parts = [Box((0.0, seat_mid, 0.0), (radius, thickness / 2.0, radius))]
    ring = rng.uniform(0.5, 0.7) * radius
    if rng.uniform() < 0.5:
        phase = rng.uniform(0.0, 2.0 * np.pi)
        for angle in phase + 2.0 * np.pi * np.arange(3) / 3.0:
            center = (ring * float(np.cos(angle)), seat_mid / 2.0, ring * float(np.sin(angle)))
            parts.append(Cylinder(center, leg, seat_mid / 2.0, axis=1))
        return parts
    corner = ring / np.sqrt(2.0)
    parts += _legs(corner, corner, seat_mid, leg, round_legs=True)
    if rng.uniform() < 0.5:
        rung_y = rng.uniform(0.2, 0.45) * height
        rung = 0.7 * leg
        for s in (-1.0, 1.0):
            parts.append(Box((0.0, rung_y, s * corner), (corner, rung, rung)))
            parts.append(Box((s * corner, rung_y, 0.0), (rung, rung, corner)))
    return parts


def _shelf(rng: np.random.Generator) -> list[Primitive]:
    width, height, depth = rng.uniform(0.6, 1.4), rng.uniform(0.8, 2.0), rng.uniform(0.25, 0.5)
    panel = rng.uniform(0.03, 0.06) / 2.0
    side_x = width / 2.0 - panel
    parts: list[Primitive] = [
        Box((s * side_x, height / 2.0, 0.0), (panel, height / 2.0, depth / 2.0)) for s in (-1.0, 1.0)
    ]
    for board_y in np.linspace(panel, height - panel, int(rng.integers(2, 7))):
        parts.append(Box((0.0, float(board_y), 0.0), (side_x, panel, depth / 2.0)))
    if rng.uniform() < 0.5:
        parts.append(Box((0.0, height / 2.0, -depth / 2.0 + panel), (side_x, height / 2.0, panel)))
    return parts


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Primitive]]] = {
    "table": _table,
    "chair": _chair,
    "stool": _stool,
    "shelf": _shelf,
}
#: The family names :func:`random_shape` accepts.
FAMILIES = (*_BUILDERS, "mixed")


def random_shape(family: str, rng: np.random.Generator) -> Shape:
    """A random normalised shape of ``family`` (one of :data:`FAMILIES`), drawn from ``rng``.

    The same generator state gives the same shape.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown shape family {family!r}; choose one of {FAMILIES}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if family == "mixed":
        family = str(rng.choice(list(_BUILDERS)))
    return Shape(family, tuple(_BUILDERS[family](rng))).normalized()
