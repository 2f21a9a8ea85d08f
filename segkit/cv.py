"""Cross-validation: train every fold of a dataset prepared with ``--folds K``, score each fold's model on its
validation cases, pool them, and choose the ensemble's post-processing on those predictions.

``run_cv(cfg)`` (``segkit cv CONFIG``) lays out ``train.run_dir`` as::

    run_dir/fold_0 ... fold_{K-1}   one ordinary training run each (data.fold = k; segkit train --fold k)
    run_dir/cv.json                 the fold folders: segkit infer / evaluate RUN_DIR ensemble their models
    run_dir/config.yaml             the resolved config (without a fold)
    run_dir/preprocessing.json      the dataset's preprocessing recipe (inference without the dataset)
    run_dir/postprocessing.json     TTA and component filter chosen on the pooled validation predictions
    run_dir/cv_summary.json         per fold and pooled per-class Dice / HD95, mean +- sd across folds
    run_dir/cv_cases.csv            one row per validation case x class, with its fold
    run_dir/fold_k.lock             while a job trains fold k: its host, pid and start time

Folds are resumable one by one: a fold whose ``train_summary.json`` exists (same config) is skipped, an
interrupted fold resumes from its last epoch, the rest start fresh. Folds can be trained by separate jobs at
once (``segkit cv CONFIG --fold k`` on each machine of a cluster, sharing the folder): each trains its fold
under the lock ``fold_k.lock`` (``segkit.io.run_lock``), so a fold being trained is never resumed or
overwritten by another job, and a plain ``segkit cv`` skips it and writes no summary until it is finished.
Should the lock be broken and taken by another job while a fold trains (``--break-lock`` elsewhere, or a
heartbeat that could not reach the file server for 10 minutes), the training stops with ``FoldLost`` at its
next progress event (each batch, each epoch's start and end, each post-processing step), so the two jobs
do not keep writing the fold folder together.

The per-fold scores are *raw* predictions (no TTA, no component filter: a post-processing chosen on the
same validation cases would flatter them); the post-processed figure is the pooled Dice of the chosen
variant, stored with the decision.

Example:
    >>> result = run_cv(load_config("configs/left-atrial.yaml"))   # dataset prepared with --folds 5
    >>> result.summary["pooled"]["mean_fg_dice"]
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segkit.config import COARSE_DIR, Config
from segkit.errors import ConfigError, DataError
from segkit.io.atomic import write_json, write_text
from segkit.io.run_folder import (
    CONFIG_FILE,
    CV_CASES_FILE,
    CV_FILE,
    CV_ROOT_OUTPUTS,
    CV_SUMMARY_FILE,
    CV_SUMMARY_MD,
    HISTORY_CSV,
    MODEL_FILE,
    POSTPROCESSING_FILE,
    PREPROCESSING_FILE,
    SINGLE_RUN_FILES,
    SPLITS_FILE,
    TrainSummary,
    fold_lock_file,
    fold_name,
    read_train_summary,
    write_cv_folds,
    write_train_summary,
)
from segkit.io.run_lock import LockBusy, LockHolder, LockLost, RunLock, acquire_lock, lock_holder
from segkit.metrics.overlap import summarize
from segkit.metrics.scores import ScoreTable
from segkit.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from segkit.train.fit import TrainResult

log = logging.getLogger(__name__)

SUMMARY_FILE = CV_SUMMARY_FILE
CASES_FILE = CV_CASES_FILE
METRICS = ("dice", "hd95_mm")


def fold_dir(run_dir: Path, fold: int) -> Path:
    """``run_dir/fold_<k>``."""
    return Path(run_dir) / fold_name(fold)


def fold_config(cfg: Config, fold: int) -> Config:
    """``cfg`` for fold ``fold``: ``data.fold`` set and ``train.run_dir`` = ``<run_dir>/fold_<k>``."""
    if cfg.data.fold is not None:
        raise ConfigError(f"data.fold is already {cfg.data.fold}", path="data.fold",
                          hint="give the config without data.fold; --fold / segkit cv set it")
    if cfg.train.include_valid:
        raise ConfigError("train.include_valid would train each fold on its own held-out cases",
                          path="train.include_valid",
                          hint="set train.include_valid: false for segkit cv / --fold")
    return cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"fold": int(fold)}),
        "train": cfg.train.model_copy(update={"run_dir": fold_dir(Path(cfg.train.run_dir), fold)}),
    })


def fold_count(cfg: Config) -> int:
    """K, the number of folds in the dataset's ``splits.json``.

    Raises:
        DataError: no splits.json, or no folds in it (prepare with ``--folds K``).
    """
    from segkit.prepare.split import SPLITS_FILE, load_splits

    data_dir = Path(cfg.data.dir)
    folds = load_splits(data_dir).get("kfold")
    if not folds:
        raise DataError("the dataset has no cross-validation folds", path=data_dir / SPLITS_FILE,
                        hint="prepare it with --folds K, e.g. segkit prepare ... --folds 5")
    return len(folds)


def check_folds(
    cfg: Config, folds: Sequence[int] | None = None, *, option: str | None = None
) -> tuple[int, list[int]]:
    """K (``fold_count``) and the folds to train: ``folds`` sorted without repeats, or all K.

    The one range check of ``segkit train --fold`` (``train_fold_config``) and ``run_cv``.

    Args:
        cfg: the config; its ``data.dir`` holds the dataset.
        folds: the folds asked for; ``None`` for all.
        option: the command-line option the folds came from (``--fold``): the error names it, and its hint
            says ``use --fold 0..K-1`` instead of ``use folds in 0..K-1``.

    Raises:
        DataError: the dataset has no folds; ConfigError: a fold outside ``0..K-1``.
    """
    k_total = fold_count(cfg)
    todo = list(range(k_total)) if folds is None else sorted(set(int(f) for f in folds))
    bad = [f for f in todo if not 0 <= f < k_total]
    if bad:
        raise ConfigError(f"fold {bad[0]} is out of range: the dataset has {k_total} folds", path=option,
                          hint=f"use {option or 'folds in'} 0..{k_total - 1}")
    return k_total, todo


def train_fold_config(cfg: Config, fold: int, *, option: str | None = "--fold") -> Config:
    """``fold_config(cfg, fold)`` after checking ``fold`` against the dataset's folds (``check_folds``): the
    config ``segkit train --fold k`` trains.

    Raises:
        DataError: the dataset has no folds; ConfigError: ``fold`` out of range, or ``data.fold`` already set.
    """
    check_folds(cfg, [fold], option=option)
    return fold_config(cfg, fold)


@dataclass
class CVResult:
    """What ``run_cv`` did: the run folder, the folds trained now / found done, the summary written (empty
    while a fold is unfinished), and the folds other jobs are training."""

    run_dir: Path
    folds: int
    trained: list[int]
    skipped: list[int]
    summary: dict[str, Any]
    summary_path: Path
    running: dict[int, str] = field(default_factory=dict)  # fold -> the other job training it (no summary)


def _mean_sd(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """``segkit.metrics.overlap.summarize`` (finite values only; population sd) in the summary's keys."""
    s = summarize(math.nan if v is None else float(v) for v in values)
    return {"mean": s["mean"], "sd": s["std"], "n": s["n"]}


