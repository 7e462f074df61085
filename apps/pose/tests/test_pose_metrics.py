"""Joint metrics against hand-computed values."""

import math

import numpy as np
import pytest
from cfm_pose.encoding import JointLayout
from cfm_pose.metrics import bone_length_error, cd_j2j, joint_iou_precision_recall, mpjpe
from cfm_pose.scoring import score_predictions
from cfm_pose.skeleton import Skeleton
from cfm_pose.sources import ShapeBatch

GT = np.array([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]])
TOLERANCE = np.array([0.2, 0.2, 0.5])
PRED = np.array([[0.1, 0, 0], [0, 2.6, 0]])


def test_cd_j2j_by_hand():
    pred_to_gt = (0.1 + 0.6) / 2
    gt_to_pred = (0.1 + 0.9 + 0.6) / 3
    assert cd_j2j(PRED, GT) == pytest.approx(0.5 * (pred_to_gt + gt_to_pred))
    assert cd_j2j(GT, GT) == 0.0
    assert cd_j2j(np.zeros((0, 3)), GT) == math.inf


def test_iou_precision_recall_by_hand():
    scores = joint_iou_precision_recall(PRED, GT, TOLERANCE)
    # Hungarian pairs: (p0, g0) at 0.1 < 0.2 counts, (p1, g2) at 0.6 >= 0.5 does not
    assert scores.iou == pytest.approx(2 * 1 / 5)
    assert scores.precision == pytest.approx(1 / 2)
    assert scores.recall == pytest.approx(1 / 3)
    looser = joint_iou_precision_recall(PRED, GT, np.array([0.2, 0.2, 0.7]))
    assert (looser.iou, looser.precision, looser.recall) == pytest.approx((0.8, 1.0, 2 / 3))


def test_duplicates_count_for_precision_but_once_for_iou():
    pred = np.array([[0.05, 0, 0], [-0.05, 0, 0]])
    scores = joint_iou_precision_recall(pred, GT[:2], TOLERANCE[:2])
    assert (scores.iou, scores.precision, scores.recall) == pytest.approx((0.5, 1.0, 0.5))
    empty = joint_iou_precision_recall(np.zeros((0, 3)), GT, TOLERANCE)
    assert (empty.iou, empty.precision, empty.recall) == (0.0, 0.0, 0.0)


def test_one_prediction_matches_at_most_one_joint_for_iou():
    # a single prediction between two GT joints is within both tolerances: it finds both (recall
    # 1) but the one-to-one matching pairs it with one of them only
    gt = np.array([[0.0, 0, 0], [0.1, 0, 0]])
    scores = joint_iou_precision_recall(np.array([[0.05, 0, 0]]), gt, np.array([0.2, 0.2]))
    assert (scores.iou, scores.precision, scores.recall) == pytest.approx((2 / 3, 1.0, 1.0))


def test_hungarian_matching_is_optimal_not_greedy():
    gt = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    pred = np.array([[0.45, 0, 0], [-0.5, 0, 0]])
    # greedy nearest-first pairing takes (0.45, g0) and leaves (-0.5, g1) at 1.5; the minimum-cost
    # matching pairs (0.45, g1) at 0.55 and (-0.5, g0) at 0.5, both within 0.6
    scores = joint_iou_precision_recall(pred, gt, np.array([0.6, 0.6]))
    assert scores.iou == pytest.approx(1.0)
    scores = joint_iou_precision_recall(pred, gt, np.array([0.6, 0.5]))
    assert scores.iou == pytest.approx(0.5)


def test_mpjpe_and_bone_length_error_by_hand():
    gt = np.array([[[0.0, 0, 0], [1, 0, 0], [1, 1, 0]]] * 2)
    pred = gt.copy()
    pred[0, 1] += [3, 4, 0]
    assert mpjpe(pred, gt) == pytest.approx(5 / 6)
    pred = gt.copy()
    pred[0] = [[0, 0, 0], [2, 0, 0], [2, 0.5, 0]]
    parents = np.array([-1, 0, 1])
    assert bone_length_error(pred, gt, parents) == pytest.approx((1 + 0.5 + 0 + 0) / 4)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="tolerance"):
        joint_iou_precision_recall(PRED, GT, TOLERANCE[:2])
    with pytest.raises(ValueError, match="NaN"):
        cd_j2j(np.full((1, 3), np.nan), GT)
    with pytest.raises(ValueError, match="differs"):
        mpjpe(np.zeros((1, 2, 3)), np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="cycle"):
        bone_length_error(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)), np.array([-1, 2, 1]))


def test_batch_scores_average_over_shapes_by_hand():
    """Two shapes: CD-J2J averages over shapes with joints, IoU / P / R count an empty one as 0."""
    skeletons = (Skeleton(GT, np.array([-1, 0, 0])), Skeleton(GT[:2], np.array([-1, 0])))
    shapes = ShapeBatch(np.zeros((2, 4, 3)), skeletons, (TOLERANCE, TOLERANCE[:2]), ("a", "b"))
    scores = score_predictions([PRED, np.zeros((0, 3))], shapes, layout=None)
    assert scores["cd_j2j"] == pytest.approx(cd_j2j(PRED, GT))
    assert (scores["empty"], scores["joints"], scores["gt_joints"]) == (1, 1.0, 2.5)
    assert (scores["iou"], scores["precision"], scores["recall"]) == pytest.approx((0.4 / 2, 0.5 / 2, (1 / 3) / 2))
    assert "mpjpe" not in scores


def test_fixed_layout_scores_by_hand():
    parents = np.array([-1, 0, 1])
    truth = np.array([[[0.0, 0, 0], [1, 0, 0], [1, 1, 0]], [[0.0, 0, 0], [0, 1, 0], [0, 2, 0]]])
    shapes = ShapeBatch(np.zeros((2, 4, 3)), tuple(Skeleton(t, parents) for t in truth), None, ("a", "b"))
    predicted = [truth[0] + [0.0, 0.3, 0.4], truth[1]]  # shape a shifted by 0.5, b exact
    scores = score_predictions(predicted, shapes, JointLayout(("r", "m", "e"), parents))
    assert scores["mpjpe"] == pytest.approx(0.5 * 3 / 6)
    assert scores["bone_length_error"] == pytest.approx(0.0, abs=1e-12)
    assert scores["cd_j2j"] == pytest.approx(0.5 * (cd_j2j(predicted[0], truth[0]) + 0.0))
    assert "iou" not in scores and scores["joints"] == 3.0
