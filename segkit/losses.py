"""Segmentation losses by name: ``get_loss(cfg)`` looks ``cfg.loss.name`` up in ``LOSSES``.

Inputs everywhere: ``y_true`` one-hot float ``(B, H, W, C)`` (channel 0 = background), ``y_pred``
probabilities ``(B, H, W, C)`` (softmax output). Each loss is a pure function (``soft_dice_per_class``,
``tversky_per_class``, ...) plus a thin ``keras.losses.Loss`` class registered as serializable (package
"segkit") whose constructor arguments all come back from ``get_config``. Computations run in float32.

Names: ``ce`` (keras CategoricalCrossentropy; class-weighted variant when ``class_weights`` is set), ``dice``
(soft Dice over foreground classes), ``dice_ce`` (dice + ce, the default), ``focal`` (keras
CategoricalFocalCrossentropy, ``alpha`` = class weights when given), ``tversky``, ``bce_dice`` (the ALCAPA
seed's binary BCE + Dice on the foreground channel(s)).

Example:
    >>> loss = get_loss(cfg)                       # cfg.loss.name == "dice_ce"
    >>> model.compile(optimizer="adam", loss=loss)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import keras
from keras import ops

from segkit.errors import ConfigError, SegkitError
from segkit.registry import Registry

if TYPE_CHECKING:
    from segkit.config import Config

LossBuilder = Callable[..., keras.losses.Loss]
LOSSES: Registry[LossBuilder] = Registry("loss")

DEFAULT_SMOOTH = 1e-5
_EPS = 1e-7


# === Pure functions ===


def _f32(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    return ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")


def _replica_sums(*sums: Any) -> tuple[Any, ...]:
    """``sums`` added over the replicas of a ``tf.distribute`` step (unchanged with one replica or outside a
    step), so a batch Dice under ``MirroredStrategy`` covers the global batch as on one device; the
    all-reduce carries the gradient (nnU-Net all-gathers its batch Dice terms under DDP, the same way)."""
    if keras.backend.backend() != "tensorflow":
        return sums
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return sums
    return tuple(ctx.all_reduce(tf.distribute.ReduceOp.SUM, list(sums)))


def soft_dice_per_class(y_true: Any, y_pred: Any, smooth: float = DEFAULT_SMOOTH) -> Any:
    """Soft Dice of every channel, summed over the batch and the image ("batch Dice", as nnU-Net's 2D).

    Formula: ``dice_c = (2 * sum(t_c * p_c) + smooth) / (sum(t_c) + sum(p_c) + smooth)``, sums over B, H, W
    (B: the global batch; under several ``tf.distribute`` replicas the sums are all-reduced).

    Args:
        y_true: one-hot ``(B, H, W, C)``.
        y_pred: probabilities ``(B, H, W, C)``.
        smooth: added to numerator and denominator (a class absent from truth and prediction scores 1).

    Returns:
        ``(C,)`` float32 Dice per channel, background included (callers drop channel 0).
    """
    t, p = _f32(y_true, y_pred)
    axes = (0, 1, 2)
    inter, denom = _replica_sums(ops.sum(t * p, axis=axes), ops.sum(t, axis=axes) + ops.sum(p, axis=axes))
    return (2.0 * inter + smooth) / (denom + smooth)


def tversky_per_class(
    y_true: Any, y_pred: Any, alpha: float = 0.3, beta: float = 0.7, smooth: float = DEFAULT_SMOOTH
) -> Any:
    """Tversky index per channel (Salehi et al. 2017), sums over B, H, W.

    Formula: ``TI_c = (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)`` with soft
    ``TP = sum(t p)``, ``FP = sum((1 - t) p)``, ``FN = sum(t (1 - p))``. ``alpha = beta = 0.5`` is Dice.

    Returns:
        ``(C,)`` float32.
    """
    t, p = _f32(y_true, y_pred)
    axes = (0, 1, 2)
    tp, fp, fn = _replica_sums(
        ops.sum(t * p, axis=axes), ops.sum((1.0 - t) * p, axis=axes), ops.sum(t * (1.0 - p), axis=axes)
    )
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def _fg_mean(per_class: Any, class_weights: Sequence[float] | None) -> Any:
    """Mean over foreground channels 1..C-1 of ``per_class`` (weighted by ``class_weights[1:]`` if given)."""
    fg = per_class[1:]
    if class_weights is None:
        return ops.mean(fg)
    w = ops.convert_to_tensor(list(class_weights)[1:], dtype="float32")
    return ops.sum(fg * w) / ops.maximum(ops.sum(w), _EPS)


def _per_sample(value: Any, y_true: Any) -> Any:
    """Broadcast a batch-level scalar loss to ``(B,)`` so Keras' mean reduction returns it unchanged."""
    return ops.zeros_like(y_true[:, 0, 0, 0], dtype="float32") + value


def weighted_categorical_crossentropy(
    y_true: Any, y_pred: Any, class_weights: Sequence[float] | None = None
) -> Any:
    """Per-sample categorical cross-entropy, mean over pixels: ``-mean_hw(sum_c w_c t_c log p_c)``.

    Args:
        y_true, y_pred: ``(B, H, W, C)``.
        class_weights: ``(C,)`` weights, or None for 1.

    Returns:
        ``(B,)`` float32.
    """
    t, p = _f32(y_true, y_pred)
    p = ops.clip(p, _EPS, 1.0 - _EPS)
    ll = t * ops.log(p)
    if class_weights is not None:
        ll = ll * ops.convert_to_tensor(list(class_weights), dtype="float32")
    return -ops.mean(ops.sum(ll, axis=-1), axis=(1, 2))


# === Loss classes ===


class _SegLoss(keras.losses.Loss):
    def __init__(self, class_weights: Sequence[float] | None = None, name: str | None = None, **kwargs: Any):
        kwargs.setdefault("reduction", "sum_over_batch_size")
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="segkit")
class CrossEntropyLoss(_SegLoss):
    """Class-weighted categorical cross-entropy (``weighted_categorical_crossentropy``), per sample."""

    def __init__(self, class_weights: Sequence[float] | None = None, name: str = "ce", **kwargs: Any):
        super().__init__(class_weights, name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return weighted_categorical_crossentropy(y_true, y_pred, self.class_weights)


@keras.saving.register_keras_serializable(package="segkit")
class DiceLoss(_SegLoss):
    """``1 - mean over foreground classes of soft_dice_per_class`` (batch Dice; background excluded).

    Args:
        class_weights: ``(C,)``; ``class_weights[1:]`` weight the foreground classes' mean.
        smooth: see ``soft_dice_per_class``.

    Example:
        >>> DiceLoss()(y_true, y_pred)   # y_true one-hot (B, H, W, C), y_pred softmax
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        smooth: float = DEFAULT_SMOOTH,
        name: str = "dice",
        **kwargs: Any,
    ):
        super().__init__(class_weights, name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        dice = _fg_mean(soft_dice_per_class(y_true, y_pred, self.smooth), self.class_weights)
        return _per_sample(1.0 - dice, y_true)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="segkit")
class DiceCELoss(DiceLoss):
    """``DiceLoss + CrossEntropyLoss`` (both with the same class weights): segkit's default loss."""

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        smooth: float = DEFAULT_SMOOTH,
        name: str = "dice_ce",
        **kwargs: Any,
    ):
        super().__init__(class_weights, smooth, name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return super().call(y_true, y_pred) + weighted_categorical_crossentropy(
            y_true, y_pred, self.class_weights
        )


@keras.saving.register_keras_serializable(package="segkit")
class TverskyLoss(_SegLoss):
    """``1 - mean over foreground classes of tversky_per_class`` (``alpha`` weighs FP, ``beta`` FN)."""

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        class_weights: Sequence[float] | None = None,
        smooth: float = DEFAULT_SMOOTH,
        name: str = "tversky",
        **kwargs: Any,
    ):
        super().__init__(class_weights, name=name, **kwargs)
        self.alpha, self.beta, self.smooth = float(alpha), float(beta), float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ti = tversky_per_class(y_true, y_pred, self.alpha, self.beta, self.smooth)
        return _per_sample(1.0 - _fg_mean(ti, self.class_weights), y_true)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="segkit")
