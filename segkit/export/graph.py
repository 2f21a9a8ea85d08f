"""The graph ``segkit export`` converts: the loaded model with each 2D ``GroupNormalization`` replaced by
``RowMeanGroupNormalization``, the same function with its group statistics summed in a shorter order.

Keras' ``GroupNormalization`` takes each group's mean and variance with one reduction over H x W x C/groups
values (32768 for a 128x128 input with 16 channels in 8 groups); tf2onnx turns it into one ``ReduceMean``
over non-adjacent axes, whose float32 sum in ONNX Runtime is far less exact. Measured on the left-atrial bench
run (``make bench-deploy``, 3 test volumes, against a float64 evaluation of the same weights): layer by layer
the ONNX graph's error jumps at the first group normalization (1.2e-7 of the activation scale after the first
convolution, 8e-5 after its group normalization) and reaches 2.1e-3 in the probabilities, whatever the opset
(13, 15, 18) and with ONNX Runtime's graph optimisations on or off; Keras float32 in batches of 8 is 8e-6 away
(TensorFlow run on a single image has the same problem: 3.0e-3 on the worst slice). Averaging over the image
height first (W x C/groups means of H values each, then their mean) is the same arithmetic with far shorter
float32 sums:
the exported graph is 8e-6 from float64 on the same volumes. The element-wise work runs on the (B, H, W, C)
tensor against per-channel vectors, the broadcast ONNX Runtime vectorises: on the 5D group view it took a
third of the run (one core, batch 8 of 128x128 through the left-atrial preset's model: 0.31-0.36 s, now
0.19 s). The swap is made on a copy for export only; trained models are unchanged.

Example:
    >>> graph = exportable(net)      # net.predict_on_batch(x) and graph(x) agree within float32 rounding
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras


def _layer_class() -> Any:
    """``RowMeanGroupNormalization`` (defined on first use: Keras is imported only by an export)."""
    from keras import layers, ops

    class RowMeanGroupNormalization(layers.GroupNormalization):
        """``keras.layers.GroupNormalization`` (channels last, 4D inputs) whose group mean and variance are
        means over the height first, then over width and the group's channels."""

        def call(self, inputs: Any) -> Any:
            x = ops.cast(inputs, "float32")  # (B, H, W, C)
            channels = int(inputs.shape[-1])
            per_group = channels // self.groups

            def group_mean(v: Any) -> Any:  # (B, H, W, C) -> (B, 1, 1, C): each channel its group's mean
                g = ops.reshape(v, (-1, ops.shape(v)[1], ops.shape(v)[2], self.groups, per_group))
                m = ops.mean(ops.mean(g, axis=1, keepdims=True), axis=(2, 4), keepdims=True)
                return ops.reshape(ops.repeat(m, per_group, axis=4), (-1, 1, 1, channels))

            # element-wise work on (B, H, W, C) against per-channel vectors: the broadcast ONNX Runtime
            # vectorises (a (B, 1, 1, groups, 1) broadcast over the 5D view ran 3x slower)
            mean = group_mean(x)
            centred = x - mean
            inv = ops.rsqrt(group_mean(ops.square(centred)) + self.epsilon)
            if self.scale:
                inv = inv * ops.cast(self.gamma, "float32")
            out = centred * inv
            if self.center:
                out = out + ops.cast(self.beta, "float32")
            return ops.cast(out, self.compute_dtype)

    return RowMeanGroupNormalization


def _row_mean_norm(layer: Any) -> bool:
    from keras import layers

    spec = getattr(layer, "input_spec", None)
    return (type(layer) is layers.GroupNormalization and spec is not None and spec.ndim == 4
            and layer.axis in (-1, 3))


def _exact_gelu_dense(layer: Any) -> bool:
    from keras import activations, layers

    return type(layer) is layers.Dense and layer.activation is activations.gelu


def erf_gelu(x: Any) -> Any:
    """Exact GELU written with ``erf``, ``0.5 x (1 + erf(x / sqrt 2))``: Keras' ``gelu`` is TensorFlow's
    ``0.5 x erfc(-x / sqrt 2)``, and tf2onnx has no ONNX op for ``Erfc`` (``Erf`` it converts)."""
    from keras import ops

    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


def _walk(layer: Any) -> list[Any]:
    return [layer, *[sub for child in getattr(layer, "layers", []) for sub in _walk(child)]]


def exportable(net: keras.Model) -> keras.Model:
    """A copy of ``net`` (nested member models included) sharing its layers and weights, except that each
    channels-last ``GroupNormalization`` on 4D inputs is a ``RowMeanGroupNormalization`` and each ``Dense``
    with Keras' exact ``gelu`` uses ``erf_gelu`` (same weights, same function), called once (Keras exports
    only a called model); ``net`` itself when it has neither. Layers inside custom layers are not reached."""
    import keras

    if not any(_row_mean_norm(layer) or _exact_gelu_dense(layer) for layer in _walk(net)):
        return net
    cls = _layer_class()

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if _row_mean_norm(layer):
            new = cls.from_config(layer.get_config())
            new.build((None, None, None, int(layer.input_spec.axes[layer.axis])))
        elif _exact_gelu_dense(layer):
            new = keras.layers.Dense.from_config({**layer.get_config(), "activation": erf_gelu})
            new.build((None, int(layer.kernel.shape[0])))
        else:
            return layer
        new.set_weights(layer.get_weights())
        return new

    copy = keras.models.clone_model(net, clone_function=clone, recursive=True)
    copy(np.zeros([1, *[32 if d is None else d for d in net.input_shape[1:]]], np.float32), training=False)
    return copy


__all__ = ["erf_gelu", "exportable"]
