"""Sharp U-Net (Zunair & Hamza 2021, arXiv:2107.12461): FlexUNet with a sharpening filter on every skip.

The encoder features pass through a fixed 3x3 high-boost kernel (``Sharpen``, depthwise, no weights) before
they are concatenated with the up-sampled decoder features; everything else (filters, kernels, dilations,
dropout and normalisation per level) follows FlexUNet.
"""

from __future__ import annotations

import keras

from segkit.models.blocks import Sharpen, segmentation_head
from segkit.models.flexunet import decoder, encoder


def build_sharpunet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    base_filters: int = 16,
    base_kernels: int = 3,
    num_layers: int = 5,
    dropout_rate: float = 0.0,
    dilation: int = 1,
    max_filters: int | None = None,
    norm: str = "none",
    name: str = "sharpunet",
) -> keras.Model:
    """Build Sharp U-Net (arguments as ``segkit.models.flexunet.build_flexunet``).

    Returns:
        ``keras.Model``: ``(B, H, W, C)`` in 0..1 -> ``(B, H, W, num_classes)`` float32 probabilities.

    Example:
        >>> build_sharpunet((64, 64, 1), 4, base_filters=4, num_layers=3).output_shape
        (None, 64, 64, 4)
    """
    inputs = keras.Input(input_shape, name="image")
    x, skips = encoder(inputs, base_filters, base_kernels, num_layers, dropout_rate, dilation, max_filters, norm)
    x = decoder(x, skips, base_filters, base_kernels, num_layers, dropout_rate, dilation, max_filters, norm,
                lambda f, s, _: Sharpen(name=f"sharpen{f}")(s))
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
