"""``segkit evaluate``: per case x class metrics of a trained model (a thin shell over ``evaluate_model``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from segkit.cli.common import RichProgress, err, handle_errors, load, out, quiet_tensorflow


@handle_errors
def evaluate(
    config: Path = typer.Argument(None, help="YAML config of the run (optional with --predictions)."),
    model: list[Path] = typer.Option(
        None, "--model", "-m",
        help="Model .keras file (default: <train.run_dir>/model.keras, or every fold's model of a segkit cv "
        "run); repeat it to score an ensemble.",
    ),
    split: str = typer.Option(
        None, "--split", help="Split to evaluate: train, valid or test (default: evaluate.split)."
    ),
    out_dir: Path = typer.Option(
        None, "--out", "-o", help="Report folder (default: <train.run_dir>/evaluation)."
    ),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Config override KEY=VALUE, e.g. infer.batch_size=4."
    ),
    predictions: Path = typer.Option(
        None, "--predictions", help="Score the label volumes in this folder (any tool's) instead of a model."
    ),
    reference: Path = typer.Option(
        None, "--reference", help="With --predictions: the reference label volumes."
    ),
    map_predictions: bool = typer.Option(
        False, "--map-predictions",
        help="With --predictions and CONFIG: map predicted raw label values like prepare.",
    ),
) -> None:
    """Evaluate a model: Dice, IoU, HD95, ASSD and NSD per case x class on whole volumes.

    Volume cases are segmented on every slice (as `segkit infer` does) and scored against their original label
    volume; when the source files are gone, the written slices are reassembled instead (said in the report).

    Writes evaluation.csv (one row per case x class), evaluation_slices.csv, evaluation.json (per class
    mean/median/std, foreground mean, the seed's dice_coef_multiclass), box plots and a confusion matrix.

    With --predictions DIR --reference DIR it scores label volumes made by any tool (segkit, nnU-Net,
    TotalSegmentator), paired by case id, with the same metrics and report; CONFIG then only names the
    classes.
    """
    from segkit.errors import ConfigError

    if predictions is not None or reference is not None:
        if model or split is not None:
            raise ConfigError("--model/--split score a model; --predictions scores label volumes",
                              hint="pick one")
        _evaluate_predictions(config, predictions, reference, out_dir, sets, map_predictions)
        return
    if config is None:
        raise ConfigError("missing CONFIG",
                          hint="segkit evaluate CONFIG, or --predictions DIR --reference DIR")
    from segkit.evaluate.run import evaluate_model

    if split is not None and split not in ("train", "valid", "test"):
        raise ConfigError(f"unknown split '{split}'", path="--split", hint="use train, valid or test")
    cfg = load(config, sets)
    quiet_tensorflow()
    with RichProgress() as bar:
        res = evaluate_model(cfg, model_path=list(model) if model else None, split=split, out_dir=out_dir,
                             progress=bar)
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


def _evaluate_predictions(
    config: Path | None,
    predictions: Path | None,
    reference: Path | None,
    out_dir: Path | None,
    sets: list[str] | None,
    map_predictions: bool,
) -> None:
    from segkit.errors import ConfigError
    from segkit.evaluate.predictions import ScoringOptions, evaluate_predictions

    if predictions is None or reference is None:
        raise ConfigError("--predictions and --reference go together", hint="give both folders")
    if map_predictions and config is None:
        raise ConfigError("--map-predictions needs CONFIG (its prepare.label_map)", hint="pass the config")
    cfg = load(config, sets) if config is not None else None
    target = out_dir if out_dir is not None else Path(predictions) / "evaluation"
    with RichProgress() as bar:
        res = evaluate_predictions(predictions, reference, target, cfg=cfg,
                                   options=ScoringOptions(map_predictions=map_predictions), progress=bar)
    s = res.summary
    out.print(summary_table(s))
    out.print(f"surface distances: {s['surface_distance_implementation']}, "
              f"NSD tolerance {s['nsd_tolerance_mm']:g} mm")
    out.print(f"report: {res.json_path}")
    out.print(f"table:  {res.csv_path}")


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table: one row per class, mean +- std (n) of each metric, and the foreground mean (plus the
    pooled slice Dice when the report has slices)."""
    per_slice = summary.get("per_slice")
    if "split" in summary:
        title = f"{summary['split']}: {summary['n_cases']} cases, {summary['n_slices']} slices"
    else:
        title = f"{summary['predictions']}: {summary['n_cases']} cases"
    table = Table(title=title)
    table.add_column("class", no_wrap=True, min_width=15)
    metrics = ("dice", "iou", "hd95_mm", "assd_mm", "nsd")
    for m in metrics:
        table.add_column(m, justify="right")
    if per_slice:
        table.add_column("pooled slice Dice", justify="right")
    for name, stats in summary["per_class"].items():
        cells = []
        for m in metrics:
            s = stats[m]
            text = f"{_fmt(s['mean'])} ± {_fmt(s['std'])}" if s["mean"] is not None else "-"
            if s["n_inf"]:
                text += f" ({s['n_inf']} missed)"
            cells.append(text)
        table.add_row(name, *cells, *([_fmt(per_slice[name]["pooled_dice"])] if per_slice else []))
    fg = summary["foreground_mean"]
    table.add_row("[bold]foreground mean[/bold]", *[_fmt(fg[m]) for m in metrics],
                  *([""] if per_slice else []))
    return table


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
