"""The layout of a run folder and of a cross-validation folder: every file name, and the readers/writers of
the files more than one stage reads (the one owner of these names; ``train``, ``cv``, ``evaluate``, ``infer``
and ``export`` use them).

A training run folder (``segkit train``)::

    model.keras          the kept model (best or last, ``train.model_checkpoint``)
    last.keras           the last epoch's model (resume)
    config.yaml          the resolved config
    versions.json        package versions
    splits.json          a copy of the dataset's split
    preprocessing.json   the dataset's preprocessing recipe (``segkit.prepare.record.Preprocessing``)
    postprocessing.json  the chosen post-processing (``segkit.postprocess``)
    history.csv / history.json / curves.png, epoch_infer/, backup/
    train_summary.json   how training ended (``TrainSummary``)

A cross-validation folder (``segkit cv``) holds ``fold_<k>/`` training run folders and ``cv.json`` (the fold
list), ``cv_summary.json`` / ``cv_summary.md`` / ``cv_cases.csv``, the ensemble's ``postprocessing.json``
and copies of the first fold's ``config.yaml``, ``preprocessing.json`` and ``splits.json``. While a job
trains fold k, ``fold_<k>.lock`` beside its folder names that job (``segkit.io.run_lock``).

Example:
    >>> model_paths(Path("runs/la-cv"))    # [runs/la-cv/fold_0/model.keras, ...] or [runs/la/model.keras]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segkit.errors import ModelError
from segkit.io.atomic import write_json

MODEL_FILE = "model.keras"
LAST_MODEL_FILE = "last.keras"
CONFIG_FILE = "config.yaml"
VERSIONS_FILE = "versions.json"
SPLITS_FILE = "splits.json"  # the copy of the dataset's split kept in a run folder
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
CURVES_PNG = "curves.png"
EPOCH_INFER_DIR = "epoch_infer"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"  # train.tensorboard: Keras TensorBoard event files
TRAIN_SUMMARY_FILE = "train_summary.json"
PREPROCESSING_FILE = "preprocessing.json"
POSTPROCESSING_FILE = "postprocessing.json"
INFERENCE_DIR = "inference"  # default output folder of ``segkit infer``

CV_FILE = "cv.json"  # a cross-validation folder's list of fold folders
CV_SUMMARY_FILE = "cv_summary.json"
CV_SUMMARY_MD = "cv_summary.md"
CV_CASES_FILE = "cv_cases.csv"
LOCK_SUFFIX = ".lock"  # fold_<k>.lock: the job training fold k (segkit.io.run_lock)

RUN_OUTPUTS = (
    MODEL_FILE,
    LAST_MODEL_FILE,
    CONFIG_FILE,
    VERSIONS_FILE,
    SPLITS_FILE,
    HISTORY_CSV,
    HISTORY_JSON,
    CURVES_PNG,
    EPOCH_INFER_DIR,
    BACKUP_DIR,
    TRAIN_SUMMARY_FILE,
    POSTPROCESSING_FILE,
    PREPROCESSING_FILE,
    TENSORBOARD_DIR,
)
"""Everything ``segkit train`` writes in a run folder (what ``overwrite`` removes; nothing else is
touched)."""

CV_ROOT_OUTPUTS = (CV_FILE, CV_SUMMARY_FILE, CV_SUMMARY_MD, CV_CASES_FILE, POSTPROCESSING_FILE, CONFIG_FILE,
                   PREPROCESSING_FILE, SPLITS_FILE)
"""The files ``segkit cv`` writes at the top of a cross-validation folder."""

SINGLE_RUN_FILES = (MODEL_FILE, LAST_MODEL_FILE, HISTORY_CSV, TRAIN_SUMMARY_FILE)
"""Files that mark a folder as a single training run (never at the top of a cross-validation folder)."""


def fold_name(fold: int) -> str:
    """``fold_<k>``, the folder of fold ``k`` in a cross-validation folder."""
    return f"fold_{fold}"


def fold_lock_file(fold_run_dir: Path) -> Path:
    """``<cv folder>/fold_<k>.lock``, the lock of the fold whose run folder is ``fold_run_dir``: beside the
    fold's folder, not in it, so that ``segkit train --fold k`` still finds that folder empty."""
    fold_run_dir = Path(fold_run_dir)
    return fold_run_dir.with_name(fold_run_dir.name + LOCK_SUFFIX)


def is_cv_folder(run_dir: Path) -> bool:
    """Whether ``run_dir`` is a cross-validation folder (it has ``cv.json``)."""
    return (Path(run_dir) / CV_FILE).is_file()


