"""Measures of HALCON's evaluate_dl_model on hand-made confusion matrices and random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from segcore.common.constants import IGNORE_INDEX
from segcore.data.samples import label_to_index
from segcore.evaluate.metrics import (
    ALL_MEASURES,
    INVALID,
    ConfusionMatrix,
    compute_measures,
    confusion_matrix_np,
    resolve_measures,
)

# Rows predicted, columns ground truth. Class 2 has no ground-truth pixels (invalid) but is
# predicted twice.
HAND = np.array(
    [
        [50, 5, 1],
        [10, 30, 0],
        [2, 0, 0],
    ]
)


def test_orientation_rows_predicted_columns_truth() -> None:
    pred = np.array([1, 1, 0])
    truth = np.array([0, 0, 0])
    m = confusion_matrix_np(pred, truth, 3)
    assert m[1, 0] == 2 and m[0, 0] == 1
    assert m.sum(axis=0)[0] == 3  # column 0 = all ground-truth pixels of class 0


def test_hand_made_matrix_all_measures() -> None:
    r = compute_measures(HAND, ["all"])
    assert list(r) == list(ALL_MEASURES)
    # GT = column sums = [62, 35, 1]; class 2 IS valid here (one gt pixel, 0 TP)
    assert r["pixel_accuracy"] == pytest.approx(80 / 98)
    assert r["class_pixel_accuracy"] == pytest.approx([50 / 62, 30 / 35, 0.0])
    # IoU = TP / (GT + FP); FP = row sum - TP = [6, 10, 2]
    assert r["class_iou"] == pytest.approx([50 / 68, 30 / 45, 0.0])
    assert r["mean_iou"] == pytest.approx((50 / 68 + 30 / 45 + 0) / 3)
    assert r["mean_accuracy"] == pytest.approx((50 / 62 + 30 / 35) / 3)
    fw = (62 / 98) * (50 / 68) + (35 / 98) * (30 / 45)
    assert r["frequency_weighted_iou"] == pytest.approx(fw)
    assert r["pixel_confusion_matrix"] == HAND.tolist()


def test_absent_class_is_minus_one_and_left_out_of_means() -> None:
    m = HAND.copy()
    m[:, 2] = 0  # class 2 has no ground truth, but is predicted 0 times now too
    m[2, 0] = 7  # ... and predicted 7 times where truth is class 0
    r = compute_measures(m, ["class_iou", "class_pixel_accuracy", "mean_iou", "mean_accuracy"])
    assert r["class_iou"][2] == INVALID
    assert r["class_pixel_accuracy"][2] == INVALID
    iou0 = 50 / (67 + 5)  # GT_0 = 67, FP_0 = 5
    iou1 = 30 / (35 + 10)
    assert r["class_iou"][:2] == pytest.approx([iou0, iou1])
    assert r["mean_iou"] == pytest.approx((iou0 + iou1) / 2)
    assert r["mean_accuracy"] == pytest.approx((50 / 67 + 30 / 35) / 2)


def test_empty_matrix() -> None:
    r = compute_measures(np.zeros((3, 3), dtype=np.int64), ["all"])
    assert r["class_iou"] == [INVALID] * 3
    assert r["mean_iou"] == 0.0 and r["pixel_accuracy"] == 0.0


def test_ignore_ids_are_removed_before_counting() -> None:
    class_ids = [0, 1, 2]
    label = np.array([[0, 1, 2, 9], [2, 2, 1, 0]], dtype=np.uint16)  # 9: unknown value
    target = label_to_index(label, class_ids, ignore_class_ids=[2])
    assert (target == IGNORE_INDEX).sum() == 4
    pred = np.array([[0, 0, 1, 1], [1, 1, 1, 0]])
    m = confusion_matrix_np(pred, target, 3)
    assert m.sum() == 4  # only the 4 pixels of classes 0 and 1 are counted
    assert m.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    r = compute_measures(m, ["class_iou"])
    assert r["class_iou"][2] == INVALID


def test_unknown_measure_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="mean_iou"):
        resolve_measures(["mean_iu"])
    assert resolve_measures(["mean_iou", "all"])[0] == "mean_iou"
    assert len(resolve_measures(["all", "mean_iou"])) == len(ALL_MEASURES)


def test_accumulated_over_batches_equals_one_matrix() -> None:
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, (6, 9, 11))
    target = rng.integers(0, 4, (6, 9, 11))
    target[0, :3] = IGNORE_INDEX
    cm = ConfusionMatrix(4)
    for i in range(0, 6, 4):  # batches of 4 and 2
        cm.update(torch.from_numpy(pred[i : i + 4]), torch.from_numpy(target[i : i + 4]))
    whole = confusion_matrix_np(pred, target, 4)
    np.testing.assert_array_equal(cm.numpy(), whole)
    # One matrix is not the same as averaging per-batch IoU.
    per_batch = [
        compute_measures(confusion_matrix_np(pred[s], target[s], 4), ["mean_iou"])["mean_iou"]
        for s in (slice(0, 4), slice(4, 6))
    ]
    assert cm.compute(["mean_iou"])["mean_iou"] != pytest.approx(np.mean(per_batch), abs=1e-9)


def _sklearn_reference(pred: np.ndarray, truth: np.ndarray, k: int) -> dict[str, object]:
    keep = truth != IGNORE_INDEX
    y_true, y_pred = truth[keep], pred[keep]
    labels = list(range(k))
    present = sorted(set(y_true.tolist()))
    iou = skm.jaccard_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    rec = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).T,
        "pixel_accuracy": skm.accuracy_score(y_true, y_pred),
        "class_iou": [iou[c] if c in present else INVALID for c in labels],
        "class_pixel_accuracy": [rec[c] if c in present else INVALID for c in labels],
        "mean_iou": skm.jaccard_score(y_true, y_pred, labels=present, average="macro"),
        "mean_accuracy": skm.recall_score(y_true, y_pred, labels=present, average="macro"),
        "frequency_weighted_iou": skm.jaccard_score(
            y_true, y_pred, labels=labels, average="weighted", zero_division=0
        ),
    }


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
    absent=st.booleans(),
    ignore_share=st.floats(0.0, 0.5),
)
def test_agrees_with_scikit_learn(k: int, seed: int, absent: bool, ignore_share: float) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, 400)
    pred = np.where(rng.random(400) < 0.6, truth, rng.integers(0, k, 400))
    if absent:
        truth[truth == k - 1] = 0  # class k-1 has no ground truth (but may be predicted)
    truth[rng.random(400) < ignore_share] = IGNORE_INDEX
    if (truth != IGNORE_INDEX).sum() == 0:
        truth[0] = 0
    ref = _sklearn_reference(pred, truth, k)
    m = confusion_matrix_np(pred, truth, k)
    np.testing.assert_array_equal(m, ref["matrix"])
    r = compute_measures(m, ["all"])
    for name in ("pixel_accuracy", "mean_iou", "mean_accuracy", "frequency_weighted_iou"):
        assert r[name] == pytest.approx(ref[name], abs=1e-12), name
    for name in ("class_iou", "class_pixel_accuracy"):
        assert r[name] == pytest.approx(ref[name], abs=1e-12), name
