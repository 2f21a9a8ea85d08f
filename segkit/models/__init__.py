"""Model registry: ``build_model(cfg)`` picks an architecture by ``cfg.model.name``.

Every builder takes ``input_shape, num_classes`` and only the records of the ``model`` keys it reads
(``segkit.models.spec``): ``levels`` (``Levels``: base_filters, num_layers, max_filters, norm), ``convs``
(``Convs``: base_kernels, dilation, dropout_rate) where its blocks use them, and ``options`` (its own
``segkit.config`` section) where it has one. Which keys a model reads is declared once, TensorFlow-free, in
``segkit.config.MODEL_CATALOG`` (``ModelKeys``); ``MODELS`` pairs each builder with its entry
(``ModelEntry``). A builder returns a functional ``keras.Model`` mapping ``(B, H, W, C)`` float32 images in
0..1 to ``(B, H, W, num_classes)`` float32 probabilities (softmax; float32 even under a mixed-precision
policy).

Importing this module imports Keras and registers segkit's serializable layers (``AttentionGate``), so
``keras.models.load_model(path, safe_mode=True)`` works after ``import segkit.models``. Only the train/infer
stages import it (``import segkit`` and ``segkit.config`` stay free of TensorFlow).
Adding a model: one module, one line in ``BUILDERS`` below, one ``MODEL_CATALOG`` line in ``segkit.config``
(and its options section there, if any).

Example:
    >>> model = build_model(load_config(Path("configs/demo.yaml")))
    >>> model_summary(model)
    {'params': 484612, 'gflops_per_image': 0.287965184}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from segkit.config import CONV_KEYS, LEVEL_KEYS, MODEL_CATALOG, ModelConfig, ModelKeys
from segkit.errors import ConfigError, SegkitError
from segkit.models.attention_unet import build_attention_unet
from segkit.models.blocks import AttentionGate, Sharpen
from segkit.models.deeplabv3plus import build_deeplabv3plus
from segkit.models.efficientunet import build_efficientunet
from segkit.models.flexunet import build_flexunet
from segkit.models.multiresunet import build_multiresunet
from segkit.models.sharpunet import build_sharpunet
from segkit.models.spec import Convs, Levels
from segkit.models.swinunet import SwinBlock, build_swinunet
from segkit.models.transunet import PositionEmbedding, build_transunet
from segkit.models.u2net import build_u2net
from segkit.models.unet3plus import build_unet3plus
from segkit.registry import Registry

if TYPE_CHECKING:
    from segkit.config import Config

logger = logging.getLogger(__name__)

ModelBuilder = Callable[..., keras.Model]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder and what it reads from the ``model`` section.

    Attributes:
        build: ``build(input_shape, num_classes, **records)``; the records are those ``builder_arguments``
            makes.
        keys: its ``segkit.config.MODEL_CATALOG`` entry (honoured common knobs, own section).
    """

    build: ModelBuilder
    keys: ModelKeys


BUILDERS: dict[str, ModelBuilder] = {
    "flexunet": build_flexunet,
    "attention_unet": build_attention_unet,
    "unet3plus": build_unet3plus,
    "multiresunet": build_multiresunet,
    "sharpunet": build_sharpunet,
    "u2net": build_u2net,
    "deeplabv3plus": build_deeplabv3plus,
    "efficientunet": build_efficientunet,
    "transunet": build_transunet,
    "swinunet": build_swinunet,
}

MODELS: Registry[ModelEntry] = Registry("model")
for _name, _build in BUILDERS.items():
    MODELS.register(_name)(ModelEntry(_build, MODEL_CATALOG.get(_name)))
for _alias, _target in MODEL_CATALOG.aliases().items():
    MODELS.alias(_alias, _target)


