"""`segkit train CONFIG [--set key=value ...] [--resume] [--overwrite]`: train a model into ``train.run_dir``.

The command loads the config (overrides validated like the file), calls ``segkit.train.train_model`` once and
draws its progress events with rich on stderr: the run facts at start, a bar per epoch with ETA and live
metrics, one summary line per epoch. The result (best monitored value, run directory) goes to stdout.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from segkit.cli.common import err, handle_errors, load, out, quiet_tensorflow, set_interrupt_hint

_SHOWN = ("loss", "fg_dice", "val_loss", "val_fg_dice", "lr")


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt_logs(logs: dict[str, float], keys: tuple[str, ...] = _SHOWN) -> str:
    parts = []
    for k in keys:
        if k in logs:
            v = logs[k]
            parts.append(f"{k} {v:.2e}" if k == "lr" else f"{k} {v:.4f}")
    return "  ".join(parts)


def training_sets(sets: list[str] | None, time_limit: float | None) -> list[str]:
    """The ``--set`` overrides, then ``--time-limit`` as ``train.time_limit`` (segkit train and segkit cv)."""
    return [*(sets or []), *([f"train.time_limit={time_limit}"] if time_limit is not None else [])]


def rerun_args(sets: list[str] | None, time_limit: float | None) -> list[str]:
    """The ``--set`` and ``--time-limit`` words that repeat a command's overrides (its interrupt hint)."""
    return [*(a for s in sets or [] for a in ("--set", s)),
            *(["--time-limit", f"{time_limit:g}"] if time_limit is not None else [])]


class RichTrainProgress:
    """Renders ``TrainEvent``s: facts at start, a live bar per epoch (steps, ETA, running metrics), and one
    line per finished epoch (also when stderr is not a terminal, e.g. in CI logs)."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> RichTrainProgress:
        return self

    def _open(self) -> None:
        """The live bar exists from a run's start event to its end event, so other bars (cv's scoring) can be
        drawn between runs (rich draws one live display at a time)."""
        self._close()
        self._bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self._bar.__enter__()

    def _close(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*(exc or (None, None, None)))
            self._bar, self._task = None, None

    def __exit__(self, *exc: Any) -> None:
        self._close(*exc)

    def __call__(self, ev: Any) -> None:  # ev: segkit.train.callbacks.TrainEvent
        if ev.kind == "start":
            self._open()
        bar = self._bar
        if bar is None:
            return
        if ev.kind == "start":
            i = ev.info
            err.print(
                f"[bold]model[/] {i['model']}: {i['params']:,} parameters,"
                f" {i['gflops_per_image']:.2f} GFLOP/image"
                f"  [bold]precision[/] {i['precision']}{' + XLA' if i['jit_compile'] else ''}"
                f"  [bold]device[/] {i['device']}",
                highlight=False,
                soft_wrap=True,
            )
            err.print(
                f"[bold]data[/] train {i['train_pairs']} / valid {i['valid_pairs']} pairs,"
                f" batch {i['batch_size']},"
                f" {i['steps_per_epoch']} steps/epoch  [bold]run[/] {i['run_dir']}"
                + (f"  [bold]resuming at epoch[/] {i['initial_epoch'] + 1}" if i["initial_epoch"] else "")
                + (f"  [bold]time limit[/] {i['time_limit_min']:g} min" if i.get("time_limit_min") else "")
                + (f" ({i['spent_s'] / 60:.1f} spent)"
                   if i.get("time_limit_min") and i.get("spent_s") else ""),
                highlight=False,
                soft_wrap=True,
            )
        elif ev.kind == "epoch_begin":
            if self._task is not None:
                bar.remove_task(self._task)
            self._task = bar.add_task("", total=ev.steps, epoch=f"{ev.epoch}/{ev.epochs}", metrics="")
        elif ev.kind == "batch" and self._task is not None:
            bar.update(self._task, completed=ev.step, metrics=_fmt_logs(ev.logs, ("loss", "fg_dice")))
        elif ev.kind == "epoch_end":
            if self._task is not None:
                bar.remove_task(self._task)
                self._task = None
            err.print(
                f"epoch {ev.epoch}/{ev.epochs}  {_fmt_logs(ev.logs)}  elapsed {_fmt_time(ev.elapsed_s)}"
                f"  eta {_fmt_time(ev.eta_s)}",
                highlight=False,
                soft_wrap=True,
            )
        elif ev.kind == "end":
            self._close()


@handle_errors
def train(
    config: Path = typer.Argument(..., help="YAML config or preset name, e.g. configs/demo.yaml or demo."),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a key, e.g. --set train.epochs=5 (repeatable)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in train.run_dir."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the outputs of a previous run in train.run_dir."
    ),
    time_limit: float = typer.Option(
        None, "--time-limit", min=0.001,
        help="Minutes of training (train.time_limit); stops at an epoch boundary.",
    ),
    fold: int = typer.Option(
        None, "--fold", min=0,
        help="Cross-validation fold k of a dataset prepared with --folds K: validation = fold k, run in "
        "<train.run_dir>/fold_k (segkit cv trains them all).",
    ),
) -> None:
    """Train a segmentation model; outputs go to train.run_dir."""
    cfg = load(config, training_sets(sets, time_limit))
    from segkit.train import train_model

    if fold is not None:
        from segkit.cv import train_fold_config

        cfg = train_fold_config(cfg, fold, option="--fold")
    quiet_tensorflow()
    resume_cmd = shlex.join(["segkit", "train", str(config), *rerun_args(sets, time_limit),
                             *(["--fold", str(fold)] if fold is not None else []), "--resume"])
    set_interrupt_hint(f"`{resume_cmd}` continues the run from its last completed epoch")

    with RichTrainProgress() as progress:
        result = train_model(cfg, resume=resume, overwrite=overwrite, progress=progress)
    best = "n/a" if result.best_value is None else f"{result.best_value:.4f}"
    stop = {"early_stopping": " (early stop)", "time_limit": " (time limit)"}.get(result.stop_reason, "")
    which = "best" if cfg.train.model_checkpoint == "best" else "final"
    out.print(
        f"{which} {result.monitor} {best} at epoch {result.best_epoch}; {result.epochs_done} epochs{stop} in "
        f"{_fmt_time(result.wall_s)}; model {result.best_model}",
        highlight=False,
        soft_wrap=True,
    )
