"""One Dice with a named empty-reference rule, and ``ScoreTable``, the one accumulator of per-case scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segkit.metrics.overlap import dice, dice_from_counts, foreground_mean, iou_from_counts, summarize
from segkit.metrics.scores import ScoreTable


def test_an_empty_reference_is_nan_by_default_and_one_or_zero_under_the_one_rule() -> None:
    assert math.isnan(dice_from_counts(0, 0, 0)) and math.isnan(dice_from_counts(0, 5, 0))  # evaluate's rule
    assert dice_from_counts(0, 0, 0, empty="one") == 1.0  # both empty: a perfect (empty) prediction
    assert dice_from_counts(0, 5, 0, empty="one") == 0.0  # false positives only
    assert iou_from_counts(0, 0, 0, empty="one") == 1.0 and math.isnan(iou_from_counts(0, 3, 0))
    # a reference that is present scores the same under both rules
    assert dice_from_counts(3, 1, 2) == dice_from_counts(3, 1, 2, empty="one") == 6 / 9
    assert dice_from_counts(0, 0, 4) == dice_from_counts(0, 0, 4, empty="one") == 0.0


def test_an_unknown_rule_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="empty must be one of \\('nan', 'one'\\), got 'zero'"):
        dice_from_counts(0, 1, 0, empty="zero")  # type: ignore[arg-type]


def test_mask_dice_takes_the_rule_too() -> None:
    empty, stray = np.zeros((4, 4), bool), np.eye(4, dtype=bool)
    assert math.isnan(dice(stray, empty)) and dice(stray, empty, empty="one") == 0.0
    assert dice(empty, empty, empty="one") == 1.0


def test_score_table_reduces_finite_values_and_counts_the_rest() -> None:
    t = ScoreTable(["a", "b"])
    t.add("c1", "a", {"dice": 0.8, "hd95_mm": 2.0})
    t.add("c1", "b", {"dice": math.nan, "hd95_mm": None})  # empty reference; no distance computed
    t.add("c2", "a", {"dice": 0.6, "hd95_mm": math.inf})  # a missed structure
    t.add("c2", "b", {"dice": 0.5, "hd95_mm": 4.0})
    assert t.values("hd95_mm", "b") == [4.0]  # None is left out, as evaluate does
    assert t.summary("dice", "a") == summarize([0.8, 0.6]) and t.mean("dice", "a") == pytest.approx(0.7)
    assert t.summary("dice", "b")["n_nan"] == 1 and t.mean("dice", "b") == 0.5
    assert t.cases() == ["c1", "c2"]
    # per case: the foreground mean over the classes with a finite value
    assert t.case_means("dice") == [0.8, foreground_mean([0.6, 0.5])]
    assert t.count_infinite("hd95_mm") == 1 and t.mean("hd95_mm", "a") == 2.0
    assert t.mean("nsd", "a") is None  # never recorded


def test_report_rows_are_added_by_their_class_key() -> None:
    rows = [{"case_id": "c1", "class_id": 1, "class_name": "a", "dice": 0.5},
            {"case_id": "c2", "class_id": 1, "class_name": "a", "dice": 0.25}]
    by_id, by_name = ScoreTable([1]), ScoreTable(["a"])
    by_id.extend(rows, ("dice",), key="class_id")
    by_name.extend(rows, ("dice",))
    assert by_id.values("dice", 1) == by_name.values("dice", "a") == [0.5, 0.25]
