"""Model loading: a run folder's model file(s), one model or an ensemble, checked against the config and run
in the asked precision.

Keras is imported inside the functions.

Example:
    >>> model = load_models(run_models(Path("demo/run")), cfg)   # one model, or a cv run's fold ensemble
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segkit.errors import ConfigError, ModelError
from segkit.hardware import cpu_has_bf16, resolve_jit_compile, visible_gpus
from segkit.io.run_folder import model_paths

if TYPE_CHECKING:
    import keras

    from segkit.config import Config

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def run_models(run_dir: Path) -> list[Path]:
    """The model file(s) a run folder stands for: ``model.keras``, or every fold's model of a cross-validation
    run (``cv.json``), which ``load_models`` then ensembles (``segkit.io.run_folder.model_paths``).

    Raises:
        ModelError: ``cv.json`` is unreadable or names a fold whose model is missing.
    """
    return model_paths(Path(run_dir))


def resolve_models(
    run_dir: Path, models: Sequence[Path] | Path | None = None
) -> tuple[list[Path], Path | None]:
    """The model files to load and the folder whose ``postprocessing.json`` applies to them.

    No ``models``: the run folder's (``run_models``: its model, or a cross-validation run's folds) with the
    run folder's decision. One given model: its own folder's decision. Several given models: no decision
    (their folders decided for themselves, not for the ensemble), so the config's ``infer`` settings rule.
    """
    if models is None or (not isinstance(models, (str, Path)) and not models):
        return run_models(run_dir), Path(run_dir)
    paths = [Path(models)] if isinstance(models, (str, Path)) else [Path(m) for m in models]
    return paths, (paths[0].parent if len(paths) == 1 else None)


def load_model(path: Path, cfg: Config, precision: str | None = None) -> keras.Model:
    """Load a ``.keras`` model for inference and check it against the config.

    Args:
        path: the ``.keras`` file (e.g. ``<run_dir>/model.keras``).
        cfg: the config; its ``num_classes`` and input channels must match the model.
        precision: "float32", "mixed_bfloat16" or "mixed_float16" to run in that dtype policy (the weights are
            copied into a model rebuilt from ``cfg``); None or "auto" keeps the policy saved with the model,
            except that a mixed-precision model runs in float32 where its half type is emulated and slower: a
            ``mixed_float16`` model on any CPU, a ``mixed_bfloat16`` one on a CPU without native bfloat16
            (``segkit.hardware``).

    Returns:
        An uncompiled ``keras.Model`` (compiled for XLA when ``cfg.train.jit_compile`` resolves to on).

    Raises:
        ModelError: missing or unreadable file, or output classes / input channels that differ from the config
            (the message names both numbers).
    """
    import keras

    import segkit.models  # noqa: F401 - registers segkit's serializable layers

    path = Path(path)
    if not path.is_file():
        raise ModelError(
            "model file not found",
            path=path,
            hint="run `segkit train CONFIG` first, or pass --model PATH to a .keras file",
        )
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelError(
            f"cannot load model ({type(e).__name__}: {' '.join(str(e).split())[:200]})",
            path=path,
            hint="give a .keras file written by `segkit train`",
        ) from e
    check_model(model, cfg, path)
    saved = _policy_name(model)
    if precision in (None, "auto") and saved != "float32" and not _native(saved):
        model = _float32_copy(model, path, saved)
    elif precision not in (None, "auto") and precision != saved:
        model = _with_policy(model, cfg, precision)
    if _jit(cfg):
        model.compile(jit_compile=True)
    return model


def _native(policy: str) -> bool:
    """Whether this machine runs the mixed ``policy`` natively: float16 on a GPU, bfloat16 on a GPU or a CPU
    with native bfloat16 (``segkit.hardware.cpu_has_bf16``)."""
    if visible_gpus() > 0:
        return True
    return policy == "mixed_bfloat16" and cpu_has_bf16()


def _jit(cfg: Config) -> bool:
    return resolve_jit_compile(cfg.train.jit_compile, visible_gpus())


def load_models(
    paths: list[Path] | tuple[Path, ...], cfg: Config, precision: str | None = None
) -> keras.Model:
    """One model from one ``.keras`` file, or the ensemble of several: the mean of their softmax outputs.

    Every member is loaded and checked like ``load_model``; an ensemble then behaves as one model everywhere
    (sliding windows, flip TTA, volumes, evaluate): averaging is linear, so TTA of the ensemble equals the
    mean of the members' TTA predictions.

    Raises:
        ModelError: a member is missing, unreadable, disagrees with the config, or its input size differs from
            the first member's (naming both files).
    """
    import keras

    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return load_model(paths[0], cfg, precision)
    members = [load_model(p, cfg, precision) for p in paths]
    shape = tuple(members[0].input_shape[1:])
    for p, m in zip(paths[1:], members[1:], strict=True):
        if tuple(m.input_shape[1:]) != shape:
            raise ModelError(
                f"ensemble members take different inputs: {paths[0].name} {shape} vs {p.name} "
                f"{tuple(m.input_shape[1:])}",
                path=p,
                hint="ensemble models trained with the same data.image_size and channels",
            )
    inp = keras.Input(shape=shape, name="image")
    outs = [keras.Model(m.input, m.output, name=f"member_{i}")(inp) for i, m in enumerate(members)]
    ens = keras.Model(inp, keras.layers.Average(name="mean_probabilities", dtype="float32")(outs),
                      name=f"ensemble_of_{len(members)}")
    if _jit(cfg):
        ens.compile(jit_compile=True)
    logger.info("ensemble of %d models: %s", len(members), ", ".join(str(p) for p in paths))
    return ens


def check_model(model: keras.Model, cfg: Config, path: Path | None = None) -> None:
    """Raise ``ModelError`` when the model's output classes, input channels or input size differ from the
    config."""
    out_classes = int(model.output_shape[-1])
    if out_classes != cfg.num_classes:
        raise ModelError(
            f"the model outputs {out_classes} classes but the config has {cfg.num_classes} "
            f"(background + {cfg.num_classes - 1} classes)",
            path=path,
            hint="use the config the model was trained with, or pass --model for the right run",
        )
    from segkit.models import input_shape_of

    want = input_shape_of(cfg)[-1]
    have = int(model.input_shape[-1])
    if have != want:
        raise ModelError(
            f"the model takes {have} input channels but the config gives {want} "
            "(data.channels x (1 + 2 x data.context_slices))",
            path=path,
            hint="use the config the model was trained with",
        )
    size = model_input_size(model)
    if size is not None and tuple(size) != tuple(int(v) for v in cfg.data.image_size):
        raise ModelError(
            f"the model takes {size[0]}x{size[1]} inputs but data.image_size is "
            f"{cfg.data.image_size[0]}x{cfg.data.image_size[1]}",
            path=path,
            hint=f"use the run folder or its config.yaml, or --set data.image_size=[{size[0]},{size[1]}]",
        )


def _policy_name(model: keras.Model) -> str:
    """The policy the model computes in: its layers' mixed policy, if any. A loaded model's own
    ``dtype_policy`` is float32 whatever its layers' (only they are saved with theirs), and the head stays
    float32 under a mixed policy."""
    names = [str(getattr(layer.dtype_policy, "name", "float32")) for layer in model._flatten_layers()]
    return next((n for n in names if n.startswith("mixed_")), "float32")


def _float32_copy(model: keras.Model, path: Path, saved: str) -> keras.Model:
    """The same network and weights computing in float32: rebuilt from the model's own saved config with every
    layer's dtype policy set to float32 (not from the segkit config, which may describe another network when a
    model is given with ``--model``); the model as saved, with a warning, if that fails."""
    import keras

    try:
        copy = keras.Model.from_config(_float32_config(model.get_config()))
        copy.set_weights(model.get_weights())
        if _policy_name(copy) != "float32":  # a Keras that writes the policy otherwise (e.g. a plain string)
            raise ValueError(f"the copy still computes in {_policy_name(copy)}")
    except Exception as e:  # noqa: BLE001 - any failure keeps the model as it was saved
        logger.warning("%s: running it in %s as saved (emulated on this CPU, slower): %s: %s", path, saved,
                       type(e).__name__, " ".join(str(e).split())[:200])
        return model
    logger.info("running %s in float32 (%s is emulated on this CPU)", path, saved)
    return copy


def _float32_config(node: object) -> object:
    """A Keras model config with every layer's dtype policy set to float32."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_float32_config(v) for v in node]
    return node


def _with_policy(model: keras.Model, cfg: Config, precision: str) -> keras.Model:
    """The same weights in a model rebuilt from ``cfg`` under dtype policy ``precision``."""
    import keras

    from segkit.models import build_model

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'", path="train.precision",
                          hint=f"use one of {PRECISIONS}")
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(precision)
        rebuilt = build_model(cfg)
    finally:
        keras.config.set_dtype_policy(previous)
    try:
        rebuilt.set_weights(model.get_weights())
    except ValueError as e:
        raise ModelError(
            f"cannot run the model in {precision}: its weights do not fit the architecture of the config "
            f"({e})",
            hint="use the config the model was trained with, or set train.precision=auto",
        ) from e
    logger.info("running the model in %s", precision)
    return rebuilt


def model_input_size(model: keras.Model) -> tuple[int, int] | None:
    """(H, W) of the model input, or None when the model accepts any size."""
    h, w = model.input_shape[1:3]
    return (int(h), int(w)) if h is not None and w is not None else None
