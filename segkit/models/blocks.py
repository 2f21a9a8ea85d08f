"""Building blocks shared by the segkit U-Nets: the seed's two-conv block, up-sampling, attention gate,
sharpening.

All blocks are plain Keras layers wired functionally (no ``Lambda``), so a ``.keras`` file loads with
``safe_mode=True``. The custom layers, ``AttentionGate`` and ``Sharpen``, are registered as serializable
(package "segkit").
Feature maps are channels-last ``(B, H, W, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from keras import layers

NORMS = ("none", "batch", "group", "instance")
BLOCKS = ("relu_norm", "norm_act", "residual")
"""``model.block``: the order inside the two-convolution block (see ``conv_block``)."""
LEAKY_SLOPE = 0.01
"""Negative slope of the LeakyReLU of the ``norm_act`` and ``residual`` blocks (nnU-Net's)."""


def norm_layer(norm: str, filters: int, name: str) -> layers.Layer | None:
    """The normalisation layer for ``norm``, or None for "none".

    Args:
        norm: "none" | "batch" | "group" (GroupNormalization with ``groups = min(8, filters)``; it must divide
            ``filters``, so the largest divisor of ``filters`` not above 8 is used) | "instance" (each channel
            of each image normalised over H x W with its own scale and offset: GroupNormalization with one
            group per channel and epsilon 1e-5, nnU-Net's ``InstanceNorm2d``).
        filters: channels of the normalised feature map.
        name: layer name.
    """
    if norm == "none":
        return None
    if norm == "batch":
        return layers.BatchNormalization(name=name)
    if norm == "group":
        groups = min(8, filters)
        while filters % groups:
            groups -= 1
        return layers.GroupNormalization(groups=groups, name=name)
    if norm == "instance":
        return layers.GroupNormalization(groups=filters, epsilon=1e-5, name=name)
    raise ValueError(f"unknown norm '{norm}', expected one of {NORMS}")


@dataclass(frozen=True)
class BlockConv:
    """The convolutions of one ``conv_block``.

    Attributes:
        kernel_size: square kernel size of both convolutions.
        dilation: dilation rate of both convolutions.
        dropout_rate: dropout after the first convolution (0: no ``Dropout`` layer).
        block: the order inside the block, one of ``BLOCKS`` (see ``conv_block``).
    """

    kernel_size: int
    dilation: int = 1
    dropout_rate: float = 0.0
    block: str = "relu_norm"


def conv_block(
    x: keras.KerasTensor, filters: int, conv: BlockConv, norm: str, name: str
) -> keras.KerasTensor:
    """Two ``same`` convolutions (he_normal), in the order ``conv.block`` names.

    - ``relu_norm`` (the seed TensorFlowFlexUNet's): Conv2D+ReLU -> [norm] -> [Dropout] -> Conv2D+ReLU ->
      [norm].
    - ``norm_act`` (the order of nnU-Net's ``ConvDropoutNormReLU``): Conv2D -> [norm] -> LeakyReLU(0.01) ->
      [Dropout] -> Conv2D -> [norm] -> LeakyReLU(0.01). Dropout stays where the seed has it, once, after the
      first convolution's activation (nnU-Net drops out before each norm; its default rate is 0).
    - ``residual`` (the basic block of nnU-Net's residual encoder, He et al. 2016): ``norm_act`` without its
      last activation, plus the input (through a 1x1 convolution and [norm] when its channels differ), then
      LeakyReLU(0.01).

    Dropout is skipped when its rate is 0 (the seed inserts a no-op ``Dropout(0)``; it has no weights).

    Args:
        x: input ``(B, H, W, Cin)``.
        filters: output channels of both convolutions.
        conv: kernel size, dilation rate, dropout and block order.
        norm: "none" | "batch" | "group" | "instance".
        name: prefix of the layer names.

    Returns:
        ``(B, H, W, filters)``.

    Example:
        >>> inp = keras.Input((64, 64, 1))
        >>> conv_block(inp, 16, BlockConv(3), "none", "enc0").shape
        (None, 64, 64, 16)
    """
    if conv.block not in BLOCKS:
        raise ValueError(f"unknown block '{conv.block}', expected one of {BLOCKS}")
    seed = conv.block == "relu_norm"
    inp = x
    for j in (1, 2):
        x = layers.Conv2D(
            filters,
            conv.kernel_size,
            padding="same",
            dilation_rate=conv.dilation,
            activation="relu" if seed else None,
            kernel_initializer="he_normal",
            name=f"{name}_conv{j}",
        )(x)
        x = with_norm(x, norm, filters, f"{name}_norm{j}")
        if j == 2 and conv.block == "residual":
            short = inp if inp.shape[-1] == filters else shortcut_norm(inp, filters, norm, f"{name}_short")
            x = layers.Add(name=f"{name}_add")([x, short])
        if not seed:
            x = layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_act{j}")(x)
        if j == 1 and conv.dropout_rate > 0:
            x = layers.Dropout(conv.dropout_rate, name=f"{name}_drop")(x)
    return x


def with_norm(x: keras.KerasTensor, norm: str, filters: int, name: str) -> keras.KerasTensor:
    """``x`` through the ``norm`` layer named ``name`` (see ``norm_layer``); ``x`` itself for "none"."""
    nl = norm_layer(norm, filters, name)
    return nl(x) if nl is not None else x


def conv_norm(
    x: keras.KerasTensor, filters: int, size: int, norm: str, name: str, dilation: int = 1
) -> keras.KerasTensor:
    """One ``same`` convolution (he_normal, ReLU) then ``norm`` (layers ``name`` and ``name_norm``).

    The single-convolution unit of the zoo's blocks (UNet 3+, MultiRes, RSU, ASPP).
    """
    x = layers.Conv2D(
        filters,
        size,
        padding="same",
        dilation_rate=dilation,
        activation="relu",
        kernel_initializer="he_normal",
        name=name,
    )(x)
    return with_norm(x, norm, filters, f"{name}_norm")


def shortcut_norm(x: keras.KerasTensor, filters: int, norm: str, name: str) -> keras.KerasTensor:
    """A 1x1 ``same`` convolution without activation (he_normal) then ``norm``: a residual shortcut
    (MultiRes, the ``residual`` block)."""
    x = layers.Conv2D(filters, 1, padding="same", activation=None, kernel_initializer="he_normal", name=name)(
        x
    )
    return with_norm(x, norm, filters, f"{name}_norm")


def up_block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """2x2 stride-2 ``Conv2DTranspose`` up-sampling (linear, with bias), as in the seed.

    Args:
        x: ``(B, H, W, Cin)``.
        filters: output channels.
        name: layer name.

    Returns:
        ``(B, 2H, 2W, filters)``.
    """
    return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=name)(x)


