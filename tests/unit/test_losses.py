"""Every loss equals a hand-computed value on a 1x1x2 (or 1x2x2) example."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from segkit.config import validate_config
from segkit.errors import ConfigError
from segkit.losses import LOSSES, BCEDiceLoss, DiceCELoss, DiceLoss, TverskyLoss, get_loss

BASE: dict[str, Any] = {"classes": [{"id": 1, "name": "fg", "color": [255, 0, 0]}]}

# Two pixels, 2 classes (B=1, H=1, W=2, C=2): pixel 0 is background, pixel 1 foreground.
Y_TRUE = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], np.float32)
Y_PRED = np.array([[[[0.8, 0.2], [0.4, 0.6]]]], np.float32)
CE = (-math.log(0.8) - math.log(0.6)) / 2  # 0.366985: mean over the 2 pixels
DICE_FG = 1.2 / 1.8  # 2*TP / (|t| + |p|) = 2*0.6 / (1 + 0.8), smooth 1e-5 negligible


def cfg_for(name: str, classes: int = 1, **loss: Any) -> Any:
    raw = copy.deepcopy(BASE)
    raw["classes"] = [{"id": i, "name": f"c{i}", "color": [i, 0, 0]} for i in range(1, classes + 1)]
    raw["loss"] = {"name": name, **loss}
    return validate_config(raw)


def value(loss: keras.losses.Loss, y_true: np.ndarray = Y_TRUE, y_pred: np.ndarray = Y_PRED) -> float:
    return float(loss(y_true, y_pred))


def test_registry_names_match_the_config_literal() -> None:
    assert LOSSES.names() == ["bce-dice", "ce", "dice", "dice-ce", "focal", "tversky"]


def test_ce_is_keras_categorical_crossentropy() -> None:
    loss = get_loss(cfg_for("ce"))
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert value(loss) == pytest.approx(CE, rel=1e-5)


def test_weighted_ce() -> None:
    # weights [1, 3]: (1 * -log 0.8 + 3 * -log 0.6) / 2 = (0.22314 + 1.53248) / 2 = 0.87781
    loss = get_loss(cfg_for("ce", class_weights=[1.0, 3.0]))
    assert value(loss) == pytest.approx((-math.log(0.8) - 3 * math.log(0.6)) / 2, rel=1e-5)


def test_dice_is_foreground_only() -> None:
    # fg channel: TP = 0.6, |t| = 1, |p| = 0.8 -> Dice 2/3, loss 1/3 (background channel ignored)
    assert value(get_loss(cfg_for("dice"))) == pytest.approx(1 - DICE_FG, rel=1e-4)


def test_dice_averages_per_class_and_uses_class_weights() -> None:
    # 1x2x2, 3 classes: truth [[0, 1], [2, 2]], prediction (one-hot) [[0, 1], [2, 0]]
    #   class 1: TP 1, |t| 1, |p| 1 -> 1;  class 2: TP 1, |t| 2, |p| 1 -> 2/3
    #   mean 5/6 -> loss 1/6;  weights [0, 1, 3]: (1 + 3 * 2/3) / 4 = 3/4 -> loss 1/4
    eye = np.eye(3, dtype=np.float32)
    t = eye[np.array([[[0, 1], [2, 2]]])]
    p = eye[np.array([[[0, 1], [2, 0]]])]
    assert value(get_loss(cfg_for("dice", classes=2)), t, p) == pytest.approx(1 / 6, abs=1e-5)
    weighted = get_loss(cfg_for("dice", classes=2, class_weights=[0, 1, 3]))
    assert value(weighted, t, p) == pytest.approx(1 / 4, abs=1e-5)


def test_dice_ce_is_the_sum() -> None:
    loss = get_loss(cfg_for("dice_ce"))
    assert isinstance(loss, DiceCELoss)
    assert value(loss) == pytest.approx(1 - DICE_FG + CE, rel=1e-4)  # 0.700318


def test_focal_is_keras_categorical_focal() -> None:
    # alpha 0.25, gamma 2: 0.25 * (1 - p)^2 * -log p per pixel:
    #   0.25 * 0.04 * 0.22314 = 0.0022314;  0.25 * 0.16 * 0.51083 = 0.0204332;  mean 0.0113323
    expected = (0.25 * 0.2**2 * -math.log(0.8) + 0.25 * 0.4**2 * -math.log(0.6)) / 2
    assert value(get_loss(cfg_for("focal"))) == pytest.approx(expected, rel=1e-4)
    # class weights become keras' per-class alpha: [1, 3] -> (1 * 0.04 * 0.22314 + 3 * 0.16 * 0.51083) / 2
    weighted = get_loss(cfg_for("focal", class_weights=[1, 3]))
    exp_w = (0.2**2 * -math.log(0.8) + 3 * 0.4**2 * -math.log(0.6)) / 2
    assert value(weighted) == pytest.approx(exp_w, rel=1e-4)


def test_tversky() -> None:
    # fg: TP 0.6, FP = sum((1-t) p) = 0.2, FN = sum(t (1-p)) = 0.4
    # alpha 0.3 (FP), beta 0.7 (FN): TI = 0.6 / (0.6 + 0.06 + 0.28) = 0.638298 -> loss 0.361702
    loss = get_loss(cfg_for("tversky", tversky_alpha=0.3, tversky_beta=0.7))
    assert isinstance(loss, TverskyLoss)
    assert value(loss) == pytest.approx(1 - 0.6 / 0.94, rel=1e-4)
    # alpha = beta = 0.5 is Dice
    assert value(TverskyLoss(0.5, 0.5)) == pytest.approx(1 - DICE_FG, rel=1e-4)


def test_bce_dice_is_the_alcapa_seed_loss_on_the_foreground_channel() -> None:
    # fg channel t = [0, 1], p = [0.2, 0.6]: BCE = (-log 0.8 - log 0.6) / 2 = 0.366985
    # seed Dice with smooth 1: (2 * 0.6 + 1) / (1 + 0.8 + 1) = 2.2 / 2.8 -> loss 0.366985 + 0.214286
    assert value(get_loss(cfg_for("bce_dice"))) == pytest.approx(CE + 1 - 2.2 / 2.8, rel=1e-5)


def test_batch_loss_is_reduced_to_the_batch_value() -> None:
    # batch Dice over two identical samples = the single-sample value
    t2, p2 = np.concatenate([Y_TRUE, Y_TRUE]), np.concatenate([Y_PRED, Y_PRED])
    assert value(DiceLoss(), t2, p2) == pytest.approx(1 - DICE_FG, rel=1e-4)


def test_class_weights_of_wrong_length_are_a_config_error() -> None:
    with pytest.raises(ConfigError) as e:
        get_loss(cfg_for("dice", classes=2, class_weights=[1, 2]))
    assert e.value.path == "loss.class_weights"
    assert "class_weights has 2 values but the model has 3 classes" in e.value.message


@pytest.mark.parametrize("cls", [DiceLoss, DiceCELoss, TverskyLoss, BCEDiceLoss])
def test_config_round_trip(cls: type, tmp_path: Path) -> None:
    loss = cls() if cls is BCEDiceLoss else cls(class_weights=[1.0, 2.0])
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(again) is cls and again.get_config() == loss.get_config()
    assert value(again) == pytest.approx(value(loss))


@pytest.mark.parametrize("name", ["ce", "dice", "dice_ce", "focal", "tversky", "bce_dice"])
def test_losses_under_xla_with_bfloat16_predictions(name: str) -> None:
    loss = get_loss(cfg_for(name))
    eager = value(loss)
    fn = tf.function(lambda t, p: loss(t, p), jit_compile=True)
    xla = float(fn(tf.constant(Y_TRUE), tf.cast(tf.constant(Y_PRED), tf.bfloat16)))
    assert np.isfinite(xla)
    assert xla == pytest.approx(eager, rel=2e-2)  # bf16 rounding of 0.8/0.6/0.4/0.2 only