def _scores(table: ScoreTable, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class mean +- sd of each metric, mean foreground Dice / HD95 and the infinite HD95 count of one
    table of case x class scores."""
    return {
        **{m: {c: _mean_sd(table.values(m, c)) for c in classes} for m in METRICS},
        "fg_dice": _mean_sd(table.case_means("dice")),
        "mean_hd95_mm": _mean_sd(table.case_means("hd95_mm"))["mean"],
        "hd95_unbounded": table.count_infinite("hd95_mm"),
    }


def summarize_cv(fold_rows: Sequence[Sequence[dict[str, Any]]], classes: Sequence[str]) -> dict[str, Any]:
    """The cross-validation summary from each fold's per case x class rows (``evaluate`` rows).

    ``per_fold``: each fold's per-class mean Dice / HD95 and its mean foreground Dice; ``pooled``: the same
    over all validation cases together (every case once); ``across_folds``: mean and sd (population, ddof 0)
    of the fold means. As in ``evaluate``, a class whose reference is empty in a case has no Dice there (its
    false positives are in the evaluation report) and is left out of that case's means; an infinite HD95 (a
    class missed entirely, or predicted where the reference has none) cannot enter a mean and is counted in
    ``hd95_unbounded`` instead. Scores are reduced with ``segkit.metrics.scores.ScoreTable``, as in
    ``evaluate`` and the post-processing choice.

    Raises:
        DataError: a case scored in two folds (the folds must be disjoint).
    """
    per_fold: list[dict[str, Any]] = []
    pooled_table = ScoreTable(classes)
    for k, rows in enumerate(fold_rows):
        table = ScoreTable(classes)
        table.extend(rows, METRICS)
        twice = sorted(set(table.cases()) & set(pooled_table.cases()))
        if twice:
            raise DataError(f"case '{twice[0]}' is in the validation cases of two folds",
                            hint="prepare the dataset again: its folds must be disjoint")
        pooled_table.extend(rows, METRICS)
        fold = _scores(table, classes)
        per_fold.append({
            "fold": k,
            "cases": sorted(table.cases()),
            **{m: {c: fold[m][c]["mean"] for c in classes} for m in METRICS},
            "mean_fg_dice": fold["fg_dice"]["mean"],
            "mean_hd95_mm": fold["mean_hd95_mm"],
            "hd95_unbounded": fold["hd95_unbounded"],
        })
    pooled = _scores(pooled_table, classes)
    fg = pooled.pop("fg_dice")
    pooled = {"cases": len(pooled_table.cases()), **{m: pooled[m] for m in METRICS},
              "mean_fg_dice": fg["mean"], "sd_fg_dice": fg["sd"], "mean_hd95_mm": pooled["mean_hd95_mm"],
              "hd95_unbounded": pooled["hd95_unbounded"]}
    across = {
        "mean_fg_dice": _mean_sd([f["mean_fg_dice"] for f in per_fold]),
        "mean_hd95_mm": _mean_sd([f["mean_hd95_mm"] for f in per_fold]),
        **{m: {c: _mean_sd([f[m][c] for f in per_fold]) for c in classes} for m in METRICS},
    }
    return {"folds": len(per_fold), "classes": list(classes), "per_fold": per_fold, "pooled": pooled,
            "across_folds": across}


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def cv_table(summary: dict[str, Any]) -> str:
    """A Markdown table: one row per fold, then pooled and mean +- sd across folds."""
    classes = summary["classes"]
    head = ("| fold | cases | " + " | ".join(f"{c} Dice" for c in classes)
            + " | mean fg Dice | mean HD95 (mm) | HD95 = ∞ |")
    lines = [head, "|" + "---|" * (5 + len(classes))]
    for f in summary["per_fold"]:
        lines.append(f"| {f['fold']} | {len(f['cases'])} | " + " | ".join(_fmt(f["dice"][c]) for c in classes)
                     + f" | {_fmt(f['mean_fg_dice'])} | {_fmt(f['mean_hd95_mm'], 2)}"
                     f" | {f['hd95_unbounded']} |")
    p, a = summary["pooled"], summary["across_folds"]
    lines.append(f"| pooled | {p['cases']} | " + " | ".join(_fmt(p["dice"][c]["mean"]) for c in classes)
                 + f" | {_fmt(p['mean_fg_dice'])} ± {_fmt(p['sd_fg_dice'])} | {_fmt(p['mean_hd95_mm'], 2)}"
                 f" | {p['hd95_unbounded']} |")
    lines.append("| folds mean ± sd | | " + " | ".join(
        f"{_fmt(a['dice'][c]['mean'])} ± {_fmt(a['dice'][c]['sd'])}" for c in classes)
        + f" | {_fmt(a['mean_fg_dice']['mean'])} ± {_fmt(a['mean_fg_dice']['sd'])}"
        f" | {_fmt(a['mean_hd95_mm']['mean'], 2)} ± {_fmt(a['mean_hd95_mm']['sd'], 2)} | |")
    return "\n".join(lines)


ROOT_OUTPUTS = CV_ROOT_OUTPUTS


def _same_split(cfk: Config, rk: Path) -> None:
    """Refuse a fold folder trained on another split of the dataset (re-prepared with other folds or seed):
    its validation cases would no longer be the ones it never saw."""
    from segkit.prepare.split import load_splits

    saved = rk / SPLITS_FILE
    if not saved.is_file():
        return
    now = load_splits(Path(cfk.data.dir))
    try:
        then = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        then = {}
    if then.get("kfold") != now.get("kfold") or then.get("test") != now.get("test"):
        raise ConfigError(
            f"fold {cfk.data.fold} was trained on another split of the dataset (its splits.json differs from "
            f"{Path(cfk.data.dir) / 'splits.json'}): scoring it on today's folds would leak",
            path=rk, hint="use --overwrite to retrain every fold, or set train.run_dir to a new folder")


def fold_running(cfk: Config) -> LockHolder | None:
    """The job training this fold now (its ``fold_<k>.lock``), or None: no lock, or a stale one."""
    return lock_holder(fold_lock_file(Path(cfk.train.run_dir)))


def fold_state(cfk: Config) -> str:
    """``"running"`` (another job holds the fold's lock), ``"done"`` (finished, same config and split, no
    more training allowed), ``"more"`` (finished, but the config now allows more epochs or time),
    ``"partial"`` (interrupted), or ``"missing"``.

    Raises:
        ConfigError: the fold was trained with another config or on another split of the dataset.
    """
    if fold_running(cfk) is not None:
        return "running"
    return _trained_state(cfk)


def _trained_state(cfk: Config) -> str:
    """``fold_state`` without the lock (the caller holds it)."""
    from segkit.train.fit import config_difference

    rk = Path(cfk.train.run_dir)
    if not (rk / CONFIG_FILE).is_file():
        # a cascade killed in its coarse stage: resumed there (the stage's config is checked on resume)
        started = cfk.cascade.enabled and (rk / COARSE_DIR / CONFIG_FILE).is_file()
        return "partial" if started else "missing"
    diff = config_difference((rk / CONFIG_FILE).read_text(encoding="utf-8"), cfk)
    if diff is not None:
        raise ConfigError(f"fold {cfk.data.fold} in the run folder was trained with another config ({diff})",
                          path=rk,
                          hint="use --overwrite to retrain every fold, or set train.run_dir to a new folder")
    _same_split(cfk, rk)
    ts = read_train_summary(rk)
    if ts is None or not (rk / MODEL_FILE).is_file():
        return "partial"
    stop = str(ts.get("stop_reason"))
    # a cascade's fine run records its own share of the limit; the total is under "cascade"
    limit_then = (ts.get("cascade") or {}).get("time_limit_min", ts.get("time_limit_min"))
    limit_now = cfk.train.time_limit
    more_time = limit_then is not None and (limit_now is None or limit_now > limit_then)
    more_epochs = cfk.train.epochs > int(ts.get("epochs") or 0)
    more = {"time_limit": more_time, "epochs": more_epochs,
            "complete": more_time or more_epochs}.get(stop, False)
    return "more" if more else "done"  # early stopping is final


class FoldBusy(ConfigError):
    """Another job that may still run holds the fold's lock (``holder``)."""

    def __init__(self, message: str, *, holder: LockHolder, path: Path, hint: str) -> None:
        super().__init__(message, path=path, hint=hint)
        self.holder = holder


