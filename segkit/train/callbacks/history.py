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
    """Write ``curves.png`` against 1-based epoch: loss and fg_dice (train and val), the Dice of each class
    (val solid, train dashed, one colour per class) and the learning rate (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) + 1 for r in rows]
    classes = sorted({k[len("dice_"):] for r in rows for k in r if k.startswith("dice_")})
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), dpi=100)

    def finite(key: str) -> list[float] | None:
        ys = [r.get(key, float("nan")) for r in rows]
        return ys if any(math.isfinite(y) for y in ys) else None

    for ax, key in zip(axes[:2], ("loss", "fg_dice"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            ys = finite(prefix + key)
            if ys is not None:
                ax.plot(epochs, ys, style, markersize=3, label=("val " if prefix else "train ") + key)
        ax.set_title(key)
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(classes):
        for prefix, style in (("val_", "-"), ("", "--")):
            ys = finite(f"{prefix}dice_{name}")
            if ys is not None:
                label = f"{'val' if prefix else 'train'} {name}"
                axes[2].plot(epochs, ys, style, color=colours(i % 10), label=label)
    axes[2].set_title("Dice per class (val solid, train dashed)")
    lr = finite("lr")
    if lr is not None:
        axes[3].plot(epochs, lr, "-", color="tab:purple", label="learning rate")
        if all(y > 0 for y in lr if math.isfinite(y)):
            axes[3].set_yscale("log")
    axes[3].set_title("learning rate")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
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
