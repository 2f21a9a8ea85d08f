"""The per-epoch history of a run, epochs counted from 1 as on the console and in ``train_summary.json``:
``HistoryCSV`` (``history.csv``, rewritten atomically after every epoch), ``HistoryWriter`` (``history.json``
and ``curves.png``), ``read_history_csv`` and ``renumber_history_csv`` (a 0-based ``history.csv`` of a run
made before, when Keras' ``CSVLogger`` wrote it, becomes 1-based)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from segkit.io.atomic import write_json, write_text, write_with


def read_history_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a ``history.csv`` as dicts of floats (``NA`` and unparsable cells become NaN)."""
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
    """Write ``curves.png`` against the rows' (1-based) epoch: loss and fg_dice (train and val), the Dice of
    each class (val solid, train dashed, one colour per class) and the learning rate (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in rows]
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


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)  # Keras' CSVLogger dialect (excel)
    return buf.getvalue()


def _read_cells(path: Path) -> list[list[str]]:
    """The rows of a CSV file as strings (header first); ``[]`` when it is missing or empty."""
    if not path.is_file():
        return []
    return [r for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8"))) if r]


def history_base(path: Path) -> int:
    """The epoch number of the first row of ``history.csv``: 1 (segkit's convention), or 0 in a file that
    Keras' ``CSVLogger`` wrote (runs made before); 1 when the file has no row."""
    rows = _read_cells(path)
    if len(rows) < 2 or not rows[0] or rows[0][0] != "epoch":
        return 1
    try:
        return 0 if int(float(rows[1][0])) == 0 else 1
    except ValueError:
        return 1


def renumber_history_csv(path: Path) -> bool:
    """Renumber a 0-based ``history.csv`` (``history_base`` 0) from 1, atomically; other cells are kept
    verbatim. Returns whether the file was changed."""
    if history_base(path) != 0:
        return False
    header, *body = _read_cells(path)
    write_text(path, _csv_text([header, *([str(int(float(r[0])) + 1), *r[1:]] for r in body)]))
    return True


def _cell(value: Any) -> str:
    """A log value as Keras' ``CSVLogger`` writes it (``str``; a sequence as a quoted list)."""
    if isinstance(value, str):
        return value
    if np.ndim(value) > 0:
        return f"\"[{', '.join(map(str, np.ravel(value)))}]\""
    return str(value)


class HistoryCSV(keras.callbacks.Callback):
    """After each epoch, rewrite ``history.csv`` atomically with a row for it: ``epoch`` (1-based), then the
    log keys sorted, as Keras' ``CSVLogger`` lays it out (cells missing in a row are ``NA``). A kill leaves
    the file of the last completed write, never half a row.

    Rows already in the file are kept verbatim (a resume appends after them; rows of the epoch being
    repeated or later are replaced); a key that is new to the file becomes a column, ``NA`` in older rows.

    Args:
        path: ``history.csv``.
        append: keep the file's rows (resume); otherwise start an empty history.
    """

    def __init__(self, path: Path, append: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        cells = _read_cells(self.path) if append else []
        self.header: list[str] = cells[0] if cells else ["epoch"]
        self.rows: list[dict[str, str]] = [dict(zip(self.header, r, strict=False)) for r in cells[1:]]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.header = ["epoch", *sorted(set(self.header[1:]) | set(logs))]
        row = {"epoch": str(epoch + 1), **{k: _cell(v) for k, v in logs.items()}}
        self.rows = [r for r in self.rows if _epoch_of(r) <= epoch] + [row]
        body = [[r.get(k, "NA") for k in self.header] for r in self.rows]
        write_text(self.path, _csv_text([self.header, *body]))


def _epoch_of(row: dict[str, str]) -> float:
    try:
        return float(row.get("epoch", "nan"))
    except ValueError:
        return float("nan")


class HistoryWriter(keras.callbacks.Callback):
    """After each epoch, rewrite ``history.json`` (list of per-epoch dicts, epoch 1-based) and ``curves.png``.

    Args:
        json_path: ``history.json``.
        png_path: ``curves.png``.
        previous: rows of epochs completed before a resume (1-based, ``read_history_csv``).
    """

    def __init__(self, json_path: Path, png_path: Path, previous: Sequence[dict[str, float]] = ()) -> None:
        super().__init__()
        self.json_path, self.png_path = Path(json_path), Path(png_path)
        self.rows: list[dict[str, float]] = [dict(r) for r in previous]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = {"epoch": float(epoch + 1)}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.rows = [r for r in self.rows if int(r["epoch"]) <= epoch] + [row]
        write_json(self.json_path, [{k: _json_number(v) for k, v in r.items()} for r in self.rows])
        plot_curves(self.rows, self.png_path)


def _json_number(v: float) -> float | int | None:
    """JSON has no NaN: non-finite values become null; the epoch index stays an int."""
    if not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v
