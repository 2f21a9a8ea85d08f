"""FlexUNet: the seed experiments' ``TensorFlowFlexUNet`` (antillia), rebuilt layer for layer.

Architecture (``L = num_layers`` resolution levels, level ``i = 0..L-1``):

- encoder level ``i``: two convolutions with ``filters_i = base_filters * 2**i`` (capped at ``max_filters``),
  kernel ``k_i = max(base_kernels - 2*i, 3)``, dilation ``d_i = max(dilation - i, 1)``, dropout
  ``dropout_rate * i`` after the first convolution; a 2x2 max-pool between levels (``L - 1`` pools);
- decoder, for ``f = L-2 .. 0``: 2x2 stride-2 ``Conv2DTranspose`` to ``filters_f``, concatenation with the
  encoder output of level ``f`` (up-sampled first, skip second), two convolutions with level ``f``'s filters,
  kernel, dilation and dropout;
- 1x1 convolution head, softmax (sigmoid for one class) computed in float32.

The seed rescales 0..255 inputs with a ``Lambda``; segkit feeds 0..1 floats instead (no ``Lambda`` layers, so
``.keras`` files load with ``safe_mode=True``). With the Whole-Heart seed settings (512x512x3, 9 classes,
base_filters 16, base_kernels 7, num_layers 8, dropout 0.04) the model has 124,557,177 parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from segkit.models.blocks import BlockConv, conv_block, segmentation_head, up_block
from segkit.models.spec import Convs, Levels


def level_filters(base_filters: int, level: int, max_filters: int | None) -> int:
    """Channels at resolution ``level``: ``base_filters * 2**level``, capped at ``max_filters``."""
    f = base_filters * 2**level
    return f if max_filters is None else min(f, max_filters)


def level_kernel(base_kernels: int, level: int) -> int:
    """Kernel size at ``level``: ``max(base_kernels - 2*level, 3)`` (the seed's rule)."""
    return max(base_kernels - 2 * level, 3)


def level_dilation(dilation: int, level: int) -> int:
    """Dilation at ``level``: ``max(dilation - level, 1)`` (the seed's rule)."""
    return max(dilation - level, 1)


def level_conv(convs: Convs, level: int) -> BlockConv:
    """The convolutions of ``level``'s block: ``level_kernel``, ``level_dilation``, dropout ``rate *
    level``."""
    return BlockConv(level_kernel(convs.base_kernels, level), level_dilation(convs.dilation, level),
                     convs.dropout_rate * level, convs.block)


def encoder(
    inputs: keras.KerasTensor, levels: Levels, convs: Convs
) -> tuple[keras.KerasTensor, list[keras.KerasTensor]]:
    """The FlexUNet contracting path, shared by ``flexunet`` and the models built on its encoder.

    Level i: two convs with ``level_filters``/``level_kernel``/``level_dilation`` and dropout ``rate * i``,
        then a
    2x2 max-pool (except at the deepest level).

    Returns:
        The deepest feature map and the per-level outputs (skips[i] at level i, the last one being the
        bottom).
    """
    x = inputs
    skips = []
    for i in range(levels.num_layers):
        filters = level_filters(levels.base_filters, i, levels.max_filters)
        x = conv_block(x, filters, level_conv(convs, i), levels.norm, name=f"enc{i}")
        skips.append(x)
        if i < levels.num_layers - 1:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    return x, skips


SkipFn = Callable[[int, keras.KerasTensor, keras.KerasTensor], keras.KerasTensor]


def decoder(
    x: keras.KerasTensor,
    skips: list[keras.KerasTensor],
    levels: Levels,
    convs: Convs,
    skip: SkipFn | None = None,
) -> keras.KerasTensor:
    """The FlexUNet expanding path, shared by the U-Nets that differ only on their skips.

    Level f (deepest first): ``up{f}`` up-samples, the skip ``skips[f]`` (or ``skip(f, skips[f], up)``: an
    attention gate, a sharpening filter) is concatenated after it (``cat{f}``), and ``dec{f}`` applies two
    convolutions with the level's filters, kernel, dilation and dropout ``rate * f``.
    """
    for f in range(levels.num_layers - 2, -1, -1):
        filters = level_filters(levels.base_filters, f, levels.max_filters)
        u = up_block(x, filters, name=f"up{f}")
        s = skips[f] if skip is None else skip(f, skips[f], u)
        u = layers.Concatenate(name=f"cat{f}")([u, s])
        x = conv_block(u, filters, level_conv(convs, f), levels.norm, name=f"dec{f}")
    return x


SEED_LEVELS = Levels(num_layers=6)
"""FlexUNet's default levels (``segkit.config.ModelConfig``'s defaults)."""
SEED_CONVS = Convs(base_kernels=7, dropout_rate=0.05)
"""FlexUNet's default convolution rules (the seed's kernel 7)."""


def build_flexunet(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = SEED_LEVELS,
                   convs: Convs = SEED_CONVS, *, name: str = "flexunet") -> keras.Model:
    """Build the FlexUNet functional model.

    Args:
        input_shape: ``(H, W, C)``; H and W must be divisible by ``2**(num_layers-1)`` (checked by
            ``segkit.models.check_input_shape`` in ``build_model``).
        num_classes: output channels, background included.
        levels: filters at level 0, resolution levels, channel cap, normalisation ("none" is the seed's).
        convs: kernel size and dilation at level 0, dropout per level step.
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``(B, H, W, C)`` float inputs in 0..1 to ``(B, H, W, num_classes)`` float32
        probabilities.

    Example:
        >>> m = build_flexunet((64, 64, 1), 4, Levels(base_filters=4, num_layers=3), Convs(base_kernels=3))
        >>> m.output_shape
        (None, 64, 64, 4)
    """
    # === Layers / functional model ===
    inputs = keras.Input(input_shape, name="image")
    x, skips = encoder(inputs, levels, convs)
    x = decoder(x, skips, levels, convs)
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
