"""Deployment bundles (``segkit export``): reading and checking a bundle folder, and running its model with
ONNX Runtime, the LiteRT interpreter or TensorFlow (SavedModel).

A bundle folder holds ``bundle.json`` and the files it lists with their sha256: the model file(s)
(``model.onnx``, ``model.tflite`` or ``saved_model/``), ``preprocessing.json`` and, when the run chose one,
``postprocessing.json``. Reading one parses JSON only and checks every file before anything is loaded;
nothing in a bundle is executed as Python (``config`` is validated data, the model files are graphs run by
their runtime). ONNX and LiteRT bundles run without importing TensorFlow or Keras.

Example:
    >>> b = read_bundle(Path("exports/la-onnx"))      # refused (ModelError) when tampered with
    >>> net = load_bundle_model(b)                   # net.predict_on_batch(x) -> softmax probabilities
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from segkit.errors import ModelError
from segkit.io.hashing import sha256_file

if TYPE_CHECKING:
    from segkit.config import Config

BUNDLE_FILE = "bundle.json"
BUNDLE_KIND = "segkit-bundle"
FORMAT_VERSION = 1
FORMATS = ("onnx", "litert", "savedmodel")
MODEL_FILES = {"onnx": "model.onnx", "litert": "model.tflite", "savedmodel": "saved_model"}
SERVING_SIGNATURE = "serve"  # the SavedModel endpoint: image (B, H, W, C) float32 -> probabilities


@dataclass(frozen=True)
class Bundle:
    """A checked bundle folder: its path and its ``bundle.json``."""

    path: Path
    meta: dict[str, Any]

    @property
    def format(self) -> str:
        return str(self.meta["format"])

    @property
    def model_path(self) -> Path:
        return self.path / str(self.meta["model"]["file"])


def bundle_config(bundle: Bundle, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config kept in ``bundle.json`` (validated data) with ``overrides`` (``key=value``) and
    ``train.run_dir`` set to the bundle folder, so the bundle's ``preprocessing.json`` and
    ``postprocessing.json`` apply.

    Raises:
        ConfigError: an invalid kept config or override.
    """
    import copy

    from segkit.config import apply_override, validate_config

    raw = copy.deepcopy(bundle.meta.get("config") or {})
    for item in overrides:
        apply_override(raw, item)
    raw.setdefault("train", {})["run_dir"] = str(bundle.path)
    return validate_config(raw, source=bundle.path / BUNDLE_FILE)


