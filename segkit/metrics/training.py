"""Keras metrics reported during training: ``get_metrics(cfg)``.

- ``fg_dice``: mean over foreground classes of the per-class Dice of HARD predictions (argmax), from TP/FP/FN
  summed over every batch of the epoch (not a mean of per-batch Dice).
- ``dice_<classname>``: the same per foreground class (name lower-cased, non-alphanumerics -> ``_``).
- ``seed_dice_coef_multiclass``: the seed experiments' ``dice_coef_multiclass``, reproduced faithfully for
  comparison with their published numbers. It is NOT a foreground Dice: it sums over all channels including
  background, so it equals soft pixel accuracy and an all-background model scores ~0.99 on sparse masks.

Empty-class convention (nnU-Net's): a class absent from both truth and prediction over the whole epoch has
an undefined Dice: ``dice_<class>`` is NaN and the class is left out of the ``fg_dice`` mean. If every
foreground class is absent, ``fg_dice`` is 0.0 (kept finite so checkpoint/plateau monitors work). A class
present in only one of truth/prediction scores 0.

All metrics cast their inputs to float32 (mixed precision safe), use only ``keras.ops`` (``jit_compile`` safe)
and keep their state in variables (``update_state`` / ``result`` / ``reset_state``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import keras
from keras import ops

if TYPE_CHECKING:
    from segkit.config import Config


# === Pure functions ===


def hard_confusion_counts(y_true: Any, y_pred: Any, num_classes: int) -> tuple[Any, Any, Any]:
    """TP, FP, FN per class of argmax predictions.

    Args:
        y_true: one-hot ``(B, H, W, C)`` (argmax is taken, so soft labels work too).
        y_pred: probabilities or logits ``(B, H, W, C)``.
        num_classes: C.

    Returns:
        ``(tp, fp, fn)``, each ``(C,)`` float32 pixel counts.
    """
    t = ops.one_hot(ops.argmax(y_true, axis=-1), num_classes, dtype="float32")
    p = ops.one_hot(ops.argmax(y_pred, axis=-1), num_classes, dtype="float32")
    axes = (0, 1, 2)
    tp = ops.sum(t * p, axis=axes)
    fp = ops.sum((1.0 - t) * p, axis=axes)
    fn = ops.sum(t * (1.0 - p), axis=axes)
    return tp, fp, fn


def dice_from_counts(tp: Any, fp: Any, fn: Any) -> Any:
    """``2 TP / (2 TP + FP + FN)`` per class; NaN where ``2 TP + FP + FN == 0`` (class absent from both)."""
    denom = 2.0 * tp + fp + fn
    safe = ops.where(denom > 0, denom, ops.ones_like(denom))
    return ops.where(denom > 0, 2.0 * tp / safe, ops.full_like(denom, float("nan")))


def seed_dice_coef_multiclass(y_true: Any, y_pred: Any, smooth: float = 1.0) -> Any:
    """The seed experiments' ``dice_coef_multiclass`` (``src/dice_coef_multiclass.py``), unchanged.

    Formula: per sample, ``(2 * sum(t * p) + smooth) / (sum(t) + sum(p) + smooth)`` with the sums over H, W
    AND channels (background included), then the mean over the batch. With one-hot ``t`` and softmax ``p``
    both sums are ``H * W``, so this is soft pixel accuracy.

    Args:
        y_true: one-hot ``(B, H, W, C)``.
        y_pred: probabilities ``(B, H, W, C)``.
        smooth: the seed's 1.

    Returns:
        scalar float32.
    """
    t, p = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    inter = ops.sum(t * p, axis=(1, 2, 3))
    union = ops.sum(t, axis=(1, 2, 3)) + ops.sum(p, axis=(1, 2, 3))
    return ops.mean((2.0 * inter + smooth) / (union + smooth), axis=0)


def metric_name(class_name: str) -> str:
    """``dice_<name>`` with the name lower-cased and every non-alphanumeric run replaced by ``_``.

    Example:
        >>> metric_name("Left Atrium-2")
        'dice_left_atrium_2'
    """
    return "dice_" + re.sub(r"[^0-9a-z]+", "_", class_name.lower()).strip("_")


# === Stateful metrics ===


@keras.saving.register_keras_serializable(package="segkit")
class ForegroundDice(keras.metrics.Metric):
    """Epoch-level Dice of argmax predictions from accumulated TP/FP/FN.

    Args:
        num_classes: C, background (channel 0) included.
        class_index: a foreground class id (1..C-1) to report that class's Dice, or None for the mean over
            foreground classes (empty-class convention in the module docstring).
        name: metric name.

    Example:
        >>> m = ForegroundDice(3, name="fg_dice")
        >>> m.update_state(y_true, y_pred); float(m.result())
    """

    def __init__(
        self, num_classes: int, class_index: int | None = None, name: str = "fg_dice", **kwargs: Any
    ):
        kwargs.pop("dtype", None)
        super().__init__(name=name, dtype="float32", **kwargs)
        if num_classes < 2:
            raise ValueError(f"ForegroundDice needs num_classes >= 2 (background + 1), got {num_classes}")
        if class_index is not None and not 1 <= class_index < num_classes:
            raise ValueError(f"class_index {class_index} is not a foreground class of 1..{num_classes - 1}")
        self.num_classes = int(num_classes)
        self.class_index = class_index
        shape = (self.num_classes,)
        # float64 keeps pixel counts exact far past 2**24 (an epoch of 512x512 slices)
        self.tp = self.add_variable(shape, initializer="zeros", dtype="float64", name="tp")
        self.fp = self.add_variable(shape, initializer="zeros", dtype="float64", name="fp")
        self.fn = self.add_variable(shape, initializer="zeros", dtype="float64", name="fn")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add the batch's counts. ``sample_weight`` is ignored (every pixel counts once)."""
        tp, fp, fn = hard_confusion_counts(y_true, y_pred, self.num_classes)
        self.tp.assign_add(ops.cast(tp, "float64"))
        self.fp.assign_add(ops.cast(fp, "float64"))
        self.fn.assign_add(ops.cast(fn, "float64"))

    def result(self) -> Any:
        dice = ops.cast(dice_from_counts(self.tp, self.fp, self.fn), "float32")
        if self.class_index is not None:
            return dice[self.class_index]
        fg = dice[1:]
        present = ops.logical_not(ops.isnan(fg))
        n = ops.sum(ops.cast(present, "float32"))
        total = ops.sum(ops.where(present, fg, ops.zeros_like(fg)))
        return ops.where(n > 0, total / ops.maximum(n, 1.0), 0.0)

    def reset_state(self) -> None:
        for v in (self.tp, self.fp, self.fn):
            v.assign(ops.zeros(v.shape, dtype="float64"))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes, "class_index": self.class_index}