def segmentation_head(
    x: keras.KerasTensor, num_classes: int, name: str = "head", upsample: int = 1
) -> keras.KerasTensor:
    """1x1 convolution then softmax (sigmoid when ``num_classes == 1``), computed in float32.

    The activation layer has ``dtype="float32"`` so that under a mixed-precision policy the probabilities
    (and the losses computed on them) stay float32.

    Args:
        x: ``(B, H, W, C)`` features.
        num_classes: output channels (background included).
        name: prefix of the layer names.
        upsample: bilinear up-sampling of the logits by this factor before the activation (layer
            ``{name}_up``; deep supervision's heads on lower decoder levels); 1: none.

    Returns:
        ``(B, H * upsample, W * upsample, num_classes)`` float32 probabilities.
    """
    logits = layers.Conv2D(num_classes, 1, name=f"{name}_conv")(x)
    if upsample > 1:
        logits = layers.UpSampling2D(upsample, interpolation="bilinear", name=f"{name}_up")(logits)
    act = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Activation(act, dtype="float32", name=f"{name}_{act}")(logits)


@keras.saving.register_keras_serializable(package="segkit")
class AttentionGate(layers.Layer):
    """Additive attention gate on a skip connection (Oktay et al. 2018, "Attention U-Net", arXiv:1804.03999).

    ``alpha = sigmoid(psi(relu(W_x x + W_g g)))`` and the output is ``x * alpha``; ``W_x``, ``W_g``, ``psi``
    are 1x1 convolutions (``psi`` to one channel). As in MONAI's ``AttentionBlock``, the gating signal ``g``
    is the already up-sampled decoder feature, so ``x`` and ``g`` share the spatial size.

    Args:
        inter_channels: channels of the intermediate map (``F_int``).

    Call args:
        inputs: ``[x, g]``: skip features ``(B, H, W, Cx)`` and gating features ``(B, H, W, Cg)``.

    Returns:
        ``(B, H, W, Cx)``: the gated skip features.

    Example:
        >>> x, g = keras.Input((32, 32, 16)), keras.Input((32, 32, 16))
        >>> AttentionGate(8)([x, g]).shape
        (None, 32, 32, 16)
    """

    def __init__(self, inter_channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inter_channels = int(inter_channels)
        self.w_x = layers.Conv2D(self.inter_channels, 1, use_bias=False, name="w_x", dtype=self.dtype_policy)
        self.w_g = layers.Conv2D(self.inter_channels, 1, use_bias=True, name="w_g", dtype=self.dtype_policy)
        self.psi = layers.Conv2D(1, 1, use_bias=True, name="psi", dtype=self.dtype_policy)

    def build(self, input_shape: list[tuple[int | None, ...]]) -> None:
        x_shape, g_shape = input_shape
        self.w_x.build(x_shape)
        self.w_g.build(g_shape)
        self.psi.build((*x_shape[:-1], self.inter_channels))
        self.built = True

    def call(self, inputs: list[Any]) -> Any:
        x, g = inputs
        a = keras.ops.relu(self.w_x(x) + self.w_g(g))
        alpha = keras.ops.sigmoid(self.psi(a))
        return x * alpha

    def compute_output_shape(self, input_shape: list[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        return tuple(input_shape[0])

    def macs_per_image(self, input_shape: list[tuple[int, ...]]) -> int:
        """Multiply-adds of the three 1x1 convolutions for one image (the gating product is not counted)."""
        (_, h, w, cx), (_, _, _, cg) = input_shape
        return int(h * w * (cx * self.inter_channels + cg * self.inter_channels + self.inter_channels))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "inter_channels": self.inter_channels}


SHARPEN_KERNEL = ((-1.0, -1.0, -1.0), (-1.0, 9.0, -1.0), (-1.0, -1.0, -1.0))


@keras.saving.register_keras_serializable(package="segkit")
class Sharpen(layers.Layer):
    """A fixed 3x3 sharpening filter applied to every channel (depthwise, no weights): Sharp U-Net's skip
    filter.

    Zunair & Hamza 2021 ("Sharp U-Net", arXiv:2107.12461) pass encoder features through this high-boost
    (Laplacian + identity) kernel before they meet the decoder, so that the two sides are semantically closer
    and early training is smoother.

    Example:
        >>> Sharpen()(keras.Input((32, 32, 8))).shape
        (None, 32, 32, 8)
    """

    def call(self, x: Any) -> Any:
        channels = int(x.shape[-1])
        kernel = keras.ops.convert_to_tensor(SHARPEN_KERNEL, dtype=x.dtype)
        kernel = keras.ops.tile(keras.ops.reshape(kernel, (3, 3, 1, 1)), (1, 1, channels, 1))
        return keras.ops.depthwise_conv(x, kernel, strides=1, padding="same")

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def macs_per_image(self, input_shape: list[tuple[int, ...]]) -> int:
        """Nine multiply-adds per input value."""
        (_, h, w, c) = input_shape[0]
        return int(h * w * c * 9)