class BCEDiceLoss(_SegLoss):
    """The ALCAPA seed's ``bce_dice_loss`` on the foreground channel(s) ``[..., 1:]``.

    Formula (seed ``losses.py``): ``mean(BCE(t, p)) + 1 - (2 * sum(t p) + 1) / (sum(t) + sum(p) + 1)``, with
    ``t = y_true[..., 1:]``, ``p = y_pred[..., 1:]`` and the Dice sums over the whole batch (smooth 1). For a
    binary task (C = 2) this is exactly the seed's single sigmoid channel. Class weights are not used.
    """

    def __init__(self, smooth: float = 1.0, name: str = "bce_dice", **kwargs: Any):
        kwargs.pop("class_weights", None)
        super().__init__(None, name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        t, p = _f32(y_true, y_pred)
        t, p = t[..., 1:], ops.clip(p[..., 1:], _EPS, 1.0 - _EPS)
        bce = -ops.mean(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p), axis=(1, 2, 3))
        dice = (2.0 * ops.sum(t * p) + self.smooth) / (ops.sum(t) + ops.sum(p) + self.smooth)
        return bce + (1.0 - dice)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smooth": self.smooth}


# === Registry ===


@LOSSES.register("ce")
def _ce(class_weights: Sequence[float] | None, **_: Any) -> keras.losses.Loss:
    if class_weights is None:
        return keras.losses.CategoricalCrossentropy(name="ce")
    return CrossEntropyLoss(class_weights)


