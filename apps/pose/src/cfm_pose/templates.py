"""Skeleton templates of the procedural characters: biped, quadruped, tailed and four-armed bipeds.

A template lists joints in topological order (a parent comes before its children) with, per joint:
its rest offset from the parent (metres-like units, y up, the character faces +z, +x is its left),
the radius of the capsule around the bone that ends at the joint, and the standard deviation (in
radians) of the random rotation applied at the joint when a character is posed. Left/right joints
are named ``l_*`` / ``r_*`` so that a character can share random proportions between the sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cfm_pose.skeleton import check_parents


@dataclass(frozen=True)
class SkeletonTemplate:
    """A rest skeleton with per-bone capsule radii and per-joint pose spread (see module doc)."""

    name: str
    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    radii: np.ndarray
    pose_std: np.ndarray

    def __post_init__(self) -> None:
        check_parents(self.parents, self.names)
        if np.any(self.parents[1:] >= np.arange(1, len(self.parents))) or self.parents[0] != -1:
            raise ValueError(f"template {self.name!r}: joints must be in topological order")

    @property
    def num_joints(self) -> int:
        return len(self.names)


class _Builder:
    """Collects joints for a template; ``add`` returns the new joint's index."""

    def __init__(self, root: str, position: tuple[float, float, float], radius: float) -> None:
        self.rows: list[tuple[str, int, tuple[float, float, float], float, float]] = [(root, -1, position, radius, 0.0)]

    def add(
        self, name: str, parent: int, offset: tuple[float, float, float], radius: float, pose_std: float = 0.35
    ) -> int:
        self.rows.append((name, parent, offset, radius, pose_std))
        return len(self.rows) - 1

    def chain(
        self,
        names: list[str],
        parent: int,
        offsets: list[tuple[float, float, float]],
        radii: list[float],
        pose_std: float = 0.35,
    ) -> int:
        """Add joints one after the other; returns the index of the last."""
        for name, offset, radius in zip(names, offsets, radii, strict=True):
            parent = self.add(name, parent, offset, radius, pose_std)
        return parent

    def mirrored_chain(
        self,
        names: list[str],
        parent: int,
        offsets: list[tuple[float, float, float]],
        radii: list[float],
        pose_std: float = 0.35,
    ) -> None:
        """The chain on the left (``l_`` names, offsets as given) and on the right (x negated)."""
        for side, sign in (("l", 1.0), ("r", -1.0)):
            self.chain(
                [f"{side}_{n}" for n in names], parent, [(sign * x, y, z) for x, y, z in offsets], radii, pose_std
            )

    def build(self, name: str) -> SkeletonTemplate:
        names, parents, offsets, radii, stds = zip(*self.rows, strict=True)
        return SkeletonTemplate(
            name,
            tuple(names),
            np.array(parents),
            np.array(offsets, float),
            np.array(radii, float),
            np.array(stds, float),
        )

    def index(self, name: str) -> int:
        return [row[0] for row in self.rows].index(name)


def _biped_trunk() -> _Builder:
    """Hips, spine, head, two arms and two legs of a humanoid in a T-pose."""
    b = _Builder("hips", (0.0, 1.0, 0.0), 0.12)
    chest = b.chain(["spine", "chest"], 0, [(0, 0.2, 0), (0, 0.25, 0)], [0.13, 0.15], 0.15)
    b.chain(["neck", "head", "head_top"], chest, [(0, 0.2, 0), (0, 0.1, 0), (0, 0.22, 0)], [0.06, 0.06, 0.11], 0.25)
    b.mirrored_chain(
        ["shoulder", "elbow", "wrist", "hand"],
        chest,
        [(0.18, 0.1, 0), (0.28, 0, 0), (0.25, 0, 0), (0.12, 0, 0)],
        [0.07, 0.05, 0.04, 0.035],
        0.5,
    )
    b.mirrored_chain(
        ["upleg", "knee", "ankle", "toe"],
        0,
        [(0.1, -0.05, 0), (0, -0.42, 0), (0, -0.42, 0), (0, -0.05, 0.15)],
        [0.09, 0.07, 0.05, 0.04],
        0.3,
    )
    return b


def biped() -> SkeletonTemplate:
    """A humanoid: 22 joints."""
    return _biped_trunk().build("biped")


def tailed_biped() -> SkeletonTemplate:
    """A humanoid with a five-joint tail from the hips: 27 joints."""
    b = _biped_trunk()
    b.chain(
        [f"tail_{k}" for k in range(1, 6)],
        0,
        [(0, -0.05, -0.18)] + [(0, 0, -0.18)] * 4,
        [0.07, 0.06, 0.05, 0.04, 0.03],
        0.3,
    )
    return b.build("tailed_biped")


def four_armed_biped() -> SkeletonTemplate:
    """A humanoid with a second, lower pair of arms on the spine: 30 joints."""
    b = _biped_trunk()
    b.mirrored_chain(
        ["shoulder2", "elbow2", "wrist2", "hand2"],
        b.index("spine"),
        [(0.16, 0.05, 0), (0.24, 0, 0), (0.22, 0, 0), (0.1, 0, 0)],
        [0.06, 0.045, 0.035, 0.03],
        0.5,
    )
    return b.build("four_armed_biped")


def quadruped() -> SkeletonTemplate:
    """A four-legged animal with a neck, head and three-joint tail: 25 joints."""
    b = _Builder("pelvis", (0.0, 0.6, -0.3), 0.13)
    chest = b.chain(["spine", "chest"], 0, [(0, 0.02, 0.3), (0, 0.02, 0.3)], [0.14, 0.15], 0.12)
    b.chain(
        ["neck", "head", "snout"], chest, [(0, 0.16, 0.15), (0, 0.05, 0.1), (0, -0.05, 0.2)], [0.07, 0.07, 0.07], 0.3
    )
    leg = [(0.12, -0.05, 0), (0, -0.25, 0), (0, -0.25, 0), (0, -0.05, 0.06)]
    radii = [0.06, 0.05, 0.04, 0.035]
    b.mirrored_chain(["front_shoulder", "front_elbow", "front_wrist", "front_paw"], chest, leg, radii, 0.3)
    b.mirrored_chain(["hind_hip", "hind_knee", "hind_ankle", "hind_paw"], 0, leg, radii, 0.3)
    b.chain(
        ["tail_1", "tail_2", "tail_3"], 0, [(0, 0.05, -0.15), (0, 0, -0.15), (0, 0, -0.15)], [0.04, 0.03, 0.025], 0.4
    )
    return b.build("quadruped")


TEMPLATES: dict[str, Callable[[], SkeletonTemplate]] = {
    "biped": biped,
    "quadruped": quadruped,
    "tailed_biped": tailed_biped,
    "four_armed_biped": four_armed_biped,
}


def get_template(name: str) -> SkeletonTemplate:
    """The template called ``name`` (one of :data:`TEMPLATES`)."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown skeleton template {name!r}; choose from {sorted(TEMPLATES)}")
    return TEMPLATES[name]()
