"""The one progress protocol of the library: ``start(total, description)`` then ``advance(n)``.

Every long-running library function (``run_prepare``, ``evaluate_model``, ``evaluate_predictions``,
``choose_postprocessing``, ``infer_volume``, ``infer_folder``, ``run_inference``) takes one
``progress: Progress`` argument, ``NULL_PROGRESS`` by default, and reports through it: ``start`` once per task
with the number of units it will do (slices, cases, images) and a short name for it, then ``advance`` with the
units done, summing to that total. A function that reports several tasks (``run_inference``: one per volume)
calls ``start`` again for each. The CLI draws it with rich (``segkit.cli.common.RichProgress``); training's
epochs and metrics are a different stream (``segkit.train.callbacks.TrainEvent``).

This module imports nothing heavy (no TensorFlow, no rich).

Example:
    >>> class Count:
    ...     def start(self, total: int, description: str = "") -> None:
    ...         self.total, self.done = total, 0
    ...     def advance(self, n: int = 1) -> None:
    ...         self.done += n
    >>> evaluate_model(cfg, progress=Count())
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where a library function reports its progress."""

    def start(self, total: int, description: str = "") -> None:
        """A task of ``total`` units begins (a previous one, if any, is over)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more units of the current task are done."""


class NullProgress:
    """Reports nothing: the default ``progress`` of every library function."""

    def start(self, total: int, description: str = "") -> None:
        return None

    def advance(self, n: int = 1) -> None:
        return None


NULL_PROGRESS = NullProgress()


class Part:
    """One part of a task whose ``start`` the caller already reported: ``start`` is dropped, ``advance``
    passed on.

    ``evaluate_model`` announces the slices of every volume at once and hands ``Part(progress)`` to
    ``predict_volume``, which would otherwise start a task of its own per volume.
    """

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def start(self, total: int, description: str = "") -> None:
        return None

    def advance(self, n: int = 1) -> None:
        self._progress.advance(n)


__all__ = ["NULL_PROGRESS", "NullProgress", "Part", "Progress"]
