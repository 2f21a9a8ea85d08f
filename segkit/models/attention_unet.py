"""Attention U-Net (Oktay et al. 2018, arXiv:1804.03999) with FlexUNet's level rules.

Same encoder, decoder and config fields as ``flexunet`` (filters, kernels, dilations, dropout and
normalisation per level), plus an additive ``AttentionGate`` on every skip connection: the up-sampled decoder
feature gates the encoder feature before concatenation (``F_int = max(filters // 2, 1)``).
"""

from __future__ import annotations

import keras
from keras import layers

from segkit.models.blocks import AttentionGate, conv_block, segmentation_head, up_block
from segkit.models.flexunet import encoder, level_dilation, level_filters, level_kernel


def build_attention_unet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    base_filters: int = 16,
    base_kernels: int = 7,
    num_layers: int = 6,
    dropout_rate: float = 0.05,
    dilation: int = 1,
    max_filters: int | None = None,
    norm: str = "none",
    name: str = "attention_unet",
) -> keras.Model:
    """Build the Attention U-Net functional model.

    Args:
        input_shape: ``(H, W, C)``; H and W divisible by ``2**(num_layers-1)``.
        num_classes: output channels, background included.
        base_filters, base_kernels, num_layers, dropout_rate, dilation, max_filters, norm: as in
            ``segkit.models.flexunet.build_flexunet``.
        name: model name.

    Returns:
        ``keras.Model``: ``(B, H, W, C)`` in 0..1 -> ``(B, H, W, num_classes)`` float32 probabilities.

    Example:
        >>> m = build_attention_unet((64, 64, 1), 4, base_filters=4, base_kernels=3, num_layers=3)
        >>> m.output_shape
        (None, 64, 64, 4)
    """
    inputs = keras.Input(input_shape, name="image")
    x, skips = encoder(inputs, base_filters, base_kernels, num_layers, dropout_rate, dilation, max_filters, norm)
    for f in range(num_layers - 2, -1, -1):
        filters = level_filters(base_filters, f, max_filters)
        g = up_block(x, filters, name=f"up{f}")
        gated = AttentionGate(max(filters // 2, 1), name=f"att{f}")([skips[f], g])
        u = layers.Concatenate(name=f"cat{f}")([g, gated])
        x = conv_block(
            u,
            filters,
            level_kernel(base_kernels, f),
            level_dilation(dilation, f),
            dropout_rate * f,
            norm,
            name=f"dec{f}",
        )
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
