"""Keras callbacks of a segkit training run (imported only by the train stage).

Each callback does one thing:

- ``AtomicCheckpoint``: saves ``model.keras`` (best by a monitor) or ``last.keras`` (every epoch) through a
  temporary ``.keras`` file in the same folder and ``os.replace``, so a kill at any moment leaves either the
  previous file or the new one, never a torn one.
- ``AtomicBackup`` / ``restore_backup``: weights and optimizer state after every epoch for ``--resume``, written
  so that a kill at any moment leaves a complete backup whose epoch is known (``backup/state.json`` names the
  weights file and its SHA-256; it is replaced only after that file is complete).
- ``LearningRateLogger``: puts ``lr`` (the learning rate used during the epoch) into the epoch logs, so
  ``CSVLogger`` and the history see it.
- ``NaNGuard``: stops at the first non-finite loss and remembers where; ``train_model`` turns that into a
  one-line error.
- ``HistoryWriter``: ``history.json`` (real JSON) and ``curves.png`` after every epoch.
- ``EpochPreview``: predictions for fixed validation images after every epoch as ``epoch_XXX.png``
  (image | truth | prediction per row).
- ``ProgressReporter``: forwards epoch/batch events to a plain callable (the CLI renders it with rich).

The standard ``ReduceLROnPlateau``, ``EarlyStopping`` and ``CSVLogger`` come from Keras;
``plateau_state`` restores their counters on resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import numpy.typing as npt

from segkit.config import TrainConfig
from segkit.errors import ConfigError
from segkit.io.atomic import atomic_path, write_json, write_with
from segkit.io.palette import encode_mask

log = logging.getLogger(__name__)

Mode = Literal["min", "max"]


def monitor_mode(monitor: str) -> Mode:
    """``max`` for Dice/accuracy/IoU-like metrics, ``min`` for losses (and anything else)."""
    name = monitor.lower()
    if "loss" in name:
        return "min"
    if any(key in name for key in ("dice", "acc", "iou", "auc", "precision", "recall")):
        return "max"
    return "min"


def is_improvement(current: float, best: float | None, mode: Mode) -> bool:
    """Whether ``current`` beats ``best`` (``None`` = nothing yet); NaN never improves."""
    if not math.isfinite(current):
        return False
    if best is None:
        return True
    return current > best if mode == "max" else current < best


def plateau_state(values: Sequence[float], mode: Mode, min_delta: float = 0.0) -> tuple[float | None, int]:
    """Best value and epochs-without-improvement after ``values``, as Keras' plateau callbacks count them.

    Used on resume so that ``ReduceLROnPlateau`` and ``EarlyStopping`` keep counting where the interrupted run
    stopped instead of starting from scratch.

    Args:
        values: the monitored value per completed epoch.
        mode: ``min`` or ``max``.
        min_delta: the callback's ``min_delta``.

    Returns:
        ``(best, wait)``; ``best`` is ``None`` when no finite value was seen.

    Example:
        >>> plateau_state([0.5, 0.7, 0.6, 0.65], "max")
        (0.7, 2)
    """
    best: float | None = None
    wait = 0
    for v in values:
        if not math.isfinite(v):
            wait += 1
            continue
        better = best is None or (v > best + min_delta if mode == "max" else v < best - min_delta)
        if better:
            best, wait = v, 0
        else:
            wait += 1
    return best, wait


class _ResumablePlateau:
    """Mixin for Keras plateau callbacks that can start from a saved ``(best, wait)`` (see ``plateau_state``)."""

    def __init__(self, *args: Any, initial_state: tuple[float | None, int] = (None, 0), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial_state = initial_state

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)  # type: ignore[misc]
        if self.initial_state[0] is not None:  # resuming: keep Keras' own reset on a fresh run
            self.best, self.wait = self.initial_state


class ResumableReduceLROnPlateau(_ResumablePlateau, keras.callbacks.ReduceLROnPlateau):
    """``ReduceLROnPlateau`` that can start from a saved ``(best, wait)``."""


class ResumableEarlyStopping(_ResumablePlateau, keras.callbacks.EarlyStopping):
    """``EarlyStopping`` that can start from a saved ``(best, wait)``."""


def plateau_callbacks(
    train: TrainConfig, monitor: str, mode: Mode, previous: Sequence[float] = ()
) -> list[keras.callbacks.Callback]:
    """``ReduceLROnPlateau`` and ``EarlyStopping`` configured from ``train.reduce_lr`` / ``train.early_stopping``.

    Args:
        train: the ``train`` config section (factor, patience, min_lr, enabled flags).
        monitor: log key both callbacks watch.
        mode: ``min`` or ``max``.
        previous: monitored values of epochs completed before a resume (their counters continue).

    Returns:
        The enabled callbacks, LR reduction first.
    """
    cbs: list[keras.callbacks.Callback] = []
    if train.reduce_lr.enabled and train.schedule == "plateau":
        min_delta = 1e-4
        cbs.append(
            ResumableReduceLROnPlateau(
                monitor=monitor,
                mode=mode,
                factor=train.reduce_lr.factor,
                patience=train.reduce_lr.patience,
                min_lr=train.reduce_lr.min_lr,
                min_delta=min_delta,
                initial_state=plateau_state(previous, mode, min_delta),
            )
        )
    if train.early_stopping.enabled:
        cbs.append(
            ResumableEarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=train.early_stopping.patience,
                initial_state=plateau_state(previous, mode, 0.0),
            )
        )
    return cbs


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Save ``model`` as ``.keras`` at ``path`` via a temporary ``.keras`` file beside it and ``os.replace``."""
    with atomic_path(Path(path), suffix=".keras") as tmp:
        model.save(tmp, overwrite=True)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the model atomically after an epoch: always (``monitor=None``) or when ``monitor`` improves.

    Args:
        path: destination ``.keras`` file.
        monitor: log key to watch (e.g. ``val_fg_dice``); ``None`` saves every epoch.
        mode: ``min``/``max``; inferred from the name by ``monitor_mode`` when ``None``.
        initial_best: best value of earlier epochs (resume), so a worse epoch does not replace the file.
    """

    def __init__(
        self, path: Path, monitor: str | None = None, mode: Mode | None = None, initial_best: float | None = None
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.mode: Mode = mode or (monitor_mode(monitor) if monitor else "max")
        self.best = initial_best
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return  # never write diverged weights
        if self.monitor is None:
            save_model_atomic(self.model, self.path)
            return
        current = logs.get(self.monitor)
        if current is None:
            return
        if is_improvement(float(current), self.best, self.mode):
            log.debug("epoch %d: %s improved %s -> %.5f", epoch + 1, self.monitor, self.best, float(current))
            self.best, self.best_epoch = float(current), epoch
            save_model_atomic(self.model, self.path)


# === backup for --resume ===

BACKUP_STATE = "state.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class AtomicBackup(keras.callbacks.Callback):
    """Back up weights and optimizer state after every epoch; remove the backup when training ends normally.

    Order of writes (each atomic): ``epoch_NNNN.weights.h5``, then ``state.json`` naming it, then the older
    weights files are deleted. A kill at any point leaves ``state.json`` pointing at a complete file, so
    ``restore_backup`` always knows which epoch it restores (Keras' ``BackupAndRestore`` could fall back to an
    older copy while the run believed it resumed the newer epoch). An epoch with a non-finite loss is not backed up.
    """

    def __init__(self, backup_dir: Path) -> None:
        super().__init__()
        self.backup_dir = Path(backup_dir)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        name = f"epoch_{epoch + 1:04d}.weights.h5"
        path = self.backup_dir / name
        with atomic_path(path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        write_json(self.backup_dir / BACKUP_STATE, {"epoch": epoch + 1, "weights": name, "sha256": _sha256(path)})
        for old in self.backup_dir.glob("epoch_*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        shutil.rmtree(self.backup_dir, ignore_errors=True)  # a finished run resumes from last.keras


def backup_epoch(backup_dir: Path) -> int | None:
    """Completed epochs held by the backup in ``backup_dir`` (``None`` when there is none)."""
    state = _read_state(Path(backup_dir))
    return None if state is None else int(state["epoch"])


def _read_state(backup_dir: Path) -> dict[str, Any] | None:
    for name in (BACKUP_STATE, "training_metadata.json"):  # the second: backups of segkit <= 0.1 (Keras')
        p = backup_dir / name
        if p.is_file():
            try:
                state = json.loads(p.read_text(encoding="utf-8"))
                epoch = int(state["epoch"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ConfigError(
                    f"the resume backup is unreadable ({type(e).__name__}: {e})",
                    path=p,
                    hint="resume from last.keras by deleting the backup/ folder, or --overwrite to start again",
                ) from e
            weights = state.get("weights", "latest.weights.h5") if name == BACKUP_STATE else "latest.weights.h5"
            return {"epoch": epoch, "weights": backup_dir / weights, "sha256": state.get("sha256")}
    return None


def restore_backup(model: keras.Model, backup_dir: Path) -> int | None:
    """Load the backed-up weights and optimizer state into ``model``; return the epochs they completed.

    Returns:
        completed epochs, or ``None`` when ``backup_dir`` holds no backup.

    Raises:
        ConfigError: the backup's weights file is missing, does not match its recorded SHA-256, or cannot be
            loaded (one line naming the file; the run is left as it is).
    """
    state = _read_state(Path(backup_dir))
    if state is None:
        return None
    weights: Path = state["weights"]
    hint = "resume from last.keras by deleting the backup/ folder, or --overwrite to start again"
    if not weights.is_file():
        raise ConfigError(f"the resume backup of epoch {state['epoch']} is missing", path=weights, hint=hint)
    if state["sha256"] is not None and _sha256(weights) != state["sha256"]:
        raise ConfigError(
            f"the resume backup of epoch {state['epoch']} does not match its recorded checksum",
            path=weights,
            hint=hint,
        )
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(weights)
    except Exception as e:  # noqa: BLE001 - h5py/keras raise many types for damaged files
        raise ConfigError(f"cannot load the resume backup ({type(e).__name__}: {e})", path=weights, hint=hint) from e
    return int(state["epoch"])


class LearningRateLogger(keras.callbacks.Callback):
    """Add ``lr`` (the learning rate of the epoch's first step, float) to the epoch logs; drop Keras'
    ``learning_rate``.

    Place it after ``ReduceLROnPlateau`` (which adds ``learning_rate`` = the rate for the next epoch) and before
    ``CSVLogger``. With a per-step schedule (``ScheduledLR``) the logged rate is the one of the first step.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lr: float | None = None

    def _current(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._lr = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._lr is None:
            self._lr = self._current()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs.pop("learning_rate", None)
            logs["lr"] = self._lr if self._lr is not None else self._current()


class TrainClock:
    """Training wall time of a run across resumes: seconds spent by earlier calls plus seconds since this one began.

    Args:
        spent_s: seconds of training recorded before this call (the last ``time_s`` of ``history.csv``).
        clock: the time source (``time.perf_counter``; tests pass a fake).
    """

    def __init__(self, spent_s: float = 0.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.spent_s = float(spent_s)
        self._clock = clock
        self._start = clock()

    def remaining(self, limit_s: float | None) -> float | None:
        """Seconds left of ``limit_s`` (``None`` without a limit)."""
        return None if limit_s is None else max(0.0, limit_s - self.elapsed())

    def elapsed(self) -> float:
        return self.spent_s + (self._clock() - self._start)


class EpochTime(keras.callbacks.Callback):
    """Put ``time_s`` (training seconds of the run at the end of the epoch, resumes included) and ``epoch_s``
    (the epoch's length; NaN for the first epoch of a call, which includes graph compilation) into the epoch
    logs, so ``history.csv`` can plot quality against training time and a resume knows the time already spent
    and how long an epoch takes. Place it before ``CSVLogger``."""

    def __init__(self, clock: TrainClock) -> None:
        super().__init__()
        self.clock = clock
        self._last: float | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._last = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock.elapsed()
        if logs is not None:
            logs["time_s"] = round(now, 3)
            logs["epoch_s"] = round(now - self._last, 3) if self._last is not None else float("nan")
        self._last = now


class TimeLimit(keras.callbacks.Callback):
    """Stop at an epoch boundary when the next epoch would not finish inside ``limit_s``.

    The next epoch's length is estimated as the longest of the three most recent epochs (validation and
    checkpointing included; the first epoch of a call, which pays for graph compilation, only while nothing
    else is known). At least one epoch always runs, so a time-limited run always leaves a complete model.
    Place it after the checkpoint callbacks so their time is counted.

    Args:
        limit_s: the budget in seconds.
        clock: the run's ``TrainClock``.
        previous_durations: epoch lengths of earlier calls (resume), seconds.
    """

    def __init__(self, limit_s: float, clock: TrainClock, previous_durations: Sequence[float] = ()) -> None:
        super().__init__()
        self.limit_s = float(limit_s)
        self.clock = clock
        # (seconds, first epoch of a call: paid for graph compilation)
        self.durations: list[tuple[float, bool]] = [
            (float(d), False) for d in previous_durations if math.isfinite(d) and d > 0
        ]
        self._first_of_call = True
        self._last = 0.0
        self.stopped_epoch: int | None = None
        self.estimate_s: float | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._last = self.clock.elapsed()
        self._first_of_call = True

    def next_epoch_estimate(self) -> float | None:
        """Longest of the three most recent steady epochs (a first-of-call epoch only when nothing else)."""
        steady = [d for d, first in self.durations if not first]
        recent = steady[-3:] or [d for d, _ in self.durations[-1:]]
        return max(recent) if recent else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock.elapsed()
        self.durations.append((now - self._last, self._first_of_call))
        self._last, self._first_of_call = now, False
        self.estimate_s = self.next_epoch_estimate()
        if self.estimate_s is not None and now + self.estimate_s > self.limit_s:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
            log.info(
                "time limit: epoch %d ended at %.0f s of %.0f s; the next epoch (~%.0f s) would not fit, stopping",
                epoch + 1, now, self.limit_s, self.estimate_s,
            )


def schedule_factor(name: str, progress: float, warmup: float = 1.0) -> float:
    """Learning-rate multiplier of a schedule at ``progress`` (0..1 of the run).

    Args:
        name: ``constant``, ``poly`` (``(1 - p) ** 0.9``, nnU-Net's) or ``cosine`` (``(1 + cos(pi p)) / 2``).
        progress: fraction of the run done (clipped to 0..1).
        warmup: the linear warm-up multiplier (0..1) computed by the caller; 1 when there is no warm-up.

    Example:
        >>> schedule_factor("poly", 0.5)
        0.5358867312681466
    """
    p = min(max(progress, 0.0), 1.0)
    if name == "poly":
        f = (1.0 - p) ** 0.9
    elif name == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        f = 1.0
    return f * min(max(warmup, 0.0), 1.0)


class ScheduledLR(keras.callbacks.Callback):
    """Set the learning rate before every training step: linear warm-up over ``warmup_epochs``, then
    ``schedule_factor`` with run progress = the larger of epochs done / ``epochs`` and time spent / ``limit_s``
    (so a time-limited run decays to zero as its budget runs out).

    Args:
        base_lr: the peak learning rate (``train.learning_rate``).
        name: ``constant``, ``poly`` or ``cosine``.
        epochs: ``train.epochs``.
        steps: training steps per epoch.
        warmup_epochs: warm-up length in epochs (fractions allowed).
        clock: the run's ``TrainClock`` (needed with ``limit_s``).
        limit_s: the time budget, or ``None``.
    """

    def __init__(
        self,
        base_lr: float,
        name: str,
        epochs: int,
        steps: int,
        warmup_epochs: float = 0.0,
        clock: TrainClock | None = None,
        limit_s: float | None = None,
    ) -> None:
        super().__init__()
        self.base_lr, self.name, self.epochs, self.steps = float(base_lr), name, int(epochs), max(1, int(steps))
        self.warmup_epochs, self.clock, self.limit_s = float(warmup_epochs), clock, limit_s
        self._epoch = 0

    def lr_at(self, epoch: int, step: int) -> float:
        done = epoch + step / self.steps
        progress = done / self.epochs
        if self.limit_s and self.clock is not None:
            progress = max(progress, self.clock.elapsed() / self.limit_s)
        warm = min(1.0, (done + 1.0 / self.steps) / self.warmup_epochs) if self.warmup_epochs > 0 else 1.0
        return self.base_lr * schedule_factor(self.name, progress, warm)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.optimizer.learning_rate.assign(self.lr_at(self._epoch, batch))


class NaNGuard(keras.callbacks.Callback):
    """Like ``keras.callbacks.TerminateOnNaN``, but remembers the epoch and step where the loss stopped being
    finite (``nan_epoch`` is 1-based, ``None`` while all is well)."""

    def __init__(self) -> None:
        super().__init__()
        self.nan_epoch: int | None = None
        self.nan_step: int | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.nan_epoch is None:
            self.nan_epoch, self.nan_step = self._epoch + 1, batch + 1
            self.model.stop_training = True


def read_history_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a ``CSVLogger`` file as dicts of floats (``NA`` and unparsable cells become NaN)."""
    import csv

    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out: list[dict[str, float]] = []
    for row in rows:
        parsed: dict[str, float] = {}
        for k, v in row.items():
            try:
                parsed[k] = float(v)
            except (TypeError, ValueError):
                parsed[k] = float("nan")
        out.append(parsed)
    return out


def plot_curves(rows: Sequence[dict[str, float]], path: Path) -> None:
    """Write ``curves.png``: loss (train/val) and fg_dice (train/val) against 1-based epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, key in zip(axes, ("loss", "fg_dice"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            ys = [r.get(prefix + key, float("nan")) for r in rows]
            if any(math.isfinite(y) for y in ys):
                ax.plot(epochs, ys, style, markersize=3, label=("val " if prefix else "train ") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    try:
        write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


class HistoryWriter(keras.callbacks.Callback):
    """After each epoch, rewrite ``history.json`` (list of per-epoch dicts, epoch 0-based) and ``curves.png``.

    Args:
        json_path: ``history.json``.
        png_path: ``curves.png``.
        previous: rows of epochs completed before a resume.
    """

    def __init__(self, json_path: Path, png_path: Path, previous: Sequence[dict[str, float]] = ()) -> None:
        super().__init__()
        self.json_path, self.png_path = Path(json_path), Path(png_path)
        self.rows: list[dict[str, float]] = [dict(r) for r in previous]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = {"epoch": float(epoch)}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        write_json(self.json_path, [{k: _json_number(v) for k, v in r.items()} for r in self.rows])
        plot_curves(self.rows, self.png_path)


def _json_number(v: float) -> float | int | None:
    """JSON has no NaN: non-finite values become null; the epoch index stays an int."""
    if not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v


def preview_grid(
    images: npt.NDArray[np.float32],
    truth: npt.NDArray[np.integer],
    pred: npt.NDArray[np.integer],
    palette: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint8]:
    """Rows of ``image | truth | prediction``.

    Args:
        images: (N, H, W, C) float32 in 0..1; C = 1 (gray), 3 (RGB) or more (the middle channel is shown).
        truth: (N, H, W) class ids.
        pred: (N, H, W) class ids.
        palette: (num_classes, 3) uint8 RGB, row 0 black.

    Returns:
        (N*H, 3*W, 3) uint8 RGB grid.
    """
    rows = []
    for img, t, p in zip(images, truth, pred, strict=True):
        img = np.asarray(img, dtype=np.float32)
        if img.shape[-1] == 3:
            rgb = img
        else:
            mid = img[..., img.shape[-1] // 2]
            rgb = np.repeat(mid[..., None], 3, axis=-1)
        rgb8 = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        rows.append(np.concatenate([rgb8, encode_mask(t, palette), encode_mask(p, palette)], axis=1))
    return np.concatenate(rows, axis=0)


class EpochPreview(keras.callbacks.Callback):
    """Epoch-change inference: predictions for the same validation images after every epoch.

    Args:
        out_dir: folder of ``epoch_XXX.png`` (XXX = 1-based epoch).
        images: (N, H, W, C) float32 model inputs.
        truth: (N, H, W) uint8 class ids.
        palette: (num_classes, 3) uint8 RGB.
    """

    def __init__(
        self,
        out_dir: Path,
        images: npt.NDArray[np.float32],
        truth: npt.NDArray[np.uint8],
        palette: npt.NDArray[np.uint8],
    ) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.images, self.truth, self.palette = images, truth, palette

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import cv2

        probs = np.asarray(self.model.predict_on_batch(self.images))
        pred = probs.argmax(-1).astype(np.uint8)
        grid = preview_grid(self.images, self.truth, pred, self.palette)
        path = self.out_dir / f"epoch_{epoch + 1:03d}.png"

        def _write(tmp: Path) -> None:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write {path}")

        write_with(path, _write)


# === Progress ===


@dataclass
class TrainEvent:
    """One progress event of a training run.

    Attributes:
        kind: ``start`` (``info`` holds model/data facts), ``epoch_begin``, ``batch``, ``epoch_end``, ``end``.
        epoch: 1-based epoch.
        epochs: total epochs of the run.
        step: 1-based step within the epoch (``batch`` events).
        steps: steps per epoch (``None`` when unknown).
        logs: current metrics (running means during an epoch; train + val at ``epoch_end``).
        elapsed_s: seconds since training started.
        eta_s: estimated seconds left for the whole run (``None`` until one epoch is done).
        info: facts printed at start (model, params, GFLOP, precision, device, dataset sizes).
    """

    kind: Literal["start", "epoch_begin", "batch", "epoch_end", "end"]
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int | None = None
    logs: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    eta_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[TrainEvent], None]


class ProgressReporter(keras.callbacks.Callback):
    """Forward Keras callback hooks to ``fn(TrainEvent)``; the ETA is the mean epoch time of this session times
    the epochs left, capped by what remains of the time limit (``clock`` + ``limit_s``)."""

    def __init__(
        self,
        fn: ProgressFn,
        epochs: int,
        steps: int | None,
        clock: TrainClock | None = None,
        limit_s: float | None = None,
    ) -> None:
        super().__init__()
        self.fn, self.epochs, self.steps = fn, epochs, steps
        self.clock, self.limit_s = clock, limit_s
        self._t0 = time.perf_counter()
        self._epoch = 0
        self._first_epoch: int | None = None

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def _eta(self, done_through: int, elapsed: float) -> float | None:
        if self._first_epoch is None:
            return None
        done = done_through - self._first_epoch
        if done <= 0:
            return None
        eta = elapsed / done * (self.epochs - done_through)
        left = self.clock.remaining(self.limit_s) if self.clock is not None else None
        return eta if left is None else min(eta, left)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch + 1
        if self._first_epoch is None:
            self._first_epoch = epoch
        t = self._elapsed()
        self.fn(TrainEvent("epoch_begin", self._epoch, self.epochs, 0, self.steps, {}, t, self._eta(epoch, t)))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        t = self._elapsed()
        self.fn(TrainEvent("batch", self._epoch, self.epochs, batch + 1, self.steps, _floats(logs), t,
                           self._eta(self._epoch - 1, t)))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        t = self._elapsed()
        self.fn(TrainEvent("epoch_end", epoch + 1, self.epochs, self.steps or 0, self.steps, _floats(logs), t,
                           self._eta(epoch + 1, t)))


def _floats(logs: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
