"""Attention U-Net (Oktay et al. 2018, arXiv:1804.03999) with FlexUNet's level rules.

Same encoder, decoder and config fields as ``flexunet`` (filters, kernels, dilations, dropout and
normalisation per level), plus an additive ``AttentionGate`` on every skip connection: the up-sampled decoder
feature gates the encoder feature before concatenation (``F_int = max(filters // 2, 1)``).
"""

from __future__ import annotations

import keras

from segkit.models.blocks import AttentionGate, segmentation_head
from segkit.models.flexunet import SEED_CONVS, SEED_LEVELS, decoder, encoder
from segkit.models.spec import Convs, Levels


def build_attention_unet(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = SEED_LEVELS,
                         convs: Convs = SEED_CONVS, *, name: str = "attention_unet") -> keras.Model:
    """Build the Attention U-Net functional model.

    Args:
        input_shape: ``(H, W, C)``; H and W divisible by ``2**(num_layers-1)``.
        num_classes: output channels, background included.
        levels, convs: as in ``segkit.models.flexunet.build_flexunet``.
        name: model name.

    Example:
        >>> levels = Levels(base_filters=4, num_layers=3)
        >>> m = build_attention_unet((64, 64, 1), 4, levels, Convs(base_kernels=3))
        >>> m.output_shape
        (None, 64, 64, 4)
    """
    inputs = keras.Input(input_shape, name="image")
    x, skips = encoder(inputs, levels, convs)

    def gate(f: int, s: keras.KerasTensor, g: keras.KerasTensor) -> keras.KerasTensor:
        return AttentionGate(max(int(g.shape[-1]) // 2, 1), name=f"att{f}")([s, g])

    x = decoder(x, skips, levels, convs, gate)
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
