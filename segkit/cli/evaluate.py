"""``segkit evaluate``: per case x class metrics of a trained model (a thin shell over ``evaluate_model``)."""

from __future__ import annotations

import math
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from segkit.cli.common import err, handle_errors, load, out, progress, quiet_tensorflow


@handle_errors
def evaluate(
    config: Path = typer.Argument(..., help="YAML config of the run."),
    model: Path = typer.Option(None, "--model", "-m", help="Model .keras file (default: <train.run_dir>/model.keras)."),
    split: str = typer.Option(None, "--split", help="Split to evaluate: train, valid or test (default: evaluate.split)."),
    out_dir: Path = typer.Option(None, "--out", "-o", help="Report folder (default: <train.run_dir>/evaluation)."),
    sets: list[str] = typer.Option(None, "--set", help="Config override KEY=VALUE, e.g. infer.batch_size=4."),
) -> None:
    """Evaluate a model: Dice, IoU, HD95, ASSD and NSD per case x class on whole volumes.

    Volume cases are segmented on every slice (as `segkit infer` does) and scored against their original label
    volume; when the source files are gone, the written slices are reassembled instead (said in the report).

    Writes evaluation.csv (one row per case x class), evaluation_slices.csv, evaluation.json (per class
    mean/median/std, foreground mean, the seed's dice_coef_multiclass), box plots and a confusion matrix.
    """
    from segkit.errors import ConfigError
    from segkit.evaluate.run import evaluate_model

    if split is not None and split not in ("train", "valid", "test"):
        raise ConfigError(f"unknown split '{split}'", path="--split", hint="use train, valid or test")
    cfg = load(config, sets)
    quiet_tensorflow()
    with ExitStack() as stack:
        bar: dict[str, Any] = {}

        def on_start(total: int) -> None:
            bar["advance"] = stack.enter_context(progress("evaluate", total))

        def on_progress(n: int) -> None:
            bar["advance"](n)

        res = evaluate_model(cfg, model_path=model, split=split, out_dir=out_dir, progress=on_progress, on_start=on_start)
    out.print(summary_table(res.summary))
    seed = res.summary["seed_dice_coef_multiclass"]
    out.print(
        f"seed dice_coef_multiclass (background included, for comparison only): "
        f"{_fmt(seed['probabilities'])} (probabilities), {_fmt(seed['hard_labels'])} (hard labels)"
    )
    if res.summary.get("surface_distance_implementation"):
        out.print(f"surface distances: {res.summary['surface_distance_implementation']}, "
                  f"NSD tolerance {res.summary['nsd_tolerance_mm']:g} mm")
    else:
        err.print("no volume geometry (no dataset.json, or 2D slice cases): surface metrics left empty; "
                  "Dice/IoU on stacked slices")
    out.print(f"per-case reference: {res.summary['reference']}")
    out.print(f"report: {res.json_path}")
    out.print(f"table:  {res.csv_path}")


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table: one row per class, mean +- std (n) of each metric, and the foreground mean."""
    table = Table(title=f"{summary['split']}: {summary['n_cases']} cases, {summary['n_slices']} slices")
    table.add_column("class", no_wrap=True, min_width=15)
    metrics = ("dice", "iou", "hd95_mm", "assd_mm", "nsd")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("pooled slice Dice", justify="right")
    for name, stats in summary["per_class"].items():
        cells = []
        for m in metrics:
            s = stats[m]
            text = f"{_fmt(s['mean'])} ± {_fmt(s['std'])}" if s["mean"] is not None else "-"
            if s["n_inf"]:
                text += f" ({s['n_inf']} missed)"
            cells.append(text)
        table.add_row(name, *cells, _fmt(summary["per_slice"][name]["pooled_dice"]))
    fg = summary["foreground_mean"]
    table.add_row("[bold]foreground mean[/bold]", *[_fmt(fg[m]) for m in metrics], "")
    return table


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