def builder_arguments(m: ModelConfig) -> dict[str, Levels | Convs | Any]:
    """The keyword arguments ``build_model`` gives the builder of ``m.name``: only the records of the keys its
    ``ModelKeys`` declares (``levels``; ``convs`` when it honours ``CONV_KEYS``; ``options``, its own
    section)."""
    keys = MODEL_CATALOG.get(m.name)
    args: dict[str, Any] = {"levels": Levels(**{k: getattr(m, k) for k in LEVEL_KEYS})}
    if keys.honours >= set(CONV_KEYS):
        args["convs"] = Convs(**{k: getattr(m, k) for k in CONV_KEYS})
    options = m.options_of(m.name)
    if options is not None:
        args["options"] = options
    return args


def input_shape_of(cfg: Config) -> tuple[int, int, int]:
    """Model input ``(H, W, C)``: ``C = data.channels * (1 + 2 * data.context_slices)`` (2.5D context)."""
    h, w = cfg.data.image_size
    return (int(h), int(w), int(cfg.data.channels * (1 + 2 * cfg.data.context_slices)))


def check_input_shape(image_size: tuple[int, int], num_layers: int) -> None:
    """Check that H and W survive ``num_layers - 1`` 2x2 poolings (SMP's ``check_input_shape``).

    Args:
        image_size: ``(H, W)`` in pixels.
        num_layers: resolution levels of the U-Net.

    Raises:
        ConfigError: H or W is not divisible by ``2**(num_layers-1)``; the message names the size and the
            divisor, the hint the padded size (next multiple) and the next smaller valid size.
    """
    div = 2 ** (num_layers - 1)
    h, w = int(image_size[0]), int(image_size[1])
    if h % div == 0 and w % div == 0:
        return
    up = (-(-h // div) * div, -(-w // div) * div)
    down = (max(h // div, 1) * div, max(w // div, 1) * div)
    raise ConfigError(
        f"image size {h}x{w} is not divisible by {div} (model.num_layers={num_layers} gives "
        f"{num_layers - 1} poolings of 2x2)",
        path="data.image_size",
        hint=f"pad to {up[0]}x{up[1]} (or use {down[0]}x{down[1]}), or lower model.num_layers",
    )


def build_model(cfg: Config, *, pretrained: bool = False) -> keras.Model:
    """Build the model named by ``cfg.model.name`` for ``cfg``'s input size, channels and classes.

    Args:
        cfg: a validated ``segkit.config.Config``.
        pretrained: load ``model.pretrained_weights`` (training does, on a fresh start only; rebuilding a
            trained model never needs the file).

    Returns:
        Uncompiled ``keras.Model``: input ``(H, W, C)`` from ``input_shape_of(cfg)``, output
        ``(H, W, cfg.num_classes)`` float32 softmax probabilities.

    Raises:
        ConfigError: unknown model name (``model.name``, listing valid names) or an image size that the
            poolings cannot halve (``data.image_size``).
    """
    try:
        entry = MODELS.get(cfg.model.name)
    except SegkitError as e:
        raise ConfigError(e.message, path="model.name", hint=e.hint) from e
    shape = input_shape_of(cfg)
    check_input_shape(shape[:2], cfg.model.num_layers)
    m = cfg.model
    model = entry.build(shape, cfg.num_classes, **builder_arguments(m))
    if pretrained and m.pretrained_weights is not None:
        load_pretrained(model, Path(m.pretrained_weights))
    return model


def load_pretrained(model: keras.Model, path: Path) -> None:
    """Load a local weights file into ``model`` (``model.pretrained_weights``): a ``.weights.h5`` or a
    ``.keras`` file of the same architecture and input/output shapes. Nothing is downloaded.

    Raises:
        ConfigError: the file is missing, has another format, or its weights do not fit the model (the message
            carries Keras' account of the first mismatch).
    """
    hint = "give a .weights.h5 or .keras file saved from the same model.name, options, channels and classes"
    if not path.is_file():
        raise ConfigError("pretrained weights file not found", path=path, hint=hint)
    if not (path.name.endswith(".weights.h5") or path.suffix == ".keras"):
        raise ConfigError("pretrained weights must be a .weights.h5 or .keras file", path=path, hint=hint)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))
        except (ValueError, KeyError, OSError) as e:
            first = " ".join(str(e).split())[:300]
            raise ConfigError(f"the pretrained weights do not fit this model: {first}", path=path,
                              hint=hint) from e
    # Keras only warns when parts of the file have no place in the model (and leaves those layers random)
    partial = [w for w in caught if "retain" in str(w.message) or "Skipping" in str(w.message)]
    if partial:
        first = " ".join(str(partial[0].message).split())[:300]
        raise ConfigError(f"the pretrained weights do not fit this model: {first}", path=path, hint=hint)
    logger.info("loaded pretrained weights from %s", path)


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) if d is not None else 1 for d in t.shape)