@LOSSES.register("dice")
def _dice(class_weights: Sequence[float] | None, **_: Any) -> keras.losses.Loss:
    return DiceLoss(class_weights)


@LOSSES.register("dice_ce")
def _dice_ce(class_weights: Sequence[float] | None, **_: Any) -> keras.losses.Loss:
    return DiceCELoss(class_weights)


@LOSSES.register("focal")
def _focal(class_weights: Sequence[float] | None, focal_gamma: float, **_: Any) -> keras.losses.Loss:
    alpha: float | list[float] = 0.25 if class_weights is None else list(class_weights)
    return keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=focal_gamma, name="focal")


@LOSSES.register("tversky")
def _tversky(
    class_weights: Sequence[float] | None, tversky_alpha: float, tversky_beta: float, **_: Any
) -> keras.losses.Loss:
    return TverskyLoss(tversky_alpha, tversky_beta, class_weights)


@LOSSES.register("bce_dice")
def _bce_dice(**_: Any) -> keras.losses.Loss:
    return BCEDiceLoss()


def get_loss(cfg: Config) -> keras.losses.Loss:
    """The loss named by ``cfg.loss.name``, configured from ``cfg.loss``.

    Args:
        cfg: a validated ``segkit.config.Config``.

    Returns:
        A ``keras.losses.Loss`` taking one-hot ``y_true`` and probabilities ``y_pred``, both ``(B, H, W, C)``.

    Raises:
        ConfigError: unknown name (``loss.name``) or ``class_weights`` whose length is not ``cfg.num_classes``
            (``loss.class_weights``).
    """
    lc = cfg.loss
    weights = lc.class_weights
    if weights is not None and len(weights) != cfg.num_classes:
        raise ConfigError(
            f"class_weights has {len(weights)} values but the model has {cfg.num_classes} classes "
            "(background included)",
            path="loss.class_weights",
            hint=f"give {cfg.num_classes} weights, background first",
        )
    try:
        builder = LOSSES.get(lc.name)
    except SegkitError as e:
        raise ConfigError(e.message, path="loss.name", hint=e.hint) from e
    return builder(
        class_weights=weights,
        focal_gamma=lc.focal_gamma,
        tversky_alpha=lc.tversky_alpha,
        tversky_beta=lc.tversky_beta,
    )


__all__ = [
    "LOSSES",
    "BCEDiceLoss",
    "CrossEntropyLoss",
    "DiceCELoss",
    "DiceLoss",
    "TverskyLoss",
    "get_loss",
    "soft_dice_per_class",
    "tversky_per_class",
    "weighted_categorical_crossentropy",
]
