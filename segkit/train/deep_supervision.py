"""Deep supervision (``train.deep_supervision``): auxiliary softmax heads on the decoder's lower levels.

nnU-Net trains every U-Net with a loss on the decoder's output at each resolution, not only the last, which
gives the deep layers a short path to the loss (Lee et al. 2015, "Deeply-supervised nets"; Isensee et al.
2021, nnU-Net). segkit's version, for the models built on FlexUNet's decoder (``segkit.models.flexunet
.decoder``, where the level-``f`` output feeds the layer ``up{f-1}``):

- level ``f = 1..n`` gets the models' own ``segmentation_head`` (a 1x1 convolution to the classes and a
  float32 softmax) with its logits up-sampled bilinearly by ``2**f`` to the input size: the targets stay the
  input-size masks the pipeline already makes (nnU-Net down-samples the targets instead; up-sampling the
  logits keeps ``segkit.data`` unchanged and costs little next to the convolutions);
- the loss is ``sum_i w_i * loss(y, p_i)`` over the main output (``i = 0``) and the heads, with
  ``w_i = 2**-i`` normalised to sum to 1 (nnU-Net's weights; nnU-Net supervises every decoder level but gives
  the lowest weight 0, which is ``train.deep_supervision = model.num_layers - 3`` here); ``loss`` and
  ``val_loss`` in the history are that sum;
- the training model returns the outputs concatenated on the channel axis, so Keras' own ``fit`` and
  ``train_step``, the log keys (``val_fg_dice``...) and the time limit are those of a plain run; the metrics
  score the main output only (``MainOutput``);
- the model saved (``model.keras``, ``last.keras``) is the plain network: the heads exist only while
  training, in ``backup/`` (an interrupted run resumes with them). A finished run resumed to more epochs
  starts from ``last.keras``: its heads and optimizer state start afresh (``segkit.train.fit`` warns).

Example:
    >>> net = build_model(cfg)                         # (B, H, W, K) probabilities
    >>> trainer = with_deep_supervision(net, 2, cfg.num_classes)
    >>> trainer.output_shape                           # (B, H, W, 3 K): main, level 1, level 2
    >>> trainer.compile(loss=DeepSupervisionLoss(get_loss(cfg), cfg.num_classes, 2),
    ...                 metrics=[MainOutput(m, cfg.num_classes) for m in get_metrics(cfg)])
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from segkit.errors import ConfigError
from segkit.models.blocks import segmentation_head


def level_weights(levels: int) -> list[float]:
    """Loss weights of the main output and ``levels`` heads: ``2**-i``, normalised to sum to 1.

    Example:
        >>> level_weights(2)
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285]
    """
    raw = [2.0 ** -i for i in range(levels + 1)]
    return [w / sum(raw) for w in raw]


def with_deep_supervision(net: keras.Model, levels: int, num_classes: int) -> keras.Model:
    """The training model of ``net`` with heads on its decoder's ``levels`` lower levels.

    It shares ``net``'s layers (training it trains ``net``) and returns ``(B, H, W, (levels + 1) *
    num_classes)`` float32 probabilities: ``net``'s output first, then the heads of levels ``1..levels``, each
    up-sampled to ``net``'s output size.

    Raises:
        ValueError: ``levels`` < 1.
        ConfigError: ``net`` has no decoder level ``f`` for a level asked for: no layer ``up{f-1}`` that its
            output feeds or no ``up{f}`` that feeds it (not FlexUNet's decoder, or ``f`` is the bottom level).
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    outputs = [net.outputs[0]]
    out_h = int(net.outputs[0].shape[1])
    names = {layer.name for layer in net.layers}
    for f in range(1, levels + 1):
        if f"up{f - 1}" not in names or f"up{f}" not in names:
            raise ConfigError(
                f"train.deep_supervision {levels}: the model {net.name} has no decoder level {f} "
                f"(layers up{f - 1} and up{f} of FlexUNet's decoder)",
                path="train.deep_supervision",
                hint="lower train.deep_supervision, or use a model that ends in FlexUNet's decoder",
            )
        features = net.get_layer(f"up{f - 1}").input
        factor = out_h // int(features.shape[1])
        outputs.append(segmentation_head(features, num_classes, name=f"ds{f}", upsample=factor))
    joined = layers.Concatenate(axis=-1, dtype="float32", name="ds_outputs")(outputs)
    return keras.Model(net.inputs, joined, name=f"{net.name}_deep_supervision")


class DeepSupervisionLoss(keras.losses.Loss):
    """``sum_i w_i * base(y_true, y_pred[..., i K:(i+1) K])`` over the main output and the heads
    (``level_weights``); ``y_true`` is the one-hot ``(B, H, W, K)`` mask of every output.

    Each ``base`` call reduces itself (and, under a distribution strategy, scales by the replica count), so
    ``call`` returns a scalar, which Keras' reduction passes through unchanged: the replicas' scaling is
    applied once.
    """

    def __init__(self, base: keras.losses.Loss, num_classes: int, levels: int, name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name=name or f"deep_supervision_{base.name}", **kwargs)
        self.base, self.num_classes, self.levels = base, int(num_classes), int(levels)
        self.level_weights = level_weights(self.levels)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        k = self.num_classes
        total = 0.0
        for i, w in enumerate(self.level_weights):
            total = total + w * self.base(y_true, y_pred[..., i * k:(i + 1) * k])
        return total


class MainOutput(keras.metrics.Metric):
    """``inner`` scored on the main output only (the first ``num_classes`` channels); same name, same value
    as ``inner`` on a plain model."""

    def __init__(self, inner: keras.metrics.Metric, num_classes: int, **kwargs: Any) -> None:
        super().__init__(name=kwargs.pop("name", inner.name), **kwargs)
        self.inner, self.num_classes = inner, int(num_classes)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        self.inner.update_state(y_true, y_pred[..., :self.num_classes], sample_weight)

    def result(self) -> Any:
        return self.inner.result()

    def reset_state(self) -> None:
        self.inner.reset_state()


__all__ = ["DeepSupervisionLoss", "MainOutput", "level_weights", "with_deep_supervision"]
