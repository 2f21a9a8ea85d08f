"""``train.ema``: train with an exponential moving average of the weights (Polyak averaging, Keras'
``use_ema`` optimizers) and use the averaged weights wherever the run is judged or saved.

The optimizer keeps the average (``new = m * old + (1 - m) * weights`` after every batch, ``m`` per batch
being ``train.ema ** (1 / train.accumulate_steps)``; the first step starts it at the weights).
``WeightAverage`` puts it into the model

- for validation (Keras' ``SwapEMAWeights``: ``on_test_begin`` / ``on_test_end``), so ``val_*`` logs, the
  best-epoch choice, plateau LR and early stopping judge the averaged weights;
- at the end of each epoch between ``WeightAverage.put_in`` and ``WeightAverage.take_out``: the callbacks
  placed between them (checkpoints, previews) see the averaged weights, those after (the resume backup) the
  trained ones, so ``backup/`` holds the trained weights and the average in the optimizer's state and a
  resumed run continues exactly. ``last.keras`` of a compiled model (written inside the window) holds them
  the other way round: ``trained_weights_back`` exchanges them after a resume loads it.

Nothing is swapped before the optimizer's first step (the average does not exist yet).

After ``fit``, Keras itself copies the average into the model (``finalize_variable_values``).
Keras' own ``SwapEMAWeights(swap_on_epoch=True)`` is not used because it leaves the average in the model
through the resume backup, and after a stop before ``train.epochs`` (time limit, early stopping) the model
ends with the trained weights: its epoch-end swap leaves them in the average's slot, which ``fit``'s
``finalize_variable_values`` then copies in (it repairs the slot only at the last epoch). The swaps copy
(exact), where Keras' add and subtract.

Example:
    >>> avg = WeightAverage()
    >>> model.fit(..., callbacks=[avg, avg.put_in, checkpoint, avg.take_out, backup])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


class _EpochEnd(keras.callbacks.Callback):
    """Calls ``fn`` at the end of every epoch (one side of ``WeightAverage``'s epoch-end window)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self._fn = fn

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._fn()


class WeightAverage(keras.callbacks.SwapEMAWeights):
    """Validation with the optimizer's weight average, and the average in the model between ``put_in`` and
    ``take_out`` at each epoch end (module docs). Needs an optimizer made with ``use_ema=True``."""

    def __init__(self) -> None:
        super().__init__(swap_on_epoch=False)
        self._ema_weights_in_model: bool = False
        self.put_in = _EpochEnd(self._average_in)
        self.take_out = _EpochEnd(self._average_out)

    def _optimizer_steps(self) -> int:
        """Steps the optimizer (the inner one under a loss-scale optimizer) applied: the average exists only
        after the first (it starts as zeros, and a float16 run may skip its first steps on overflow)."""
        opt = self.model.optimizer
        return int(getattr(opt, "inner_optimizer", opt).iterations.numpy())

    def swap(self) -> None:
        """Exchange the model's weights and the optimizer's average (nothing before the first step)."""
        if self._optimizer_steps():
            self._swap_variables()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._average_in()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._average_out()

    def _swap_variables(self) -> None:
        """Swap weights and average through a copy, exactly (Keras' TensorFlow path swaps by additions and
        subtractions, which leaves the trained weights off by rounding after every swap)."""
        self._apply_to_ema_optimizers(self._backend_swap_variables, self._backend_swap_variables)

    def _average_in(self) -> None:
        if not self._ema_weights_in_model and self._optimizer_steps():
            self._swap_variables()
            self._ema_weights_in_model = True

    def _average_out(self) -> None:
        if self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = False


def trained_weights_back(model: keras.Model) -> None:
    """After ``model.load_weights(last.keras)`` of a compiled model (weights and optimizer state): the file
    was saved inside the window, with the average as the weights and the trained weights in the optimizer's
    average; exchange them so that training continues as it was (``segkit.train.fit._restore``)."""
    average = WeightAverage()
    average.set_model(model)
    average.swap()


__all__ = ["WeightAverage", "trained_weights_back"]
