"""MultiResUNet (Ibtehaz & Rahman 2020, arXiv:1902.04049): MultiRes blocks and Res paths.

A MultiRes block replaces the two convolutions of a U-Net level by three chained 3x3 convolutions (together a
3x3, 5x5 and 7x7 receptive field) whose outputs are concatenated (1/6, 1/3 and 1/2 of ``W = alpha * filters``
channels, alpha = 1.67) and added to a 1x1 shortcut. A Res path replaces each skip connection by a chain of
3x3 convolutions with 1x1 residual shortcuts, longest at the shallowest level (``num_layers - 1 - level``
steps), to bridge the semantic gap between encoder and decoder features. Level filters follow FlexUNet's rules
(``base_filters * 2**level``, capped by ``max_filters``); ``norm`` follows every convolution (the paper uses
batch normalisation).
"""

from __future__ import annotations

import keras
from keras import layers

from segkit.config import MultiResUNetOptions
from segkit.models.blocks import conv_norm, segmentation_head, shortcut_norm, up_block
from segkit.models.flexunet import level_filters
from segkit.models.spec import Levels

ALPHA = 1.67  # default of model.multiresunet.alpha


def multires_block(
    x: keras.KerasTensor, filters: int, norm: str, name: str, alpha: float = ALPHA
) -> keras.KerasTensor:
    """The MultiRes block: three chained 3x3 convolutions concatenated, plus a 1x1 shortcut (width alpha x
    filters)."""
    w = alpha * filters
    f1, f2, f3 = max(int(w / 6), 1), max(int(w / 3), 1), max(int(w / 2), 1)
    shortcut = shortcut_norm(x, f1 + f2 + f3, norm, f"{name}_short")
    a = conv_norm(x, f1, 3, norm, f"{name}_conv1")
    b = conv_norm(a, f2, 3, norm, f"{name}_conv2")
    c = conv_norm(b, f3, 3, norm, f"{name}_conv3")
    out = layers.Concatenate(name=f"{name}_cat")([a, b, c])
    out = layers.Add(name=f"{name}_add")([out, shortcut])
    return layers.Activation("relu", name=f"{name}_relu")(out)


def res_path(x: keras.KerasTensor, filters: int, length: int, norm: str, name: str) -> keras.KerasTensor:
    """A chain of ``length`` 3x3 convolutions, each with a 1x1 residual shortcut."""
    for k in range(length):
        shortcut = shortcut_norm(x, filters, norm, f"{name}_{k}_short")
        y = conv_norm(x, filters, 3, norm, f"{name}_{k}_conv")
        x = layers.Activation("relu", name=f"{name}_{k}_relu")(
            layers.Add(name=f"{name}_{k}_add")([y, shortcut])
        )
    return x


def build_multiresunet(input_shape: tuple[int, int, int], num_classes: int,
                       levels: Levels = Levels(norm="batch"),
                       options: MultiResUNetOptions = MultiResUNetOptions(), *,
                       name: str = "multiresunet") -> keras.Model:
    """Build MultiResUNet (the design fixes its kernels and has no dropout or dilation, so it takes no
    ``Convs``; ``options``: ``model.multiresunet``, the block width factor ``alpha``).

    Example:
        >>> build_multiresunet((64, 64, 1), 4, Levels(base_filters=4, num_layers=3)).output_shape
        (None, 64, 64, 4)
    """
    base_filters, num_layers = levels.base_filters, levels.num_layers
    max_filters, norm = levels.max_filters, levels.norm
    alpha = options.alpha
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    skips = []
    for i in range(num_layers):
        x = multires_block(x, level_filters(base_filters, i, max_filters), norm, f"enc{i}", alpha)
        if i < num_layers - 1:
            skips.append(
                res_path(x, level_filters(base_filters, i, max_filters), num_layers - 1 - i, norm, f"res{i}")
            )
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    for f in range(num_layers - 2, -1, -1):
        filters = level_filters(base_filters, f, max_filters)
        u = up_block(x, filters, name=f"up{f}")
        x = multires_block(layers.Concatenate(name=f"cat{f}")([u, skips[f]]), filters, norm, f"dec{f}", alpha)
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