def hold_fold(
    cfk: Config, *, break_lock: bool = False, notice: Callable[[str], None] | None = None
) -> RunLock:
    """Take the lock of fold ``cfk.data.fold`` (``fold_<k>.lock`` beside its folder) for this process: what
    ``segkit train --fold k`` and ``segkit cv --fold k`` hold while they train it. A stale lock (its job gone,
    ``segkit.io.run_lock``) is removed with a line to ``notice``. The lock's ``lost`` turns True if another
    job takes it over meanwhile: ``run_cv`` checks it at every training event (``FoldLost``).

    Raises:
        FoldBusy: another job that may still run holds it (without ``break_lock``).
    """
    path = fold_lock_file(Path(cfk.train.run_dir))
    try:
        return acquire_lock(path, break_lock=break_lock, notice=notice or log.warning)
    except LockBusy as e:
        raise FoldBusy(
            f"fold {cfk.data.fold} is being trained by another job ({e.holder.describe()})", path=path,
            holder=e.holder,
            hint="wait for it to finish; if that job is gone, rerun with --break-lock or delete the lock",
        ) from e


class FoldLost(ConfigError):
    """The fold's lock was taken over by another job while this one trained the fold."""


def _ensure_held(lock: RunLock, cfk: Config) -> None:
    """Raise ``FoldLost`` if another job took the fold's lock (``RunLock.ensure_held``)."""
    try:
        lock.ensure_held()
    except LockLost as e:
        who = e.holder.describe() if e.holder is not None else "an unknown job"
        raise FoldLost(
            f"fold {cfk.data.fold} was taken over by another job ({who}) while this job trained it: stopped"
            " before writing more", path=lock.path,
            hint="two jobs trained this fold; let the other one finish it, or stop it and rerun this one",
        ) from e


