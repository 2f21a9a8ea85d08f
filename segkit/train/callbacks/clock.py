"""Training time of a run across resumes: ``TrainClock`` and ``EpochTime`` (``time_s`` / ``epoch_s`` in the
epoch logs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras


class TrainClock:
    """Training wall time of a run across resumes: seconds spent by earlier calls plus seconds since this one
    began.

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
    and how long an epoch takes. Place it before ``HistoryCSV``."""

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
