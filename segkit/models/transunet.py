"""TransUNet (Chen et al. 2021, arXiv:2102.04306): a Transformer over the deepest CNN features, then a U-Net
decoder with the CNN skips.

The CNN encoder is FlexUNet's contracting path; its deepest map (stride ``2**(num_layers-1)``) becomes one
token per pixel, projected to ``D = 8 * base_filters`` (capped by ``max_filters``), plus a learned position
embedding (``PositionEmbedding``), then ``depth`` pre-norm Transformer layers (multi-head self-attention with
``heads`` heads and a ``mlp_ratio`` x MLP; ``model.transunet``, default 2, 4, 2), and back to a map. The
decoder is FlexUNet's (transposed-conv up-sampling, skips, two convolutions per level). The paper's ImageNet
R50-ViT-B/16 hybrid (12 layers, D = 768) is out of reach of a CPU budget and would need downloaded weights;
this is its structure at the scale of the other segkit models.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from segkit.config import TransUNetOptions
from segkit.models.blocks import segmentation_head
from segkit.models.flexunet import decoder, encoder
from segkit.models.spec import Convs, Levels

DEPTH = 2  # defaults of model.transunet (segkit.config.TransUNetOptions)
HEADS = 4
MLP_RATIO = 2.0


@keras.saving.register_keras_serializable(package="segkit")
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding per token position to ``(B, N, D)`` tokens (N fixed at build time)."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        n, d = input_shape[1], input_shape[2]
        if n is None or d is None:
            raise ValueError(f"PositionEmbedding needs a fixed token count and width, got {input_shape}")
        self.embedding = self.add_weight(
            name="embedding", shape=(int(n), int(d)),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        self.built = True

    def call(self, x: Any) -> Any:
        return x + keras.ops.cast(self.embedding, x.dtype)[None]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)


def transformer_layer(x: keras.KerasTensor, dim: int, name: str, heads: int = HEADS,
                      mlp_ratio: float = MLP_RATIO) -> keras.KerasTensor:
    """Pre-norm Transformer encoder layer: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))`` (GELU, ``mlp_ratio`` x
    width)."""
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    h = layers.MultiHeadAttention(heads, max(dim // heads, 1), name=f"{name}_msa")(h, h)
    x = layers.Add(name=f"{name}_add1")([x, h])
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x)
    h = layers.Dense(max(int(round(mlp_ratio * dim)), 1), activation="gelu", name=f"{name}_mlp1")(h)
    h = layers.Dense(dim, name=f"{name}_mlp2")(h)
    return layers.Add(name=f"{name}_add2")([x, h])


def build_transunet(input_shape: tuple[int, int, int], num_classes: int, levels: Levels = Levels(),
                    convs: Convs = Convs(), options: TransUNetOptions = TransUNetOptions(), *,
                    name: str = "transunet") -> keras.Model:
    """Build TransUNet (CNN arguments as ``segkit.models.flexunet.build_flexunet``; ``options``:
    ``model.transunet``, ``depth`` Transformer layers of ``heads`` heads and an MLP ``mlp_ratio`` times the
    token width).

    Example:
        >>> build_transunet((64, 64, 1), 4, Levels(base_filters=4, num_layers=3)).output_shape
        (None, 64, 64, 4)
    """
    inputs = keras.Input(input_shape, name="image")
    x, skips = encoder(inputs, levels, convs)
    base_filters, max_filters = levels.base_filters, levels.max_filters
    h, w, c = (int(s) for s in x.shape[1:])
    dim = min(8 * base_filters, max_filters) if max_filters else 8 * base_filters
    t = layers.Reshape((h * w, c), name="tokens")(x)
    t = layers.Dense(dim, name="token_proj")(t)
    t = PositionEmbedding(name="position")(t)
    for k in range(options.depth):
        t = transformer_layer(t, dim, f"vit{k}", options.heads, options.mlp_ratio)
    t = layers.LayerNormalization(epsilon=1e-6, name="vit_ln")(t)
    x = layers.Reshape((h, w, dim), name="untokens")(t)
    x = decoder(x, skips, levels, convs)
    outputs = segmentation_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
