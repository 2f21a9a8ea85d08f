"""``export_run``: a run folder (or a cross-validation folder) -> a self-contained deployment bundle.

1. the run's config and model(s) are loaded (a cross-validation folder: its folds' ensemble, one graph
   that averages the members' softmax outputs, as ``segkit infer`` does);
2. Keras' ``model.export`` writes the graph as ONNX (tf2onnx, its default opset 15), LiteRT (``.tflite``)
   or a TensorFlow SavedModel (endpoint ``serve``); the graph is ``segkit.export.graph.exportable(model)``
   (group normalization with shorter float32 sums); a zoo model known not to convert is refused first
   (``REFUSED``);
3. the preprocessing recipe and the post-processing decision are copied beside it, ``bundle.json`` describes
   everything and lists the sha256 of every file; a cascade (``cascade.enabled``) carries its coarse stage
   as a checked bundle of its own in ``coarse/`` (``bundle.json``'s ``cascade``);
4. the bundle is run once by its runtime on a fixed random batch and compared with Keras; a runtime that
   rejects the file refuses the export. The folder appears complete or not at all.

Example:
    >>> export_run(Path("runs/la"), ExportOptions(fmt="onnx")).bundle    # runs/la/export-onnx
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from segkit.errors import ConfigError, ModelError, OutputError
from segkit.io.atomic import write_json
from segkit.io.run_folder import (
    CONFIG_FILE,
    CV_SUMMARY_FILE,
    POSTPROCESSING_FILE,
    PREPROCESSING_FILE,
    is_cv_folder,
    model_paths,
    read_train_summary,
)
from segkit.predict.bundle import BUNDLE_FILE, FORMAT_VERSION, FORMATS, MODEL_FILES, SERVING_SIGNATURE

if TYPE_CHECKING:
    import keras

    from segkit.config import Config

log = logging.getLogger(__name__)

KERAS_FORMATS = {"onnx": "onnx", "litert": "litert", "savedmodel": "tf_saved_model"}

REFUSED: dict[tuple[str, str], str] = {
    ("swinunet", "onnx"): "tf2onnx cannot convert the Erfc op of the exact GELU inside its Swin blocks (ONNX "
                          "Runtime rejects the graph as invalid)",
    ("swinunet", "litert"): "its shifted windows use tf.roll, a Select TF op (FlexRoll) that the LiteRT "
                            "interpreter lacks",
}
"""(model, format) pairs that do not convert, with the reason (refused before anything is written)."""

INT8_FORMATS = ("litert", "onnx")  # the formats --quantize int8 applies to (segkit.export.quantize)
INT8_KIND = {"litert": "LiteRT converter, group normalization arithmetic kept float32",
             "onnx": "ONNX Runtime static quantization, QDQ, per-channel int8 weights, uint8 activations"}
CHECK_TOLERANCE = 1e-2  # the export check refuses a graph whose max |p_runtime - p_keras| is larger


@dataclass(frozen=True)
class ExportOptions:
    """What ``export_run`` writes: the format, the bundle folder (default ``<run_dir>/export-<format>``),
    whether an existing one is replaced, and the licence recorded in the model card."""

    fmt: str = "onnx"
    out: Path | None = None
    overwrite: bool = False
    licence: str | None = None
    quantize: str | None = None  # "int8": post-training quantization (``segkit.export.quantize``)


@dataclass(frozen=True)
class ExportResult:
    """A written bundle: its folder, format, member models, size and the export check's max |dp|."""

    bundle: Path
    fmt: str
    members: tuple[str, ...]
    size_bytes: int
    max_abs_diff: float
    quantization: dict[str, Any] | None = None  # int8: the Dice cost (``segkit.export.quantize.dice_cost``)


def refusal(model_name: str, fmt: str) -> str | None:
    """Why ``model_name`` does not export to ``fmt`` (None: it does)."""
    from segkit.config import MODEL_CATALOG

    return REFUSED.get((MODEL_CATALOG.canonical(model_name), fmt))


