"""Swin-UNet (Cao et al. 2021, arXiv:2105.05537): a U-shaped network of Swin Transformer blocks.

Stem: a 2x2 stride-2 patch embedding (``base_filters * 2`` channels). Encoder stage i (stride ``2**i``,
i = 1 .. num_layers-1) is two Swin blocks — window multi-head self-attention, then the same with the windows
shifted by half a window (``SwinBlock``, with the attention mask that keeps shifted windows from mixing
regions that are not neighbours) — each followed by an MLP, pre-norm and residual; patch merging between
stages is a 2x2 stride-2 convolution (equivalent to the paper's concatenate-and-project) doubling the channels
(capped by ``max_filters``). The decoder mirrors it: patch expanding by a 2x2 transposed convolution, the skip
of the same stage concatenated and projected (the paper's skip connection), two Swin blocks; a last expansion
returns to full resolution, joined with a 3x3 convolution of the input, before the head. Windows are 4x4
tokens (the paper's 7 does not divide the small maps of 128-pixel inputs; ``model.swinunet.window``), on each
map the largest side up to it that divides the map; ``model.swinunet.heads`` (4) heads per block. Unlike
the paper, the attention has no relative position bias (Keras' ``MultiHeadAttention`` takes no additive bias).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers

from segkit.config import SwinUNetOptions
from segkit.models.blocks import BlockConv, conv_block, segmentation_head
from segkit.models.flexunet import level_filters
from segkit.models.spec import Convs, Levels

WINDOW = 4  # defaults of model.swinunet (segkit.config.SwinUNetOptions)
HEADS = 4


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> np.ndarray:
    """(nW, T, T) boolean mask: True where two tokens of a shifted window may attend to each other (same
    region before the cyclic shift), as in the Swin Transformer; all True without a shift."""
    t = window * window
    n = (h // window) * (w // window)
    if shift == 0:
        return np.ones((n, t, t), dtype=bool)
    region = np.zeros((h, w), dtype=np.int32)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    k = 0
    for rs in cuts:
        for cs in cuts:
            region[rs, cs] = k
            k += 1
    windows = region.reshape(h // window, window, w // window, window).transpose(0, 2, 1, 3).reshape(n, t)
    return windows[:, :, None] == windows[:, None, :]


@keras.saving.register_keras_serializable(package="segkit")
class SwinBlock(layers.Layer):
    """One Swin Transformer block on a ``(B, H, W, C)`` map: (shifted) window self-attention and an MLP.

    Args:
        heads: attention heads.
        window: window side in tokens (divides H and W).
        shift: cyclic shift in tokens (0 or window // 2).
    """

    def __init__(self, heads: int, window: int, shift: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads, self.window, self.shift = int(heads), int(window), int(shift)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        _, h, w, c = input_shape
        if h is None or w is None or c is None:
            raise ValueError(f"SwinBlock needs a fixed height, width and channels, got {input_shape}")
        self.h, self.w, self.c = int(h), int(w), int(c)
        self.ln1 = layers.LayerNormalization(epsilon=1e-5, name="ln1", dtype=self.dtype_policy)
        self.ln2 = layers.LayerNormalization(epsilon=1e-5, name="ln2", dtype=self.dtype_policy)
        self.attn = layers.MultiHeadAttention(self.heads, max(self.c // self.heads, 1), name="msa",
                                              dtype=self.dtype_policy)
        self.mlp1 = layers.Dense(2 * self.c, activation="gelu", name="mlp1", dtype=self.dtype_policy)
        self.mlp2 = layers.Dense(self.c, name="mlp2", dtype=self.dtype_policy)
        t = self.window * self.window
        self.ln1.build((None, t, self.c))
        self.attn.build((None, t, self.c), (None, t, self.c))
        self.ln2.build((None, self.h, self.w, self.c))
        self.mlp1.build((None, self.h, self.w, self.c))
        self.mlp2.build((None, self.h, self.w, 2 * self.c))
        self.mask = shifted_window_mask(self.h, self.w, self.window, self.shift)
        self.built = True

    def call(self, x: Any) -> Any:
        ops = keras.ops
        ws, h, w, c = self.window, self.h, self.w, self.c
        nh, nw = h // ws, w // ws
        y = ops.roll(x, shift=(-self.shift, -self.shift), axis=(1, 2)) if self.shift else x
        y = ops.reshape(y, (-1, nh, ws, nw, ws, c))
        y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, ws * ws, c))  # (B * nW, T, C)
        y = self.ln1(y)
        batch = ops.shape(x)[0]
        mask = ops.reshape(
            ops.tile(ops.convert_to_tensor(self.mask)[None], (batch, 1, 1, 1)), (-1, ws * ws, ws * ws)
        )
        y = self.attn(y, y, attention_mask=mask)
        y = ops.reshape(y, (-1, nh, nw, ws, ws, c))
        y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, h, w, c))
        if self.shift:
            y = ops.roll(y, shift=(self.shift, self.shift), axis=(1, 2))
        x = x + y
        return x + self.mlp2(self.mlp1(self.ln2(x)))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def macs_per_image(self, input_shape: list[tuple[int, ...]]) -> int:
        """q/k/v/output projections (4 HWC²), attention within windows (2 HW T C) and the 2x MLP (4 HWC²)."""
        (_, h, w, c) = input_shape[0]
        return int(h * w * (8 * c * c + 2 * self.window * self.window * c))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "heads": self.heads, "window": self.window, "shift": self.shift}


def _window_for(h: int, w: int, window: int = WINDOW) -> int:
    """The largest window side up to ``window`` that divides both sides of the map (for power-of-two maps and
    the default 4: 4, or the map side where the map is smaller)."""
    g = math.gcd(h, w)
    return max(d for d in range(1, min(window, g) + 1) if g % d == 0)


def swin_stage(
    x: keras.KerasTensor, name: str, window: int = WINDOW, heads: int = HEADS
) -> keras.KerasTensor:
    """Two Swin blocks: plain windows, then windows shifted by half a window (when the map holds more than
    one)."""
    h, w = int(x.shape[1]), int(x.shape[2])
    ws = _window_for(h, w, window)
    x = SwinBlock(heads, ws, 0, name=f"{name}_w")(x)
    shift = ws // 2 if max(h, w) > ws else 0
    return SwinBlock(heads, ws, shift, name=f"{name}_sw")(x)


def build_swinunet(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = Levels(),
                   convs: Convs = Convs(), options: SwinUNetOptions = SwinUNetOptions(), *,
                   name: str = "swinunet") -> keras.Model:
    """Build Swin-UNet (``convs`` shape only the full-resolution convolution block; ``options``:
    ``model.swinunet``, the window side and heads).

    Example:
        >>> build_swinunet((64, 64, 1), 4, Levels(base_filters=4, num_layers=3)).output_shape
        (None, 64, 64, 4)
    """
    inputs = keras.Input(input_shape, name="image")
    base_filters, num_layers = levels.base_filters, levels.num_layers
    max_filters, norm = levels.max_filters, levels.norm
    window, heads = options.window, options.heads

    def dim(level: int) -> int:  # channels at stride 2**level
        d = 2 * base_filters * 2 ** (level - 1)
        return min(d, max_filters) if max_filters else d

    x = layers.Conv2D(dim(1), 2, strides=2, name="patch_embed")(inputs)
    x = layers.LayerNormalization(epsilon=1e-5, name="patch_embed_ln")(x)
    skips = {}
    for level in range(1, num_layers):
        x = swin_stage(x, f"enc{level}", window, heads)
        skips[level] = x
        if level < num_layers - 1:
            x = layers.Conv2D(dim(level + 1), 2, strides=2, name=f"merge{level}")(x)
    for level in range(num_layers - 2, 0, -1):
        x = layers.Conv2DTranspose(dim(level), 2, strides=2, name=f"expand{level}")(x)
        x = layers.Concatenate(name=f"cat{level}")([x, skips[level]])
        x = layers.Dense(dim(level), name=f"skip_proj{level}")(x)
        x = swin_stage(x, f"dec{level}", window, heads)
    x = layers.Conv2DTranspose(level_filters(base_filters, 0, max_filters), 2, strides=2, name="expand0")(x)
    full_conv = BlockConv(convs.base_kernels, convs.dilation, convs.dropout_rate, convs.block)
    full = conv_block(inputs, level_filters(base_filters, 0, max_filters), full_conv, norm, name="full")
    x = layers.Concatenate(name="cat0")([x, full])
    dec_conv = BlockConv(convs.base_kernels, block=convs.block)
    x = conv_block(x, level_filters(base_filters, 0, max_filters), dec_conv, norm, name="dec0")
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
