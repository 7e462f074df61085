"""What the commands write: predicted skeletons as JSON / NPY, and pictures of them.

A fixed topology draws its bones ``(parent, child)``. A variable topology has no predicted
hierarchy (the model outputs joint positions only), so its joints are drawn connected by their
Euclidean **minimum spanning tree**: a drawing aid that follows the limbs well, not a predicted
rig; the JSON calls these edges ``"mst_edges"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cfm_core.io import write_atomically
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from scipy.sparse.csgraph import minimum_spanning_tree

from cfm_pose.encoding import JointLayout

POINT_COLOUR = (0.55, 0.65, 0.8)
JOINT_COLOUR = (0.85, 0.1, 0.1)
VIEWS = (("front (from +z)", (0, 1), False), ("side (from -x)", (2, 1), False), ("top (from +y)", (0, 2), True))
"""Orthographic views of the ``sample`` picture (y up): title, the (horizontal, vertical) data
axes, and whether the vertical one points down the page."""
_AXIS_NAMES = "xyz"


def mst_edges(joints: np.ndarray) -> np.ndarray:
    """``(K-1, 2)`` index pairs of the Euclidean minimum spanning tree of ``joints (K, 3)``."""
    if len(joints) < 2:
        return np.zeros((0, 2), np.int64)
    # scipy reads (near-)zero dense entries as "no edge"; adding 1 to every edge keeps coincident
    # joints connected and changes no tree's rank (every spanning tree has K - 1 edges)
    weights = np.linalg.norm(joints[:, None] - joints[None], axis=-1) + 1.0
    np.fill_diagonal(weights, 0.0)
    tree = minimum_spanning_tree(weights).tocoo()
    return np.stack([tree.row, tree.col], axis=1).astype(np.int64)


def skeleton_edges(joints: np.ndarray, layout: JointLayout | None) -> np.ndarray:
    """Bones ``(parent, child)`` of a fixed layout, else the joints' minimum spanning tree."""
    if layout is None:
        return mst_edges(joints)
    children = np.flatnonzero(layout.parents >= 0)
    return np.stack([layout.parents[children], children], axis=1)


@dataclass(frozen=True, eq=False)
class Prediction:
    """One shape's input points ``(N, 3)``, predicted joints ``(K, 3)`` and drawing edges."""

    points: np.ndarray
    joints: np.ndarray
    edges: np.ndarray


def _draw(
    ax: Axes, prediction: Prediction, axes: tuple[int, int], point_size: float, joint_size: float, outlined: bool
) -> None:
    """The points (blue) and, on top of them, the bones (red lines) and joints (red dots, with a
    white outline if ``outlined``) projected on the data axes ``axes`` (horizontal, vertical)."""
    p, axes = prediction, list(axes)
    ax.scatter(*p.points[:, axes].T, s=point_size, color=POINT_COLOUR, linewidths=0, rasterized=True)
    if len(p.edges):
        ax.add_collection(LineCollection(p.joints[p.edges][..., axes], colors=[JOINT_COLOUR], linewidths=1.2, zorder=3))
    ax.scatter(
        *p.joints[:, axes].T,
        s=joint_size,
        color=JOINT_COLOUR,
        edgecolors="white" if outlined else "face",
        linewidths=0.5,
        zorder=4,
    )


def save_prediction_png(prediction: Prediction, path: Path, title: str, dpi: int = 120) -> Path:
    """The input points (blue) with the predicted joints (red dots) and bones (red lines) in three
    orthographic views (:data:`VIEWS`), in the input's own coordinates and at one common scale."""
    p = prediction
    everything = np.concatenate([p.points, p.joints])
    centre = 0.5 * (everything.min(axis=0) + everything.max(axis=0))
    half = 0.55 * max(float(np.ptp(everything, axis=0).max()), 1e-9)
    fig = Figure(figsize=(4.0 * len(VIEWS), 4.6))
    for column, (name, axes, downward) in enumerate(VIEWS):
        ax = fig.add_subplot(1, len(VIEWS), column + 1)
        _draw(ax, p, axes, point_size=2.0, joint_size=16.0, outlined=True)
        horizontal, vertical = axes
        limits = (centre[vertical] - half, centre[vertical] + half)
        ax.set(
            xlim=(centre[horizontal] - half, centre[horizontal] + half),
            ylim=limits[::-1] if downward else limits,
            aspect="equal",
            xlabel=_AXIS_NAMES[horizontal],
            ylabel=_AXIS_NAMES[vertical],
            title=name,
        )
        ax.tick_params(labelsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return write_atomically(path, lambda file: fig.savefig(file, format="png", dpi=dpi))


def save_prediction_grid(rows: Mapping[str, Sequence[Prediction]], path: Path, title: str, dpi: int = 110) -> Path:
    """Front views (x right, y up) of several shapes (columns) under several predictors (rows,
    labelled on the left): input points in blue, joints and bones in red."""
    if not rows or not all(rows.values()):
        raise ValueError("a prediction grid needs at least one row with at least one shape")
    columns = max(len(r) for r in rows.values())
    fig = Figure(figsize=(2.0 * columns + 0.6, 2.2 * len(rows) + 0.5))
    for row, (label, predictions) in enumerate(rows.items()):
        for column, prediction in enumerate(predictions):
            ax = fig.add_subplot(len(rows), columns, row * columns + column + 1)
            _draw(ax, prediction, VIEWS[0][1], point_size=1.0, joint_size=5.0, outlined=False)
            ax.set(xlim=(-0.6, 0.6), ylim=(-0.05, 1.05), aspect="equal", xticks=[], yticks=[])
            if column == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return write_atomically(path, lambda file: fig.savefig(file, format="png", dpi=dpi))


def write_json(path: str | Path, data: Any) -> Path:
    """``data`` as indented JSON, written atomically."""
    text = json.dumps(data, indent=2).encode()
    return write_atomically(path, lambda file: file.write(text))


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """``array`` as ``.npy``, written atomically."""
    return write_atomically(path, lambda file: np.save(file, array))


def skeleton_record(joints: np.ndarray, layout: JointLayout | None) -> dict[str, Any]:
    """The JSON body of a predicted skeleton: positions, and names / parents or MST edges."""
    record: dict[str, Any] = {"num_joints": len(joints), "joints": joints.tolist()}
    if layout is not None:
        record["names"] = list(layout.names)
        record["parents"] = layout.parents.tolist()
    else:
        record["mst_edges"] = mst_edges(joints).tolist()
    return record
