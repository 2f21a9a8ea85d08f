"""The per-epoch history: ``read_history_csv`` (``CSVLogger``'s file), and ``HistoryWriter``
(``history.json`` and ``curves.png`` after every epoch)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from segkit.io.atomic import write_json, write_with


def read_history_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a ``CSVLogger`` file as dicts of floats (``NA`` and unparsable cells become NaN)."""
    import csv

    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out: list[dict[str, float]] = []
    for row in rows:
        parsed: dict[str, float] = {}
        for k, v in row.items():
            try:
                parsed[k] = float(v)
            except (TypeError, ValueError):
                parsed[k] = float("nan")
        out.append(parsed)
    return out


def plot_curves(rows: Sequence[dict[str, float]], path: Path) -> None:
    """Write ``curves.png``: loss (train/val) and fg_dice (train/val) against 1-based epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, key in zip(axes, ("loss", "fg_dice"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            ys = [r.get(prefix + key, float("nan")) for r in rows]
            if any(math.isfinite(y) for y in ys):
                ax.plot(epochs, ys, style, markersize=3, label=("val " if prefix else "train ") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    try:
        write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


class HistoryWriter(keras.callbacks.Callback):
    """After each epoch, rewrite ``history.json`` (list of per-epoch dicts, epoch 0-based) and ``curves.png``.

    Args:
        json_path: ``history.json``.
        png_path: ``curves.png``.
        previous: rows of epochs completed before a resume.
    """

    def __init__(self, json_path: Path, png_path: Path, previous: Sequence[dict[str, float]] = ()) -> None:
        super().__init__()
        self.json_path, self.png_path = Path(json_path), Path(png_path)
        self.rows: list[dict[str, float]] = [dict(r) for r in previous]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = {"epoch": float(epoch)}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        write_json(self.json_path, [{k: _json_number(v) for k, v in r.items()} for r in self.rows])
        plot_curves(self.rows, self.png_path)


def _json_number(v: float) -> float | int | None:
    """JSON has no NaN: non-finite values become null; the epoch index stays an int."""
    if not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v
