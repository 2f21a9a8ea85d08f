"""UNet 3+ (Huang et al. 2020, arXiv:2004.08790): full-scale skip connections, on FlexUNet's encoder.

Every decoder level d concatenates ``num_layers`` feature maps of ``model.unet3plus.cat_filters`` channels
each (default ``base_filters``; the paper: 64), one from every
scale: encoder levels shallower than d (max-pooled down by ``2**(d-i)``), encoder level d itself, and the
decoder levels (and the bottleneck) deeper than d (bilinearly up-sampled by ``2**(j-d)``), each through a 3x3
conv; the concatenation is fused by one more 3x3 conv to ``cat_filters * num_layers`` channels. The encoder is
FlexUNet's (filters, kernels, dilations, dropout and normalisation per level; ``max_filters`` caps it). Deep
supervision and the classification-guided module of the paper are left out.
"""

from __future__ import annotations

import keras
from keras import layers

from segkit.config import UNet3PlusOptions
from segkit.models.blocks import conv_norm, segmentation_head
from segkit.models.flexunet import encoder
from segkit.models.spec import Convs, Levels


def build_unet3plus(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = Levels(),
                    convs: Convs = Convs(), options: UNet3PlusOptions = UNet3PlusOptions(), *,
                    name: str = "unet3plus") -> keras.Model:
    """Build the UNet 3+ functional model (``levels``, ``convs`` as ``segkit.models.flexunet.build_flexunet``;
    ``options``: ``model.unet3plus``, the branch channels).

    Example:
        >>> build_unet3plus((64, 64, 1), 4, Levels(base_filters=4, num_layers=3)).output_shape
        (None, 64, 64, 4)
    """
    inputs = keras.Input(input_shape, name="image")
    _, enc = encoder(inputs, levels, convs)
    num_layers, norm = levels.num_layers, levels.norm
    cat = options.cat_filters or levels.base_filters
    # the bottleneck is the deepest "decoder" map
    dec: dict[int, keras.KerasTensor] = {num_layers - 1: enc[-1]}
    for d in range(num_layers - 2, -1, -1):
        parts = []
        for i in range(d):  # shallower encoder levels, pooled down
            p = layers.MaxPooling2D(2 ** (d - i), name=f"d{d}_pool_e{i}")(enc[i])
            parts.append(conv_norm(p, cat, 3, norm, f"d{d}_from_e{i}"))
        parts.append(conv_norm(enc[d], cat, 3, norm, f"d{d}_from_e{d}"))
        for j in range(d + 1, num_layers):  # deeper decoder levels, up-sampled
            u = layers.UpSampling2D(2 ** (j - d), interpolation="bilinear", name=f"d{d}_up_d{j}")(dec[j])
            parts.append(conv_norm(u, cat, 3, norm, f"d{d}_from_d{j}"))
        x = layers.Concatenate(name=f"d{d}_cat")(parts)
        dec[d] = conv_norm(x, cat * num_layers, 3, norm, f"d{d}_fuse")
    outputs = segmentation_head(dec[0], num_classes)
    return keras.Model(inputs, outputs, name=name)