def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a folder with a ``bundle.json``."""
    return (Path(path) / BUNDLE_FILE).is_file()


def bundle_files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` except ``bundle.json``: relative POSIX path -> sha256, sorted."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() != BUNDLE_FILE}


def read_bundle(path: Path) -> Bundle:
    """Read ``bundle.json`` and check the bundle: known format and version, every listed file present with
    its sha256, no file that is not listed.

    Raises:
        ModelError: one line naming the bundle and what is wrong.
    """
    path = Path(path)
    meta = _read_meta(path)
    listed = meta.get("files")
    if not isinstance(listed, Mapping) or not listed:
        raise ModelError("bundle.json lists no files", path=path / BUNDLE_FILE, hint=_REEXPORT)
    for name, digest in listed.items():
        rel = PurePosixPath(str(name))
        if rel.is_absolute() or ".." in rel.parts:
            raise ModelError(f"bundle.json lists a file outside the bundle: {name}", path=path,
                             hint=_REEXPORT)
        member = path / rel
        if not member.is_file():
            raise ModelError(f"a bundle member is missing: {name}", path=path, hint=_REEXPORT)
        if sha256_file(member) != digest:
            raise ModelError(f"{name} does not match its sha256 in bundle.json (the bundle was changed)",
                              path=path, hint=_REEXPORT)
    extra = sorted(set(bundle_files_names(path)) - set(listed))
    if extra:
        raise ModelError(f"a file not listed in bundle.json: {extra[0]}", path=path, hint=_REEXPORT)
    if str(meta["model"].get("file")) not in {n.split("/")[0] for n in listed}:
        raise ModelError(f"the model file {meta['model'].get('file')} is not in the bundle", path=path,
                          hint=_REEXPORT)
    return Bundle(path, meta)


_REEXPORT = "export the run again with segkit export RUN_DIR"


def bundle_files_names(folder: Path) -> list[str]:
    """The relative POSIX paths of the files under ``folder`` except ``bundle.json``."""
    folder = Path(folder)
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).as_posix() != BUNDLE_FILE]


def _read_meta(path: Path) -> dict[str, Any]:
    file = path / BUNDLE_FILE
    if not file.is_file():
        raise ModelError("not a segkit bundle (bundle.json missing)", path=path, hint=_REEXPORT)
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read bundle.json: {e}", path=file, hint=_REEXPORT) from e
    if not isinstance(meta, dict) or meta.get("kind") != BUNDLE_KIND:
        raise ModelError("bundle.json is not a segkit bundle description", path=file, hint=_REEXPORT)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"unknown bundle format version {meta.get('format_version')!r} (this segkit reads "
                         f"version {FORMAT_VERSION})", path=file,
                         hint="use the segkit version that wrote the bundle, or export it again")
    if meta.get("format") not in FORMATS or not isinstance(meta.get("model"), dict):
        raise ModelError(f"unknown bundle format {meta.get('format')!r}", path=file,
                          hint=f"one of {', '.join(FORMATS)}")
    return meta


class BundleModel:
    """A bundle's network as ``segkit.predict`` uses a model: ``input_shape`` / ``output_shape`` (batch
    None) and ``predict_on_batch`` (B, H, W, C) float32 -> (B, H, W, K) float32 probabilities."""

    def __init__(self, bundle: Bundle) -> None:
        m = bundle.meta["model"]
        self.input_shape: tuple[int | None, ...] = (None, *[int(v) for v in m["input_shape"][1:]])
        self.output_shape: tuple[int | None, ...] = (None, *[int(v) for v in m["output_shape"][1:]])
        self.format = bundle.format
        self._run = _runner(bundle)

    def predict_on_batch(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(self._run(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)


def load_bundle_model(bundle: Bundle) -> BundleModel:
    """The runtime for the bundle's format (ONNX Runtime, LiteRT, or TensorFlow for a SavedModel).

    Raises:
        ModelError: the runtime is not installed or rejects the model file.
    """
    return BundleModel(bundle)


def _runner(bundle: Bundle) -> Any:
    path = bundle.model_path
    try:
        if bundle.format == "onnx":
            return _onnx_runner(path)
        if bundle.format == "litert":
            return _litert_runner(path)
        return _savedmodel_runner(path)
    except ImportError as e:
        raise ModelError(f"the {bundle.format} runtime is not installed ({e})", path=path,
                          hint="pip install onnxruntime (ONNX), ai-edge-litert (LiteRT) or tensorflow") from e
    except Exception as e:  # noqa: BLE001 - each runtime raises its own types for a bad model file
        raise ModelError(f"the {bundle.format} runtime cannot load the model ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]})", path=path, hint=_REEXPORT) from e


def _onnx_runner(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if hasattr(os, "sched_getaffinity"):  # as many threads as the cores this process may use (taskset)
        opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _litert_runner(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    shape: list[tuple[int, ...]] = [()]

    def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if shape[0] != x.shape:  # the graph's batch is dynamic: resize once per batch shape
            interpreter.resize_tensor_input(inp, list(x.shape))
            interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(out))

    return run


def _savedmodel_runner(path: Path) -> Any:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept by the closure: its variables die with it
    return lambda x: np.asarray(getattr(loaded, SERVING_SIGNATURE)(tf.constant(x)))


__all__ = ["BUNDLE_FILE", "FORMATS", "FORMAT_VERSION", "MODEL_FILES", "SERVING_SIGNATURE", "Bundle",
           "BundleModel", "bundle_config", "bundle_files", "is_bundle", "load_bundle_model", "read_bundle"]
