"""Evaluate a trained model on one split: per slice, pooled, and per case x class on whole volumes.

Steps of ``evaluate_model``:

1. load ``<run_dir>/model.keras`` (or ``--model``) and check its class count against the config;
2. predict every slice PNG of ``<data.dir>/<split>`` in batches of ``infer.batch_size``; per slice and pooled
   Dice / IoU per foreground class; the pixel confusion matrix; the seed experiments'
   ``dice_coef_multiclass``. These numbers cover only the slices ``prepare`` wrote (with ``empty_slices:
   fraction`` / ``drop`` most label-free slices are not among them);
3. per case x class Dice, IoU, HD95, ASSD (mm, with the case's spacing) and NSD at
   ``evaluate.nsd_tolerance_mm``, by the kind of case in ``<data.dir>/dataset.json`` (read as
   ``segkit.prepare.record.CaseRecord``):

   - a volume case whose source image and label files (``CaseRecord.image`` / ``.label``) still exist
     with the recorded shape: the image is loaded and EVERY slice is predicted exactly as ``segkit infer``
     does (``segkit.predict.volume.predict_volume`` with the case's recorded intensity recipe, flip TTA per
     ``infer.tta``, largest component per ``infer.largest_component``); the reference is the ORIGINAL label
     volume mapped to class ids as ``prepare`` did (``segkit.prepare.slicing.map_labels`` with the
     dataset's ``prepare`` section), at the original geometry. False positives on slices that ``prepare`` did
     not write are counted. ``evaluation.json`` says ``"reference": "original label volumes"``;
   - a volume case whose source files are gone (dataset moved): fallback to the predicted and reference
     slice PNGs reassembled into the original geometry (``segkit.prepare.slicing.reassemble_volume``; slices
     not written count as background in both), with a warning in the log and
     ``"reference": "reassembled written slices"``;
   - a 2D case (``kind == "slices2d"``, e.g. chest-CT, whose "spacing" is pixels) and every case
     of a dataset without dataset.json (the seed datasets): the written slices stacked, Dice / IoU only;
     surface metrics are left empty (no spacing in mm). ``"reference": "stacked written slices"``.

   A cascade (``cascade.enabled``) segments each source volume with both stages
   (``segkit.predict.cascade``); its slice PNGs (step 2) are the reference-label crops the fine stage trained
   on, so a case without its source files falls back to them with ``"reference": "reassembled reference
   crops (cascade: the coarse stage not run)"``, an upper bound.

   ``evaluation.json`` holds the per-case reference in ``reference_per_case`` and the overall one in
   ``reference`` ("mixed" when cases differ);
4. write ``evaluation.csv`` (one row per case x class), ``evaluation_slices.csv`` (one row per slice x class),
   ``evaluation.json`` (summary), ``boxplot_<metric>.png`` and ``confusion_matrix.png``.

Empty-reference rules follow ``segkit.metrics.overlap`` and ``segkit.metrics.surface``.

Example:
    >>> res = evaluate_model(cfg)
    >>> res.summary["foreground_mean"]["dice"]
    0.93
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from segkit.metrics.overlap import (
    Counts,
    class_counts,
    confusion_matrix,
    dice_coef_multiclass,
    dice_from_counts,
    foreground_mean,
    iou_from_counts,
    one_hot,
    overlap_metrics,
)
from segkit.metrics.scores import ScoreTable
from segkit.metrics.surface import IMPLEMENTATION, surface_metrics
from segkit.postprocess.components import FOREGROUND, LargestComponent
from segkit.progress import NULL_PROGRESS, Part, Progress

if TYPE_CHECKING:
    from segkit.config import Config
    from segkit.predict.cases import DatasetCases
    from segkit.prepare.record import CaseRecord

logger = logging.getLogger(__name__)

METRICS = ("dice", "iou", "hd95_mm", "assd_mm", "nsd")
CASE_COLUMNS = (
    "case_id", "class_id", "class_name", "dice", "iou", "hd95_mm", "assd_mm", "nsd",
    "tp", "fp", "fn", "ref_voxels", "pred_voxels", "fp_volume_mm3",
)
SLICE_COLUMNS = ("stem", "case_id", "class_id", "class_name", "dice", "iou", "tp", "fp", "fn")
SEED_NOTE = (
    "seed experiments' dice_coef_multiclass: soft Dice over ALL channels including background, smooth=1, "
    "mean over slices; inflated by the background, not comparable to the per-class foreground Dice"
)
REF_ORIGINAL = "original label volumes"
REF_REASSEMBLED = "reassembled written slices"
REF_STACKED = "stacked written slices"
REF_CROPS = "reassembled reference crops (cascade: the coarse stage not run)"


@dataclass
class EvaluationResult:
    """What ``evaluate_model`` computed and wrote."""

    out_dir: Path
    csv_path: Path
    slices_csv_path: Path
    json_path: Path
    plot_paths: list[Path]
    confusion_path: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)


def case_rows(
    case_id: str,
    pred: npt.NDArray[np.integer],
    ref: npt.NDArray[np.integer],
    classes: Sequence[tuple[int, str]],
    spacing: Sequence[float] | None,
    tolerance_mm: float,
) -> list[dict[str, Any]]:
    """Per-class metrics of one case (one row per class; surface metrics None (empty) when ``spacing`` is
    None).

    Args:
        case_id: the case.
        pred: (X, Y, Z) predicted ids.
        ref: (X, Y, Z) reference ids.
        classes: (id, name) of each foreground class.
        spacing: mm per axis of the arrays, or None.
        tolerance_mm: NSD tolerance.
    """
    vv = float(np.prod(spacing)) if spacing is not None else 1.0
    ov = overlap_metrics(pred, ref, [c for c, _ in classes], voxel_volume_mm3=vv)
    rows = []
    for cid, name in classes:
        m = ov[cid]
        s: Mapping[str, float | None]
        if spacing is not None:
            s = surface_metrics(pred == cid, ref == cid, spacing, tolerance_mm)
        else:
            s = {"hd95": None, "assd": None, "nsd": None}
        rows.append(
            {
                "case_id": case_id, "class_id": cid, "class_name": name,
                "dice": m["dice"], "iou": m["iou"],
                "hd95_mm": s["hd95"], "assd_mm": s["assd"], "nsd": s["nsd"],
                "tp": int(m["tp"]), "fp": int(m["fp"]), "fn": int(m["fn"]),
                "ref_voxels": int(m["ref_voxels"]), "pred_voxels": int(m["pred_voxels"]),
                "fp_volume_mm3": m["fp_volume_mm3"],
            }
        )
    return rows


def summarize_rows(rows: Sequence[Mapping[str, Any]], classes: Sequence[tuple[int, str]]) -> dict[str, Any]:
    """Per class mean / median / std of every metric, the foreground mean, and empty-reference counts.

    Returns:
        ``{"per_class": {name: {metric: summarize(...)}}, "foreground_mean": {metric: float | None},
        "empty_reference": {name: {"cases", "cases_with_false_positives", "fp_volume_mm3"}}}``.
    """
    per_class: dict[str, Any] = {}
    empty: dict[str, Any] = {}
    table = ScoreTable([cid for cid, _ in classes])
    table.extend(rows, METRICS, key="class_id")
    for cid, name in classes:
        mine = [r for r in rows if r["class_id"] == cid]
        per_class[name] = {m: table.summary(m, cid) for m in METRICS}
        no_ref = [r for r in mine if r["ref_voxels"] == 0]
        empty[name] = {
            "cases": len(no_ref),
            "cases_with_false_positives": sum(1 for r in no_ref if r["pred_voxels"] > 0),
            "fp_volume_mm3": float(sum(r["fp_volume_mm3"] for r in no_ref)),
        }
    fg = {m: foreground_mean(per_class[n][m]["mean"] for _, n in classes) for m in METRICS}
    return {"per_class": per_class, "foreground_mean": fg, "empty_reference": empty}


def evaluate_model(
    cfg: Config,
    model_path: Path | Sequence[Path] | None = None,
    split: str | None = None,
    out_dir: Path | None = None,
    progress: Progress = NULL_PROGRESS,
) -> EvaluationResult:
    """Evaluate a model on a prepared split and write the reports.

    Args:
        cfg: the config (data.dir, classes, infer.batch_size, evaluate.nsd_tolerance_mm, train.run_dir).
        model_path: ``.keras`` file, or several (their ensemble); default the run folder's model
            (``<train.run_dir>/model.keras``, or every fold's model of a cross-validation run).
        split: "train", "valid" or "test"; default ``evaluate.split``.
        out_dir: default ``evaluate.output_dir`` or ``<train.run_dir>/evaluation``.
        progress: started once (description ``"evaluate"``) with the number of slices: the slice PNGs + every
            slice of the volumes whose source files exist; then advanced by the slices done after each batch
            (slice PNGs, then whole volumes).

    Returns:
        ``EvaluationResult`` with the rows, the summary and the paths written.

    Raises:
        ModelError: missing model, or a class count that differs from the config.
        DataError: missing split folder, unpaired or unreadable files, a bad dataset.json, an unreadable
            source volume or unexpected label values in it.
    """
    from segkit.data.pipeline import split_pairs
    from segkit.postprocess import apply_postprocessing
    from segkit.predict.cases import dataset_cases
    from segkit.predict.models import load_models, resolve_models
    from segkit.predict.volume import slices_visited

    split = split or cfg.evaluate.split
    run_dir = Path(cfg.train.run_dir)
    paths, pp_dir = resolve_models(run_dir, model_path)
    out_dir = Path(out_dir) if out_dir is not None else (cfg.evaluate.output_dir or run_dir / "evaluation")
    cfg = apply_postprocessing(cfg, pp_dir)
    if len(paths) > 1 and model_path is None and split != "test":
        logger.warning("the %s cases trained the fold models of this ensemble (only test is held out)", split)
    model = load_models(paths, cfg, precision=cfg.train.precision)
    pairs = split_pairs(cfg, split)
    cases = dataset_cases(cfg, split)
    progress.start(len(pairs) + sum(slices_visited(r.geometry, cfg) for r in cases.with_sources.values()),
                   "evaluate")
    scores = _score_slices(model, cfg, pairs, list(cases.records), progress)
    volume_model = model
    if cfg.cascade.enabled:  # whole volumes go through both stages
        from segkit.predict.cascade import load_cascade

        volume_model = load_cascade(run_dir, cfg, fine=model, precision=cfg.train.precision)
    rows, reference = _case_rows(volume_model, cfg, scores, cases, progress)
    fallback = sorted(c for c, r in reference.items() if r in (REF_REASSEMBLED, REF_CROPS))
    if fallback:
        logger.warning(
            "%d volume case(s) without their source files (%s): reference = %s; label-free slices that "
            "prepare did not write are not evaluated",
            len(fallback), ", ".join(fallback[:5]) + (" ..." if len(fallback) > 5 else ""),
            " / ".join(sorted({reference[c] for c in fallback})),
        )
    volumetric = any(r != REF_STACKED for r in reference.values())
    kinds = sorted(set(reference.values()))
    logger.info("per-case reference: %s", ", ".join(kinds) or "none")

    classes = [(c.id, c.name) for c in cfg.effective_classes]
    tol = float(cfg.evaluate.nsd_tolerance_mm)
    summary = {
        "model": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
        "split": split,
        "data_dir": str(Path(cfg.data.dir)),
        "n_slices": len(pairs),
        "n_cases": len(reference),
        "volumetric": volumetric,
        "reference": kinds[0] if len(kinds) == 1 else ("mixed" if kinds else None),
        "reference_per_case": reference,
        "largest_component": _lcc_json(cfg.infer.largest_component) if cases.with_sources else None,
        "tta": bool(cfg.infer.tta),
        "surface_distance_implementation": IMPLEMENTATION if volumetric else None,
        # a cascade's slice PNGs are the reference-label crops: its slice scores assume a perfect first stage
        "slice_images": ("reference-label crops (cascade: perfect localisation)" if cfg.cascade.enabled
                         else "written slices"),
        "nsd_tolerance_mm": tol,
        **summarize_rows(rows, classes),
        **scores.summary(),
    }
    return write_reports(out_dir, rows, scores.rows, summary, classes, scores.conf)


def _score_slices(
    model: Any, cfg: Config, pairs: Sequence[tuple[Path, Path]], case_ids: Sequence[str], progress: Progress
) -> _SliceScores:
    """Predict and score every slice PNG of the split, in batches of ``infer.batch_size``."""
    from segkit.data.pipeline import case_of_stem, context_table, read_sample
    from segkit.predict.slices import make_predictor
    from segkit.prepare.manifest import MANIFEST_FILE

    k = cfg.data.context_slices
    context = context_table(pairs, k, Path(cfg.data.dir) / MANIFEST_FILE) if k else None
    bs = int(cfg.infer.batch_size)
    predictor = make_predictor(model, bs)
    scores = _SliceScores([(c.id, c.name) for c in cfg.effective_classes], cfg.num_classes)
    for s in range(0, len(pairs), bs):
        idx = list(range(s, min(s + bs, len(pairs))))
        samples = [read_sample(pairs, i, cfg, context) for i in idx]
        probs = _predict_samples(model, [img for img, _ in samples], cfg, predictor)
        for i, (_, ref), p in zip(idx, samples, probs, strict=True):
            stem = pairs[i][0].stem
            scores.add(stem, *case_of_stem(stem, case_ids), p, ref)
        progress.advance(len(idx))
    return scores


def _case_rows(
    model: Any, cfg: Config, scores: _SliceScores, cases: DatasetCases, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Per case x class rows by the kind of each case (see the module docs), and each case's reference."""
    from segkit.prepare.record import VOLUME
    from segkit.prepare.slicing import reassemble_volume

    classes = [(c.id, c.name) for c in cfg.effective_classes]
    tol = float(cfg.evaluate.nsd_tolerance_mm)
    preds, refs = scores.preds, scores.refs
    rows: list[dict[str, Any]] = []
    reference: dict[str, str] = {}
    for case_id in sorted(set(preds) | set(cases.with_sources)):
        record = cases.records.get(case_id)
        if record is not None and record.kind == VOLUME:
            volumes = None
            if case_id in cases.with_sources:
                volumes = _original_case(model, case_id, record, cfg, cases.label_cfg, progress)
            if volumes is None:
                if case_id not in preds:
                    continue
                volumes = (reassemble_volume(preds[case_id], record.geometry),
                           reassemble_volume(refs[case_id], record.geometry))
                reference[case_id] = REF_CROPS if record.geometry.crop is not None else REF_REASSEMBLED
            else:
                reference[case_id] = REF_ORIGINAL
            rows += case_rows(case_id, volumes[0], volumes[1], classes, list(record.geometry.spacing), tol)
        else:
            if cases.manifest is not None and record is None:
                logger.warning("case %s is not in dataset.json: slices stacked, no surface metrics", case_id)
            order = sorted(preds[case_id])
            pv = np.stack([preds[case_id][j] for j in order])
            rv = np.stack([refs[case_id][j] for j in order])
            rows += case_rows(case_id, pv, rv, classes, None, tol)
            reference[case_id] = REF_STACKED
    return rows, reference


class _SliceScores:
    """Per-slice accumulators of ``evaluate_model``: slice rows, pooled counts, confusion matrix, the seed's
    metric, and every slice's prediction and reference by case (for the volume step)."""

    def __init__(self, classes: Sequence[tuple[int, str]], nc: int) -> None:
        self.classes, self.nc = list(classes), nc
        self.rows: list[dict[str, Any]] = []
        self.pooled = {cid: Counts(0, 0, 0, 0) for cid, _ in classes}
        self.conf = np.zeros((nc, nc), dtype=np.int64)
        self.seed_soft: list[float] = []
        self.seed_hard: list[float] = []
        self.preds: dict[str, dict[int, npt.NDArray[np.uint8]]] = {}
        self.refs: dict[str, dict[int, npt.NDArray[np.uint8]]] = {}

    def add(self, stem: str, case_id: str, slice_index: int | None, probs: npt.NDArray[np.float32],
            ref: npt.NDArray[np.uint8]) -> None:
        """Score one slice from its (H, W, K) probabilities and (H, W) reference."""
        pred = probs.argmax(-1).astype(np.uint8)
        counts = class_counts(pred, ref, [cid for cid, _ in self.classes])
        for cid, name in self.classes:
            c = counts[cid]
            self.pooled[cid] = Counts(*(a + b for a, b in zip(self.pooled[cid], c, strict=True)))
            self.rows.append(
                {"stem": stem, "case_id": case_id, "class_id": cid, "class_name": name,
                 "dice": dice_from_counts(c.tp, c.fp, c.fn), "iou": iou_from_counts(c.tp, c.fp, c.fn),
                 "tp": c.tp, "fp": c.fp, "fn": c.fn}
            )
        self.conf += confusion_matrix(pred, ref, self.nc)
        ref1h = one_hot(ref, self.nc)
        self.seed_soft.append(dice_coef_multiclass(ref1h, probs))
        self.seed_hard.append(dice_coef_multiclass(ref1h, one_hot(pred, self.nc)))
        from segkit.data.pipeline import is_view_stem

        if slice_index is None and is_view_stem(stem):  # prepare.extra_axes' slices: scored, not stacked
            return
        key = slice_index if slice_index is not None else len(self.preds.get(case_id, {}))
        self.preds.setdefault(case_id, {})[key] = pred
        self.refs.setdefault(case_id, {})[key] = ref

    def summary(self) -> dict[str, Any]:
        """The ``per_slice``, ``seed_dice_coef_multiclass`` and ``confusion_matrix`` parts of the report."""
        table = ScoreTable([cid for cid, _ in self.classes])
        table.extend(self.rows, ("dice", "iou"), key="class_id")
        per_slice = {
            name: {
                "pooled_dice": dice_from_counts(*self.pooled[cid][:3]),
                "pooled_iou": iou_from_counts(*self.pooled[cid][:3]),
                "dice": table.summary("dice", cid),
                "iou": table.summary("iou", cid),
            }
            for cid, name in self.classes
        }
        return {
            "per_slice": _json_clean(per_slice),
            "seed_dice_coef_multiclass": {
                "probabilities": float(np.mean(self.seed_soft)) if self.seed_soft else None,
                "hard_labels": float(np.mean(self.seed_hard)) if self.seed_hard else None,
                "note": SEED_NOTE,
            },
            "confusion_matrix": {
                "labels": ["background", *[n for _, n in self.classes]],
                "rows": "reference",
                "columns": "prediction",
                "matrix": self.conf.tolist(),
            },
        }


def _lcc_json(value: LargestComponent) -> bool | list[int | str]:
    if value is None:
        return False
    return value if isinstance(value, bool) else [v if v == FOREGROUND else int(v) for v in value]


def _predict_samples(
    model: Any, images: Sequence[npt.NDArray[np.float32]], cfg: Config, predictor: Callable[..., Any]
) -> list[npt.NDArray[np.float32]]:
    """Probabilities per image; runs of equal-sized images go through the model together (with
    ``data.patches`` slices keep their prepared size, which differs between cases)."""
    from segkit.predict.slices import predict_probs

    out: list[npt.NDArray[np.float32]] = []
    start = 0
    while start < len(images):
        end = start + 1
        while end < len(images) and images[end].shape == images[start].shape:
            end += 1
        x = np.stack(images[start:end])
        out.extend(predict_probs(model, x, int(cfg.infer.batch_size), bool(cfg.infer.tta), cfg.infer.overlap,
                                 predictor))
        start = end
    return out


def _original_case(
    model: Any, case_id: str, record: CaseRecord, cfg: Config, label_cfg: Config, progress: Progress
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]] | None:
    """(prediction, reference) of one volume case on ALL its slices, in the original geometry.

    The image is segmented as ``segkit infer`` does it (``predict_volume`` with the case's recorded intensity
    recipe, flip TTA and component filter per ``cfg.infer``); the reference is the source label volume mapped
    to class ids with ``label_cfg.prepare`` (``segkit.predict.cases.read_source_case``).

    Returns:
        ``(pred, ref)`` (X, Y, Z) uint8, or None (with a warning, its slices counted as done) when the source
        files no longer have the recorded shape.

    Raises:
        DataError: an unreadable source file or unexpected label values.
    """
    from segkit.postprocess.components import keep_largest
    from segkit.predict.cases import read_source_case
    from segkit.predict.volume import VolumeSettings, predict_volume, slices_visited

    case = read_source_case(case_id, record, label_cfg)
    if case is None:
        progress.advance(slices_visited(record.geometry, cfg))
        return None
    settings = VolumeSettings(int(cfg.infer.batch_size), bool(cfg.infer.tta))
    pred = predict_volume(model, case.image, case.geometry, cfg, settings, Part(progress))
    return keep_largest(pred.labels, cfg.infer.largest_component, cfg), case.reference