def _guarded(lock: RunLock, cfk: Config, progress: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """``progress`` (may be None) behind a check of the fold's lock at every training event."""

    def on_event(event: Any) -> None:
        _ensure_held(lock, cfk)
        if progress is not None:
            progress(event)

    return on_event


def train_fold(
    cfk: Config, *, resume: bool = False, overwrite: bool = False,
    progress: Callable[[Any], None] | None = None,
) -> TrainResult:
    """``segkit train --fold k``: train fold ``cfk.data.fold`` (a ``train_fold_config``) under its lock,
    checked at every training event as ``run_cv`` checks it; return ``train_model``'s result.

    Raises:
        FoldBusy: another job holds the fold; FoldLost: another job took it over meanwhile; and what
            ``train_model`` raises.
    """
    from segkit.train.fit import train_model

    with hold_fold(cfk) as lock:
        result = train_model(cfk, resume=resume, overwrite=overwrite, progress=_guarded(lock, cfk, progress))
        _ensure_held(lock, cfk)
    return result


def _mark_complete(cfk: Config) -> None:
    """The train_summary.json of a fold whose resume found no epoch left under this config's budget (it was
    killed after its last epoch, e.g. while choosing its post-processing)."""
    from segkit.train import callbacks as cb
    from segkit.train.fit import spent_time

    rk = Path(cfk.train.run_dir)
    rows = cb.read_history_csv(rk / HISTORY_CSV)
    write_train_summary(rk, TrainSummary(
        stop_reason="complete", epochs_done=len(rows), epochs=cfk.train.epochs,
        train_time_s=spent_time(rows)[0], time_limit_min=cfk.train.time_limit, postprocessing=None))


def _check_root(run_dir: Path, overwrite: bool) -> None:
    """A cross-validation run folder holds fold_k folders and the ensemble's files, never a single run's."""
    single = [n for n in SINGLE_RUN_FILES if (run_dir / n).exists()]
    if single and not (run_dir / CV_FILE).is_file():
        raise ConfigError(
            f"train.run_dir holds a single training run ({single[0]}); a cross-validation run needs its own"
            " folder",
            path=run_dir, hint="set train.run_dir to another folder, e.g. --set train.run_dir=runs/NAME-cv")
    if overwrite:
        for name in ROOT_OUTPUTS:
            (run_dir / name).unlink(missing_ok=True)


@dataclass
class CVHooks:
    """What ``run_cv`` reports while it runs.

    ``train_progress``: ``train_model``'s progress callback, for every fold; ``on_fold``: called with (fold,
    K, ``"train"`` | ``"skip"`` | ``"resume"``) before each fold it trains or skips as done; ``progress``: the
    scoring of the validation volumes (evaluation, post-processing choice); ``notice``: one line when a fold
    is skipped because another job trains it, or a stale lock is removed (default: the ``segkit.cv`` log).
    """

    train_progress: Callable[[Any], None] | None = None
    on_fold: Callable[[int, int, str], None] | None = None
    progress: Progress = NULL_PROGRESS
    notice: Callable[[str], None] | None = None

    def say(self, line: str) -> None:
        (self.notice or log.warning)(line)


@dataclass
class _Todo:
    """The folds ``run_cv`` was asked to train, and how."""

    folds: list[int]
    explicit: bool  # named with --fold: a fold another job trains is an error, not a skip
    overwrite: bool
    break_lock: bool


def _train_one(cfk: Config, todo: _Todo, hooks: CVHooks, k_total: int) -> str:
    """Train fold ``cfk.data.fold`` under its lock; returns ``"trained"`` or ``"skipped"`` (done before).

    Raises:
        FoldLost: another job took the lock meanwhile (checked at every training event).
    """
    from segkit.train.fit import RunComplete, train_model

    k = int(cfk.data.fold or 0)
    rk = Path(cfk.train.run_dir)
    with hold_fold(cfk, break_lock=todo.break_lock, notice=hooks.say) as lock:
        state = "missing" if todo.overwrite else _trained_state(cfk)  # read under the lock
        if state == "done":
            if hooks.on_fold is not None:
                hooks.on_fold(k, k_total, "skip")
            return "skipped"
        resume = state in ("partial", "more")
        if hooks.on_fold is not None:
            hooks.on_fold(k, k_total, "resume" if resume else "train")
        try:
            train_model(cfk, resume=resume, overwrite=not resume,
                        progress=_guarded(lock, cfk, hooks.train_progress))
        except RunComplete:  # killed after its last epoch (e.g. while choosing post-processing): it is done
            if not (rk / MODEL_FILE).is_file():
                raise
            log.info("fold %d had no epoch left to train: taken as done", k)
            _ensure_held(lock, cfk)
            _mark_complete(cfk)
        _ensure_held(lock, cfk)  # lost after the last event: report it, the other job owns the folder
    return "trained"


def _train_folds(
    fold_cfgs: Sequence[Config], todo: _Todo, hooks: CVHooks
) -> tuple[list[int], list[int], dict[int, str]]:
    """Train the folds in ``todo`` one by one, each under its lock: skip a done one, resume an interrupted
    one (or one the config now allows more), train the rest fresh (all fresh with ``overwrite``). A fold
    another job holds is skipped with a notice (an error when named with ``--fold``).

    Returns:
        ``(trained, skipped as done, {fold: the job running it}``).
    """
    k_total = len(fold_cfgs)
    done: dict[str, list[int]] = {"trained": [], "skipped": []}
    running: dict[int, str] = {}
    for k in todo.folds:
        try:
            done[_train_one(fold_cfgs[k], todo, hooks, k_total)].append(k)
        except FoldBusy as e:
            if todo.explicit:
                raise
            running[k] = e.holder.describe()
            hooks.say(f"fold {k + 1}/{k_total} ({fold_name(k)}): being trained by another job"
                      f" ({running[k]}), skipped")
    return done["trained"], done["skipped"], running


def _fold_runs(fold_cfgs: Sequence[Config]) -> list[dict[str, Any]]:
    """Each fold's folder, epochs, training time and stop reason (from its ``train_summary.json``)."""
    runs = []
    for cfk in fold_cfgs:
        ts = read_train_summary(Path(cfk.train.run_dir)) or {}
        runs.append({"fold": cfk.data.fold, "run_dir": fold_name(int(cfk.data.fold or 0)),
                     "epochs_done": ts.get("epochs_done"), "train_time_s": ts.get("train_time_s"),
                     "stop_reason": ts.get("stop_reason")})
    return runs


def _score_folds(
    cfg: Config, fold_cfgs: Sequence[Config], progress: Progress
) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """Score each fold's model (raw predictions) on its validation cases, summarise them (``summarize_cv``)
    and choose the ensemble's post-processing on the pooled predictions (``train.choose_postprocessing``;
    without a choice, an older ``postprocessing.json`` is removed).

    Returns:
        ``(summary, each fold's evaluation rows)``.
    """
    from segkit.evaluate.run import evaluate_model
    from segkit.postprocess import choose_postprocessing_pooled

    run_dir = Path(cfg.train.run_dir)
    classes = [c.name for c in cfg.effective_classes]
    raw = cfg.infer.model_copy(update={"tta": False, "largest_component": False})
    fold_rows = []
    for cfk in fold_cfgs:
        rk = Path(cfk.train.run_dir)
        ev = evaluate_model(cfk.model_copy(update={"infer": raw}), split="valid",
                            out_dir=rk / "cv_evaluation", progress=progress)
        fold_rows.append(ev.rows)
    summary = summarize_cv(fold_rows, classes)
    summary["runs"] = _fold_runs(fold_cfgs)
    summary["scores"] = ("raw predictions of each fold's model on its validation cases (no TTA, no component"
                         " filter)")

    pp = None
    if cfg.train.choose_postprocessing:
        members = [(c, Path(c.train.run_dir) / MODEL_FILE) for c in fold_cfgs]
        pp = choose_postprocessing_pooled(members, run_dir, "valid", progress)
    if pp is None:  # no decision now: an older one must not apply to this ensemble
        (run_dir / POSTPROCESSING_FILE).unlink(missing_ok=True)
    summary["postprocessing"] = pp.to_json() if pp is not None else None
    return summary, fold_rows


def _write_root(
    cfg: Config,
    fold_cfgs: Sequence[Config],
    summary: dict[str, Any],
    fold_rows: Sequence[Sequence[dict[str, Any]]],
) -> None:
    """The run folder's files: what inference and evaluation of the ensemble need (``config.yaml``,
    ``cv.json``, the first fold's ``preprocessing.json`` / ``splits.json``), ``cv_cases.csv``, the summary
    (``cv_summary.json``) and its table (``cv_summary.md``)."""
    run_dir = Path(cfg.train.run_dir)
    write_text(run_dir / CONFIG_FILE, cfg.to_yaml())
    write_cv_folds(run_dir, len(fold_cfgs))
    for name in (PREPROCESSING_FILE, SPLITS_FILE):
        src = Path(fold_cfgs[0].train.run_dir) / name
        if src.is_file():
            write_text(run_dir / name, src.read_text(encoding="utf-8"))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["fold", "case_id", "class_name", *METRICS])
    for k, rows in enumerate(fold_rows):
        for r in rows:
            writer.writerow([k, r["case_id"], r["class_name"], *(r.get(m) for m in METRICS)])
    write_text(run_dir / CASES_FILE, buf.getvalue())
    write_json(run_dir / SUMMARY_FILE, summary)
    write_text(run_dir / CV_SUMMARY_MD, cv_table(summary) + "\n")


