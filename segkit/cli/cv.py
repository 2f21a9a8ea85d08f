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
) -> None:
    """Cross-validation: train fold 0..K-1 into <train.run_dir>/fold_k, score each fold's model on its
    validation cases, and write cv_summary.json / cv_summary.md (per fold, pooled, mean ± sd across folds).

    Resumable: a finished fold is skipped, an interrupted one resumes. The run folder then stands for the
    ensemble of the fold models: `segkit infer RUN_DIR --input ...` and `segkit evaluate RUN_DIR` (test cases)
    average their probabilities, with the post-processing chosen on the pooled validation predictions.
    """
    from segkit.cli.train import RichTrainProgress, rerun_args, training_sets
    from segkit.cv import cv_table, run_cv

    cfg = load(config, training_sets(sets, time_limit))
    quiet_tensorflow()
    again = shlex.join(["segkit", "cv", str(config), *rerun_args(sets, time_limit),
                        *(a for f in folds or [] for a in ("--fold", str(f)))])
    set_interrupt_hint(f"`{again}` skips the finished folds and resumes the interrupted one")

    def on_fold(k: int, total: int, what: str) -> None:
        word = {"skip": "done before, skipped", "resume": "resuming", "train": "training"}[what]
        err.print(f"[bold]fold {k + 1}/{total}[/] (fold_{k}): {word}", highlight=False)

    with RichTrainProgress() as progress, RichProgress() as scoring:
        result = run_cv(cfg, folds=folds or None, overwrite=overwrite, train_progress=progress,
                        on_fold=on_fold, progress=scoring)
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