def layer_macs(layer: Any) -> int:
    """Multiply-adds of one layer for ONE image, from its functional input/output shapes.

    Conv2D: ``H_out * W_out * C_out * kh * kw * C_in / groups`` (bias adds and activations are not counted;
    dilation does not change the count). DepthwiseConv2D: ``H_out * W_out * C_out * kh * kw``. Dense: inputs x
    ``C_in * units``. MultiHeadAttention: the four projections and the ``T x T`` scores and sum.
    Conv2DTranspose: ``H_in * W_in * C_in * kh * kw * C_out``. Layers defining ``macs_per_image(input_shape)``
    (e.g. ``AttentionGate``) report their own. Others: 0.
    """
    from keras import layers

    if isinstance(layer, layers.Dense):
        shape = _shape(layer.input)
        return int(np.prod(shape[1:-1])) * shape[-1] * layer.units
    if isinstance(layer, layers.MultiHeadAttention):
        _, t, c = _shape(layer.input[0] if isinstance(layer.input, (list, tuple)) else layer.input)[:3]
        inner = layer._num_heads * layer._key_dim
        return 4 * t * c * inner + 2 * t * t * inner  # q/k/v/output projections + scores and weighted sum
    if isinstance(layer, layers.DepthwiseConv2D):
        _, h, w, cout = _shape(layer.output)
        kh, kw = layer.kernel_size
        return h * w * cout * kh * kw
    if isinstance(layer, layers.Conv2DTranspose):
        _, h, w, cin = _shape(layer.input)
        kh, kw = layer.kernel_size
        return h * w * cin * kh * kw * layer.filters
    if isinstance(layer, layers.Conv2D):
        _, h, w, cout = _shape(layer.output)
        cin = _shape(layer.input)[-1]
        kh, kw = layer.kernel_size
        return h * w * cout * kh * kw * cin // getattr(layer, "groups", 1)
    if hasattr(layer, "macs_per_image"):
        inp = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        return int(layer.macs_per_image([_shape(t) for t in inp]))
    return 0


def model_summary(model: keras.Model) -> dict[str, Any]:
    """Parameter count and forward GFLOP per image (``2 * multiply-adds`` of conv layers, see ``layer_macs``).

    Args:
        model: a built functional model with a fixed input size.

    Returns:
        ``{"params": int (all weights, trainable or not), "gflops_per_image": float (1e9 FLOP)}``.
    """
    macs = sum(layer_macs(layer) for layer in model.layers)
    summary = {"params": int(model.count_params()), "gflops_per_image": 2.0 * macs / 1e9}
    logger.debug("model %s: %s", model.name, summary)
    return summary


__all__ = [
    "BUILDERS",
    "MODELS",
    "AttentionGate",
    "Convs",
    "Levels",
    "ModelEntry",
    "PositionEmbedding",
    "Sharpen",
    "SwinBlock",
    "build_attention_unet",
    "build_deeplabv3plus",
    "build_efficientunet",
    "build_flexunet",
    "build_multiresunet",
    "build_sharpunet",
    "build_swinunet",
    "build_transunet",
    "build_u2net",
    "build_unet3plus",
    "build_model",
    "builder_arguments",
    "check_input_shape",
    "input_shape_of",
    "layer_macs",
    "load_pretrained",
    "model_summary",
]
