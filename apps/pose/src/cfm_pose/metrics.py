"""Joint-prediction metrics: variable skeletons (RigNet / PDT) and fixed skeletons (SMPL, SMPL-X).

Variable skeletons, predicted joints ``P (p, 3)`` against ground truth ``G (g, 3)``, in the units of
the normalised shapes (RigNet and PDT report CD-J2J x 100 as a percentage):

* **CD-J2J** ``= 0.5 (mean_p min_g |p - g| + mean_g min_p |g - p|)``, Euclidean, not squared.
* Each GT joint ``g`` has a tolerance ``tau_g`` (RigNet: the local shape radius around the joint;
  procedural characters: :func:`cfm_pose.procedural.joint_tolerances`; meshes:
  :func:`cfm_pose.tolerance.local_shape_radius`).
* **IoU** ``= 2 |{(p, g) in M : |p - g| < tau_g}| / (|P| + |G|)``, where ``M`` is the minimum-cost
  one-to-one (Hungarian) matching of the Euclidean distance matrix (``min(|P|, |G|)`` pairs).
* **Precision** ``= |{p : |p - g(p)| < tau_g(p)}| / |P|`` with ``g(p)`` the GT joint nearest to
  ``p``: the share of predicted joints that land on some GT joint.
* **Recall** ``= |{g : |g - p(g)| < tau_g}| / |G|`` with ``p(g)`` the predicted joint nearest to
  ``g``: the share of GT joints that some predicted joint finds.

These definitions are those of the evaluation script that reuses RigNet's functions (see
``applications-digest.md`` section 1); precision and recall use nearest neighbours, not the
one-to-one matching, so two predictions on one GT joint both count as precise but only one counts
for IoU.
An empty prediction scores IoU, precision and recall 0 and CD-J2J ``inf``.

Fixed skeletons, ``(B, J, 3)`` in one joint order:

* **MPJPE**: the mean over samples and joints of ``|p_j - g_j|``.
* **Bone-length error**: the mean over samples and bones ``(parent(j), j)`` of
  ``| |p_j - p_parent(j)| - |g_j - g_parent(j)| |``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from cfm_pose.skeleton import check_parents


def _joint_set(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array, np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{what} joints must have shape (K, 3), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} joints contain NaN or inf")
    return array


def _distances(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return np.linalg.norm(pred[:, None] - gt[None], axis=-1)


def cd_j2j(pred: np.ndarray, gt: np.ndarray) -> float:
    """Symmetric joint-to-joint Chamfer distance (module doc)."""
    pred, gt = _joint_set(pred, "predicted"), _joint_set(gt, "ground-truth")
    if len(gt) == 0:
        raise ValueError("ground truth has no joints")
    if len(pred) == 0:
        return float("inf")
    dist = _distances(pred, gt)
    return float(0.5 * (dist.min(axis=1).mean() + dist.min(axis=0).mean()))


@dataclass(frozen=True)
class JointScores:
    """IoU, precision and recall of one predicted joint set (module doc)."""

    iou: float
    precision: float
    recall: float


def joint_iou_precision_recall(pred: np.ndarray, gt: np.ndarray, tolerance: np.ndarray) -> JointScores:
    """IoU (Hungarian matching), precision and recall (nearest neighbours) within per-GT-joint
    tolerances ``tolerance (G,)`` (module doc)."""
    pred, gt = _joint_set(pred, "predicted"), _joint_set(gt, "ground-truth")
    tolerance = np.asarray(tolerance, np.float64)
    if len(gt) == 0:
        raise ValueError("ground truth has no joints")
    if tolerance.shape != (len(gt),):
        raise ValueError(f"tolerance must have shape ({len(gt)},), got {tolerance.shape}")
    if len(pred) == 0:
        return JointScores(0.0, 0.0, 0.0)
    dist = _distances(pred, gt)
    rows, cols = linear_sum_assignment(dist)
    matched = np.count_nonzero(dist[rows, cols] < tolerance[cols])
    nearest_gt = dist.argmin(axis=1)
    precise = dist[np.arange(len(pred)), nearest_gt] < tolerance[nearest_gt]
    found = dist.min(axis=0) < tolerance
    return JointScores(
        iou=2.0 * float(matched) / (len(pred) + len(gt)), precision=float(precise.mean()), recall=float(found.mean())
    )


def _pose_batch(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array, np.float64)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{what} joints must have shape (B, J, 3), got {array.shape}")
    return array


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint position error of ``(B, J, 3)`` arrays (module doc)."""
    pred, gt = _pose_batch(pred, "predicted"), _pose_batch(gt, "ground-truth")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    return float(np.linalg.norm(pred - gt, axis=-1).mean())


def bone_length_error(pred: np.ndarray, gt: np.ndarray, parents: np.ndarray) -> float:
    """Mean absolute bone-length difference of ``(B, J, 3)`` arrays (module doc)."""
    pred, gt = _pose_batch(pred, "predicted"), _pose_batch(gt, "ground-truth")
    parents = np.asarray(parents)
    if pred.shape != gt.shape or parents.shape != (pred.shape[1],):
        raise ValueError(f"shapes do not fit: pred {pred.shape}, gt {gt.shape}, parents {parents.shape}")
    check_parents(parents)
    children = np.flatnonzero(parents >= 0)
    if len(children) == 0:
        raise ValueError("a skeleton with one joint has no bones")

    def lengths(joints: np.ndarray) -> np.ndarray:
        return np.linalg.norm(joints[:, children] - joints[:, parents[children]], axis=-1)

    return float(np.abs(lengths(pred) - lengths(gt)).mean())
