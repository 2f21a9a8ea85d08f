"""Overlap metrics against hand-computed values (nnU-Net / MONAI empty-reference conventions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segkit.metrics.overlap import (
    Counts,
    class_counts,
    confusion_matrix,
    dice,
    dice_coef_multiclass,
    dice_from_counts,
    foreground_mean,
    iou,
    one_hot,
    overlap_metrics,
    summarize,
)


def test_counts_and_dice_iou_hand_computed() -> None:
    # ref class 1: 4 voxels; pred class 1: 3 voxels, 2 of them inside -> TP 2, FP 1, FN 2
    ref = np.zeros((2, 3, 4), np.uint8)
    ref[0, 0, :4] = 1
    pred = np.zeros_like(ref)
    pred[0, 0, 2:4] = 1
    pred[1, 2, 3] = 1
    # class 2: ref 2 voxels, pred identical -> Dice 1
    ref[1, 1, :2] = 2
    pred[1, 1, :2] = 2
    c = class_counts(pred, ref, (1, 2))
    assert c[1] == Counts(tp=2, fp=1, fn=2, tn=24 - 5)
    m = overlap_metrics(pred, ref, (1, 2), voxel_volume_mm3=2.5)
    assert m[1]["dice"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))  # 4/7
    assert m[1]["iou"] == pytest.approx(2 / 5)
    assert m[1]["fp_volume_mm3"] == pytest.approx(2.5)
    assert m[2]["dice"] == 1.0 and m[2]["iou"] == 1.0


def test_empty_reference_rules() -> None:
    empty = np.zeros((4, 4), bool)
    some = empty.copy()
    some[1, 1] = True
    assert math.isnan(dice(empty, empty)) and math.isnan(iou(empty, empty))  # both empty -> NaN
    assert math.isnan(dice(some, empty))  # reference empty, prediction not -> NaN ...
    m = overlap_metrics(some.astype(np.uint8), empty.astype(np.uint8), (1,), voxel_volume_mm3=3.0)
    assert m[1]["fp"] == 1 and m[1]["fp_volume_mm3"] == 3.0  # ... but the FP volume is reported
    assert dice(empty, some) == 0.0 and iou(empty, some) == 0.0  # reference present, prediction empty -> 0
    assert dice_from_counts(0, 5, 0) != dice_from_counts(0, 5, 0)  # NaN


def test_background_never_counted() -> None:
    ref = np.array([[0, 0, 1]])
    pred = np.array([[0, 1, 1]])
    assert set(overlap_metrics(pred, ref, (1,))) == {1}


def test_summarize_excludes_nan_counts_inf() -> None:
    s = summarize([1.0, 0.5, math.nan, math.inf, 0.0])
    assert s["mean"] == pytest.approx(0.5) and s["median"] == pytest.approx(0.5)
    assert s["std"] == pytest.approx(np.std([1.0, 0.5, 0.0]))
    assert (s["n"], s["n_nan"], s["n_inf"]) == (3, 1, 1)
    assert summarize([math.nan])["mean"] is None
    assert foreground_mean([0.8, None, 0.6]) == pytest.approx(0.7)


def test_confusion_matrix() -> None:
    ref = np.array([0, 0, 1, 2, 2])
    pred = np.array([0, 1, 1, 2, 0])
    np.testing.assert_array_equal(confusion_matrix(pred, ref, 3), [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_seed_dice_coef_multiclass_includes_background() -> None:
    # 10 pixels, 1 foreground pixel; an all-background prediction:
    # sum(t*p) = 9 (background), sum(t) = 10, sum(p) = 10 -> (2*9 + 1) / (20 + 1) = 19/21
    ref = np.zeros(10, np.uint8)
    ref[0] = 1
    pred = np.zeros(10, np.uint8)
    assert dice_coef_multiclass(one_hot(ref, 2), one_hot(pred, 2)) == pytest.approx(19 / 21)
    assert dice(pred == 1, ref == 1) == 0.0  # while the foreground Dice is 0
    # soft probabilities: p = 0.5 everywhere -> sum(t*p) = 5, sum(t) = 10, sum(p) = 10 -> 11/21
    probs = np.full((10, 2), 0.5)
    assert dice_coef_multiclass(one_hot(ref, 2), probs) == pytest.approx(11 / 21)