@keras.saving.register_keras_serializable(package="segkit")
class SeedDiceCoefMulticlass(keras.metrics.Mean):
    """The seed's ``dice_coef_multiclass`` as Keras 2 reported it: the mean over batches of the batch value.

    Background-inflated (see ``seed_dice_coef_multiclass``); kept only to compare with the seed experiments'
    published numbers. Never use it to select models.
    """

    def __init__(self, smooth: float = 1.0, name: str = "seed_dice_coef_multiclass", **kwargs: Any):
        kwargs.pop("dtype", None)
        super().__init__(name=name, dtype="float32", **kwargs)
        self.smooth = float(smooth)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch's value (``sample_weight`` ignored, as in the seed)."""
        super().update_state(seed_dice_coef_multiclass(y_true, y_pred, self.smooth))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "smooth": self.smooth}


def get_metrics(cfg: Config) -> list[keras.metrics.Metric]:
    """The training metrics for ``cfg``: ``fg_dice``, ``dice_<class>`` per foreground class, then
    ``seed_dice_coef_multiclass``.

    Args:
        cfg: a validated ``segkit.config.Config`` (classes from ``cfg.effective_classes``).

    Returns:
        Fresh metric objects (a new list per call; Keras metrics must not be shared between models).
    """
    n = cfg.num_classes
    metrics: list[keras.metrics.Metric] = [ForegroundDice(n, name="fg_dice")]
    for spec in cfg.effective_classes:
        metrics.append(ForegroundDice(n, class_index=spec.id, name=metric_name(spec.name)))
    metrics.append(SeedDiceCoefMulticlass())
    return metrics


__all__ = [
    "ForegroundDice",
    "SeedDiceCoefMulticlass",
    "dice_from_counts",
    "get_metrics",
    "hard_confusion_counts",
    "metric_name",
    "seed_dice_coef_multiclass",
]
