"""Score label volumes made by any tool (segkit, nnU-Net, TotalSegmentator...) against reference volumes.

``evaluate_predictions(pred_dir, ref_dir)`` pairs the NIfTI/NRRD files of two folders by case id, checks that
each pair has one geometry, and writes the same per case x class report as ``segkit evaluate`` (Dice, IoU,
HD95, ASSD, NSD with the reference's voxel spacing; ``evaluation.csv``, ``evaluation.json``, box plots and the
voxel confusion matrix), so outputs of different tools are compared by one metric code.

Case ids: the file name without its volume suffix and without trailing tags that tools append
(``_seg``, ``_pred``, ``_prediction``, ``_label``, ``_labels``, ``_gt``, ``_mask``, ``_image``, ``_img`` and
nnU-Net's channel suffix ``_0000``), so ``patient007_frame01_image_seg.nii.gz`` (segkit infer) pairs with
``patient007_frame01_label.nii.gz`` (the reference).

Classes: with a config, its class table; the reference is mapped to class ids exactly as ``prepare`` maps
raw labels (``prepare.label_map``, ``binary``, ``unknown_labels``), and so are the predictions when
``map_predictions`` (for tools that write raw label values); segkit's own outputs are class ids already.
Without a config, every non-zero value found in the references or the predictions is a class (``label_<v>``).

Example:
    >>> res = evaluate_predictions(Path("runs/la/inference"), Path("data/labelsTs"), cfg=cfg)
    >>> res.summary["foreground_mean"]["dice"]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segkit.config import Config
from segkit.errors import DataError, GeometryError
from segkit.evaluate.run import EvaluationResult, case_rows, summarize_rows, write_reports
from segkit.io.volumes import is_volume, load_volume, read_header, supported_text, volume_suffix
from segkit.metrics.overlap import confusion_matrix
from segkit.metrics.surface import IMPLEMENTATION
from segkit.progress import NULL_PROGRESS, Progress

log = logging.getLogger(__name__)

TAGS = ("_seg", "_pred", "_prediction", "_label", "_labels", "_gt", "_mask", "_image", "_img", "_0000")


def volume_case_id(path: Path) -> str:
    """Case id of a label volume file: the name without its volume suffix and trailing ``TAGS``."""
    name = Path(path).name
    stem = name[: -len(volume_suffix(Path(path)))] if volume_suffix(Path(path)) else Path(path).stem
    changed = True
    while changed:
        changed = False
        for tag in TAGS:
            if stem.lower().endswith(tag) and len(stem) > len(tag):
                stem, changed = stem[: -len(tag)], True
    return stem


def pair_volumes(pred_dir: Path, ref_dir: Path) -> list[tuple[str, Path, Path]]:
    """``(case_id, prediction, reference)`` for every case, sorted by case id.

    Raises:
        DataError: a folder is missing or holds no volume; two files of one folder share a case id; a
            prediction has no reference or a reference has no prediction (all named, in one line).
    """

    def index(folder: Path, what: str) -> dict[str, Path]:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{what} folder not found", path=folder,
                            hint=f"give a folder of volumes ({supported_text()})")
        found: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if not p.is_file() or p.name.startswith(".") or not is_volume(p):
                continue
            cid = volume_case_id(p)
            if cid in found:
                raise DataError(
                    f"{found[cid].name} and {p.name} both name case '{cid}'",
                    path=folder,
                    hint="keep one file per case in the folder",
                )
            found[cid] = p
        if not found:
            raise DataError(f"the {what} folder holds no volume", path=folder,
                            hint=f"expected volumes ({supported_text()})")
        return found

    preds, refs = index(pred_dir, "predictions"), index(ref_dir, "reference")
    no_ref = sorted(preds.keys() - refs.keys())
    no_pred = sorted(refs.keys() - preds.keys())
    if no_ref:
        names = ", ".join(preds[c].name for c in no_ref[:5]) + (" ..." if len(no_ref) > 5 else "")
        raise DataError(f"{len(no_ref)} prediction(s) without a reference: {names}", path=ref_dir,
                        hint="name each reference after its case (tags such as _seg/_label are ignored)")
    if no_pred:
        names = ", ".join(refs[c].name for c in no_pred[:5]) + (" ..." if len(no_pred) > 5 else "")
        raise DataError(f"{len(no_pred)} reference(s) without a prediction: {names}", path=pred_dir,
                        hint="predict every reference case (a missing prediction is not scored as empty)")
    return [(c, preds[c], refs[c]) for c in sorted(preds)]


@dataclass(frozen=True)
class ScoringOptions:
    """How ``evaluate_predictions`` reads and scores the label volumes.

    Attributes:
        map_predictions: map the predictions through ``prepare``'s label rules too (raw label values).
        tolerance_mm: NSD tolerance (default ``cfg.evaluate.nsd_tolerance_mm``, else 1 mm).
    """

    map_predictions: bool = False
    tolerance_mm: float | None = None


def evaluate_predictions(
    pred_dir: Path,
    ref_dir: Path,
    out_dir: Path,
    *,
    cfg: Config | None = None,
    options: ScoringOptions | None = None,
    progress: Progress = NULL_PROGRESS,
) -> EvaluationResult:
    """Per case x class metrics of the label volumes in ``pred_dir`` against those in ``ref_dir``.

    Args:
        pred_dir: predicted label volumes.
        ref_dir: reference label volumes.
        out_dir: where the report goes.
        cfg: class table and label mapping (see the module docstring); ``None`` = classes from the values.
        options: prediction label mapping and NSD tolerance (default ``ScoringOptions()``).
        progress: started once with the number of cases (description ``"evaluate"``), then advanced by 1
            after each case.

    Raises:
        DataError: pairing problems (``pair_volumes``), unreadable volumes, predicted values outside the
            classes.
        GeometryError: a prediction and its reference differ in shape or affine.
    """
    options = options or ScoringOptions()
    pairs = pair_volumes(pred_dir, ref_dir)
    tol = float(options.tolerance_mm if options.tolerance_mm is not None
                else (cfg.evaluate.nsd_tolerance_mm if cfg else 1.0))
    for _, p_path, r_path in pairs:  # geometry from the headers first: refuse before any work is shown
        check_same_geometry(p_path, r_path)
    classes = _classes(cfg, pairs)
    nc = max((c for c, _ in classes), default=0) + 1
    progress.start(len(pairs), "evaluate")
    rows: list[dict[str, Any]] = []
    conf = np.zeros((nc, nc), np.int64)
    for case_id, p_path, r_path in pairs:  # one case in memory at a time
        pred_ids, ref_ids, spacing = _case_ids(p_path, r_path, cfg, options.map_predictions)
        hi = int(pred_ids.max()) if pred_ids.size else 0
        if hi >= nc:
            raise DataError(
                f"predicted label {hi} is not a class (classes 0..{nc - 1})",
                path=p_path,
                hint="check the config's class table, or pass --map-predictions for raw label values",
            )
        rows += case_rows(case_id, pred_ids, ref_ids, classes, spacing, tol)
        conf += confusion_matrix(pred_ids, ref_ids, nc)
        del pred_ids, ref_ids
        progress.advance(1)
    summary = {
        "predictions": str(pred_dir),
        "reference_dir": str(ref_dir),
        "n_cases": len(pairs),
        "volumetric": True,
        "reference": "reference label volumes",
        "map_predictions": options.map_predictions,
        "surface_distance_implementation": IMPLEMENTATION,
        "nsd_tolerance_mm": tol,
        **summarize_rows(rows, classes),
        "confusion_matrix": {
            "labels": ["background" if i == 0 else dict(classes).get(i, f"label_{i}") for i in range(nc)],
            "rows": "reference",
            "columns": "prediction",
            "matrix": conf.tolist(),
        },
    }
    return write_reports(Path(out_dir), rows, [], summary, classes, conf)


def _classes(cfg: Config | None, pairs: Sequence[tuple[str, Path, Path]]) -> list[tuple[int, str]]:
    """The config's classes, or (without one) every value found in a reference or a prediction (a first pass
    over the label values)."""
    if cfg is not None:
        return [(c.id, c.name) for c in cfg.effective_classes]
    values: set[int] = set()
    for _, p_path, r_path in pairs:
        for path in (p_path, r_path):
            values.update(int(v) for v in np.unique(_class_ids(load_volume(path).data, path)) if v != 0)
    return [(v, f"label_{v}") for v in sorted(values)]


def _case_ids(
    case_pred: Path, case_ref: Path, cfg: Config | None, map_predictions: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], list[float]]:
    """Prediction and reference of one case as class ids, and the reference's voxel spacing."""
    from segkit.prepare.slicing import map_labels

    pred, ref = load_volume(case_pred), load_volume(case_ref)
    if cfg is not None:
        ref_ids = map_labels(ref.data, cfg, case_ref).astype(np.int64)
        pred_ids = (map_labels(pred.data, cfg, case_pred).astype(np.int64) if map_predictions
                    else _class_ids(pred.data, case_pred))
    else:
        ref_ids, pred_ids = _class_ids(ref.data, case_ref), _class_ids(pred.data, case_pred)
    return pred_ids, ref_ids, [float(v) for v in np.sqrt((ref.affine[:3, :3] ** 2).sum(axis=0))]


