"""Overlap metrics from TP/FP/FN counts per foreground class (nnU-Net / MONAI conventions).

Pure per-case functions live here; aggregation over cases (``summarize``) is separate, as in MONAI's
``compute_dice`` / ``DiceMetric`` split.

Empty-reference rules, named by ``empty`` (``EmptyReference``); the default ``"nan"`` is the rule of Metrics
Reloaded, nnU-Net and MONAI's ``ignore_empty=True``, and the one every segkit report and choice uses:

* reference empty, prediction empty -> Dice and IoU are NaN (excluded from means);
* reference empty, prediction non-empty -> Dice and IoU are NaN too, and the false-positive voxels are
  reported separately (``fp``, ``fp_volume_mm3``) so such errors stay visible;
* reference present, prediction empty -> Dice 0, IoU 0.

``empty="one"`` is MONAI's ``ignore_empty=False``: an empty reference scores 1 when the prediction is empty
too and 0 when it is not. A reference that is present scores the same under both rules.

Background (id 0) is never reported as a class. ``dice_coef_multiclass`` reproduces the seed experiments'
background-inclusive soft Dice only so that users can compare with published numbers.

Example:
    >>> ref = np.array([[0, 1, 1], [0, 2, 0]]); pred = np.array([[0, 1, 0], [0, 2, 2]])
    >>> c = class_counts(pred, ref, class_ids=(1, 2))
    >>> dice_from_counts(*c[1][:3]), dice_from_counts(*c[2][:3])
    (0.6666666666666666, 0.6666666666666666)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

EmptyReference = Literal["nan", "one"]
EMPTY_REFERENCE_RULES: tuple[EmptyReference, ...] = ("nan", "one")


class Counts(NamedTuple):
    """Voxel counts of one class in one case."""

    tp: int
    fp: int
    fn: int
    tn: int


def class_counts(
    pred: npt.NDArray[np.integer], ref: npt.NDArray[np.integer], class_ids: Iterable[int]
) -> dict[int, Counts]:
    """TP/FP/FN/TN per class for two label maps of the same shape.

    Args:
        pred: predicted labels, any shape (e.g. (X, Y, Z) or (H, W)), integer ids.
        ref: reference labels, same shape as ``pred``.
        class_ids: the foreground ids to count (background 0 should not be passed).

    Returns:
        ``{class_id: Counts(tp, fp, fn, tn)}``.

    Raises:
        ValueError: shapes differ.
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    n = int(pred.size)
    out: dict[int, Counts] = {}
    for c in class_ids:
        p = pred == c
        r = ref == c
        tp = int(np.count_nonzero(p & r))
        fp = int(np.count_nonzero(p)) - tp
        fn = int(np.count_nonzero(r)) - tp
        out[int(c)] = Counts(tp, fp, fn, n - tp - fp - fn)
    return out


def _empty_score(fp: int, empty: EmptyReference) -> float:
    """The score of a class whose reference is empty, by the rule ``empty``."""
    if empty == "nan":
        return math.nan
    if empty == "one":
        return 1.0 if fp == 0 else 0.0
    raise ValueError(f"empty must be one of {EMPTY_REFERENCE_RULES}, got {empty!r}")


def dice_from_counts(tp: int, fp: int, fn: int, empty: EmptyReference = "nan") -> float:
    """Dice = 2 TP / (2 TP + FP + FN); 0 when only the reference is present.

    Args:
        tp, fp, fn: voxel counts of one class.
        empty: the rule for an empty reference (TP + FN == 0): ``"nan"`` (default) or ``"one"`` (see the
            module docstring).

    Raises:
        ValueError: an unknown ``empty`` rule.
    """
    if tp + fn == 0:
        return _empty_score(fp, empty)
    return 2.0 * tp / (2.0 * tp + fp + fn)


def iou_from_counts(tp: int, fp: int, fn: int, empty: EmptyReference = "nan") -> float:
    """IoU (Jaccard) = TP / (TP + FP + FN); the same empty-reference rules as ``dice_from_counts``."""
    if tp + fn == 0:
        return _empty_score(fp, empty)
    return tp / float(tp + fp + fn)


def dice(pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_], empty: EmptyReference = "nan") -> float:
    """Dice of two binary masks (``empty``: the empty-reference rule, see the module docstring)."""
    c = class_counts(np.asarray(pred, bool).astype(np.uint8), np.asarray(ref, bool).astype(np.uint8), (1,))[1]
    return dice_from_counts(c.tp, c.fp, c.fn, empty)


