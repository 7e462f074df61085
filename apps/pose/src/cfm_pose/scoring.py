"""Scores of predicted joint sets against a batch of shapes (means over the shapes).

* Always: ``cd_j2j`` over the shapes with at least one predicted joint (``None`` if there is
  none), ``empty`` (shapes where
  nothing was predicted: no cluster gathered ``min_count`` points) and ``joints`` (mean predicted
  count) beside ``gt_joints``.
* Shapes with tolerances (variable topology): ``iou``, ``precision``, ``recall``, an empty
  prediction scoring 0.
* Fixed topology (a layout): ``mpjpe`` and ``bone_length_error``.

All distances are in the units of the unit-box shape frame (RigNet and PDT report CD-J2J x 100 as
a percentage).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cfm_pose.encoding import JointLayout
from cfm_pose.metrics import bone_length_error, cd_j2j, joint_iou_precision_recall, mpjpe
from cfm_pose.sources import ShapeBatch


def score_predictions(
    predicted: Sequence[np.ndarray], shapes: ShapeBatch, layout: JointLayout | None
) -> dict[str, float | None]:
    """The scores of ``predicted[b] (K_b, 3)`` against ``shapes.skeletons[b]`` (module doc)."""
    if len(predicted) != len(shapes):
        raise ValueError(f"{len(predicted)} predictions for {len(shapes)} shapes")
    truth = [s.joints for s in shapes.skeletons]
    found = [(p, g) for p, g in zip(predicted, truth, strict=True) if len(p)]
    scores = {
        "cd_j2j": float(np.mean([cd_j2j(p, g) for p, g in found])) if found else None,
        "empty": len(predicted) - len(found),
        "joints": float(np.mean([len(p) for p in predicted])),
        "gt_joints": float(np.mean([len(g) for g in truth])),
    }
    if shapes.tolerances is not None and layout is None:
        matched = [
            joint_iou_precision_recall(p, g, tau) for p, g, tau in zip(predicted, truth, shapes.tolerances, strict=True)
        ]
        for name in ("iou", "precision", "recall"):
            scores[name] = float(np.mean([getattr(m, name) for m in matched]))
    if layout is not None:
        pred, gt = np.stack(predicted), np.stack(truth)
        scores["mpjpe"] = mpjpe(pred, gt)
        scores["bone_length_error"] = bone_length_error(pred, gt, layout.parents)
    return scores
