"""Sharp U-Net (Zunair & Hamza 2021, arXiv:2107.12461): FlexUNet with a sharpening filter on every skip.

The encoder features pass through a fixed 3x3 high-boost kernel (``Sharpen``, depthwise, no weights) before
they are concatenated with the up-sampled decoder features; everything else (filters, kernels, dilations,
dropout and normalisation per level) follows FlexUNet.
"""

from __future__ import annotations

import keras

from segkit.models.blocks import Sharpen, segmentation_head
from segkit.models.flexunet import decoder, encoder
from segkit.models.spec import Convs, Levels


def build_sharpunet(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = Levels(),
                    convs: Convs = Convs(), *, name: str = "sharpunet") -> keras.Model:
    """Build Sharp U-Net (arguments as ``segkit.models.flexunet.build_flexunet``).

    Example:
        >>> build_sharpunet((64, 64, 1), 4, Levels(base_filters=4, num_layers=3)).output_shape
        (None, 64, 64, 4)
    """
    inputs = keras.Input(input_shape, name="image")
    x, skips = encoder(inputs, levels, convs)
    x = decoder(x, skips, levels, convs, lambda f, s, _: Sharpen(name=f"sharpen{f}")(s))
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
