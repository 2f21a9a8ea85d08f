"""Training a cascade (``cascade.enabled``): the coarse stage, then the fine stage, into one run folder.

``train_cascade`` (what ``segkit.train.train_model`` runs for a cascade config):

1. nothing is deleted before both stages' splits and run folders pass their checks (``check_split``; a run
   folder that is not empty without ``--resume`` / ``--overwrite``, or a resume of another config, is refused
   first; ``--overwrite`` then clears each stage's outputs only when that stage starts);
2. the coarse stage trains on ``<data.dir>/coarse`` into ``<run_dir>/coarse`` with ``cascade.coarse_share``
   of ``train.time_limit`` (``Config.cascade_stages``). On ``--resume`` a finished coarse stage is kept when
   its saved config is this one's coarse stage (else a ConfigError names ``coarse/config.yaml``), an
   unfinished one resumes, and one killed after its last epoch is marked complete;
3. the fine stage trains on ``data.dir`` (the reference-label crops) into ``run_dir`` with the rest of the
   time limit: the limit minus the coarse stage's recorded training time (``train_summary.json``, resumes
   included), at least ``MIN_FINE_SHARE`` of it (so the total can pass the limit only when the coarse stage's
   single first epoch already did). Its ``train_summary.json`` records the cascade's total limit and the
   coarse time under ``cascade``. Its post-processing choice (``train.choose_postprocessing``) segments the
   validation volumes with both stages.

Example:
    >>> result = train_model(cfg)          # cfg.cascade.enabled: both stages
    >>> result.coarse.run_dir
    PosixPath('runs/acdc-cascade/coarse')
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segkit.config import Config
from segkit.errors import ConfigError
from segkit.io.atomic import write_json
from segkit.io.run_folder import CONFIG_FILE, HISTORY_CSV, MODEL_FILE, TRAIN_SUMMARY_FILE, read_train_summary

if TYPE_CHECKING:
    from segkit.train.callbacks import ProgressFn
    from segkit.train.fit import TrainResult

log = logging.getLogger(__name__)

#: the fine stage keeps at least this share of train.time_limit whatever the coarse stage used
MIN_FINE_SHARE = 0.25


def train_cascade(
    cfg: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train both stages of a cascade (module docstring); returns the fine stage's result with ``coarse``.

    Raises:
        ConfigError: a refused run folder, a resume of another config (either stage), ``--resume`` and
            ``--overwrite`` together.
        DataError: a missing or empty split of either dataset (``segkit prepare`` with the cascade config
            writes both).
    """
    from segkit.train.fit import RunComplete, check_split, train_one

    coarse_cfg, fine_cfg = cfg.cascade_stages()
    for stage in (coarse_cfg, fine_cfg):  # both datasets before anything trains or is deleted
        check_split(stage, "train")
        check_split(stage, "valid")
    _check_folders(coarse_cfg, fine_cfg, resume=resume, overwrite=overwrite)
    coarse = None
    coarse_dir = Path(coarse_cfg.train.run_dir)
    if not (resume and _coarse_finished(coarse_cfg)):
        log.info("cascade: coarse stage (%s, whole slices %s) into %s", coarse_cfg.model.name,
                 "x".join(map(str, coarse_cfg.data.image_size)), coarse_dir)
        try:
            coarse = train_one(coarse_cfg, resume=resume, overwrite=overwrite, progress=progress)
        except RunComplete:  # resumed after its last epoch (killed before its summary): it is done
            if not (coarse_dir / MODEL_FILE).is_file():
                raise
            _mark_complete(coarse_cfg)
    coarse_s = float((read_train_summary(coarse_dir) or {}).get("train_time_s") or 0.0)
    limit = cfg.train.time_limit
    if limit is not None:  # the fine stage gets what the coarse one left
        rest = max(limit - coarse_s / 60.0, limit * MIN_FINE_SHARE)
        train = fine_cfg.train.model_copy(update={"time_limit": rest})
        fine_cfg = fine_cfg.model_copy(update={"train": train})
    log.info("cascade: fine stage (crops at %s) into %s", "x".join(map(str, cfg.data.image_size)),
             cfg.train.run_dir)
    fine = train_one(fine_cfg, resume=resume, overwrite=overwrite, progress=progress)
    _record_cascade(Path(cfg.train.run_dir), limit, coarse_s)
    return replace(fine, coarse=coarse)


def _check_folders(coarse_cfg: Config, fine_cfg: Config, *, resume: bool, overwrite: bool) -> None:
    """Refuse what ``check_run_dir`` would refuse for either stage, deleting nothing: a non-empty folder
    without ``--resume`` / ``--overwrite``, a resume of another config."""
    from segkit.train.fit import check_run_dir

    for stage in (fine_cfg, coarse_cfg):  # with --overwrite: checked, not cleared (each stage clears its own)
        check_run_dir(stage, resume=resume, overwrite=overwrite, clear=False)


def _coarse_finished(coarse_cfg: Config) -> bool:
    """``--resume``: whether the coarse stage is finished (its ``train_summary.json`` written). Its saved
    config must be this one's coarse stage.

    Raises:
        ConfigError: the coarse stage was trained with another config (naming ``coarse/config.yaml``).
    """
    from segkit.train.fit import config_difference

    run_dir = Path(coarse_cfg.train.run_dir)
    saved = run_dir / CONFIG_FILE
    if not saved.is_file():
        return False
    diff = config_difference(saved.read_text(encoding="utf-8"), coarse_cfg)
    if diff is not None:
        raise ConfigError(f"cannot resume: the cascade's coarse stage was trained with another config "
                          f"({diff})",
                          path=saved, hint="resume with the same config, or start afresh with --overwrite")
    if (run_dir / TRAIN_SUMMARY_FILE).is_file():
        log.info("cascade: the coarse stage in %s is finished; resuming the fine stage", run_dir)
        return True
    return False


def _mark_complete(cfg: Config) -> None:
    """The ``train_summary.json`` of a stage killed after its last epoch (``stop_reason: complete``)."""
    from segkit.io.run_folder import TrainSummary, write_train_summary
    from segkit.train import callbacks as cb
    from segkit.train.fit import spent_time

    run_dir = Path(cfg.train.run_dir)
    rows = cb.read_history_csv(run_dir / HISTORY_CSV)
    write_train_summary(run_dir, TrainSummary(
        stop_reason="complete", epochs_done=len(rows), epochs=cfg.train.epochs,
        train_time_s=spent_time(rows)[0], time_limit_min=cfg.train.time_limit, postprocessing=None))


def _record_cascade(run_dir: Path, limit: float | None, coarse_s: float) -> None:
    """Add the cascade's total time limit and the coarse stage's time to the fine run's summary
    (``segkit cv`` compares the total with the config's on a rerun)."""
    summary: dict[str, Any] | None = read_train_summary(run_dir)
    if summary is None:  # a non-chief worker, or a run that wrote none
        return
    summary["cascade"] = {"time_limit_min": limit, "coarse_train_time_s": coarse_s}
    write_json(run_dir / TRAIN_SUMMARY_FILE, summary)
