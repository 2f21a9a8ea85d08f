"""Training metrics equal hand-computed values; the seed's metric is shown to be background-inflated."""

from __future__ import annotations

import copy
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from segkit.config import validate_config
from segkit.metrics.training import (
    ForegroundDice,
    SeedDiceCoefMulticlass,
    get_metrics,
    metric_name,
)

EYE3 = np.eye(3, dtype=np.float32)


def onehot(labels: list[list[list[int]]]) -> np.ndarray:
    return EYE3[np.array(labels)]


# Two batches of 1x2x2, 3 classes.
#   batch 1: truth [[0, 1], [1, 2]]  pred [[0, 1], [0, 2]] -> class 1: TP 1 FN 1;  class 2: TP 1
#   batch 2: truth [[0, 0], [0, 1]]  pred [[1, 0], [0, 1]] -> class 1: TP 1 FP 1;  class 2: absent
#   epoch:   class 1: TP 2 FP 1 FN 1 -> 4/6;  class 2: TP 1 -> 1;  fg_dice = (2/3 + 1) / 2 = 5/6
#   (a mean of per-batch fg Dice would give (5/6 + 2/3) / 2 = 3/4: the metric accumulates counts instead)
BATCHES = [
    (onehot([[[0, 1], [1, 2]]]), onehot([[[0, 1], [0, 2]]]) * 0.9 + 0.05),  # soft probabilities, same argmax
    (onehot([[[0, 0], [0, 1]]]), onehot([[[1, 0], [0, 1]]])),
]


def run(metric: keras.metrics.Metric, batches: list[tuple[np.ndarray, np.ndarray]] = BATCHES) -> float:
    for t, p in batches:
        metric.update_state(t, p)
    return float(metric.result())


def test_fg_dice_accumulates_counts_over_the_epoch() -> None:
    assert run(ForegroundDice(3)) == pytest.approx(5 / 6)
    assert run(ForegroundDice(3, class_index=1)) == pytest.approx(4 / 6)
    assert run(ForegroundDice(3, class_index=2)) == pytest.approx(1.0)


def test_class_absent_from_truth_and_prediction_is_nan_and_left_out_of_the_mean() -> None:
    # only batch 2: class 1 TP 1 FP 1 -> 2/3; class 2 absent from both -> NaN, excluded
    assert run(ForegroundDice(3), BATCHES[1:]) == pytest.approx(2 / 3)
    assert np.isnan(run(ForegroundDice(3, class_index=2), BATCHES[1:]))
    # nothing but background anywhere: fg_dice is 0 (finite for monitors)
    bg = onehot([[[0, 0], [0, 0]]])
    assert run(ForegroundDice(3), [(bg, bg)]) == 0.0


def test_reset_state_starts_a_new_epoch() -> None:
    m = ForegroundDice(3)
    run(m)
    m.reset_state()
    assert run(m, BATCHES[1:]) == pytest.approx(2 / 3)


def test_seed_dice_coef_multiclass_hand_value() -> None:
    # 1x1x2, 2 classes: truth [bg, fg], probs [[0.8, 0.2], [0.4, 0.6]]
    # sums over H, W AND channels: inter = 0.8 + 0.6 = 1.4; |t| + |p| = 2 + 2 -> (2.8 + 1) / (4 + 1) = 0.76
    t = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], np.float32)
    p = np.array([[[[0.8, 0.2], [0.4, 0.6]]]], np.float32)
    assert run(SeedDiceCoefMulticlass(), [(t, p)]) == pytest.approx(0.76, rel=1e-6)
    # Keras 2 style: the mean over batches of the batch value: (0.76 + 1.0) / 2
    assert run(SeedDiceCoefMulticlass(), [(t, p), (t, t)]) == pytest.approx(0.88, rel=1e-6)


def test_seed_metric_is_inflated_by_background_while_fg_dice_is_zero() -> None:
    # 10x10 mask, one foreground pixel; the model predicts background everywhere
    labels = np.zeros((1, 10, 10), int)
    labels[0, 4, 4] = 1
    t = EYE3[labels]
    p = EYE3[np.zeros_like(labels)]
    seed = run(SeedDiceCoefMulticlass(), [(t, p)])
    assert seed == pytest.approx((2 * 99 + 1) / (200 + 1))  # 0.990
    assert seed > 0.9
    assert run(ForegroundDice(3), [(t, p)]) == 0.0


def test_get_metrics_names_follow_the_class_table() -> None:
    raw: dict[str, Any] = {
        "classes": [
            {"id": 1, "name": "LV", "color": [255, 0, 0]},
            {"id": 2, "name": "Left Atrium-2", "color": [0, 255, 0]},
        ]
    }
    names = [m.name for m in get_metrics(validate_config(raw))]
    assert names == ["fg_dice", "dice_lv", "dice_left_atrium_2", "seed_dice_coef_multiclass"]
    raw2 = copy.deepcopy(raw)
    raw2["prepare"] = {"binary": True}
    assert [m.name for m in get_metrics(validate_config(raw2))][1] == "dice_foreground"
    assert metric_name("IVC") == "dice_ivc"


def test_metrics_run_under_jit_compile_with_bfloat16_predictions() -> None:
    fg, seed = ForegroundDice(3), SeedDiceCoefMulticlass()

    @tf.function(jit_compile=True)
    def step(t: tf.Tensor, p: tf.Tensor) -> None:
        fg.update_state(t, p)
        seed.update_state(t, p)

    for t, p in BATCHES:
        step(tf.constant(t), tf.cast(tf.constant(p), tf.bfloat16))
    assert float(fg.result()) == pytest.approx(5 / 6)
    # batch 1 soft probs 0.95/0.05 (bf16-rounded), batch 2 exact: finite, in (0, 1]
    assert 0.0 < float(seed.result()) <= 1.0


def test_metrics_in_compiled_evaluate_with_mixed_precision() -> None:
    from segkit.losses import get_loss
    from segkit.models import build_model

    raw: dict[str, Any] = {
        "classes": [
            {"id": 1, "name": "a", "color": [255, 0, 0]},
            {"id": 2, "name": "b", "color": [0, 255, 0]},
        ],
        "data": {"image_size": [16, 16], "channels": 1},
        "model": {"base_filters": 4, "base_kernels": 3, "num_layers": 2, "dropout_rate": 0.0},
    }
    cfg = validate_config(raw)
    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(cfg)
        # XLA is covered by the test above; compiling the whole model with XLA costs ~10 s of CPU here
        model.compile(optimizer="adam", loss=get_loss(cfg), metrics=get_metrics(cfg), jit_compile=False)
        rng = np.random.default_rng(0)
        x = rng.random((4, 16, 16, 1), dtype=np.float32)
        y = EYE3[rng.integers(0, 3, (4, 16, 16))]
        logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
        probs = np.asarray(model(x, training=False))
    finally:
        keras.mixed_precision.set_global_policy(old)
    assert set(logs) == {"loss", "fg_dice", "dice_a", "dice_b", "seed_dice_coef_multiclass"}
    # fg_dice from evaluate equals the counts of the model's own argmax predictions (numpy reference)
    pred, truth = probs.argmax(-1), y.argmax(-1)
    dices = []
    for c in (1, 2):
        tp = np.sum((pred == c) & (truth == c))
        denom = np.sum(pred == c) + np.sum(truth == c)
        if denom:
            dices.append(2 * tp / denom)
    assert logs["fg_dice"] == pytest.approx(np.mean(dices), abs=1e-3)
