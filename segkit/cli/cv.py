"""``segkit cv CONFIG``: train every cross-validation fold, then score and summarise them
(``segkit.cv``)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from segkit.cli.common import (
    RichProgress,
    err,
    handle_errors,
    load,
    out,
    quiet_tensorflow,
    set_interrupt_hint,
)


@handle_errors
def cv(
    config: Path = typer.Argument(
        ..., help="YAML config or preset name whose data.dir was prepared with --folds K."
    ),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a key, e.g. --set train.epochs=5 (repeatable)."
    ),
    folds: list[int] = typer.Option(
        None, "--fold", min=0, help="Train only this fold (repeatable; default all)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Retrain folds that are done or interrupted."),
    time_limit: float = typer.Option(
        None, "--time-limit", min=0.001, help="Minutes of training per fold (train.time_limit)."
    ),
    break_lock: bool = typer.Option(
        False, "--break-lock",
        help="With --fold k: train fold k even if its fold_k.lock names a job that may still run (you know it"
        " is gone).",
    ),
) -> None:
    """Cross-validation: train fold 0..K-1 into <train.run_dir>/fold_k, score each fold's model on its
    validation cases, and write cv_summary.json / cv_summary.md (per fold, pooled, mean ± sd across folds).

    Resumable: a finished fold is skipped, an interrupted one resumes. Folds can run as separate jobs at
    once (`--fold k` per job, e.g. a SLURM array): a fold being trained by another job (its fold_k.lock) is
    never resumed by a second one; a plain `segkit cv` skips it and writes the summary once all are done.
    The run folder then stands for the ensemble of the fold models: `segkit infer RUN_DIR --input ...` and
    `segkit evaluate RUN_DIR` (test cases) average their probabilities, with the post-processing chosen on
    the pooled validation predictions.
    """
    from segkit.cli.train import RichTrainProgress, rerun_args, training_sets
    from segkit.cv import CVHooks, cv_table, run_cv
    from segkit.errors import ConfigError

    if break_lock and not folds:  # without a fold it would break the locks of every live job
        raise ConfigError("--break-lock needs --fold: it would break the lock of every fold being trained",
                          path="--break-lock", hint="name the dead fold with --fold k")
    cfg = load(config, training_sets(sets, time_limit))
    quiet_tensorflow()
    again = shlex.join(["segkit", "cv", str(config), *rerun_args(sets, time_limit),
                        *(a for f in folds or [] for a in ("--fold", str(f)))])
    set_interrupt_hint(f"`{again}` skips the finished folds and resumes the interrupted one")

    def on_fold(k: int, total: int, what: str) -> None:
        word = {"skip": "done before, skipped", "resume": "resuming", "train": "training"}[what]
        err.print(f"[bold]fold {k + 1}/{total}[/] (fold_{k}): {word}", highlight=False)

    def notice(line: str) -> None:
        err.print(line, highlight=False, soft_wrap=True)

    with RichTrainProgress() as progress, RichProgress() as scoring:
        hooks = CVHooks(train_progress=progress, on_fold=on_fold, progress=scoring, notice=notice)
        result = run_cv(cfg, folds=folds or None, overwrite=overwrite, break_lock=break_lock, hooks=hooks)
    if result.running:
        busy = "; ".join(f"fold_{k}: {who}" for k, who in sorted(result.running.items()))
        out.print(f"folds trained: {result.trained or 'none'}; no summary while other jobs train fold(s) "
                  f"{', '.join(map(str, sorted(result.running)))} ({busy}); run `segkit cv` without --fold "
                  "again when they have finished", highlight=False, soft_wrap=True)
        return
    if not result.summary:
        out.print(f"folds trained: {result.trained or 'none'}; not every fold has a model yet, so no summary "
                  f"(run segkit cv without --fold to finish)", highlight=False)
        return
    out.print(cv_table(result.summary), highlight=False, soft_wrap=True)
    pp = result.summary.get("postprocessing")
    if pp:
        out.print(f"post-processing for the ensemble (pooled validation): TTA {pp['tta']}, largest component "
                  f"{pp['largest_component'] or 'none'}", highlight=False)
    out.print(f"wrote {result.summary_path}; infer with the ensemble: segkit infer {result.run_dir}"
              " --input ...", highlight=False, soft_wrap=True)
