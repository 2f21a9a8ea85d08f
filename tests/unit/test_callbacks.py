"""Callbacks of a training run (segkit/train/callbacks/), on tiny Keras models: a few seconds in all."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from segkit.config import TrainConfig
from segkit.errors import SegkitError
from segkit.io.palette import palette_array
from segkit.train import callbacks as cb


def _flat_model() -> keras.Model:
    """y = w * x with w = 0: fed x = 0 and y = 1, the MSE loss is exactly 1.0 forever (zero gradient), so the
    monitored value never improves."""
    inp = keras.Input((1,))
    out = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inp)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="mse")
    return model


def _fit_flat(
    callbacks: list[keras.callbacks.Callback], epochs: int
) -> tuple[keras.callbacks.History, list[float]]:
    keras.utils.set_random_seed(0)
    model = _flat_model()
    lrs: list[float] = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: lrs.append(logs["lr"]))
    x, y = np.zeros((4, 1), np.float32), np.ones((4, 1), np.float32)
    hist = model.fit(x, y, batch_size=4, epochs=epochs, verbose=0,
                     callbacks=[*callbacks, cb.LearningRateLogger(), record])
    return hist, lrs


# === monitor and plateau bookkeeping ===


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [("val_fg_dice", "max"), ("dice_LV", "max"), ("val_accuracy", "max"), ("val_iou", "max"),
     ("val_loss", "min"), ("loss", "min")],
)
def test_monitor_mode(monitor: str, mode: str) -> None:
    assert cb.monitor_mode(monitor) == mode


def test_plateau_state_counts_like_keras() -> None:
    # max: best 0.7 at epoch 2, then two epochs without improvement
    assert cb.plateau_state([0.5, 0.7, 0.6, 0.65], "max") == (0.7, 2)
    # min with min_delta 0.1: 0.95 is not better than 1.0 - 0.1
    assert cb.plateau_state([1.0, 0.95, 0.5], "min", min_delta=0.1) == (0.5, 0)
    assert cb.plateau_state([1.0, 0.95], "min", min_delta=0.1) == (1.0, 1)
    # NaN never improves
    assert cb.plateau_state([float("nan"), 0.3], "max") == (0.3, 0)
    assert cb.plateau_state([], "max") == (None, 0)


# === ReduceLROnPlateau / EarlyStopping settings take effect ===


def test_reduce_lr_drops_after_patience_and_respects_min_lr() -> None:
    train = TrainConfig(
        reduce_lr={"factor": 0.5, "patience": 2, "min_lr": 3e-4}, early_stopping={"enabled": False}
    )
    cbs = cb.plateau_callbacks(train, "loss", "min")
    assert [type(c).__name__ for c in cbs] == ["ResumableReduceLROnPlateau"]
    _, lrs = _fit_flat(cbs, epochs=6)
    # loss is 1.0 every epoch: epoch 1 sets the best, epochs 2-3 do not improve -> after epoch 3 (patience 2)
    # lr 1e-3 -> 5e-4; the counter restarts; after epoch 5 -> 2.5e-4, clamped to min_lr 3e-4.
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 3e-4], rel=1e-5)


def test_early_stopping_stops_after_patience() -> None:
    train = TrainConfig(reduce_lr={"enabled": False}, early_stopping={"patience": 3})
    hist, lrs = _fit_flat(cb.plateau_callbacks(train, "loss", "min"), epochs=20)
    # best at epoch 1, then 3 epochs without improvement: stop after epoch 4
    assert len(hist.history["loss"]) == 4
    assert lrs == pytest.approx([1e-3] * 4)


def test_plateau_counters_continue_on_resume() -> None:
    train = TrainConfig(reduce_lr={"factor": 0.1, "patience": 2}, early_stopping={"enabled": False})
    # two earlier epochs at 1.0: best 1.0, one epoch without improvement already -> the first resumed epoch
    # (again 1.0) is the second one, so the rate drops right after it.
    _, lrs = _fit_flat(cb.plateau_callbacks(train, "loss", "min", previous=[1.0, 1.0]), epochs=2)
    assert lrs == pytest.approx([1e-3, 1e-4], rel=1e-5)


def test_learning_rate_logger_replaces_keras_key() -> None:
    logger = cb.LearningRateLogger()
    logger._lr = 0.25
    logs = {"loss": 1.0, "learning_rate": 0.125}
    logger.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0, "lr": 0.25}


# === NaN ===


def test_nan_guard_stops_and_remembers_where() -> None:
    inp = keras.Input((1,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer="sgd", loss="mse")
    guard = cb.NaNGuard()
    x = np.array([[1.0], [np.nan], [1.0], [1.0]], np.float32)
    hist = model.fit(x, np.ones((4, 1), np.float32), batch_size=1, epochs=3, verbose=0, shuffle=False,
                     callbacks=[guard])
    assert (guard.nan_epoch, guard.nan_step) == (1, 2)  # epoch 1, second batch holds the NaN
    assert len(hist.history["loss"]) == 1 and model.stop_training


# === atomic checkpoints ===


def _tiny_model() -> keras.Model:
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp))


def test_checkpoint_saves_only_on_improvement(tmp_path: Path) -> None:
    model = _tiny_model()
    ck = cb.AtomicCheckpoint(tmp_path / "model.keras", monitor="val_fg_dice")
    ck.set_model(model)
    assert ck.mode == "max"
    ck.on_epoch_end(0, {"loss": 1.0, "val_fg_dice": 0.5})
    ino = os.stat(tmp_path / "model.keras").st_ino
    ck.on_epoch_end(1, {"loss": 0.9, "val_fg_dice": 0.4})  # worse: untouched
    assert os.stat(tmp_path / "model.keras").st_ino == ino
    ck.on_epoch_end(2, {"loss": float("nan"), "val_fg_dice": 0.9})  # diverged: never written
    assert os.stat(tmp_path / "model.keras").st_ino == ino
    ck.on_epoch_end(3, {"loss": 0.5, "val_fg_dice": 0.6})  # better: replaced
    assert os.stat(tmp_path / "model.keras").st_ino != ino
    assert (ck.best, ck.best_epoch) == (0.6, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temporary files left
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-6)


def test_checkpoint_resumes_from_initial_best(tmp_path: Path) -> None:
    ck = cb.AtomicCheckpoint(tmp_path / "model.keras", monitor="val_loss", initial_best=0.2)
    ck.set_model(_tiny_model())
    ck.on_epoch_end(5, {"loss": 1.0, "val_loss": 0.3})  # worse than the earlier best 0.2
    assert not (tmp_path / "model.keras").exists()


def test_checkpoint_killed_mid_save_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _tiny_model()
    path = tmp_path / "last.keras"
    cb.save_model_atomic(model, path)
    before = path.read_bytes()

    def torn_save(self: keras.Model, filepath: str | Path, *args: object, **kwargs: object) -> None:
        Path(filepath).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is interrupted in the middle of writing

    monkeypatch.setattr(keras.Model, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        cb.save_model_atomic(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.keras"]
    monkeypatch.undo()
    keras.models.load_model(path, safe_mode=True)


# === backup for --resume ===


def _compiled_model() -> keras.Model:
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def _train_steps(model: keras.Model, n: int) -> None:
    x = np.linspace(0, 1, 32, dtype=np.float32).reshape(8, 4)
    y = np.tile(np.array([[1.0, 0.0]], np.float32), (8, 1))
    for _ in range(n):
        model.train_on_batch(x, y)


def test_backup_restores_weights_optimizer_and_epoch(tmp_path: Path) -> None:
    model = _compiled_model()
    _train_steps(model, 3)
    backup = cb.AtomicBackup(tmp_path / "backup")
    backup.set_model(model)
    backup.on_epoch_end(0, {"loss": 1.0})
    _train_steps(model, 2)
    backup.on_epoch_end(1, {"loss": 0.5})
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["epoch_0002.weights.h5", "state.json"]
    fresh = _compiled_model()
    assert cb.restore_backup(fresh, tmp_path / "backup") == 2
    assert int(fresh.optimizer.iterations.numpy()) == 5  # Adam's step count and moments came back too
    for a, b in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    backup.on_epoch_end(2, {"loss": float("nan")})  # a diverged epoch is not backed up
    assert cb.backup_epoch(tmp_path / "backup") == 2
    backup.on_train_end()
    assert not (tmp_path / "backup").exists()
    assert cb.restore_backup(fresh, tmp_path / "backup") is None


def test_backup_killed_mid_save_resumes_the_epoch_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _compiled_model()
    _train_steps(model, 1)
    backup = cb.AtomicBackup(tmp_path / "backup")
    backup.set_model(model)
    backup.on_epoch_end(0, {"loss": 1.0})
    saved = [np.asarray(w).copy() for w in model.weights]
    _train_steps(model, 2)

    def torn_save(self: keras.Model, filepath: str | Path, *args: object, **kwargs: object) -> None:
        Path(filepath).write_bytes(b"\x89HDF half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save_weights", torn_save)
    with pytest.raises(KeyboardInterrupt):
        backup.on_epoch_end(1, {"loss": 0.5})
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["epoch_0001.weights.h5", "state.json"]
    fresh = _compiled_model()
    assert cb.restore_backup(fresh, tmp_path / "backup") == 1  # the epoch it really restores
    for a, b in zip(fresh.weights, saved, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_damaged_backup_is_one_line_not_a_silent_fallback(tmp_path: Path) -> None:
    model = _compiled_model()
    backup = cb.AtomicBackup(tmp_path / "backup")
    backup.set_model(model)
    backup.on_epoch_end(0, {"loss": 1.0})
    weights = tmp_path / "backup" / "epoch_0001.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])  # damaged after the fact (disk fault, copy gone wrong)
    with pytest.raises(SegkitError) as e:
        cb.restore_backup(_compiled_model(), tmp_path / "backup")
    line = e.value.one_line()
    assert line.startswith(f"{weights}: the resume backup of epoch 1 does not match its recorded checksum")
    assert "deleting the backup/ folder" in line


# === history, curves, previews ===


def test_history_writer_real_json_and_curves(tmp_path: Path) -> None:
    w = cb.HistoryWriter(tmp_path / "history.json", tmp_path / "curves.png",
                         previous=[{"epoch": 1.0, "loss": 2.0}])
    w.on_epoch_end(1, {"loss": 1.5, "val_loss": float("nan"), "fg_dice": 0.25, "val_fg_dice": 0.5,
                       "lr": 1e-3})
    rows = json.loads((tmp_path / "history.json").read_text())
    assert rows == [
        {"epoch": 1, "loss": 2.0},
        {"epoch": 2, "loss": 1.5, "val_loss": None, "fg_dice": 0.25, "val_fg_dice": 0.5, "lr": 0.001},
    ]
    png = cv2.imread(str(tmp_path / "curves.png"))
    assert png is not None and png.shape == (420, 1800, 3)  # 18 x 4.2 in at 100 dpi, 4 panels


def test_preview_grid_layout_and_colours() -> None:
    palette = palette_array([(255, 0, 0), (0, 255, 0)])
    images = np.zeros((2, 4, 5, 1), np.float32)
    images[1] = 1.0
    truth = np.zeros((2, 4, 5), np.uint8)
    truth[0, 0, 0] = 1
    pred = np.full((2, 4, 5), 2, np.uint8)
    grid = cb.preview_grid(images, truth, pred, palette)
    assert grid.shape == (8, 15, 3) and grid.dtype == np.uint8
    assert grid[0, 0].tolist() == [0, 0, 0] and grid[4, 0].tolist() == [255, 255, 255]  # image column
    assert grid[0, 5].tolist() == [255, 0, 0] and grid[0, 6].tolist() == [0, 0, 0]  # truth column
    assert grid[7, 14].tolist() == [0, 255, 0]  # prediction column


def test_epoch_preview_writes_numbered_png(tmp_path: Path) -> None:
    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, keras.layers.Conv2D(3, 1, activation="softmax")(inp))
    prev = cb.EpochPreview(tmp_path, np.zeros((2, 8, 8, 1), np.float32), np.zeros((2, 8, 8), np.uint8),
                           palette_array([(255, 0, 0), (0, 0, 255)]))
    prev.set_model(model)
    prev.on_epoch_end(6)
    img = cv2.imread(str(tmp_path / "epoch_007.png"))
    assert img is not None and img.shape == (28 + 16 * 20, 24 * 20, 3)  # titles, tiles enlarged to 160 px


def test_progress_reporter_events_and_eta() -> None:
    events: list[cb.TrainEvent] = []
    rep = cb.ProgressReporter(events.append, epochs=4, steps=2)
    rep.on_train_begin()
    rep.on_epoch_begin(1)  # a resumed run starting at epoch 2
    rep.on_train_batch_end(0, {"loss": 0.5})
    rep.on_epoch_end(1, {"loss": 0.4, "val_fg_dice": 0.8})
    kinds = [(e.kind, e.epoch, e.step) for e in events]
    assert kinds == [("epoch_begin", 2, 0), ("batch", 2, 1), ("epoch_end", 2, 2)]
    assert events[0].eta_s is None
    end = events[-1]
    assert end.logs == {"loss": 0.4, "val_fg_dice": 0.8}
    # one epoch took elapsed_s; two epochs are left
    assert end.eta_s is not None and math.isclose(end.eta_s, 2 * end.elapsed_s, rel_tol=1e-6)


# === precision (segkit/train/fit.py) ===


def test_float32_output_under_mixed_precision() -> None:
    from segkit.train.fit import float32_output

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        inp = keras.Input((8, 8, 1))
        model = keras.Model(inp, keras.layers.Conv2D(3, 1, activation="softmax")(inp))
        assert str(model.outputs[0].dtype) == "bfloat16"
        fixed = float32_output(model)
    finally:
        keras.config.set_dtype_policy(previous)
    assert str(fixed.outputs[0].dtype) == "float32"
    assert float32_output(fixed) is fixed  # already float32: unchanged
    out = np.asarray(fixed.predict_on_batch(np.ones((1, 8, 8, 1), np.float32)))
    assert out.dtype == np.float32 and np.allclose(out.sum(-1), 1.0, atol=1e-2)


def test_history_csv_counts_from_1_and_lays_out_rows_as_csvlogger(tmp_path: Path) -> None:
    logs = [{"loss": 0.5, "val_loss": 0.625, "lr": 0.001},
            {"loss": 0.25, "val_loss": float("nan"), "lr": 0.001}]
    ours, keras_file = tmp_path / "history.csv", tmp_path / "keras.csv"
    w, k = cb.HistoryCSV(ours), keras.callbacks.CSVLogger(str(keras_file))
    k.on_train_begin()
    for epoch, row in enumerate(logs):
        w.on_epoch_end(epoch, dict(row))
        k.on_epoch_end(epoch, dict(row))
    k.on_train_end()
    assert ours.read_bytes() == b"epoch,loss,lr,val_loss\r\n1,0.5,0.001,0.625\r\n2,0.25,0.001,nan\r\n"
    theirs = keras_file.read_bytes().split(b"\r\n")
    assert [line.split(b",")[1:] for line in ours.read_bytes().split(b"\r\n")] == [
        line.split(b",")[1:] for line in theirs]  # the same columns and cells; only the epoch differs
    assert cb.history_base(ours) == 1 and cb.history_base(keras_file) == 0


def test_history_csv_resume_keeps_rows_and_replaces_a_repeated_epoch(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss\r\n1,0.50000\r\n2,0.4\r\n")  # epoch 2's row was written before a kill
    w = cb.HistoryCSV(path, append=True)
    w.on_epoch_end(1, {"loss": 0.375, "time_s": 9.5})  # the resumed run repeats epoch 2 (0-based 1)
    assert path.read_bytes() == b"epoch,loss,time_s\r\n1,0.50000,NA\r\n2,0.375,9.5\r\n"
    assert cb.HistoryCSV(path).rows == []  # without append a new run starts an empty history
    assert [r["epoch"] for r in cb.read_history_csv(path)] == [1.0, 2.0]


def test_renumber_history_csv_of_an_older_run(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss\r\n0,0.5\r\n1,NA\r\n")
    assert cb.renumber_history_csv(path)
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n2,NA\r\n"
    assert not cb.renumber_history_csv(path)  # already 1-based: unchanged
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n2,NA\r\n"
    (tmp_path / "empty.csv").write_text("epoch,loss\r\n")
    assert not cb.renumber_history_csv(tmp_path / "empty.csv")
    assert not cb.renumber_history_csv(tmp_path / "missing.csv")