def export_run(run_dir: Path, options: ExportOptions) -> ExportResult:
    """Write the deployment bundle of a run folder or a cross-validation folder.

    Raises:
        ConfigError: an unknown format, or no ``config.yaml`` in ``run_dir``.
        ModelError: a model missing, a model/format pair that does not convert (one line naming both and
            the reason), or a runtime that rejects the converted file.
        OutputError: the bundle folder exists (without ``overwrite``).
        DataError: no preprocessing recipe for the run.
    """
    run_dir = Path(run_dir)
    cfg = _run_config(run_dir, options.fmt)
    if options.quantize not in (None, "int8") or (options.quantize and options.fmt not in INT8_FORMATS):
        raise ConfigError(f"--quantize {options.quantize} is not available for --format {options.fmt}",
                          hint="use --format litert or onnx with --quantize int8, or leave --quantize out")
    why = refusal(cfg.model.name, options.fmt)
    if why is not None:
        others = [f for f in FORMATS if not refusal(cfg.model.name, f)]
        raise ModelError(f"{cfg.model.name} does not export to {options.fmt}: {why}", path=run_dir,
                         hint=f"export it as {' or '.join(others)}" if others else None)
    out = Path(options.out) if options.out is not None else run_dir / f"export-{options.fmt}"
    if out.exists() and not options.overwrite:
        raise OutputError("the bundle folder exists", path=out, hint="pass --overwrite or another --out")
    if cfg.cascade.enabled and is_cv_folder(run_dir):
        raise ModelError("a cross-validation folder of cascades does not export as one bundle", path=run_dir,
                         hint="export one fold's run folder (fold_k), which holds both of its stages")
    members = model_paths(run_dir)
    net = _load_float32(members, cfg)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        coarse = _export_coarse(run_dir, tmp, options) if cfg.cascade.enabled else None
        meta = _write_members(net, tmp, cfg, options)
        if coarse is not None:
            meta["cascade"] = coarse
        meta["ensemble"] = _ensemble(run_dir, members)
        meta["model_card"] = _model_card(run_dir, cfg, options.licence)
        diff = _check(net, tmp, meta, cfg, quantized=bool(options.quantize))
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.debug("exported %s -> %s (%s, %d bytes, max |dp| %.2g)", run_dir, out, options.fmt, size, diff)
    return ExportResult(out, options.fmt, tuple(meta["ensemble"]["members"]), size, diff,
                        meta["model"]["quantization"])


def _export_coarse(run_dir: Path, tmp: Path, options: ExportOptions) -> dict[str, Any]:
    """A cascade's coarse stage (``<run_dir>/coarse``) exported and checked as a bundle of its own inside the
    bundle (``coarse/``, float32 even under ``--quantize``: it only has to find the region); the outer
    ``bundle.json`` lists its files too."""
    from segkit.config import COARSE_DIR

    sub = export_run(run_dir / COARSE_DIR, ExportOptions(fmt=options.fmt, out=tmp / COARSE_DIR,
                                                          licence=options.licence))
    return {"coarse": COARSE_DIR, "coarse_max_abs_diff": sub.max_abs_diff,
            "how": "the coarse bundle segments whole slices; the in-plane box of the 3D components of its "
                   "foreground of at least a tenth of the largest one's size, + cascade.margin_mm + "
                   "cascade.jitter_mm / 2, square in mm, is the crop this bundle's model segments; then, "
                   "cascade.refine_passes times, the box is taken the same way from this model's own "
                   "foreground and segmented again (segkit.predict.cascade)"}


def _run_config(run_dir: Path, fmt: str) -> Config:
    from segkit.config import load_config

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'", hint=f"use one of {', '.join(FORMATS)}")
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError("not a segkit run folder (config.yaml missing)", path=run_dir,
                          hint="give a folder made by segkit train or segkit cv")
    cfg = load_config(run_dir / CONFIG_FILE)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"run_dir": run_dir,
                                                                         "jit_compile": False})})


def _load_float32(members: list[Path], cfg: Config) -> keras.Model:
    """The members (one model or their averaging ensemble) in float32, called once (Keras exports only a
    called model)."""
    from segkit.models import input_shape_of
    from segkit.predict.models import load_models

    net = load_models(members, cfg, precision="float32")
    net.predict_on_batch(np.zeros((1, *input_shape_of(cfg)), np.float32))
    return net


