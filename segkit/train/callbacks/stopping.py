"""Callbacks that end training early: ``NaNGuard`` (a non-finite loss) and ``TimeLimit``
(``train.time_limit``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import keras

from segkit.train.callbacks.clock import TrainClock

log = logging.getLogger(__name__)


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
                "time limit: epoch %d ended at %.0f s of %.0f s; the next epoch (~%.0f s) would not fit,"
                " stopping",
                epoch + 1, now, self.limit_s, self.estimate_s,
            )
