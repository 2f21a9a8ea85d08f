"""U²-Net (Qin et al. 2020, arXiv:2005.09007): a U-Net of residual U-blocks (RSU), with fused side outputs.

Every stage is an RSU-L block: an input convolution, a small U-Net of height L inside (max-pooling encoder,
dilated bottom, up-sampling decoder with concatenations), and a residual sum with the input convolution. Stage
i of ``num_layers`` has height ``num_layers + 1 - i``; heights below 4 become RSU-4F (dilations 1-2-4-8
instead of pooling), so ``num_layers: 6`` is the paper's RSU-7, 6, 5, 4, 4F, 4F encoder. The decoder mirrors
the encoder; each decoder stage and the bottom give a side output (3x3 conv to the classes, bilinearly
up-sampled), and a 1x1 convolution fuses them into the prediction. Channels: ``out = base_filters * 2**i``
(capped by ``max_filters``) and ``mid = out * model.u2net.mid_ratio`` (0.5) per stage. The paper's deep
supervision of the side outputs is left out (one fused output).
"""

from __future__ import annotations

import keras
from keras import layers

from segkit.config import U2NetOptions
from segkit.models.blocks import conv_norm, segmentation_head
from segkit.models.flexunet import level_filters
from segkit.models.spec import Levels


def _cbr(x: keras.KerasTensor, filters: int, dilation: int, norm: str, name: str) -> keras.KerasTensor:
    """The paper's REBNCONV (3x3, dilated, ReLU) with ``norm`` in place of batch norm."""
    return conv_norm(x, filters, 3, norm, name, dilation=dilation)


def rsu(x: keras.KerasTensor, height: int, mid: int, out: int, norm: str, name: str) -> keras.KerasTensor:
    """An RSU-``height`` block (``height < 4``: RSU-4F, dilated, no pooling); output ``(B, H, W, out)``."""
    hx_in = _cbr(x, out, 1, norm, f"{name}_in")
    if height < 4:  # RSU-4F
        h1 = _cbr(hx_in, mid, 1, norm, f"{name}_e1")
        h2 = _cbr(h1, mid, 2, norm, f"{name}_e2")
        h3 = _cbr(h2, mid, 4, norm, f"{name}_e3")
        h4 = _cbr(h3, mid, 8, norm, f"{name}_e4")
        d3 = _cbr(layers.Concatenate(name=f"{name}_c3")([h4, h3]), mid, 4, norm, f"{name}_d3")
        d2 = _cbr(layers.Concatenate(name=f"{name}_c2")([d3, h2]), mid, 2, norm, f"{name}_d2")
        d1 = _cbr(layers.Concatenate(name=f"{name}_c1")([d2, h1]), out, 1, norm, f"{name}_d1")
        return layers.Add(name=f"{name}_add")([hx_in, d1])
    enc = [_cbr(hx_in, mid, 1, norm, f"{name}_e1")]
    for k in range(2, height):
        h = layers.MaxPooling2D(2, name=f"{name}_pool{k}")(enc[-1])
        enc.append(_cbr(h, mid, 1, norm, f"{name}_e{k}"))
    bottom = _cbr(enc[-1], mid, 2, norm, f"{name}_bottom")
    d = _cbr(layers.Concatenate(name=f"{name}_c{height - 1}")([bottom, enc[-1]]), mid, 1, norm,
             f"{name}_d{height - 1}")
    for k in range(len(enc) - 2, -1, -1):
        d = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{k + 1}")(d)
        d = _cbr(layers.Concatenate(name=f"{name}_c{k + 1}")([d, enc[k]]), out if k == 0 else mid, 1, norm,
                 f"{name}_d{k + 1}")
    return layers.Add(name=f"{name}_add")([hx_in, d])


def build_u2net(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = Levels(),
                options: U2NetOptions = U2NetOptions(), *, name: str = "u2net") -> keras.Model:
    """Build U²-Net (the design fixes kernels and dilations and has no dropout, so it takes no ``Convs``;
    ``options``: ``model.u2net``, the RSU inner width ``mid_ratio``).

    Example:
        >>> build_u2net((64, 64, 1), 4, Levels(base_filters=4, num_layers=3)).output_shape
        (None, 64, 64, 4)
    """
    base_filters, num_layers = levels.base_filters, levels.num_layers
    max_filters, norm = levels.max_filters, levels.norm
    mid_ratio = options.mid_ratio
    inputs = keras.Input(input_shape, name="image")
    heights = [num_layers + 1 - i for i in range(num_layers)]
    outs = [level_filters(base_filters, i, max_filters) for i in range(num_layers)]
    x = inputs
    enc = []
    for i in range(num_layers):
        x = rsu(x, heights[i], max(int(outs[i] * mid_ratio), 1), outs[i], norm, f"enc{i}")
        enc.append(x)
        if i < num_layers - 1:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    sides = [enc[-1]]
    d = enc[-1]
    for i in range(num_layers - 2, -1, -1):
        d = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{i}")(d)
        d = rsu(
            layers.Concatenate(name=f"cat{i}")([d, enc[i]]),
            heights[i],
            max(int(outs[i] * mid_ratio), 1),
            outs[i],
            norm,
            f"dec{i}",
        )
        sides.append(d)
    side_logits = []
    for j, s in enumerate(sides):  # s sits at level num_layers - 1 - j
        level = num_layers - 1 - j
        y = layers.Conv2D(num_classes, 3, padding="same", name=f"side{level}")(s)
        if level:
            y = layers.UpSampling2D(2**level, interpolation="bilinear", name=f"side{level}_up")(y)
        side_logits.append(y)
    fused = layers.Concatenate(name="sides")(side_logits)
    outputs = segmentation_head(fused, num_classes)
    return keras.Model(inputs, outputs, name=name)
