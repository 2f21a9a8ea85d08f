"""EfficientNet-UNet: a U-Net decoder on an EfficientNetV2 encoder (Tan & Le 2021, arXiv:2104.00298; B0, or
B1-B3 with ``model.efficientunet.backbone``), the encoder as ``keras.applications`` builds it, randomly
initialised (nothing is downloaded; ``model.pretrained_weights`` loads a local file).

Skips are the backbone's features at strides 2, 4, 8, 16 and 32 (the last activation at each resolution, the
``*_expand_activation`` maps that segmentation_models-style encoders use), truncated at stride
``2**(num_layers-1)`` (``num_layers`` <= 6); the input itself is the stride-1 skip. Decoder levels follow
FlexUNet (transposed-conv up-sampling, concatenation, two convolutions with ``level_filters`` channels,
``norm``). The backbone keeps its own batch normalisation. Grey-scale and 2.5D inputs work: without ImageNet
weights the stem simply takes C channels.
"""

from __future__ import annotations

import keras

from segkit.config import EfficientUNetOptions
from segkit.errors import ConfigError
from segkit.models.blocks import segmentation_head
from segkit.models.flexunet import decoder
from segkit.models.spec import Convs, Levels

BACKBONES = {
    "b0": keras.applications.EfficientNetV2B0,
    "b1": keras.applications.EfficientNetV2B1,
    "b2": keras.applications.EfficientNetV2B2,
    "b3": keras.applications.EfficientNetV2B3,
}


def _skips_by_stride(backbone: keras.Model, size: int) -> dict[int, keras.KerasTensor]:
    """The last feature map of each spatial size (stride 2..32) in the backbone's layer order."""
    found: dict[int, keras.KerasTensor] = {}
    for layer in backbone.layers:
        out = layer.output
        if not hasattr(out, "shape") or len(out.shape) != 4 or out.shape[1] is None:
            continue
        stride = size // int(out.shape[1])
        if int(out.shape[1]) * stride == size and 2 <= stride <= 32 and int(out.shape[1]) > 1:
            found[stride] = out
    return found


def build_efficientunet(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = Levels(),
                        convs: Convs = Convs(), options: EfficientUNetOptions = EfficientUNetOptions(), *,
                        name: str = "efficientunet") -> keras.Model:
    """Build the EfficientNetV2 U-Net (``options``: ``model.efficientunet``, the backbone b0..b3); decoder
    arguments as ``segkit.models.flexunet.build_flexunet``.

    Raises:
        ConfigError: ``num_layers`` above 6 (the backbone's deepest stride is 32).

    Example:
        >>> build_efficientunet((64, 64, 1), 4, Levels(base_filters=4, num_layers=3)).output_shape
        (None, 64, 64, 4)
    """
    num_layers, backbone = levels.num_layers, options.backbone
    if num_layers > 6:
        raise ConfigError(
            f"efficientunet has at most 6 levels (stride 32), got {num_layers}",
            path="model.num_layers",
            hint="set model.num_layers to 6 or fewer",
        )
    inputs = keras.Input(input_shape, name="image")
    if backbone not in BACKBONES:
        raise ConfigError(
            f"unknown EfficientNetV2 backbone '{backbone}'",
            path="model.efficientunet.backbone",
            hint=f"use one of {', '.join(BACKBONES)}",
        )
    net = BACKBONES[backbone](
        include_top=False, weights=None, input_tensor=inputs, include_preprocessing=False
    )
    by_stride = _skips_by_stride(net, int(input_shape[0]))
    missing = [2**i for i in range(1, num_layers) if 2**i not in by_stride]
    if missing:
        raise ConfigError(
            f"efficientunet finds no feature map of stride {missing[0]} for a "
            f"{input_shape[0]}x{input_shape[1]} input",
            path="model.num_layers",
            hint="lower model.num_layers or enlarge data.image_size (the deepest map must be at least 2x2)",
        )
    skips = [inputs] + [by_stride[2**i] for i in range(1, num_layers)]
    x = decoder(skips[-1], skips, levels, convs)
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
