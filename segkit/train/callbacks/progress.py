"""Progress of a training run: ``TrainEvent``s sent by ``ProgressReporter`` to a plain callable (the CLI draws
them with rich); ``TaskEvents`` sends the steps after ``fit`` (the post-processing choice) the same way."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import keras
import numpy as np

from segkit.train.callbacks.clock import TrainClock


@dataclass
class TrainEvent:
    """One progress event of a training run.

    Attributes:
        kind: ``start`` (``info`` holds model/data facts), ``epoch_begin``, ``batch``, ``epoch_end``, ``end``;
            ``task`` / ``task_step``: a step after training (``info["task"]``, e.g. ``postprocessing``)
            began / advanced, ``step`` of ``steps`` units done (``TaskEvents``).
        epoch: 1-based epoch.
        epochs: total epochs of the run.
        step: 1-based step within the epoch (``batch`` events).
        steps: steps per epoch (``None`` when unknown).
        logs: current metrics (running means during an epoch; train + val at ``epoch_end``).
        elapsed_s: seconds since training started.
        eta_s: estimated seconds left for the whole run (``None`` until one epoch is done).
        info: facts printed at start (model, params, GFLOP, precision, device, dataset sizes).
    """

    kind: Literal["start", "epoch_begin", "batch", "epoch_end", "end", "task", "task_step"]
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int | None = None
    logs: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    eta_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[TrainEvent], None]


class TaskEvents:
    """A ``segkit.progress.Progress`` that forwards ``start`` / ``advance`` as ``task`` / ``task_step``
    ``TrainEvent``s, so a training run's progress callable also hears of the post-processing choice."""

    def __init__(self, fn: ProgressFn, epoch: int, epochs: int) -> None:
        self.fn, self.epoch, self.epochs = fn, epoch, epochs
        self._t0 = time.perf_counter()
        self._name, self._total, self._done = "", 0, 0

    def start(self, total: int, description: str = "") -> None:
        self._name, self._total, self._done = description, total, 0
        self.fn(TrainEvent("task", self.epoch, self.epochs, 0, total, elapsed_s=self._elapsed(),
                           info={"task": description}))

    def advance(self, n: int = 1) -> None:
        self._done += n
        self.fn(TrainEvent("task_step", self.epoch, self.epochs, self._done, self._total,
                           elapsed_s=self._elapsed(), info={"task": self._name}))

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0


class ProgressReporter(keras.callbacks.Callback):
    """Forward Keras callback hooks to ``fn(TrainEvent)``; the ETA is the mean epoch time of this session
    times the epochs left, capped by what remains of the time limit (``clock`` + ``limit_s``). From the
    second epoch of a session on, the session's first epoch (which includes tracing and the XLA compile) is
    left out of the mean."""

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
        self._first_epoch_s: float | None = None  # duration of the session's first epoch

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def _eta(self, done_through: int, elapsed: float) -> float | None:
        if self._first_epoch is None:
            return None
        done = done_through - self._first_epoch
        if done <= 0:
            return None
        if done >= 2 and self._first_epoch_s is not None:  # the compile epoch would inflate the mean
            per_epoch = (elapsed - self._first_epoch_s) / (done - 1)
        else:
            per_epoch = elapsed / done
        eta = per_epoch * (self.epochs - done_through)
        left = self.clock.remaining(self.limit_s) if self.clock is not None else None
        return eta if left is None else min(eta, left)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch + 1
        if self._first_epoch is None:
            self._first_epoch = epoch
        t = self._elapsed()
        self.fn(TrainEvent("epoch_begin", self._epoch, self.epochs, 0, self.steps, {}, t,
                           self._eta(epoch, t)))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        t = self._elapsed()
        self.fn(TrainEvent("batch", self._epoch, self.epochs, batch + 1, self.steps, _floats(logs), t,
                           self._eta(self._epoch - 1, t)))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        t = self._elapsed()
        if self._first_epoch_s is None:
            self._first_epoch_s = t
        self.fn(TrainEvent("epoch_end", epoch + 1, self.epochs, self.steps or 0, self.steps, _floats(logs), t,
                           self._eta(epoch + 1, t)))


def _floats(logs: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
