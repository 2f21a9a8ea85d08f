"""Training a cascade (``cascade.enabled``): the coarse stage, then the fine stage, into one run folder.

``train_cascade`` (what ``segkit.train.train_model`` runs for a cascade config):

1. the fine run folder is checked first (``check_run_dir``: a refused folder fails before any training);
2. the coarse stage trains on ``<data.dir>/coarse`` into ``<run_dir>/coarse`` with its share of
   ``train.time_limit`` (``Config.cascade_stages``); a finished coarse run is kept on ``--resume``;
3. the fine stage trains on ``data.dir`` (the reference-label crops) into ``run_dir`` with the rest of the
   time limit: the limit minus the coarse stage's wall time, so the two stages together keep to it. Its
   post-processing choice (``train.choose_postprocessing``) segments the validation volumes with both stages.

Example:
    >>> result = train_model(cfg)          # cfg.cascade.enabled: both stages
    >>> result.coarse.run_dir
    PosixPath('runs/acdc-cascade/coarse')
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from segkit.config import Config
from segkit.io.run_folder import TRAIN_SUMMARY_FILE

if TYPE_CHECKING:
    from segkit.train.callbacks import ProgressFn
    from segkit.train.fit import TrainResult

log = logging.getLogger(__name__)

#: the fine stage keeps at least this fraction of train.time_limit whatever the coarse stage used
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
        ConfigError: as ``train_model`` (a refused run folder, a resume of another config), for either stage.
        DataError: a missing coarse dataset (``segkit prepare`` with the cascade config writes it).
    """
    from segkit.train.fit import check_run_dir, train_one

    coarse_cfg, fine_cfg = cfg.cascade_stages()
    check_run_dir(fine_cfg, resume=resume, overwrite=overwrite)  # before anything trains
    coarse_dir = Path(coarse_cfg.train.run_dir)
    if resume and (coarse_dir / TRAIN_SUMMARY_FILE).is_file():
        log.info("cascade: the coarse stage in %s is finished; resuming the fine stage", coarse_dir)
        coarse = None
    else:
        log.info("cascade: coarse stage (%s, whole slices %s) into %s", coarse_cfg.model.name,
                 "x".join(map(str, coarse_cfg.data.image_size)), coarse_dir)
        coarse = train_one(coarse_cfg, resume=resume, overwrite=overwrite, progress=progress)
    limit = cfg.train.time_limit
    if limit is not None and coarse is not None:  # the fine stage gets what the coarse one left
        rest = max(limit - coarse.wall_s / 60.0, limit * MIN_FINE_SHARE)
        train = fine_cfg.train.model_copy(update={"time_limit": rest})
        fine_cfg = fine_cfg.model_copy(update={"train": train})
    log.info("cascade: fine stage (crops at %s) into %s", "x".join(map(str, cfg.data.image_size)),
             cfg.train.run_dir)
    fine = train_one(fine_cfg, resume=resume, overwrite=overwrite, progress=progress)
    return replace(fine, coarse=coarse)