def check_same_geometry(pred_path: Path, ref_path: Path) -> None:
    """Raise ``GeometryError`` when the two volume headers differ in shape or affine (atol 1e-3 mm)."""
    p_shape, p_aff = read_header(pred_path)
    r_shape, r_aff = read_header(ref_path)
    p_shape, r_shape = _squeezed(p_shape), _squeezed(r_shape)
    if tuple(p_shape) != tuple(r_shape):
        raise GeometryError(
            f"prediction and reference shapes differ: {pred_path.name} {tuple(p_shape)} vs {ref_path.name} "
            f"{tuple(r_shape)}",
            path=pred_path,
            hint="score predictions in the reference's geometry (segkit infer writes the input's)",
        )
    if not np.allclose(p_aff, r_aff, atol=1e-3):
        raise GeometryError(
            f"prediction and reference affines differ ({pred_path.name} vs {ref_path.name})",
            path=pred_path,
            hint="the prediction was resampled or reoriented: write it in the reference's geometry",
        )


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    """Shape without trailing singleton dimensions beyond the third (``load_volume`` drops them too)."""
    s = tuple(int(v) for v in shape)
    while len(s) > 3 and s[-1] == 1:
        s = s[:-1]
    return s


def _class_ids(data: npt.NDArray, path: Path) -> npt.NDArray[np.int64]:
    arr = np.asarray(data)
    if not np.issubdtype(arr.dtype, np.integer):
        rounded = np.rint(arr)
        if not np.all(np.isfinite(arr)) or not np.array_equal(rounded, arr):
            raise DataError("label volume holds non-integer values", path=path,
                            hint="give a label (class id) volume")
        arr = rounded
    if arr.size and arr.min() < 0:
        raise DataError(f"label volume has negative values (min {int(arr.min())})", path=path,
                        hint="labels are class ids 0..N")
    return arr.astype(np.int64, copy=False)


__all__: Sequence[str] = ["TAGS", "ScoringOptions", "evaluate_predictions", "pair_volumes", "volume_case_id"]