def iou(pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_], empty: EmptyReference = "nan") -> float:
    """IoU of two binary masks (``empty``: the empty-reference rule, see the module docstring)."""
    c = class_counts(np.asarray(pred, bool).astype(np.uint8), np.asarray(ref, bool).astype(np.uint8), (1,))[1]
    return iou_from_counts(c.tp, c.fp, c.fn, empty)


def overlap_metrics(
    pred: npt.NDArray[np.integer],
    ref: npt.NDArray[np.integer],
    class_ids: Sequence[int],
    voxel_volume_mm3: float = 1.0,
) -> dict[int, dict[str, float]]:
    """Per-class Dice, IoU and counts of one case.

    Args:
        pred: predicted labels (any shape), integer ids.
        ref: reference labels, same shape.
        class_ids: foreground ids (1..N).
        voxel_volume_mm3: volume of one voxel in mm^3 (product of the spacing); 1 for slices.

    Returns:
        ``{class_id: {"dice", "iou", "tp", "fp", "fn", "ref_voxels", "pred_voxels", "fp_volume_mm3"}}``;
        ``fp_volume_mm3`` is the false-positive volume, reported separately for empty references.
    """
    out: dict[int, dict[str, float]] = {}
    for c, k in class_counts(pred, ref, class_ids).items():
        out[c] = {
            "dice": dice_from_counts(k.tp, k.fp, k.fn),
            "iou": iou_from_counts(k.tp, k.fp, k.fn),
            "tp": k.tp,
            "fp": k.fp,
            "fn": k.fn,
            "ref_voxels": k.tp + k.fn,
            "pred_voxels": k.tp + k.fp,
            "fp_volume_mm3": k.fp * float(voxel_volume_mm3),
        }
    return out


def confusion_matrix(
    pred: npt.NDArray[np.integer], ref: npt.NDArray[np.integer], num_classes: int
) -> npt.NDArray[np.int64]:
    """(C, C) int64 pixel confusion matrix, rows = reference id, columns = predicted id (background
    included)."""
    ref = np.asarray(ref).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if ref.size and (max(ref.max(), pred.max()) >= num_classes or min(ref.min(), pred.min()) < 0):
        raise ValueError(f"labels outside 0..{num_classes - 1}")
    cells = np.bincount(ref * num_classes + pred, minlength=num_classes * num_classes)
    return cells.reshape(num_classes, num_classes)


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean / median / std (population) over the finite values; NaN and inf are counted, not averaged.

    NaN marks an empty reference (excluded by definition); inf marks a surface distance to an empty prediction
    (HD95 / ASSD with a missed structure), counted in ``n_inf`` so a reader sees the misses that a mean over
    finite values cannot show.

    Returns:
        ``{"mean", "median", "std", "n", "n_nan", "n_inf"}``; statistics are None when no finite value exists.
    """
    arr = np.asarray(list(values), dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    stats: dict[str, float | int | None] = {
        "mean": float(finite.mean()) if finite.size else None,
        "median": float(np.median(finite)) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
        "n": int(finite.size),
        "n_nan": int(np.isnan(arr).sum()),
        "n_inf": int(np.isinf(arr).sum()),
    }
    return stats


def foreground_mean(per_class_means: Iterable[float | None]) -> float | None:
    """Mean of the per-class means, skipping classes without a value (nnU-Net's ``foreground_mean``)."""
    vals = [v for v in per_class_means if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def dice_coef_multiclass(
    y_true: npt.NDArray[np.floating], y_pred: npt.NDArray[np.floating], smooth: float = 1.0
) -> float:
    """The seed experiments' ``dice_coef_multiclass``: soft Dice over ALL channels, background included.

    Formula: ``(2 * sum(y_true * y_pred) + smooth) / (sum(y_true) + sum(y_pred) + smooth)`` over every pixel
    and every channel at once. Background dominates both sums, so an all-background prediction already scores
    close to 1: this number is reported only for comparison with published results, never as segkit's Dice.

    Args:
        y_true: one-hot reference, (..., C) float.
        y_pred: probabilities or one-hot of hard labels, (..., C) float, same shape.
        smooth: additive smoothing (1 in the seed code).

    Returns:
        A float in (0, 1].
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} differs from y_pred shape {p.shape}")
    inter = float((t * p).sum())
    return (2.0 * inter + smooth) / (float(t.sum()) + float(p.sum()) + smooth)


def one_hot(labels: npt.NDArray[np.integer], num_classes: int) -> npt.NDArray[np.float32]:
    """(...,) integer ids -> (..., C) float32 one-hot."""
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.intp)]
