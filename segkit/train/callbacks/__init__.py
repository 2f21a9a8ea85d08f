"""Keras callbacks of a segkit training run (imported only by the train stage), one module per concern.

- ``plateau``: the monitored value's direction (``monitor_mode``, ``is_improvement``) and Keras'
  ``ReduceLROnPlateau`` / ``EarlyStopping`` that keep counting across a resume (``plateau_state``).
- ``averaging``: ``WeightAverage`` (``train.ema``: validation, checkpoints and previews with the optimizer's
  moving average of the weights; the resume backup with the trained weights).
- ``checkpoints``: ``AtomicCheckpoint`` (``model.keras`` best by a monitor, ``last.keras`` every epoch,
  written through a temporary file and ``os.replace``) and ``AtomicBackup`` / ``restore_backup`` (weights and
  optimizer state after every epoch for ``--resume``; ``backup/state.json`` names the weights file and its
  SHA-256).
- ``schedule``: ``ScheduledLR`` (warm-up, then a per-step schedule, ``LRSchedule``) and ``LearningRateLogger``
  (``lr`` in the epoch logs, so ``history.csv`` and ``history.json`` see it).
- ``clock``: ``TrainClock`` (training time across resumes) and ``EpochTime`` (``time_s`` / ``epoch_s`` logs).
- ``stopping``: ``NaNGuard`` (stops at the first non-finite loss and remembers where; ``train_model`` turns
  that into a one-line error) and ``TimeLimit`` (stops when the next epoch would not fit
  ``train.time_limit``).
- ``history``: ``HistoryCSV`` (``history.csv``, epochs from 1, rewritten atomically after every epoch),
  ``HistoryWriter`` (``history.json`` and ``curves.png`` after every epoch), ``read_history_csv``,
  ``history_base`` and ``renumber_history_csv`` (0-based files of older runs).
- ``preview``: ``EpochPreview`` (predictions for fixed validation images after every epoch as
  ``epoch_XXX.png``: image | truth | prediction per row).
- ``progress``: ``ProgressReporter`` forwards epoch/batch events (``TrainEvent``) to a plain callable (the CLI
  renders it with rich); ``TaskEvents`` forwards a library ``Progress`` (the post-processing choice) there.

Every public name is importable from ``segkit.train.callbacks``.
"""

from __future__ import annotations

from segkit.train.callbacks.averaging import WeightAverage, trained_weights_back
from segkit.train.callbacks.checkpoints import (
    BACKUP_STATE,
    AtomicBackup,
    AtomicCheckpoint,
    backup_epoch,
    restore_backup,
    save_model_atomic,
)
from segkit.train.callbacks.clock import EpochTime, TrainClock
from segkit.train.callbacks.history import (
    HistoryCSV,
    HistoryWriter,
    history_base,
    plot_curves,
    read_history_csv,
    renumber_history_csv,
)
from segkit.train.callbacks.plateau import (
    Mode,
    ResumableEarlyStopping,
    ResumableReduceLROnPlateau,
    is_improvement,
    monitor_mode,
    plateau_callbacks,
    plateau_state,
)
from segkit.train.callbacks.preview import EpochPreview, preview_grid
from segkit.train.callbacks.progress import ProgressFn, ProgressReporter, TaskEvents, TrainEvent
from segkit.train.callbacks.schedule import LearningRateLogger, LRSchedule, ScheduledLR, schedule_factor
from segkit.train.callbacks.stopping import NaNGuard, TimeLimit

__all__ = [
    "BACKUP_STATE",
    "AtomicBackup",
    "AtomicCheckpoint",
    "EpochPreview",
    "EpochTime",
    "HistoryCSV",
    "HistoryWriter",
    "LRSchedule",
    "LearningRateLogger",
    "Mode",
    "NaNGuard",
    "ProgressFn",
    "ProgressReporter",
    "ResumableEarlyStopping",
    "ResumableReduceLROnPlateau",
    "ScheduledLR",
    "TaskEvents",
    "TimeLimit",
    "TrainClock",
    "TrainEvent",
    "WeightAverage",
    "backup_epoch",
    "history_base",
    "is_improvement",
    "monitor_mode",
    "plateau_callbacks",
    "plateau_state",
    "plot_curves",
    "preview_grid",
    "read_history_csv",
    "renumber_history_csv",
    "restore_backup",
    "save_model_atomic",
    "schedule_factor",
    "trained_weights_back",
]
