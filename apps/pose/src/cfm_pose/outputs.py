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
from cfm_core.plotting import save_point_cloud_views
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from scipy.sparse.csgraph import minimum_spanning_tree

from cfm_pose.encoding import JointLayout

POINT_COLOUR = (0.55, 0.65, 0.8)
JOINT_COLOUR = (0.85, 0.1, 0.1)


def mst_edges(joints: np.ndarray) -> np.ndarray:
    """``(K-1, 2)`` index pairs of the Euclidean minimum spanning tree of ``joints (K, 3)``."""
    if len(joints) < 2:
        return np.zeros((0, 2), np.int64)
    distances = np.linalg.norm(joints[:, None] - joints[None], axis=-1)
    # coincident joints would read as "no edge": keep them connected by a tiny positive length
    tree = minimum_spanning_tree(np.maximum(distances, 1e-12)).tocoo()
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


def save_prediction_png(prediction: Prediction, path: Path, title: str) -> Path:
    """The input points (blue) with the predicted joints (red dots) and bones (red lines), from
    four viewpoints."""
    p = prediction
    colours = np.concatenate([np.tile(POINT_COLOUR, (len(p.points), 1)),
                              np.tile(JOINT_COLOUR, (len(p.joints), 1))])
    return save_point_cloud_views(np.concatenate([p.points, p.joints]), path, colors=colours,
                                  segments=p.joints[p.edges] if len(p.edges) else None,
                                  point_size=1.0, title=title)


def save_prediction_grid(rows: Mapping[str, Sequence[Prediction]], path: Path, title: str,
                         dpi: int = 110) -> Path:
    """Front views (x right, y up) of several shapes (columns) under several predictors (rows,
    labelled on the left): input points in blue, joints and bones in red."""
    if not rows or not all(rows.values()):
        raise ValueError("a prediction grid needs at least one row with at least one shape")
    columns = max(len(r) for r in rows.values())
    fig = Figure(figsize=(2.0 * columns + 0.6, 2.2 * len(rows) + 0.5))
    for row, (label, predictions) in enumerate(rows.items()):
        for column, prediction in enumerate(predictions):
            ax = fig.add_subplot(len(rows), columns, row * columns + column + 1)
            ax.scatter(prediction.points[:, 0], prediction.points[:, 1], s=1.0,
                       color=POINT_COLOUR, linewidths=0, rasterized=True)
            bones = prediction.joints[prediction.edges]
            if len(bones):
                ax.add_collection(LineCollection(bones[..., :2], colors=[JOINT_COLOUR],
                                                 linewidths=1.0))
            ax.scatter(prediction.joints[:, 0], prediction.joints[:, 1], s=4, color=JOINT_COLOUR)
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
