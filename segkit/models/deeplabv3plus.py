"""DeepLabV3+ (Chen et al. 2018, arXiv:1802.02611) on FlexUNet's encoder: ASPP at the deepest level and a
light decoder that joins stride-4 features.

Encoder: FlexUNet's contracting path (``num_layers`` levels; the deepest has stride ``2**(num_layers-1)``).
ASPP on the deepest features: a 1x1 branch, three dilated 3x3 branches and image pooling, each
``8 * base_filters`` channels (capped by ``max_filters``), fused by a 1x1 convolution. Decoder: the ASPP
output is up-sampled (bilinear) to the level-2 features (stride 4, or the shallowest deeper level when there
are fewer levels), joined with their 1x1 projection to 48 channels (the paper's number), refined by two 3x3
convolutions and up-sampled to the input size. The dilation rates scale with the deepest map (the paper's
6/12/18 at a 32x32 map), so a 4x4 map at 128 px does not waste its kernels on padding. No ImageNet backbone
(nothing is downloaded).
"""

from __future__ import annotations

import keras
from keras import layers

from segkit.config import DeepLabV3PlusOptions
from segkit.models.blocks import conv_norm, segmentation_head
from segkit.models.flexunet import encoder, level_filters
from segkit.models.spec import Convs, Levels


def _conv(
    x: keras.KerasTensor, filters: int, size: int, dilation: int, norm: str, name: str
) -> keras.KerasTensor:
    return conv_norm(x, filters, size, norm, name, dilation=dilation)


def scaled_aspp_rates(feature_size: int) -> tuple[int, ...]:
    """Dilation rates of the three 3x3 ASPP branches for a deepest map of ``feature_size`` pixels: the paper's
    (6, 12, 18) at 32 px, scaled, at least (1, 2, 3) and never wider than the map."""
    scale = feature_size / 32.0
    rates = []
    for base, least in ((6, 1), (12, 2), (18, 3)):
        rates.append(max(least, min(int(round(base * scale)), max(feature_size - 1, 1))))
    return tuple(rates)


def build_deeplabv3plus(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = Levels(),
                        convs: Convs = Convs(), options: DeepLabV3PlusOptions = DeepLabV3PlusOptions(), *,
                        name: str = "deeplabv3plus") -> keras.Model:
    """Build DeepLabV3+ (encoder arguments as ``segkit.models.flexunet.build_flexunet``; ``options``:
    ``model.deeplabv3plus``, whose ``aspp_rates`` default to the paper's scaled by ``scaled_aspp_rates()``).

    Example:
        >>> build_deeplabv3plus((64, 64, 1), 4, Levels(base_filters=4, num_layers=3)).output_shape
        (None, 64, 64, 4)
    """
    inputs = keras.Input(input_shape, name="image")
    deep, skips = encoder(inputs, levels, convs)
    base_filters, num_layers = levels.base_filters, levels.num_layers
    max_filters, norm = levels.max_filters, levels.norm
    aspp_rates = options.aspp_rates
    h, w = int(deep.shape[1]), int(deep.shape[2])
    width = min(8 * base_filters, max_filters) if max_filters else 8 * base_filters
    branches = [_conv(deep, width, 1, 1, norm, "aspp_1x1")]
    for k, rate in enumerate(aspp_rates if aspp_rates is not None else scaled_aspp_rates(min(h, w))):
        branches.append(_conv(deep, width, 3, rate, norm, f"aspp_r{k}"))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(deep)
    pooled = _conv(pooled, width, 1, 1, "none", "aspp_pool_conv")
    branches.append(layers.UpSampling2D((h, w), interpolation="nearest", name="aspp_pool_up")(pooled))
    x = _conv(layers.Concatenate(name="aspp_cat")(branches), width, 1, 1, norm, "aspp_fuse")
    low_level = min(2, num_layers - 2)
    low = _conv(skips[low_level], 48, 1, 1, norm, "low_proj")
    x = layers.UpSampling2D(2 ** (num_layers - 1 - low_level), interpolation="bilinear", name="up_to_low")(x)
    x = layers.Concatenate(name="dec_cat")([x, low])
    filters = level_filters(base_filters, low_level, max_filters) * 2
    x = _conv(x, filters, 3, 1, norm, "dec_conv1")
    x = _conv(x, filters, 3, 1, norm, "dec_conv2")
    if low_level:
        x = layers.UpSampling2D(2**low_level, interpolation="bilinear", name="up_to_input")(x)
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
