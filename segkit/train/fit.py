"""Train a segmentation model from a config: one run directory, resumable, reproducible.

``train_model(cfg)`` does, in order:

1. checks the run directory (refuses a non-empty one unless resuming this very config or ``overwrite``),
2. seeds Python/NumPy/TensorFlow once (``keras.utils.set_random_seed(cfg.seed)``),
3. picks the precision policy and the distribution strategy (``train.strategy``; ``segkit.train.strategy``),
4. builds the model (float32 softmax output), optimizer, loss and metrics from the registries,
5. writes ``config.yaml``, ``versions.json`` and a copy of the dataset's ``splits.json``,
6. fits on ``make_dataset(cfg, "train", training=True)`` with validation on ``"valid"``; callbacks write
   ``model.keras`` (best by ``train.monitor``), ``last.keras``, ``history.csv``, ``history.json``,
   ``curves.png``, ``epoch_infer/epoch_XXX.png`` and keep ``backup/`` for ``--resume``. Under
   ``train.strategy: multi_worker`` a custom loop (``segkit.train.distributed``) drives the same callbacks
   instead of ``fit``, and only the chief worker writes the run folder.

Precision and XLA ``auto`` (``segkit.hardware``): ``mixed_float16`` and XLA on a GPU; ``mixed_bfloat16``
without XLA on a CPU with native bfloat16 (AMX or AVX512-BF16), where oneDNN runs bfloat16 in hardware;
float32 and XLA on other CPUs, where bfloat16 is emulated and slower (``scripts/bench_train.py``; README
"Benchmarks").

Example:
    >>> result = train_model(load_config(Path("configs/demo.yaml")))
    >>> result.best_value  # validation foreground Dice of model.keras
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from segkit import __version__
from segkit.config import COARSE_DIR, Config
from segkit.errors import ConfigError, DataError, OutputError, SegkitError
from segkit.hardware import cpu_name, resolve_policy
from segkit.io.atomic import remove_stale_temps, write_bytes, write_json, write_text
from segkit.io.run_folder import (
    BACKUP_DIR,
    CONFIG_FILE,
    CURVES_PNG,
    EPOCH_INFER_DIR,
    HISTORY_CSV,
    HISTORY_JSON,
    LAST_MODEL_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    RUN_OUTPUTS,
    SPLITS_FILE,
    TENSORBOARD_DIR,
    TRAIN_SUMMARY_FILE,
    VERSIONS_FILE,
    TrainSummary,
    is_cv_folder,
    write_train_summary,
)

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from segkit.train.callbacks import ProgressFn, TrainClock
    from segkit.train.strategy import Distribution

log = logging.getLogger(__name__)


# Keys that may change between an interrupted run and its ``--resume``: training longer (epochs or time), and
# a run folder that was moved or renamed.
# The strategy too: train.batch_size is the global batch, so a run resumes on another device count unchanged.
_RESUME_FREE_KEYS = {
    ("train", "epochs"), ("train", "run_dir"), ("train", "time_limit"), ("train", "strategy"),
    ("train", "jit_compile"),  # XLA or not computes the same model (a run of `true` resumes under `auto`)
}


class RunComplete(ConfigError):
    """``--resume`` of a run with no epoch left: ``train.epochs`` done or ``train.time_limit`` used up (a run
    killed after its last epoch, e.g. while choosing its post-processing)."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished training run produced.

    Attributes:
        run_dir: the run directory.
        best_model: ``run_dir/model.keras`` (best epoch by ``monitor``).
        last_model: ``run_dir/last.keras`` (last completed epoch).
        monitor: the monitored log key (e.g. ``val_fg_dice``).
        best_value: the monitored value of the epoch in ``model.keras``: the best over all epochs
            (``train.model_checkpoint: best``) or the final one (``last``); ``None`` if not finite.
        best_epoch: 1-based epoch of ``best_value`` (the epoch ``model.keras`` holds).
        initial_epoch: epochs already done when this call started (> 0 on resume).
        epochs_done: epochs completed in total (``history.csv`` rows).
        stopped_early: the run ended before ``train.epochs`` (early stopping or the time limit).
        history: per-epoch rows (``epoch`` 0-based, every metric, ``lr``).
        precision: the dtype policy used.
        device: the device used, in words.
        wall_s: seconds spent in this call.
        stop_reason: ``epochs`` (all ``train.epochs`` done), ``early_stopping`` or ``time_limit``.
        train_time_s: training seconds of the whole run, resumes included (the last ``time_s`` of the
            history).
        coarse: a cascade's coarse stage (``cascade.enabled``, ``<run_dir>/coarse``); the other fields are
            the fine stage's.
    """

    run_dir: Path
    best_model: Path
    last_model: Path
    monitor: str
    best_value: float | None
    best_epoch: int | None
    initial_epoch: int
    epochs_done: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    precision: str = "float32"
    device: str = "cpu"
    wall_s: float = 0.0
    stop_reason: str = "epochs"
    train_time_s: float = 0.0
    coarse: TrainResult | None = None


# === Environment ===


def describe_device(gpus: list[Any]) -> str:
    """``2 x GPU (...)`` or the CPU name."""
    if gpus:
        return f"{len(gpus)} x GPU ({', '.join(g.name for g in gpus)})"
    return f"CPU: {cpu_name()}"


# === Run directory ===


def _flatten(d: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(d, dict):
        out: dict[tuple[str, ...], Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, (*prefix, str(k))))
        return out
    return {prefix: d}


def config_difference(saved_yaml: str, cfg: Config) -> str | None:
    """First key (dotted) where a run's saved ``config.yaml`` differs from ``cfg``, ignoring
    ``train.epochs``, ``train.run_dir``, ``train.time_limit`` and ``train.strategy``; ``None`` when they
    agree. The saved config is validated first, so a key added to segkit after the run was made compares as
    its default."""
    from segkit.config import parse_yaml_text, validate_config

    try:
        raw = parse_yaml_text(saved_yaml) or {}
    except ConfigError:
        return "(config.yaml unreadable)"
    try:
        saved = _flatten(validate_config(raw).to_yaml_data())
    except SegkitError:  # a config of another segkit version that no longer validates: compare as written
        saved = _flatten(raw)
    now = _flatten(cfg.to_yaml_data())
    for key in sorted(set(saved) | set(now)):
        if key in _RESUME_FREE_KEYS:
            continue
        if saved.get(key) != now.get(key):
            return f"{'.'.join(key)}: run has {saved.get(key)!r}, config has {now.get(key)!r}"
    return None


def _is_empty(path: Path, ignore: tuple[str, ...] = ()) -> bool:
    return not path.exists() or (path.is_dir() and not any(p.name not in ignore for p in path.iterdir()))


def check_run_dir(cfg: Config, *, resume: bool, overwrite: bool, clear: bool = True) -> bool:
    """Make ``cfg.train.run_dir`` ready; return whether there is a run to resume. ``clear=False`` only checks:
    with ``overwrite`` nothing is deleted (a cascade checks both stages' folders before either trains).

    Raises:
        ConfigError: the folder is not empty and neither ``resume`` (of this config) nor ``overwrite`` was
            given, or ``resume`` names a run of another config.
    """
    run_dir = Path(cfg.train.run_dir)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other", hint="pick one")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("train.run_dir exists and is not a folder", path=run_dir,
                          hint="set train.run_dir to a folder")
    if is_cv_folder(run_dir) or any(run_dir.glob(f"fold_*/{CONFIG_FILE}")):
        raise ConfigError("train.run_dir holds a cross-validation run (segkit cv)", path=run_dir,
                          hint="train one of its folds with --fold k, or set train.run_dir to another folder")
    if _is_empty(run_dir, (COARSE_DIR,) if cfg.cascade.enabled else ()):  # a cascade's coarse stage: first
        if resume:
            log.info("nothing to resume in %s: starting a new run", run_dir)
        return False
    saved = run_dir / CONFIG_FILE
    if resume:
        if not saved.is_file():
            raise ConfigError(
                "no segkit run to resume here (config.yaml missing)",
                path=run_dir,
                hint="use --overwrite to start a new run here, or set train.run_dir to another folder",
            )
        diff = config_difference(saved.read_text(encoding="utf-8"), cfg)
        if diff is not None:
            raise ConfigError(
                f"cannot resume: the run was trained with another config ({diff})",
                path=run_dir,
                hint="resume with the same config, or use --overwrite / another train.run_dir for a new run",
            )
        remove_stale_temps(run_dir)  # temporaries of the killed run
        return True
    if not overwrite:
        resumable = saved.is_file() and config_difference(saved.read_text(encoding="utf-8"), cfg) is None
        how = "--resume to continue it, " if resumable else ""
        raise ConfigError(
            "run folder is not empty",
            path=run_dir,
            hint=f"use {how}--overwrite to replace it, or set train.run_dir to a new folder",
        )
    doomed = [run_dir / n for n in RUN_OUTPUTS if (run_dir / n).exists() or (run_dir / n).is_symlink()]
    if doomed and not os.access(run_dir, os.W_OK | os.X_OK):  # check before deleting anything
        raise OutputError("cannot replace the run: no permission to delete in the folder", path=run_dir,
                          hint="fix the folder's permissions, or set train.run_dir to a new folder")
    if not clear:
        return False
    for p in doomed:
        if p.is_symlink() or not p.is_dir():
            p.unlink()  # a link is removed, never what it points to
        else:
            shutil.rmtree(p)
    remove_stale_temps(run_dir)
    log.info("--overwrite: removed the previous run's outputs in %s", run_dir)
    return False


def add_history_columns(path: Path, columns: tuple[str, ...] = ("epoch_s", "time_s")) -> None:
    """Add ``columns`` missing from a ``history.csv`` (a run made before segkit logged them) as NaN, in its
    column order (``epoch``, then the sorted keys), so rows appended on resume line up."""
    if not path.is_file():
        return
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    if not rows or not rows[0] or rows[0][0] != "epoch":
        return
    header, body = rows[0], rows[1:]
    missing = [c for c in columns if c not in header]
    if not missing:
        return
    new_header = ["epoch", *sorted([*header[1:], *missing])]
    index = {name: i for i, name in enumerate(header)}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(new_header)
    writer.writerows([r[index[c]] if c in index and index[c] < len(r) else "nan" for c in new_header]
                     for r in body if r)
    write_text(path, buf.getvalue())


def truncate_history_csv(path: Path, epochs: int) -> None:
    """Keep only the rows of the first ``epochs`` epochs in a ``history.csv`` (atomically), so a resumed run
    that repeats an epoch whose row was written before the kill does not log it twice. The file may count
    from 1 or, written before segkit did, from 0 (``history_base``)."""
    from segkit.train.callbacks import history_base

    if not path.is_file():
        return
    base = history_base(path)
    text = path.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and _int_or(r[0], epochs + base) - base < epochs]
    if len(kept) == len(body):
        return
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(kept)
    write_text(path, buf.getvalue())


def spent_time(rows: list[dict[str, float]]) -> tuple[float, list[float]]:
    """Training seconds recorded in history rows (the last finite ``time_s``) and the steady epoch lengths
    (``epoch_s``; the first epoch of each call, which paid for compilation, is logged as NaN and left out).

    Rows of runs made before ``time_s`` was logged count as zero seconds.
    """
    finite = [t for t in (r.get("time_s", float("nan")) for r in rows) if math.isfinite(t)]
    durations = [d for d in (r.get("epoch_s", float("nan")) for r in rows) if math.isfinite(d) and d > 0]
    return (finite[-1] if finite else 0.0), durations


def _int_or(s: str, default: int) -> int:
    try:
        return int(float(s))
    except ValueError:
        return default


def write_run_info(cfg: Config, run_dir: Path, precision: str, device: str, jit_compile: bool) -> None:
    """``config.yaml`` (resolved), ``versions.json``, a copy of the dataset's ``splits.json``, and
    ``preprocessing.json`` (the dataset's recorded preprocessing recipe, so the run folder alone can
    infer)."""
    import keras
    import tensorflow as tf

    import segkit

    write_text(run_dir / CONFIG_FILE, cfg.to_yaml())
    write_json(
        run_dir / VERSIONS_FILE,
        {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "segkit": segkit.__version__,
            "platform": platform.platform(),
            "seed": cfg.seed,
            "precision": precision,
            "jit_compile": jit_compile,
            "device": device,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    splits = Path(cfg.data.dir) / SPLITS_FILE
    if splits.is_file():
        write_bytes(run_dir / SPLITS_FILE, splits.read_bytes())
    manifest_path = Path(cfg.data.dir) / "dataset.json"
    if manifest_path.is_file():  # the preprocessing recipe travels with the model (infer RUN_DIR, elsewhere)
        from segkit.prepare.manifest import load_manifest

        manifest = load_manifest(Path(cfg.data.dir))
        write_json(run_dir / PREPROCESSING_FILE, {
            "prepare": manifest["prepare"], "modality": manifest["modality"], "classes": manifest["classes"],
            "source": manifest.get("source"),
        })


# === Data ===


def check_views(cfg: Config) -> None:
    """The planes the dataset holds (``dataset.json``'s ``prepare.extra_axes``) are the ones the config
    names: inference averages the config's views, so a model must have learnt each of them.

    Raises:
        DataError: they differ (one line naming ``dataset.json`` and both settings).
    """
    from segkit.prepare.manifest import MANIFEST_FILE
    from segkit.prepare.outdir import read_json

    manifest = read_json(Path(cfg.data.dir) / MANIFEST_FILE)
    prep = manifest.get("prepare") if manifest is not None else None
    if not isinstance(prep, dict):
        return
    extra = prep.get("extra_axes")
    held = sorted(int(a) for a in extra if isinstance(a, int)) if isinstance(extra, list) else []
    planes = {prep.get("axis", cfg.prepare.axis), *held}
    if planes != {cfg.prepare.axis, *cfg.prepare.extra_axes}:
        raise DataError(
            f"the dataset was prepared with prepare.extra_axes {held}, the config says "
            f"{sorted(cfg.prepare.extra_axes)}: the model would not learn the views inference averages",
            path=Path(cfg.data.dir) / MANIFEST_FILE,
            hint=f"prepare the dataset again with this config, or set prepare.extra_axes={held}",
        )


def check_split(cfg: Config, split: str) -> int:
    """Number of image/mask pairs in ``data.dir/<split>``.

    Raises:
        DataError: the split folder is missing or holds no pairs (one line naming the folder).
    """
    from segkit.data.pipeline import dataset_size

    data_dir = Path(cfg.data.dir)
    if (data_dir / "records" / "run.json").is_file() and not (data_dir / "dataset.json").is_file():
        raise DataError(
            "the dataset is incomplete: segkit prepare has not written dataset.json yet",
            path=data_dir,
            hint="finish 'segkit prepare' (rerun it, or run the remaining --shard jobs)",
        )
    split_dir = data_dir / split
    if not (split_dir / "images").is_dir() or not (split_dir / "masks").is_dir():
        raise DataError(
            f"the '{split}' split is missing (expected {split}/images and {split}/masks)",
            path=split_dir,
            hint="run 'segkit prepare' first or set data.dir to a prepared dataset",
        )
    n = int(dataset_size(cfg, split))
    if n <= 0:
        raise DataError(f"the '{split}' split holds no image/mask pairs", path=split_dir,
                        hint="check data.dir and that prepare wrote slices for this split")
    return n


def _steps(ds: tf.data.Dataset, configured: int | None, n: int, batch: int) -> tuple[tf.data.Dataset, int]:
    """Repeat ``ds`` and give ``fit`` an explicit step count.

    Without ``configured``, the count is ``ceil(n / batch)``, i.e. exactly one pass over the split per epoch
    (the last batch may be smaller); Keras then knows the epoch length from the start (progress, ETA) and
    never runs a finite dataset dry.

    Returns:
        ``(repeated dataset, steps)``.
    """
    import tensorflow as tf

    steps = configured if configured is not None else max(1, math.ceil(n / batch))
    infinite = int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY)
    return (ds if infinite else ds.repeat()), steps


def _validation_steps(
    ds: tf.data.Dataset, configured: int | None, n: int, batch: int
) -> tuple[tf.data.Dataset, int]:
    """The validation dataset for ``fit`` and its step count: one finite pass over the split, not autotuned.

    Keras drops the previous epoch's validation iterator at every validation. With tf.data's autotuning on,
    dropping an iterator that had lived through an epoch left the process idle for 25-33 s (TensorFlow 2.21;
    py-spy: ``RootDataset::Iterator``'s destructor waiting for its threads, under ``EpochIterator.reset``):
    on ACDC's fine stage in bfloat16 a third of every 82 s epoch, which took 40-46 s with autotuning off
    (README, "The idle wait at validation"). So this pipeline runs without it (``without_autotune``). It is
    one finite pass, not repeated, so that when Keras stops reading no decode of the next pass is under way;
    ``filter`` hides the length of a dataset built with a known one (for those, Keras builds the next
    epoch's iterator as soon as one ends; ``make_dataset``'s is unknown already). A configured
    ``train.validation_steps`` longer than one pass repeats the split (``_steps``), also without autotuning.

    Returns:
        ``(dataset, steps)``.
    """
    import tensorflow as tf

    from segkit.data.pipeline import without_autotune

    one_pass = max(1, math.ceil(n / batch))
    if configured is not None and configured > one_pass:
        repeated, steps = _steps(ds, configured, n, batch)
        return without_autotune(repeated), steps
    finite = ds.filter(lambda *_: tf.constant(True))
    return without_autotune(finite), configured if configured is not None else one_pass


def preview_batch(cfg: Config, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fixed, unaugmented validation samples for the epoch-change grids.

    Candidates are ``4n`` pairs spread evenly over the sorted validation split; the ``n`` showing the most
    classes are kept (in file order), so the grid shows structures rather than the empty slices at a case's
    ends.

    Returns:
        ((n, H, W, C) float32 0..1 images, (n, H, W) uint8 class ids).
    """
    from segkit.data.pipeline import context_table, read_sample, split_pairs

    pairs = split_pairs(cfg, "valid")
    k = cfg.data.context_slices
    manifest = Path(cfg.data.dir) / "dataset.json"
    context = context_table(pairs, k, manifest if manifest.is_file() else None) if k else None
    candidates = sorted({int(i) for i in np.linspace(0, len(pairs) - 1, num=min(len(pairs), 4 * n))})
    samples = [read_sample(pairs, i, cfg, context, patch=True) for i in candidates]
    richness = [len(np.unique(mask)) for _, mask in samples]
    keep = sorted(sorted(range(len(samples)), key=lambda j: -richness[j])[:n])
    xs = np.stack([samples[j][0] for j in keep]).astype(np.float32)
    ys = np.stack([samples[j][1] for j in keep]).astype(np.uint8)
    return xs, ys


# === Model ===


def _scaled_note(cfg: Config) -> str:
    """The hint's note on the rate used when ``train.lr_reference_batch`` scales it (else empty)."""
    from segkit.train.strategy import scaled_learning_rate

    used = scaled_learning_rate(cfg.train)
    return "" if used == cfg.train.learning_rate else f"; used: {used:g}, scaled by the global batch"


def make_optimizer(cfg: Config) -> keras.optimizers.Optimizer:
    """Adam / AdamW / SGD (momentum 0.9) with the learning rate of ``scaled_learning_rate``,
    ``train.clipvalue``, ``train.accumulate_steps`` (Keras' ``gradient_accumulation_steps``) and ``train.ema``
    (Keras' ``use_ema`` / ``ema_momentum``)."""
    import keras

    from segkit.train.strategy import scaled_learning_rate

    t = cfg.train
    kw: dict[str, Any] = {"learning_rate": scaled_learning_rate(t)}
    if t.clipvalue is not None:
        kw["clipvalue"] = t.clipvalue
    if t.accumulate_steps > 1:
        kw["gradient_accumulation_steps"] = t.accumulate_steps
    if t.ema is not None:  # Keras updates the average on every batch, also those that only accumulate
        kw.update(use_ema=True, ema_momentum=t.ema ** (1 / t.accumulate_steps))
    if t.optimizer == "adam":
        return keras.optimizers.Adam(**kw)
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(**kw)
    return keras.optimizers.SGD(momentum=0.9, **kw)


def float32_output(model: keras.Model) -> keras.Model:
    """Return ``model`` unchanged if its output is float32, else with a float32 linear cast layer appended
    (the softmax must be computed and returned in float32 under mixed precision)."""
    import keras

    if str(model.outputs[0].dtype) == "float32":
        return model
    out = keras.layers.Activation("linear", dtype="float32", name="float32_output")(model.outputs[0])
    return keras.Model(model.inputs, out, name=model.name)


def check_monitor(monitor: str, metric_names: list[str]) -> None:
    """Raise ``ConfigError`` unless ``monitor`` is a log key fit will produce."""
    base = ["loss", *metric_names]
    valid = base + [f"val_{m}" for m in base]
    if monitor not in valid:
        import difflib

        close = difflib.get_close_matches(monitor, valid, n=1)
        raise ConfigError(
            f"train.monitor '{monitor}' is no metric of this run",
            path="train.monitor",
            hint=(f"did you mean '{close[0]}'? " if close else "") + f"valid: {', '.join(valid)}",
        )


# === Training ===


@dataclass(frozen=True)
class _Call:
    """One call of ``train_model``: the config, its run folder, and what the checks before TensorFlow found.

    Attributes:
        cfg: the validated config.
        run_dir: ``cfg.train.run_dir``.
        resuming: there is an interrupted (or finished) run of this config to continue.
        n_train: image/mask pairs of the train split.
        n_valid: image/mask pairs of the valid split.
        limit_s: ``train.time_limit`` in seconds, or ``None``.
        clock: the run's ``TrainClock`` (started when the call began).
        progress: the ``TrainEvent`` callback, or ``None``.
        t0: ``time.perf_counter()`` when the call began.
    """

    cfg: Config
    run_dir: Path
    resuming: bool
    n_train: int
    n_valid: int
    limit_s: float | None
    clock: TrainClock
    progress: ProgressFn | None
    t0: float


@dataclass(frozen=True)
class _Device:
    """The dtype policy, the device in words and the distribution strategy of a run."""

    precision: str
    device: str
    dist: Distribution
    jit_compile: bool = False

    @property
    def strategy(self) -> Any:
        """The ``tf.distribute.Strategy``."""
        return self.dist.strategy


@dataclass(frozen=True)
class _Compiled:
    """The compiled model, the monitored log key and its direction, ``model_summary``'s facts and the network.

    Attributes:
        model: the model ``fit`` trains (and ``backup/`` holds).
        net: the network saved as ``model.keras`` and previewed: ``model`` itself, or the plain network inside
            the deep-supervision training model (``segkit.train.deep_supervision``); ``summary`` is its.
    """

    model: keras.Model
    monitor: str
    mode: Literal["min", "max"]
    summary: dict[str, Any]
    net: keras.Model


@dataclass(frozen=True)
class _Past:
    """What earlier calls of a resumed run did (all empty for a new run).

    Attributes:
        initial_epoch: epochs completed (the weights and optimizer state restored are theirs).
        rows: their ``history.csv`` rows.
        durations: their steady epoch lengths in seconds (``spent_time``).
        best_before: the best monitored value among them (``None`` when none is finite).
    """

    initial_epoch: int
    rows: list[dict[str, float]]
    durations: list[float]
    best_before: float | None


@dataclass(frozen=True)
class _Data:
    """The repeated train and valid datasets and the step counts ``fit`` runs each epoch."""

    train: tf.data.Dataset
    valid: tf.data.Dataset
    steps: int
    val_steps: int


@dataclass(frozen=True)
class _Guards:
    """The callbacks whose state ``train_model`` reads after ``fit``: the NaN guard and the time limit."""

    nan_guard: Any
    time_limit: Any | None


@dataclass(frozen=True)
class _Outcome:
    """How a run ended, from its ``history.csv``.

    Attributes:
        epochs_done: epochs completed in total.
        stopped: fewer than ``train.epochs``.
        stop_reason: ``epochs``, ``early_stopping`` or ``time_limit``.
        best_value: the monitored value of the epoch in ``model.keras`` (``_model_epoch``).
        best_epoch: that epoch, 1-based.
        train_time_s: training seconds of the whole run (``spent_time``).
    """

    epochs_done: int
    stopped: bool
    stop_reason: str
    best_value: float | None
    best_epoch: int | None
    train_time_s: float


def _restore(
    cfg: Config, model: keras.Model, strategy: Any, run_dir: Path, net: keras.Model | None = None
) -> int:
    """Restore an interrupted run's weights and optimizer state; return the epochs it completed.

    ``model`` is the model trained (the deep-supervision training model, whose ``backup/`` it wrote), ``net``
    the network in ``last.keras`` (``model`` itself when None; deep supervision's heads start afresh there).

    From ``backup/`` (the exact epoch ``state.json`` names) when there is one, else from ``last.keras`` and
    the length of ``history.csv`` (runs made before the atomic backup); ``history.csv`` is trimmed to the
    restored epoch, and renumbered from 1 when a run made before segkit counted from 1 wrote it from 0.

    Raises:
        ConfigError: history without a model to restore it from; RunComplete: no epoch left to train.
    """
    from segkit.train import callbacks as cb

    csv_path = run_dir / HISTORY_CSV
    add_history_columns(csv_path)
    if cb.renumber_history_csv(csv_path):
        log.info("history.csv of %s renumbered: epochs now count from 1", run_dir)
    initial_epoch = 0
    with strategy.scope():  # optimizer variables are created here (MirroredStrategy on several GPUs)
        done = cb.restore_backup(model, run_dir / BACKUP_DIR)  # weights + optimizer state of that epoch
    if done is not None:
        truncate_history_csv(csv_path, done)
        initial_epoch = done
    elif not cb.read_history_csv(csv_path):
        log.info("no completed epoch to resume in %s: starting at epoch 1", run_dir)
    else:
        rows = cb.read_history_csv(csv_path)
        if not (run_dir / LAST_MODEL_FILE).is_file():
            raise ConfigError(
                f"cannot resume: history.csv lists {len(rows)} epochs but last.keras and backup/ are missing",
                path=run_dir,
                hint="use --overwrite to start a new run",
            )
        initial_epoch = len(rows)
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
            if net is not None and net is not model:
                log.warning("resuming %s from last.keras (its backup/ is removed when a run ends): the deep "
                            "supervision heads and the optimizer state start afresh", run_dir)
            (model if net is None else net).load_weights(run_dir / LAST_MODEL_FILE)
            if cfg.train.ema is not None and (net is None or net is model):  # it holds the optimizer state
                cb.trained_weights_back(model)
    if initial_epoch >= cfg.train.epochs:
        raise RunComplete(
            f"the run already completed {initial_epoch} of train.epochs={cfg.train.epochs} epochs",
            path=run_dir,
            hint=f"raise train.epochs (e.g. --set train.epochs={initial_epoch + 10}) to train longer",
        )
    return initial_epoch


def _device(cfg: Config) -> _Device:
    """The precision policy for the visible GPUs, the device in words, and the strategy of ``train.strategy``
    (``resolve_strategy``; ``auto`` is ``MirroredStrategy`` when more than one GPU is visible).

    Raises:
        ConfigError: the global batch does not split over the replicas, or ``multi_worker`` has no cluster.
    """
    import tensorflow as tf

    from segkit.train.strategy import check_batch, resolve_strategy

    dist = resolve_strategy(cfg.train.strategy)  # first: a SLURM task's GPUs are set there
    gpus = tf.config.list_physical_devices("GPU")
    # precision follows the XLA the config asks for; the multi-worker loop's step is a plain tf.function
    # (segkit.train.distributed), so it runs without XLA whatever was asked
    precision, xla = resolve_policy(cfg.train.precision, cfg.train.jit_compile, len(gpus))
    jit_compile = xla and dist.name != "multi_worker"
    if xla and not jit_compile:
        log.info("train.jit_compile is not used by the multi-worker loop (its step is a plain tf.function)")
    device = describe_device(gpus)
    check_batch(cfg.train, dist.replicas)
    if dist.replicas > 1 and cfg.model.norm == "batch":
        log.warning("model.norm batch with %d replicas: BatchNorm statistics are per replica (over %d "
                    "samples), not synchronised; model.norm group or instance does not depend on the batch",
                    dist.replicas, cfg.train.batch_size // dist.replicas)
    return _Device(precision, device, dist, jit_compile)


def _compile(call: _Call, dev: _Device) -> _Compiled:
    """Build ``cfg.model`` (float32 output; pretrained weights only for a new run), wrap it in the training
    model of ``train.deep_supervision`` when set, and compile that with the configured optimizer, loss and
    metrics inside the strategy's scope; check ``train.monitor``.

    Raises:
        ConfigError: ``train.monitor`` is no log key of this model.
    """
    from segkit.losses import get_loss
    from segkit.metrics.training import get_metrics
    from segkit.models import build_model, model_summary
    from segkit.train import callbacks as cb

    cfg = call.cfg
    levels = cfg.train.deep_supervision
    with dev.strategy.scope():
        net = float32_output(build_model(cfg, pretrained=not call.resuming))
        model, loss, metrics = net, get_loss(cfg), list(get_metrics(cfg))
        if levels:
            from segkit.train.deep_supervision import DeepSupervisionLoss, MainOutput, with_deep_supervision

            model = with_deep_supervision(net, levels, cfg.num_classes)
            loss = DeepSupervisionLoss(loss, cfg.num_classes, levels)
            metrics = [MainOutput(m, cfg.num_classes) for m in metrics]
        model.compile(
            optimizer=make_optimizer(cfg),
            loss=loss,
            metrics=metrics,
            jit_compile=dev.jit_compile,
        )
    metric_names = [getattr(m, "name", str(m)) for m in metrics]
    monitor = cfg.train.monitor
    check_monitor(monitor, metric_names)
    return _Compiled(model, monitor, cb.monitor_mode(monitor), model_summary(net), net)


def _past(call: _Call, compiled: _Compiled, dev: _Device) -> _Past:
    """Restore a resumed run (``_restore``) and read what it did; set the clock to the time it spent.

    Raises:
        RunComplete: resuming, and one more epoch would not fit ``train.time_limit``; and what ``_restore``
            raises.
    """
    from segkit.train import callbacks as cb

    cfg, run_dir, clock, limit_s = call.cfg, call.run_dir, call.clock, call.limit_s
    initial_epoch = _restore(cfg, compiled.model, dev.strategy, run_dir, compiled.net) if call.resuming else 0
    previous_rows = cb.read_history_csv(run_dir / HISTORY_CSV) if call.resuming else []
    previous_values = [r.get(compiled.monitor, float("nan")) for r in previous_rows]
    best_before = cb.plateau_state(previous_values, compiled.mode)[0]
    clock.spent_s, previous_durations = spent_time(previous_rows)
    next_epoch = max(previous_durations[-3:]) if previous_durations else 0.0
    if call.resuming and limit_s is not None and clock.spent_s + next_epoch > limit_s:
        raise RunComplete(
            f"the run already used {clock.spent_s / 60:.1f} of train.time_limit={cfg.train.time_limit:g} "
            f"minutes and one more epoch takes ~{next_epoch / 60:.1f}",
            path=run_dir,
            hint=f"raise the limit (e.g. --time-limit {math.ceil(clock.spent_s / 60) + 10}) to train longer",
        )
    return _Past(initial_epoch, previous_rows, previous_durations, best_before)


def _datasets(call: _Call, initial_epoch: int) -> _Data:
    """The train dataset (augmented, shuffled, endless) and the valid one (one pass per epoch,
    ``_validation_steps``), with their step counts."""
    from segkit.data.pipeline import make_dataset

    cfg = call.cfg
    # seed_offset: the data epoch counter continues where the interrupted run stopped (same shuffles).
    train_ds = make_dataset(cfg, "train", training=True, seed_offset=initial_epoch, endless=True)
    valid_ds = make_dataset(cfg, "valid", training=False)
    train_ds, steps = _steps(train_ds, cfg.train.steps_per_epoch, call.n_train, cfg.train.batch_size)
    valid_ds, val_steps = _validation_steps(valid_ds, cfg.train.validation_steps, call.n_valid,
                                            cfg.train.batch_size)
    return _Data(train_ds, valid_ds, steps, val_steps)


def _report_start(call: _Call, dev: _Device, compiled: _Compiled, initial_epoch: int, data: _Data) -> None:
    """Log the run's facts (debug) and send the ``start`` event with them."""
    from segkit.train import callbacks as cb

    cfg = call.cfg
    info = {
        "segkit_version": __version__,
        "model": cfg.model.name,
        "params": int(compiled.summary["params"]),
        "gflops_per_image": float(compiled.summary["gflops_per_image"]),
        "precision": dev.precision,
        "jit_compile": dev.jit_compile,
        "device": dev.device,
        "replicas": dev.dist.replicas,
        "strategy": dev.dist.describe(cfg.train.batch_size),
        "train_pairs": call.n_train,
        "valid_pairs": call.n_valid,
        "batch_size": cfg.train.batch_size,
        "steps_per_epoch": data.steps,
        "validation_steps": data.val_steps,
        "epochs": cfg.train.epochs,
        "initial_epoch": initial_epoch,
        "run_dir": str(call.run_dir),
        "time_limit_min": cfg.train.time_limit,
        "spent_s": call.clock.spent_s,
    }
    log.debug(
        "model %s: %s parameters, %.2f GFLOP/image; precision %s; %s; train %d / valid %d pairs",
        cfg.model.name, f"{info['params']:,}", info["gflops_per_image"], dev.precision, dev.device,
        call.n_train, call.n_valid,
    )
    if call.progress is not None:
        call.progress(cb.TrainEvent("start", initial_epoch, cfg.train.epochs, 0, data.steps, info=info))


def _tensorboard(cfg: Config, run_dir: Path) -> list[Any]:
    """Keras' ``TensorBoard`` callback writing to ``<run_dir>/tensorboard`` when ``train.tensorboard``.

    Raises:
        ConfigError: ``train.tensorboard: true`` without the ``tensorboard`` package (it writes the events).
    """
    if not cfg.train.tensorboard:
        return []
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard: true needs the tensorboard package, which is not installed",
                          hint="pip install tensorboard, or --set train.tensorboard=false")
    return [keras.callbacks.TensorBoard(str(run_dir / TENSORBOARD_DIR), write_graph=False)]


def _checkpoints(
    run_dir: Path, keep_best: bool, monitor: str, mode: Any, best_before: float | None, net: keras.Model
) -> list[Any]:
    """``model.keras`` (best by ``monitor``) and ``last.keras`` of ``net``; with ``model_checkpoint: last``
    one file saved as ``last.keras`` and hard-linked as ``model.keras`` (not two identical copies)."""
    from segkit.train import callbacks as cb

    if not keep_best:
        return [cb.AtomicCheckpoint(run_dir / LAST_MODEL_FILE, also=run_dir / MODEL_FILE, target=net)]
    return [
        cb.AtomicCheckpoint(run_dir / MODEL_FILE, monitor=monitor, mode=mode, initial_best=best_before,
                            target=net),
        cb.AtomicCheckpoint(run_dir / LAST_MODEL_FILE, target=net),
    ]


def _callbacks(call: _Call, compiled: _Compiled, past: _Past, steps: int) -> tuple[list[Any], _Guards]:
    """The run's Keras callbacks, in the order that matters (NaN guard first; history before the backup, so a
    kill between them leaves an extra history row that resume trims; with ``train.ema`` the checkpoints and
    previews inside the weight average's window and the backup after it; the time limit last, so the epoch
    length it measures includes every write). Returns ``(callbacks, the NaN guard and time limit)``."""
    from segkit.io.palette import palette_array
    from segkit.train import callbacks as cb
    from segkit.train.strategy import scaled_learning_rate

    cfg, run_dir, clock, limit_s = call.cfg, call.run_dir, call.clock, call.limit_s
    monitor, mode = compiled.monitor, compiled.mode
    keep_best = cfg.train.model_checkpoint == "best"
    previous_values = [r.get(monitor, float("nan")) for r in past.rows]
    nan_guard = cb.NaNGuard()
    schedule: list[keras.callbacks.Callback] = []
    if cfg.train.schedule != "plateau":
        plan = cb.LRSchedule(scaled_learning_rate(cfg.train), cfg.train.schedule, cfg.train.epochs, steps,
                             cfg.train.warmup_epochs)
        schedule.append(cb.ScheduledLR(plan, clock, limit_s))
    previews: list[keras.callbacks.Callback] = []
    if cfg.train.epoch_change_infer.enabled:
        images, truth = preview_batch(cfg, cfg.train.epoch_change_infer.num_images)
        palette = palette_array([c.color for c in cfg.effective_classes])
        previews.append(cb.EpochPreview(run_dir / EPOCH_INFER_DIR, images, truth, palette,
                                        target=compiled.net))
    # train.ema: validation and everything from put_in to take_out sees the weight average, the backup the
    # trained weights (segkit.train.callbacks.averaging)
    average = cb.WeightAverage() if cfg.train.ema is not None else None
    callbacks: list[keras.callbacks.Callback] = [
        nan_guard,
        *([average] if average is not None else []),
        *schedule,
        *cb.plateau_callbacks(cfg.train, monitor, mode, previous_values),
        cb.LearningRateLogger(),
        cb.EpochTime(clock),
        *([average.put_in] if average is not None else []),
        *_checkpoints(run_dir, keep_best, monitor, mode, past.best_before, compiled.net),
        cb.HistoryCSV(run_dir / HISTORY_CSV, append=call.resuming),
        cb.HistoryWriter(run_dir / HISTORY_JSON, run_dir / CURVES_PNG, past.rows),
        *_tensorboard(cfg, run_dir),
        *(previews if average is not None else []),
        *([average.take_out] if average is not None else []),
        cb.AtomicBackup(run_dir / BACKUP_DIR),
        *(previews if average is None else []),  # a failed preview write costs no backup
    ]
    if call.progress is not None:
        callbacks.append(cb.ProgressReporter(call.progress, cfg.train.epochs, steps, clock, limit_s))
    time_limit = cb.TimeLimit(limit_s, clock, past.durations) if limit_s is not None else None
    if time_limit is not None:
        callbacks.append(time_limit)
    return callbacks, _Guards(nan_guard, time_limit)


def _fit(call: _Call, dev: _Device, compiled: _Compiled, past: _Past, data: _Data) -> _Guards:
    """``model.fit`` from ``past.initial_epoch`` to ``train.epochs`` with the run's callbacks; under
    ``multi_worker`` the custom loop ``fit_distributed`` with the same callbacks and step counts.

    On resume the weights and optimizer state were restored before (backup/, else last.keras);
    ``initial_epoch`` is the epoch they completed.

    Raises:
        DataError: a sample failed to decode (bad mask colour, bad file), unwrapped from TensorFlow's error.
    """
    import tensorflow as tf

    callbacks, guards = _callbacks(call, compiled, past, data.steps)
    try:
        if dev.dist.name == "multi_worker":
            from segkit.train.distributed import LoopPlan, fit_distributed

            fit_distributed(compiled.model, callbacks,
                            LoopPlan(call.cfg, dev.dist, past.initial_epoch, data.steps, data.val_steps,
                                     call.n_valid))
            return guards
        compiled.model.fit(
            data.train,
            validation_data=data.valid,
            epochs=call.cfg.train.epochs,
            initial_epoch=past.initial_epoch,
            steps_per_epoch=data.steps,
            validation_steps=data.val_steps,
            callbacks=callbacks,
            shuffle=False,  # the pipeline shuffles (seeded by epoch)
            verbose=0,
        )
    except tf.errors.OpError as e:  # a DataError raised while decoding a sample (bad mask colour, bad file)
        from segkit.data.pipeline import unwrap_data_error

        raise (unwrap_data_error(e) or e) from e
    return guards


def _model_epoch(
    cfg: Config, rows: list[dict[str, float]], monitor: str, mode: Literal["min", "max"]
) -> tuple[float | None, int | None]:
    """``(monitored value, epoch)`` of the weights in ``model.keras``: the best epoch (``model_checkpoint:
    best``) or the final one (``last``)."""
    from segkit.train import callbacks as cb

    values = [r.get(monitor, float("nan")) for r in rows]
    if cfg.train.model_checkpoint == "best":
        best_value, _ = cb.plateau_state(values, mode)
        return best_value, next((i + 1 for i, v in enumerate(values) if v == best_value), None)
    return (values[-1] if values and math.isfinite(values[-1]) else None), (len(rows) or None)


def _outcome(cfg: Config, rows: list[dict[str, float]], compiled: _Compiled, guards: _Guards) -> _Outcome:
    """How the run ended: epochs done, why it stopped, the epoch in ``model.keras`` and the training time."""
    epochs_done = len(rows)
    best_value, best_epoch = _model_epoch(cfg, rows, compiled.monitor, compiled.mode)
    stopped = epochs_done < cfg.train.epochs
    time_limit = guards.time_limit
    if time_limit is not None and time_limit.stopped_epoch is not None and stopped:
        stop_reason = "time_limit"
    else:
        stop_reason = "early_stopping" if stopped else "epochs"
    return _Outcome(epochs_done, stopped, stop_reason, best_value, best_epoch, spent_time(rows)[0])


def _write_summary(call: _Call, dev: _Device, monitor: str, outcome: _Outcome) -> None:
    """Choose the post-processing (``train.choose_postprocessing``, with a ``model.keras``; its progress goes
    to ``call.progress`` as ``task`` events) and write ``train_summary.json`` (with the strategy used)."""
    from segkit.progress import NULL_PROGRESS
    from segkit.train.callbacks import TaskEvents

    cfg, run_dir = call.cfg, call.run_dir
    postprocessing = None
    if cfg.train.choose_postprocessing and dev.dist.is_chief and (run_dir / MODEL_FILE).is_file():
        from segkit.postprocess import choose_postprocessing

        events = TaskEvents(call.progress, outcome.epochs_done, cfg.train.epochs) if call.progress else None
        pp = choose_postprocessing(cfg, run_dir / MODEL_FILE, progress=events or NULL_PROGRESS)
        postprocessing = pp.to_json() if pp is not None else None
    write_train_summary(run_dir, TrainSummary(
        stop_reason=outcome.stop_reason, epochs_done=outcome.epochs_done, epochs=cfg.train.epochs,
        train_time_s=outcome.train_time_s, time_limit_min=cfg.train.time_limit, postprocessing=postprocessing,
        monitor=monitor, model_checkpoint=cfg.train.model_checkpoint, best_value=outcome.best_value,
        best_epoch=outcome.best_epoch, distribution=dev.dist.to_json(cfg.train.batch_size)))


def _finish(
    call: _Call, dev: _Device, compiled: _Compiled, initial_epoch: int, guards: _Guards
) -> TrainResult:
    """After ``fit``: refuse a diverged run, write ``train_summary.json``, send the ``end`` event.

    Raises:
        SegkitError: the loss became NaN (the message names the epoch and suggests a lower learning rate).
    """
    from segkit.train import callbacks as cb

    cfg, run_dir, monitor = call.cfg, call.run_dir, compiled.monitor
    nan_guard = guards.nan_guard
    if nan_guard.nan_epoch is not None:
        raise SegkitError(
            f"the loss became NaN at epoch {nan_guard.nan_epoch} (step {nan_guard.nan_step}); training"
            " stopped",
            path=run_dir,
            hint=f"lower train.learning_rate (now {cfg.train.learning_rate:g}{_scaled_note(cfg)}), "
            f"e.g. --set train.learning_rate={cfg.train.learning_rate / 10:g}, or set train.clipvalue",
        )
    rows = cb.read_history_csv(run_dir / HISTORY_CSV)
    outcome = _outcome(cfg, rows, compiled, guards)
    _write_summary(call, dev, monitor, outcome)
    if outcome.stop_reason == "time_limit":
        log.info("stopped by train.time_limit=%g min after %d epochs (%.1f min)", cfg.train.time_limit or 0,
                 outcome.epochs_done, outcome.train_time_s / 60)
    if call.progress is not None:
        call.progress(cb.TrainEvent("end", outcome.epochs_done, cfg.train.epochs,
                                    logs={monitor: outcome.best_value or float("nan")},
                                    elapsed_s=time.perf_counter() - call.t0,
                                    info={"stop_reason": outcome.stop_reason}))
    return TrainResult(
        run_dir=run_dir,
        best_model=run_dir / MODEL_FILE,
        last_model=run_dir / LAST_MODEL_FILE,
        monitor=monitor,
        best_value=outcome.best_value,
        best_epoch=outcome.best_epoch,
        initial_epoch=initial_epoch,
        epochs_done=outcome.epochs_done,
        stopped_early=outcome.stopped,
        history=rows,
        precision=dev.precision,
        device=dev.device,
        wall_s=time.perf_counter() - call.t0,
        stop_reason=outcome.stop_reason,
        train_time_s=outcome.train_time_s,
    )


def train_model(
    cfg: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` into ``cfg.train.run_dir``.

    Args:
        cfg: the validated config.
        resume: continue the interrupted (or finished, with more ``train.epochs``) run in ``run_dir``.
        overwrite: replace the outputs of a previous run in a non-empty ``run_dir``.
        progress: called with a ``TrainEvent`` at start, per epoch and per batch (the CLI draws it).

    Returns:
        A ``TrainResult``.

    Raises:
        ConfigError: non-empty run dir without ``resume``/``overwrite``, a resume of another config, a bad
            monitor.
        DataError: a missing or empty train/valid split (or any data problem found by the pipeline).
        SegkitError: the loss became NaN (the message names the epoch and suggests a lower learning rate);
            under ``multi_worker``: ``WorkerLost`` (another worker is gone), ``Preempted`` (SIGTERM).
    """
    if cfg.cascade.enabled:
        from segkit.train.cascade import train_cascade

        return train_cascade(cfg, resume=resume, overwrite=overwrite, progress=progress)
    return train_one(cfg, resume=resume, overwrite=overwrite, progress=progress)


def train_one(
    cfg: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """``train_model`` for one network (a cascade's stage included: ``cascade.enabled`` is not looked at)."""
    t0 = time.perf_counter()
    from segkit.train.callbacks import TrainClock

    clock = TrainClock()  # started now: model building and compilation count against train.time_limit
    limit_s = cfg.train.time_limit * 60.0 if cfg.train.time_limit is not None else None
    # Cheap checks first: a missing split or a refused run folder fails before TensorFlow is imported.
    n_train = check_split(cfg, "train")
    n_valid = check_split(cfg, "valid")
    check_views(cfg)
    if cfg.train.include_valid:
        logging.getLogger(__name__).warning(
            "train.include_valid: the valid cases are trained on too, so validation Dice, early stopping, a "
            "plateau schedule and the post-processing choice judge cases the model has seen")
    # multi_worker: the strategy first (the workers meet there); only the chief checks and writes run_dir
    dev = _device(cfg) if cfg.train.strategy == "multi_worker" else None
    run_dir, resuming = _run_folder(cfg, dev, resume=resume, overwrite=overwrite)
    chief = dev is None or dev.dist.is_chief
    call = _Call(cfg, run_dir, resuming, n_train, n_valid, limit_s, clock, progress if chief else None, t0)
    try:
        result = _train(call, dev)
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)
    if chief:
        return result
    shared = Path(cfg.train.run_dir)  # a non-chief worker's result names the chief's files
    return replace(result, run_dir=shared, best_model=shared / MODEL_FILE,
                   last_model=shared / LAST_MODEL_FILE)


def _run_folder(cfg: Config, dev: _Device | None, *, resume: bool, overwrite: bool) -> tuple[Path, bool]:
    """``(the folder this process writes, whether it resumes)``: ``train.run_dir`` (``check_run_dir``), or
    for a non-chief worker of a multi-worker run a private temporary folder (``worker_run_dir``)."""
    run_dir = Path(cfg.train.run_dir)
    if dev is None or dev.dist.is_chief:
        return run_dir, check_run_dir(cfg, resume=resume, overwrite=overwrite)
    from segkit.train.distributed import worker_run_dir

    resuming = resume and (run_dir / CONFIG_FILE).is_file()
    return worker_run_dir(run_dir, resuming), resuming


def _warn_precision_change(run_dir: Path, precision: str) -> None:
    """A resumed run whose ``auto`` precision resolves otherwise on this machine (e.g. bfloat16 on a CPU with
    native bfloat16, float32 elsewhere) goes on in the new one; say so before ``versions.json`` is
    rewritten."""
    import json

    try:
        before = json.loads((run_dir / VERSIONS_FILE).read_text(encoding="utf-8")).get("precision")
    except (OSError, ValueError, AttributeError):
        return
    if before and before != precision:
        log.warning("resuming in %s: the run was trained in %s until now (train.precision auto resolved "
                    "otherwise then: another CPU, or another train.jit_compile; set train.precision to keep "
                    "one)", precision, before)


def _train(call: _Call, dev: _Device | None) -> TrainResult:
    """Seed, pick the device (unless given), compile, restore, write the run information, fit, finish."""
    import keras

    cfg = call.cfg
    keras.utils.set_random_seed(cfg.seed)
    dev = dev or _device(cfg)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dev.precision)
    try:
        compiled = _compile(call, dev)
        past = _past(call, compiled, dev)  # what was done before (resume)
        call.run_dir.mkdir(parents=True, exist_ok=True)
        if call.resuming:
            _warn_precision_change(call.run_dir, dev.precision)
        write_run_info(cfg, call.run_dir, dev.precision, dev.device, dev.jit_compile)
        # train_summary.json describes a finished run; a resumed one is not finished until it writes a new one
        (call.run_dir / TRAIN_SUMMARY_FILE).unlink(missing_ok=True)
        data = _datasets(call, past.initial_epoch)
        _report_start(call, dev, compiled, past.initial_epoch, data)
        guards = _fit(call, dev, compiled, past, data)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return _finish(call, dev, compiled, past.initial_epoch, guards)


__all__ = ["TrainResult", "train_model", "check_run_dir", "RUN_OUTPUTS"]
