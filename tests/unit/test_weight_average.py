"""``train.ema`` (``segkit.train.callbacks.averaging.WeightAverage``): the optimizer's moving average of the
weights is what validation scores and what the callbacks between ``put_in`` and ``take_out`` see; the
trained weights are what training continues from and what the resume backup holds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from segkit.config import Config, validate_config
from segkit.errors import ConfigError
from segkit.train.callbacks import (
    AtomicBackup,
    AtomicCheckpoint,
    WeightAverage,
    restore_backup,
    trained_weights_back,
)
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


class _Copy(keras.callbacks.Callback):
    """Copies ``src`` to ``dst`` at every epoch end (the backup, before a finished fit removes it)."""

    def __init__(self, src: Path, dst: Path) -> None:
        super().__init__()
        self.src, self.dst = src, dst

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        shutil.rmtree(self.dst, ignore_errors=True)
        shutil.copytree(self.src, self.dst)


def _fit(model: keras.Model, x: np.ndarray, y: np.ndarray, callbacks: list[Any], epochs: int,
         initial_epoch: int = 0) -> None:
    avg = WeightAverage()
    model.fit(x, y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch, shuffle=False, verbose=0,
              callbacks=[avg, avg.put_in, *callbacks, avg.take_out])


def test_a_resume_from_the_backup_or_from_last_keras_continues_as_if_uninterrupted(tmp_path: Path) -> None:
    """Epoch 2 resumed from epoch 1's ``backup/`` (``AtomicBackup`` after the window) or from its
    ``last.keras`` (a compiled model saved inside the window, ``trained_weights_back``) ends where an
    uninterrupted run ends, average and trained weights alike."""
    model, x, y, _, _ = _linear_problem()
    _fit(model, x, y, [AtomicCheckpoint(tmp_path / "whole" / "last.keras")], epochs=2)
    whole = [np.array(w) for w in model.get_weights()]  # the average (Keras' finalize after fit)

    model, x, y, _, _ = _linear_problem()
    avg = WeightAverage()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[avg, avg.put_in, AtomicCheckpoint(tmp_path / "last.keras"), avg.take_out,
                         AtomicBackup(tmp_path / "backup"), _Copy(tmp_path / "backup", tmp_path / "kept")])
    for source in ("backup", "last.keras"):
        resumed, *_ = _linear_problem()
        resumed.optimizer.build(resumed.trainable_variables)
        if source == "backup":
            assert restore_backup(resumed, tmp_path / "kept") == 1
        else:
            resumed.load_weights(tmp_path / "last.keras")
            trained_weights_back(resumed)
        assert int(resumed.optimizer.iterations.numpy()) == 4
        _fit(resumed, x, y, [], epochs=2, initial_epoch=1)
        for got, want in zip(resumed.get_weights(), whole, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=source)


def test_nothing_is_swapped_before_the_first_step() -> None:
    """The average starts as zeros; a validation or checkpoint before any optimizer step (a float16 run
    whose first steps overflow) keeps the model's own weights."""
    model, *_ = _linear_problem()
    model.optimizer.build(model.trainable_variables)
    before = [np.array(w) for w in model.get_weights()]
    avg = WeightAverage()
    avg.set_model(model)
    avg.on_test_begin()
    avg.put_in.on_epoch_end(0)
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    avg.on_test_end()
    avg.take_out.on_epoch_end(0)


def test_gradient_accumulation_keeps_the_momentum_per_weight_update() -> None:
    """Keras updates the average on every batch, also the batches that only accumulate: the momentum per
    batch is m^(1/k), so the average spans the same number of weight updates."""
    opt = make_optimizer(_config({"ema": 0.999, "accumulate_steps": 4}))
    assert opt.ema_momentum ** 4 == pytest.approx(0.999)


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
