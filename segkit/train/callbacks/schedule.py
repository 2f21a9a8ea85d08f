"""The learning rate: ``ScheduledLR`` (warm-up, then ``constant`` / ``poly`` / ``cosine``, per step) and
``LearningRateLogger`` (``lr`` in the epoch logs)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras

from segkit.train.callbacks.clock import TrainClock


class LearningRateLogger(keras.callbacks.Callback):
    """Add ``lr`` (the learning rate of the epoch's first step, float) to the epoch logs; drop Keras'
    ``learning_rate``.

    Place it after ``ReduceLROnPlateau`` (which adds ``learning_rate`` = the rate for the next epoch) and
    before ``HistoryCSV``. With a per-step schedule (``ScheduledLR``) the logged rate is the one of the first
    step.
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


@dataclass(frozen=True)
class LRSchedule:
    """What ``ScheduledLR`` follows.

    Attributes:
        base_lr: the peak learning rate (``train.learning_rate``).
        name: ``constant``, ``poly`` or ``cosine`` (``train.schedule``).
        epochs: ``train.epochs``.
        steps: training steps per epoch.
        warmup_epochs: warm-up length in epochs (fractions allowed; ``train.warmup_epochs``).
    """

    base_lr: float
    name: str
    epochs: int
    steps: int
    warmup_epochs: float = 0.0


class ScheduledLR(keras.callbacks.Callback):
    """Set the learning rate before every training step: linear warm-up over ``warmup_epochs``, then
    ``schedule_factor`` with run progress = the larger of epochs done / ``epochs`` and time spent /
    ``limit_s`` (so a time-limited run decays to zero as its budget runs out).

    Args:
        schedule: the peak rate, schedule name, run length and warm-up (``LRSchedule``).
        clock: the run's ``TrainClock`` (needed with ``limit_s``).
        limit_s: the time budget, or ``None``.
    """

    def __init__(
        self, schedule: LRSchedule, clock: TrainClock | None = None, limit_s: float | None = None
    ) -> None:
        super().__init__()
        s = schedule
        self.base_lr, self.name, self.epochs = float(s.base_lr), s.name, int(s.epochs)
        self.steps = max(1, int(s.steps))
        self.warmup_epochs, self.clock, self.limit_s = float(s.warmup_epochs), clock, limit_s
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