def _write_members(net: keras.Model, tmp: Path, cfg: Config, options: ExportOptions) -> dict[str, Any]:
    """The model file, ``preprocessing.json`` and ``postprocessing.json`` in ``tmp``; the first part of
    ``bundle.json``."""
    import segkit
    from segkit.postprocess import load_postprocessing
    from segkit.predict.recipe import preprocessing_spec

    name = MODEL_FILES[options.fmt]
    _write_model(net, tmp / name, cfg, options)
    spec = preprocessing_spec(cfg).to_json()
    write_json(tmp / PREPROCESSING_FILE, spec)
    pp = load_postprocessing(Path(cfg.train.run_dir))
    if pp is not None:
        write_json(tmp / POSTPROCESSING_FILE, pp.to_json())
    classes = [{"id": 0, "name": "background", "color": [0, 0, 0], "concept": None}]
    classes += [{"id": c.id, "name": c.name, "color": list(c.color),
                 "concept": c.concept.model_dump(mode="json") if c.concept is not None else None}
                for c in cfg.effective_classes]
    config = cfg.to_yaml_data()
    config["train"].pop("run_dir", None)
    return {
        "kind": "segkit-bundle", "format_version": FORMAT_VERSION, "format": options.fmt,
        "segkit_version": segkit.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"name": cfg.model.name, "file": name, "layout": "NHWC", "dtype": "float32",
                  "input_shape": [None, *[int(v) for v in net.input_shape[1:]]],
                  "output_shape": [None, *[int(v) for v in net.output_shape[1:]]],
                  "input": "image slices scaled to 0..1 (the prepared uint8 slice / 255), channels = "
                           "data.channels x (1 + 2 x data.context_slices) neighbouring slices",
                  "output": "softmax probabilities per class (background first)",
                  "signature": SERVING_SIGNATURE if options.fmt == "savedmodel" else None,
                  "quantization": None},
        "input_size": [int(v) for v in cfg.data.image_size], "channels": int(cfg.data.channels),
        "context_slices": int(cfg.data.context_slices), "classes": classes,
        "preprocessing": spec, "postprocessing": pp.to_json() if pp is not None else None,
        "inference": {"tta": cfg.infer.tta, "largest_component": cfg.infer.largest_component,
                      "overlap": cfg.infer.overlap, "batch_size": cfg.infer.batch_size},
        "config": config,
    }


def _write_model(net: keras.Model, path: Path, cfg: Config, options: ExportOptions) -> None:
    """Convert ``exportable(net)`` to ``path``: Keras' ``model.export``, or for int8 ``litert_int8`` /
    ``onnx_int8`` (which quantizes a float32 graph written beside ``path``, then removed).

    Raises:
        ModelError: a converter or the quantizer fails (one line naming the model and the format).
    """
    from segkit.export.graph import exportable
    from segkit.export.quantize import litert_int8, onnx_int8

    int8 = options.quantize == "int8"
    target = path.with_name(f"{path.stem}.float{path.suffix}") if int8 and options.fmt == "onnx" else path
    try:
        graph = exportable(net)
        if int8 and options.fmt == "litert":
            litert_int8(graph, path, cfg)
        else:
            graph.export(str(target), format=KERAS_FORMATS[options.fmt], verbose=False)
        if target != path:
            onnx_int8(target, path, cfg)
    except Exception as e:  # noqa: BLE001 - the converters raise many types
        raise ModelError(f"{cfg.model.name} does not export to {options.fmt}: {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]}", hint="try another --format") from e
    finally:
        if target != path:
            target.unlink(missing_ok=True)


def _ensemble(run_dir: Path, members: list[Path]) -> dict[str, Any]:
    return {"members": [p.relative_to(run_dir).as_posix() for p in members],
            "combine": "mean of the members' softmax probabilities, inside the exported graph"
            if len(members) > 1 else None}


def _model_card(run_dir: Path, cfg: Config, licence: str | None) -> dict[str, Any]:
    """Modality, expected orientation and spacing, training data, validation metrics, licence."""
    metrics: dict[str, Any] | None = None
    if is_cv_folder(run_dir) and (run_dir / CV_SUMMARY_FILE).is_file():
        summary = json.loads((run_dir / CV_SUMMARY_FILE).read_text(encoding="utf-8"))
        metrics = {"source": CV_SUMMARY_FILE, "summary": summary.get("summary", summary.get("metrics"))}
    else:
        ts = read_train_summary(run_dir)
        if ts is not None:
            metrics = {"source": "train_summary.json", "monitor": ts.get("monitor"),
                       "best_value": ts.get("best_value"), "best_epoch": ts.get("best_epoch")}
    p = cfg.prepare
    return {
        "modality": cfg.modality,
        "orientation": f"volumes are reoriented to RAS and sliced along axis {p.axis} "
                       "(0 sagittal, 1 coronal, 2 axial)"
                       + (f", and along axes {list(p.extra_axes)} too, the views' class probabilities "
                          "averaged in the volume (prepare.extra_axes)" if p.extra_axes else "")
                       + "; outputs are written in the input's own geometry",
        "spacing_mm": p.spacing,
        "training_data": {"dataset": Path(cfg.data.dir).name, "name": cfg.name},
        "validation_metrics": metrics,
        "licence": licence,
    }


