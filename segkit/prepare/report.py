"""What ``run_prepare`` reports: ``PrepareReport``, the per-split summary of the case records (``summarize``)
and its bar chart ``summary.png`` (``plot_summary``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segkit.config import Config
from segkit.io.atomic import write_with
from segkit.prepare.split import SPLITS


@dataclass
class PrepareReport:
    """What ``run_prepare`` did.

    Attributes:
        out: the dataset folder.
        source: source adapter name.
        n_cases: cases discovered in the raw dataset (all shards).
        done: case ids processed by this run.
        skipped: case ids already complete (checksums matched).
        failures: one line per problem: ``<file>: <reason>``. Non-empty means exit code 2.
        warnings: one line per case worth a look that was still prepared (an all-zero label volume with
            ``prepare.empty_labels: warn``), over all complete cases, and once the dataset is complete one per
            class no training slice holds (``untrained_classes``).
        summary: ``{split: {"cases": n, "slices": n, "pixels": {class_name: n}}}`` over all complete cases
            (pixels counted in the written, resized masks; ``background`` included).
        manifest: ``dataset.json`` when the dataset is complete, else None.
        pending: cases (of other shards) still missing, so ``dataset.json`` is not written yet.
        verify_only: this was a ``--verify`` run (nothing written).
        summary_png: the bar chart, when written.
        peak_rss_mib: largest peak resident memory (MiB) of the processes that ran cases.
        cpu_s: CPU seconds spent on the cases of this run (all workers together).
        coarse: a cascade's (``cascade.enabled``) second dataset, the coarse stage's whole slices at
            ``<out>/coarse``: its own report; None otherwise.
    """

    out: Path | None
    source: str
    n_cases: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest: Path | None = None
    pending: int = 0
    verify_only: bool = False
    summary_png: Path | None = None
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0
    coarse: PrepareReport | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


def summarize(entries: dict[str, dict[str, Any]], cfg: Config) -> dict[str, dict[str, Any]]:
    """``{split: {"cases", "slices", "pixels": {class_name: n}}}`` from case entries
    (records/cases/*.json)."""
    names = ["background", *(c.name for c in cfg.effective_classes)]
    summary: dict[str, dict[str, Any]] = {
        s: {"cases": 0, "slices": 0, "pixels": dict.fromkeys(names, 0)} for s in SPLITS
    }
    for entry in entries.values():
        s = summary[entry["record"]["split"]]
        s["cases"] += 1
        s["slices"] += int(entry["n_slices_written"])
        for name, n in zip(names, entry["pixels"], strict=False):
            s["pixels"][name] += int(n)
    return summary


def untrained_classes(summary: dict[str, dict[str, Any]], slabs: bool = False) -> list[str]:
    """One warning per class with pixels in the valid or test split but none in train: no model trained on
    this dataset can learn it, and its held-out scores will be 0 (with ``prepare.slabs``, a structure that
    lies within a few blocks of the volume). None for a dataset without training cases."""
    if not summary["train"]["cases"]:  # a dataset to evaluate on only (split train: 0)
        return []
    lines = []
    for name in list(summary["train"]["pixels"])[1:]:
        held = [s for s in ("valid", "test") if summary[s]["pixels"].get(name, 0) > 0]
        if held and summary["train"]["pixels"].get(name, 0) == 0:
            where = "the valid and test splits" if len(held) == 2 else f"the {held[0]} split"
            lines.append(f"class {name}: pixels in {where} only, none in train: no model can learn it "
                         + ("(it lies within the blocks held out; other prepare.slabs or seed, or label more "
                            "volumes)" if slabs else "(change the split or seed, or label more cases)"))
    return lines


def plot_summary(summary: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Bar charts (slices per split; foreground pixels per class and split) saved atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    splits = list(summary)
    classes = [c for c in next(iter(summary.values()))["pixels"] if c != "background"]
    fig = Figure(figsize=(11, 4))  # no pyplot: no global figure state, Agg canvas only
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.5]})
    colours = dict(zip(SPLITS, ("#4c72b0", "#dd8452", "#55a868"), strict=True))  # the same in both panels
    counts = [summary[s]["slices"] for s in splits]
    bars = ax1.bar(splits, counts, color=[colours.get(s, "#8c8c8c") for s in splits])
    ax1.bar_label(bars, labels=[f"{summary[s]['slices']}\n({_cases(summary[s]['cases'])})" for s in splits],
                  fontsize=8, padding=2)
    ax1.set_ylim(0, max([*counts, 1]) * 1.25)  # room for the two-line labels below the panel title
    ax1.set_ylabel("slices")
    ax1.set_title("slices per split")
    width = 0.8 / max(len(splits), 1)
    x = np.arange(len(classes))
    for i, s in enumerate(splits):
        ax2.bar(x + i * width, [summary[s]["pixels"][c] for c in classes], width, label=s,
                color=colours.get(s, "#8c8c8c"))
    many = len(classes) > 6
    ax2.set_xticks(x + width * (len(splits) - 1) / 2, classes, rotation=30 if many else 0,
                   ha="right" if many else "center")
    ax2.set_ylabel("pixels (resized masks)")
    ax2.set_title("foreground pixels per class")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    write_with(path, lambda p: fig.savefig(p, dpi=100))
    return path


def _cases(n: int) -> str:
    return f"{n} case" if n == 1 else f"{n} cases"