def run_cv(
    cfg: Config,
    *,
    folds: Sequence[int] | None = None,
    overwrite: bool = False,
    break_lock: bool = False,
    hooks: CVHooks | None = None,
) -> CVResult:
    """Train every fold (resumable), score each on its validation cases, and write the cross-validation
    summary.

    Args:
        cfg: the config (no ``data.fold``); ``data.dir`` prepared with ``--folds K``.
        folds: train only these folds (default all); the summary is written only when every fold is finished
            (with this config, on this split) and none is being trained by another job.
        overwrite: retrain folds that are done or interrupted instead of skipping / resuming them, and clear
            the run folder's ensemble files.
        break_lock: train a fold even if its lock names a job that may still run (the user knows it is gone).
        hooks: progress and message callbacks (``CVHooks``).

    Returns:
        ``CVResult``.

    A finished fold is skipped unless the config now allows it more epochs or time (then it resumes); an
    interrupted one resumes. Each fold is trained under its lock ``fold_<k>.lock`` (``hold_fold``), so jobs
    on several machines can train folds of one run folder at once: without ``folds``, a fold another job
    trains is skipped with a notice and listed in ``CVResult.running``.

    Raises:
        DataError: the dataset has no folds; ConfigError: a fold out of range, a fold named in ``folds``
            that another job trains, a fold trained with another config or on another split of the dataset
            (without ``overwrite``), or ``train.run_dir`` holding a single training run; ``FoldLost``
            (a ConfigError): a fold's lock taken by another job while this one trained it; anything
            ``train_model`` / ``evaluate_model`` raise.
    """
    hooks = hooks or CVHooks()
    k_total, todo = check_folds(cfg, folds)
    run_dir = Path(cfg.train.run_dir)
    from segkit.train.fit import check_views

    check_views(cfg)  # before --overwrite clears anything
    _check_root(run_dir, overwrite)
    fold_cfgs = [fold_config(cfg, k) for k in range(k_total)]
    trained, skipped, running = _train_folds(
        fold_cfgs, _Todo(todo, folds is not None, overwrite, break_lock), hooks)

    summary_path = run_dir / SUMMARY_FILE
    states = {}  # every fold, also those not trained now; each lock read once
    for k, c in enumerate(fold_cfgs):
        holder = fold_running(c)
        states[k] = "running" if holder is not None else _trained_state(c)
        if holder is not None:
            running[k] = holder.describe()
    unfinished = [k for k, st in states.items() if st != "done"]
    if unfinished:
        log.info("fold(s) %s not finished with this config: no cross-validation summary",
                 ", ".join(map(str, unfinished)))
        return CVResult(run_dir, k_total, trained, skipped, {}, summary_path, running)

    summary, fold_rows = _score_folds(cfg, fold_cfgs, hooks.progress)
    _write_root(cfg, fold_cfgs, summary, fold_rows)
    return CVResult(run_dir, k_total, trained, skipped, summary, summary_path)


__all__ = ["CVHooks", "CVResult", "FoldBusy", "FoldLost", "check_folds", "cv_table", "fold_config",
           "fold_count", "fold_dir", "fold_running", "fold_state", "hold_fold", "run_cv", "summarize_cv",
           "train_fold", "train_fold_config"]