def read_cv_folds(run_dir: Path) -> list[str]:
    """The fold folder names listed in ``run_dir/cv.json``.

    Raises:
        ModelError: ``cv.json`` is unreadable or has no ``folds`` list.
    """
    path = Path(run_dir) / CV_FILE
    try:
        folds = json.loads(path.read_text(encoding="utf-8"))["folds"]
        if not isinstance(folds, list):
            raise TypeError("folds is not a list")
        return [str(f) for f in folds]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"cannot read {CV_FILE}: {e}", path=path,
                         hint="run segkit cv again to rewrite it") from e


def write_cv_folds(run_dir: Path, n_folds: int) -> None:
    """Write ``run_dir/cv.json`` listing ``fold_0`` .. ``fold_<n-1>``."""
    write_json(Path(run_dir) / CV_FILE, {"folds": [fold_name(k) for k in range(n_folds)]})


def model_paths(run_dir: Path) -> list[Path]:
    """The model file(s) a run folder stands for: ``model.keras``, or every fold's model of a
    cross-validation folder (``cv.json``).

    Raises:
        ModelError: ``cv.json`` is unreadable or names a fold whose model is missing.
    """
    run_dir = Path(run_dir)
    if not is_cv_folder(run_dir):
        return [run_dir / MODEL_FILE]
    models = [run_dir / f / MODEL_FILE for f in read_cv_folds(run_dir)]
    missing = [m for m in models if not m.is_file()]
    if not models or missing:
        raise ModelError(f"a fold model is missing: {missing[0] if missing else 'no folds listed'}",
                         path=run_dir / CV_FILE, hint="run segkit cv again to finish the folds")
    return models


@dataclass(frozen=True)
class TrainSummary:
    """``train_summary.json``: how a training run ended.

    ``monitor`` .. ``best_epoch`` are None when training ran no epoch in this call (a cross-validation fold
    found complete on resume).
    """

    stop_reason: str
    epochs_done: int
    epochs: int
    train_time_s: float
    time_limit_min: float | None
    postprocessing: dict[str, Any] | None = None
    monitor: str | None = None
    model_checkpoint: str | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    distribution: dict[str, Any] | None = None


_SUMMARY_KEYS = ("stop_reason", "epochs_done", "epochs", "train_time_s", "time_limit_min", "monitor",
                 "model_checkpoint", "best_value", "best_epoch", "postprocessing", "distribution")
_FIT_KEYS = ("monitor", "model_checkpoint", "best_value", "best_epoch")


def write_train_summary(run_dir: Path, summary: TrainSummary) -> Path:
    """Write ``run_dir/train_summary.json`` atomically (``train_time_s`` rounded to 0.1 s); returns its path.

    The keys of a summary without a fitted epoch (``monitor`` None) leave out ``monitor`` .. ``best_epoch``;
    ``distribution`` (the strategy, replicas, workers and batch per replica) is written when given.
    """
    d = asdict(summary)
    d["train_time_s"] = round(float(d["train_time_s"]), 1)
    keys = [k for k in _SUMMARY_KEYS if (summary.monitor is not None or k not in _FIT_KEYS)
            and (k != "distribution" or summary.distribution is not None)]
    path = Path(run_dir) / TRAIN_SUMMARY_FILE
    write_json(path, {k: d[k] for k in keys})
    return path


def read_train_summary(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/train_summary.json`` as a dict, or None when there is none."""
    path = Path(run_dir) / TRAIN_SUMMARY_FILE
    if not path.is_file():
        return None
    obj = json.loads(path.read_text(encoding="utf-8"))
    return obj if isinstance(obj, dict) else None


__all__ = [
    "BACKUP_DIR", "CONFIG_FILE", "CURVES_PNG", "CV_CASES_FILE", "CV_FILE", "CV_ROOT_OUTPUTS",
    "CV_SUMMARY_FILE", "CV_SUMMARY_MD", "EPOCH_INFER_DIR", "HISTORY_CSV", "HISTORY_JSON", "INFERENCE_DIR",
    "LAST_MODEL_FILE", "LOCK_SUFFIX", "MODEL_FILE", "POSTPROCESSING_FILE", "PREPROCESSING_FILE",
    "RUN_OUTPUTS", "SINGLE_RUN_FILES", "SPLITS_FILE", "TENSORBOARD_DIR", "TRAIN_SUMMARY_FILE", "TrainSummary",
    "VERSIONS_FILE", "fold_lock_file", "fold_name", "is_cv_folder", "model_paths", "read_cv_folds",
    "read_train_summary", "write_cv_folds", "write_train_summary",
]
