"""The monitored value and the plateau callbacks: whether a value improves (``monitor_mode``,
``is_improvement``), and Keras' ``ReduceLROnPlateau`` / ``EarlyStopping`` that keep counting across a resume
(``plateau_state`` restores their ``(best, wait)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import keras

from segkit.config import TrainConfig

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
    """Mixin for Keras plateau callbacks that can start from a saved ``(best, wait)`` (see
    ``plateau_state``)."""

    def __init__(
        self, *args: Any, initial_state: tuple[float | None, int] = (None, 0), **kwargs: Any
    ) -> None:
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
    """``ReduceLROnPlateau`` and ``EarlyStopping`` configured from ``train.reduce_lr`` /
    ``train.early_stopping``.

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
