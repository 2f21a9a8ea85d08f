"""``train.ema`` (``segkit.train.callbacks.averaging.WeightAverage``): the optimizer's moving average of the
weights is what validation scores and what the callbacks between ``put_in`` and ``take_out`` see; the
trained weights are what training continues from and what the resume backup holds."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from segkit.config import Config, validate_config
from segkit.errors import ConfigError
from segkit.train.callbacks import WeightAverage
from segkit.train.fit import make_optimizer

MOMENTUM = 0.5


class _Record(keras.callbacks.Callback):
    """The model's weights after every training step and at every epoch end."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[list[np.ndarray]] = []
        self.epochs: list[list[np.ndarray]] = []

    def _weights(self) -> list[np.ndarray]:
        return [np.array(w) for w in self.model.get_weights()]

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.steps.append(self._weights())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append(self._weights())


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    """Like ``TimeLimit``: stops before ``epochs`` at an epoch boundary."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.stop_training = True


def _linear_problem() -> tuple[keras.Model, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.3).astype("float32")
    xv = rng.normal(size=(8, 3)).astype("float32")
    yv = (xv @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.3).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, use_ema=True, ema_momentum=MOMENTUM), loss="mse")
    return model, x, y, xv, yv


def _average(steps: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Keras' recursion by hand: the first step starts the average at the weights."""
    avg = [w.copy() for w in steps[0]]
    for weights in steps[1:]:
        avg = [MOMENTUM * a + (1 - MOMENTUM) * w for a, w in zip(avg, weights, strict=True)]
    return avg


def _mse(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    kernel, bias = weights
    return float(np.mean((x @ kernel + bias - y) ** 2))


def test_the_window_sees_the_average_and_the_callbacks_after_it_the_trained_weights() -> None:
    model, x, y, xv, yv = _linear_problem()
    avg = WeightAverage()
    inside, after, trained = _Record(), _Record(), _Record()
    history = model.fit(x, y, batch_size=8, epochs=3, validation_data=(xv, yv), shuffle=False, verbose=0,
                        callbacks=[avg, trained, avg.put_in, inside, avg.take_out, after])
    assert len(trained.steps) == 12  # 4 steps x 3 epochs
    for epoch in range(3):
        steps = trained.steps[: 4 * (epoch + 1)]
        expected = _average(steps)
        for got, want in zip(inside.epochs[epoch], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        for got, want in zip(after.epochs[epoch], steps[-1], strict=True):  # training goes on from these
            np.testing.assert_array_equal(got, want)
        assert not np.allclose(inside.epochs[epoch][0], after.epochs[epoch][0])
        # validation scored the average, not the trained weights
        assert history.history["val_loss"][epoch] == pytest.approx(_mse(expected, xv, yv), rel=1e-5)
        assert history.history["val_loss"][epoch] != pytest.approx(_mse(steps[-1], xv, yv), rel=1e-3)
    # after fit, Keras leaves the average in the model
    for got, want in zip(model.get_weights(), inside.epochs[-1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_run_stopped_before_its_last_epoch_ends_with_the_average_in_the_model() -> None:
    """A time limit or early stopping ends ``fit`` before ``epochs``: the model still holds the average
    (Keras' ``SwapEMAWeights(swap_on_epoch=True)`` would leave the trained weights there)."""
    model, x, y, xv, yv = _linear_problem()
    avg = WeightAverage()
    inside, trained = _Record(), _Record()
    model.fit(x, y, batch_size=8, epochs=5, validation_data=(xv, yv), shuffle=False, verbose=0,
              callbacks=[avg, trained, avg.put_in, inside, avg.take_out, _StopAfterFirstEpoch()])
    assert len(inside.epochs) == 1
    for got, want in zip(model.get_weights(), _average(trained.steps), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _config(train: dict[str, Any]) -> Config:
    return validate_config({
        "classes": [{"id": 1, "name": "a", "color": [255, 0, 0]}],
        "data": {"image_size": [64, 64], "channels": 1},
        "model": {"name": "flexunet", "num_layers": 3, "base_filters": 4},
        "train": train,
    })


def test_make_optimizer_keeps_the_average_only_when_asked() -> None:
    assert not make_optimizer(_config({})).use_ema
    opt = make_optimizer(_config({"ema": 0.99}))
    assert opt.use_ema and opt.ema_momentum == pytest.approx(0.99)


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1])
def test_ema_outside_zero_to_one_is_refused(value: float) -> None:
    with pytest.raises(ConfigError, match=r"train\.ema"):
        _config({"ema": value})
