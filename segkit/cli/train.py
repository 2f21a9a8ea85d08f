"""`segkit train CONFIG [--set key=value ...] [--resume] [--overwrite]`: train a model into ``train.run_dir``.

The command loads the config (overrides validated like the file), calls ``segkit.train.train_model`` once and
draws its progress events with rich on stderr: the run facts at start, a bar per epoch with ETA and live
metrics, one summary line per epoch. The result (best monitored value, run directory) goes to stdout.
"""

from __future__ import annotations

import math
import shlex
import threading
import time
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
    line per finished epoch (also when stderr is not a terminal, e.g. in CI logs).

    When stderr is not a terminal (a SLURM log, ``| tee``) there is no live bar; instead a status line is
    printed whenever ``interval_s`` passed without a line: the step, running metrics and ETA within an epoch,
    the first epoch's graph compile (no step has finished yet), validation, and the post-processing choice
    after training. In a terminal the bar says the same (compiling, validating, post-processing).
    """

    def __init__(self, interval_s: float = 25.0) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._interval_s = interval_s
        self._status = ""  # what the run is doing now (non-terminal status lines)
        self._last_line = time.monotonic()
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> RichTrainProgress:
        return self

    def _open(self) -> None:
        """The live bar exists from a run's start event to its end event, so other bars (cv's scoring) can be
        drawn between runs (rich draws one live display at a time)."""
        self._close()
        self._bar = Progress(
            TextColumn("[bold]{task.fields[epoch]}"),
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
        self._t0 = self._last_line = time.monotonic()
        if not err.is_terminal:
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="segkit-progress", daemon=True)
            self._beat.start()

    def _close(self, *exc: Any) -> None:
        if self._beat is not None:
            self._stop.set()
            self._beat.join()
            self._beat = None
        if self._bar is not None:
            self._bar.__exit__(*(exc or (None, None, None)))
            self._bar, self._task = None, None

    def __exit__(self, *exc: Any) -> None:
        self._close(*exc)

    def _heartbeat(self) -> None:
        """Non-terminal: print the status line when nothing was printed for ``interval_s``."""
        while not self._stop.wait(min(1.0, self._interval_s / 4)):
            if self._status and time.monotonic() - self._last_line >= self._interval_s:
                self._line(f"{self._status}  elapsed {_fmt_time(time.monotonic() - self._t0)}")

    def _line(self, text: str) -> None:
        self._last_line = time.monotonic()
        err.print(text, highlight=False, soft_wrap=True, markup=False)

    def _show(self, epoch: str, completed: int, total: int | None, metrics: str) -> None:
        """Update the live bar (terminal) and the status line (otherwise)."""
        self._status = f"{epoch}  step {completed}/{total if total else '?'}  {metrics}".rstrip()
        if self._bar is None:
            return
        if self._task is None:
            self._task = self._bar.add_task("", total=total, epoch=epoch, metrics=metrics)
        self._bar.update(self._task, completed=completed, total=total, epoch=epoch, metrics=metrics)

    def _drop_task(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.remove_task(self._task)
        self._task = None

    def __call__(self, ev: Any) -> None:  # ev: segkit.train.callbacks.TrainEvent
        if ev.kind == "start":
            self._open()
        if self._bar is None:
            return
        if ev.kind == "start":
            for line in _start_lines(ev.info):
                err.print(line, highlight=False, soft_wrap=True)
            self._last_line = time.monotonic()
        elif ev.kind == "epoch_begin":
            self._drop_task()
            first = not self._status  # the session's first epoch traces (and XLA-compiles) the model
            note = "compiling the model (first steps of a run)" if first else ""
            self._show(f"epoch {ev.epoch}/{ev.epochs}", 0, ev.steps, note)
        elif ev.kind == "batch":
            done = ev.steps is not None and ev.step >= ev.steps
            metrics = _fmt_logs(ev.logs, ("loss", "fg_dice"))
            eta = f"  eta {_fmt_time(ev.eta_s)}" if ev.eta_s is not None else ""
            self._show(f"epoch {ev.epoch}/{ev.epochs}", ev.step, ev.steps,
                       f"{metrics}{eta}" + ("  validating" if done else ""))
        elif ev.kind == "epoch_end":
            self._drop_task()
            self._status = f"after epoch {ev.epoch}/{ev.epochs}: checkpoints, preview, run summary"
            self._line(
                f"epoch {ev.epoch}/{ev.epochs}  {_fmt_logs(ev.logs)}  elapsed {_fmt_time(ev.elapsed_s)}"
                f"  eta {_fmt_time(ev.eta_s)}"
            )
        elif ev.kind in ("task", "task_step"):
            if ev.kind == "task":
                self._drop_task()
                self._line(f"{ev.info.get('task', 'after training')}: {ev.steps} slices to segment "
                           "(choosing test-time flips and the component filter on the validation cases)")
            self._show(str(ev.info.get("task", "after training")), ev.step, ev.steps, "")
        elif ev.kind == "end":
            self._status = ""
            self._close()


def _start_lines(i: dict[str, Any]) -> list[str]:
    """The two lines of run facts printed at a run's start."""
    return [
        f"[bold]segkit[/] {i.get('segkit_version', '?')}  "
        f"[bold]model[/] {i['model']}: {i['params']:,} parameters,"
        f" {i['gflops_per_image']:.2f} GFLOP/image"
        f"  [bold]precision[/] {i['precision']}{' + XLA' if i['jit_compile'] else ''}"
        f"  [bold]device[/] {i['device']}"
        + (f"  [bold]strategy[/] {i['strategy']}" if i.get("strategy") else ""),
        f"[bold]data[/] train {i['train_pairs']} / valid {i['valid_pairs']} pairs,"
        f" batch {i['batch_size']},"
        f" {i['steps_per_epoch']} steps/epoch  [bold]run[/] {i['run_dir']}"
        + (f"  [bold]resuming at epoch[/] {i['initial_epoch'] + 1}" if i["initial_epoch"] else "")
        + (f"  [bold]time limit[/] {i['time_limit_min']:g} min" if i.get("time_limit_min") else "")
        + (f" ({i['spent_s'] / 60:.1f} spent)" if i.get("time_limit_min") and i.get("spent_s") else ""),
    ]


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

    from segkit.cv import train_fold  # a fold trains under its lock: never resumed by two jobs at once

    with RichTrainProgress() as progress:
        fit = train_model if fold is None else train_fold
        result = fit(cfg, resume=resume, overwrite=overwrite, progress=progress)
    which = "best" if cfg.train.model_checkpoint == "best" else "final"
    for stage, res in (("coarse stage: ", result.coarse), ("fine stage: " if result.coarse else "", result)):
        if res is None:
            continue
        best = "n/a" if res.best_value is None else f"{res.best_value:.4f}"
        stop = {"early_stopping": " (early stop)", "time_limit": " (time limit)"}.get(res.stop_reason, "")
        out.print(
            f"{stage}{which} {res.monitor} {best} at epoch {res.best_epoch}; {res.epochs_done} epochs{stop}"
            f" in {_fmt_time(res.wall_s)}; model {res.best_model}",
            highlight=False,
            soft_wrap=True,
        )