def _keras_probs(net: keras.Model, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The float32 Keras model's probabilities: the export check's reference."""
    return np.asarray(net.predict_on_batch(x), np.float32)


def _float64_probs(net: keras.Model, cfg: Config, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The probabilities of ``net``'s weights evaluated in float64 (the model rebuilt under Keras' float64
    policy, the weights copied): nearly the exact function both float32 evaluations approximate. Not quite:
    on TensorFlow a bilinear resize (``UpSampling2D(interpolation="bilinear")``) returns float32, and the
    segmentation head's softmax is float32, so those values are rounded to float32 once."""
    import keras

    from segkit.models import build_model

    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        exact = build_model(cfg)
        exact.set_weights([np.asarray(w, np.float64) for w in net.get_weights()])
        return np.asarray(exact.predict_on_batch(x.astype(np.float64)), np.float64)
    finally:
        keras.config.set_dtype_policy(old)


def _check(net: keras.Model, tmp: Path, meta: dict[str, Any], cfg: Config, quantized: bool = False) -> float:
    """Write ``bundle.json``, read the bundle back as a deployment would and compare its probabilities
    with Keras on a fixed random batch; returns max |dp| (also recorded in ``bundle.json``). A float32
    bundle further than ``CHECK_TOLERANCE`` from Keras is compared, for a single model, with a float64
    evaluation of the same weights (``_float64_probs``): it passes when it is within the tolerance of float64
    and no further from it than Keras float32 is (a deep net such as u2net amplifies float32 rounding: a
    short-trained u2net's Keras float32 was 0.025 from float64 where its ONNX graph was 0.0036). A quantized
    bundle is judged by its Dice cost instead, on prepared validation slices and on up to 3 whole validation
    volumes (``segkit.export.quantize``), recorded under ``model.quantization``.

    Raises:
        ModelError: the runtime rejects the file, or (float32) the probabilities fail the rule above.
    """
    from segkit.predict.bundle import bundle_files, load_bundle_model, read_bundle

    meta["files"] = bundle_files(tmp)
    write_json(tmp / BUNDLE_FILE, meta)
    shape = [2, *meta["model"]["input_shape"][1:]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    what = f"{meta['model']['name']} does not export to {meta['format']}"
    try:
        runtime = load_bundle_model(read_bundle(tmp))
        got = runtime.predict_on_batch(x)
    except ModelError as e:
        raise ModelError(f"{what}: {e.message}", hint="try another --format") from e
    except Exception as e:  # noqa: BLE001 - a runtime may accept the file and fail on the first call
        raise ModelError(f"{what}: the runtime fails on it ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})", hint="try another --format") from e
    reference = _keras_probs(net, x)
    diff = float(np.max(np.abs(got - reference)))
    check: dict[str, Any] = {"max_abs_diff": diff, "batch": "2 uniform random inputs in [0, 1), seed 0",
                             "reference": "Keras float32"}
    if quantized:
        from segkit.export.quantize import CALIBRATION_SLICES, dice_cost, volume_dice_cost

        meta["model"]["quantization"] = {
            "kind": f"int8 post-training quantization ({INT8_KIND[meta['format']]}), float32 input and "
                    "output",
            "calibration": f"{CALIBRATION_SLICES} prepared training slices",
            **dice_cost(net.predict_on_batch, runtime.predict_on_batch, cfg),
            # a cascade's fine model alone would see whole slices there: its cost is the crops' (above)
            "volumes": volume_dice_cost(net, runtime, cfg) if not cfg.cascade.enabled else None}
    elif not diff <= CHECK_TOLERANCE:
        why = f"{what}: the converted graph differs from Keras by {diff:.3g} in probability"
        if len(meta["ensemble"]["members"]) != 1:
            raise ModelError(why, hint="try another --format")
        try:
            exact = _float64_probs(net, cfg, x)
        except Exception as e:  # noqa: BLE001 - a model that cannot run in float64 keeps the Keras rule
            raise ModelError(f"{why} (and it cannot be evaluated in float64: {type(e).__name__}: "
                             f"{' '.join(str(e).split())[:150]})", hint="try another --format") from e
        ours = float(np.max(np.abs(got - exact)))
        keras_own = float(np.max(np.abs(reference - exact)))
        if not (ours <= CHECK_TOLERANCE and ours <= keras_own):
            raise ModelError(f"{why} (and by {ours:.3g} from a float64 evaluation, where Keras float32 is "
                             f"{keras_own:.3g} from it)", hint="try another --format")
        check.update(reference="float64 (bilinear resizes and the softmax head float32)",
                     max_abs_diff_float64=ours, keras_float32_vs_float64=keras_own)
        log.info("%s: %.2g from Keras float32, but %.2g from a float64 evaluation of the same weights (Keras "
                 "float32: %.2g): accepted against float64", meta["model"]["name"], diff, ours, keras_own)
    meta["export_check"] = check
    write_json(tmp / BUNDLE_FILE, meta)
    return diff


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place (an existing one is removed only once the new one is complete)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


__all__ = ["REFUSED", "ExportOptions", "ExportResult", "export_run", "refusal"]