def _json_clean(obj: Any) -> Any:
    """NaN / inf -> None, recursively (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    return obj


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else "" if r[c] is None else r[c])
                    for c in columns})
    return buf.getvalue()


def write_reports(
    out_dir: Path,
    rows: list[dict[str, Any]],
    slice_rows: list[dict[str, Any]],
    summary: dict[str, Any],
    classes: Sequence[tuple[int, str]],
    conf: npt.NDArray[np.int64],
) -> EvaluationResult:
    from segkit.io.atomic import write_json, write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "evaluation.csv"
    slices_csv = out_dir / "evaluation_slices.csv"
    json_path = out_dir / "evaluation.json"
    write_text(csv_path, _csv_text(rows, CASE_COLUMNS))
    write_text(slices_csv, _csv_text(slice_rows, SLICE_COLUMNS))
    summary["files"] = {"csv": csv_path.name, "slices_csv": slices_csv.name}
    boxplots = [boxplot(out_dir / f"boxplot_{m}.png", rows, m, classes) for m in METRICS]
    plots = [p for p in boxplots if p is not None]
    conf_path = confusion_plot(out_dir / "confusion_matrix.png", conf, summary["confusion_matrix"]["labels"])
    summary["files"].update({"boxplots": [p.name for p in plots], "confusion_matrix": conf_path.name})
    write_json(json_path, _json_clean(summary))
    logger.info("wrote %s", json_path)
    return EvaluationResult(out_dir, csv_path, slices_csv, json_path, plots, conf_path, summary, rows)


def boxplot(
    path: Path, rows: Sequence[Mapping[str, Any]], metric: str, classes: Sequence[tuple[int, str]]
) -> Path | None:
    """Box plot of one metric per class over cases (finite values only), each case's value drawn over it as a
    point (a box of one or two cases is only a line); the tick names the class and its number of cases. None
    when no class has a value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segkit.io.atomic import write_with

    data, names = [], []
    for cid, name in classes:
        vals = [
            float(r[metric])
            for r in rows
            if r["class_id"] == cid and r[metric] is not None and math.isfinite(float(r[metric]))
        ]
        if vals:
            data.append(vals)
            names.append(name)
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(1.2 + 1.0 * len(data), 3.5), dpi=100)
    ax.boxplot(data, showfliers=False)  # every value is drawn as a point below, outliers included
    for i, vals in enumerate(data, start=1):
        # evenly spread, so equal values stay visible side by side (no random jitter: same picture each run)
        offsets = np.linspace(-0.12, 0.12, len(vals)) if len(vals) > 1 else np.zeros(1)
        ax.scatter(i + offsets, vals, s=18, color="tab:blue", alpha=0.8, zorder=3)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n={len(v)})" for n, v in zip(names, data, strict=True)],
                  rotation=30 if len(names) > 4 else 0)
    ax.set_title(metric)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    write_with(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return path


def confusion_plot(path: Path, conf: npt.NDArray[np.int64], labels: Sequence[str]) -> Path:
    """Row-normalised pixel confusion matrix (reference rows, prediction columns) as a PNG heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segkit.io.atomic import write_with

    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * n, 1.2 + 0.8 * n), dpi=100)
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=30)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    write_with(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return path
