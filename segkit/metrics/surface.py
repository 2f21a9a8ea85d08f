"""Surface-distance metrics in millimetres: HD95, ASSD and surface Dice (NSD).

Implementation: ``scipy.ndimage.distance_transform_edt (sampling=spacing)``. The surface of a mask is the
set of its voxels with at least one 6-connected (face) neighbour outside the mask; voxels on the array border
count as surface (the outside is background). For every surface voxel of one mask, its distance to the nearest
surface voxel of the other mask is read from a Euclidean distance transform computed with
``sampling=spacing``, so anisotropic voxels give distances in mm.

Definitions (Metrics Reloaded / MONAI / DeepMind surface-distance, with voxel counts instead of surfel areas):

* ``HD95 = max(P95(d(pred -> ref)), P95(d(ref -> pred)))`` with NumPy's linear percentile.
* ``ASSD = (sum d(pred -> ref) + sum d(ref -> pred)) / (|S_pred| + |S_ref|)``.
* ``NSD(tau) = (#{d(pred -> ref) <= tau} + #{d(ref -> pred) <= tau}) / (|S_pred| + |S_ref|)``.

Empty masks:

* reference and prediction empty -> all NaN;
* reference empty, prediction non-empty -> all NaN (excluded from means; the false-positive volume is
  reported by ``segkit.metrics.overlap``);
* reference present, prediction empty -> HD95 = ASSD = +inf (no surface to measure to: the worst possible
  distance; ``summarize`` counts these in ``n_inf``), NSD = 0.

Example:
    >>> ref = np.zeros((1, 1, 9), bool); ref[0, 0, 2] = True
    >>> pred = np.zeros((1, 1, 9), bool); pred[0, 0, 5] = True
    >>> surface_metrics(pred, ref, spacing=(1.0, 1.0, 2.0), tolerance_mm=6.0)["hd95"]
    6.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

IMPLEMENTATION = "scipy.ndimage.distance_transform_edt (sampling=spacing)"


def surface_mask(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Surface voxels of a binary mask: mask voxels with a face neighbour outside it (array border included).

    Args:
        mask: (X, Y, Z) or (H, W) bool.

    Returns:
        Same shape, bool.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    eroded = ndimage.binary_erosion(mask, structure=structure, border_value=0)
    return mask & ~eroded


def surface_distances(
    pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_], spacing: Sequence[float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Directed surface distances in mm, both ways.

    Args:
        pred: (X, Y, Z) or (H, W) bool, both non-empty.
        ref: same shape.
        spacing: voxel size in mm per axis, in the arrays' axis order.

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: 1-D float64 arrays, one distance per surface voxel.

    Raises:
        ValueError: shapes differ, spacing length differs from ndim, or a mask is empty.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _check(pred, ref, spacing)
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks")
    s_pred = surface_mask(pred)
    s_ref = surface_mask(ref)
    sampling = tuple(float(s) for s in spacing)
    dt_ref = ndimage.distance_transform_edt(~s_ref, sampling=sampling)
    dt_pred = ndimage.distance_transform_edt(~s_pred, sampling=sampling)
    return np.asarray(dt_ref[s_pred], np.float64), np.asarray(dt_pred[s_ref], np.float64)


def surface_metrics(
    pred: npt.NDArray[np.bool_],
    ref: npt.NDArray[np.bool_],
    spacing: Sequence[float],
    tolerance_mm: float,
) -> dict[str, float]:
    """HD95 (mm), ASSD (mm) and NSD at ``tolerance_mm`` of one binary structure, distances computed once.

    Args:
        pred: predicted mask, (X, Y, Z) or (H, W) bool.
        ref: reference mask, same shape.
        spacing: mm per axis in the arrays' axis order.
        tolerance_mm: NSD tolerance in mm (>= 0).

    Returns:
        ``{"hd95", "assd", "nsd"}`` following the empty rules of the module docstring.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _check(pred, ref, spacing)
    if tolerance_mm < 0:
        raise ValueError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
    if not ref.any():
        return {"hd95": math.nan, "assd": math.nan, "nsd": math.nan}
    if not pred.any():
        return {"hd95": math.inf, "assd": math.inf, "nsd": 0.0}
    a, b = surface_distances(pred, ref, spacing)
    n = a.size + b.size
    return {
        "hd95": float(max(np.percentile(a, 95), np.percentile(b, 95))),
        "assd": float((a.sum() + b.sum()) / n),
        "nsd": float((np.count_nonzero(a <= tolerance_mm) + np.count_nonzero(b <= tolerance_mm)) / n),
    }


def hd95(pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_], spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (see ``surface_metrics``)."""
    return surface_metrics(pred, ref, spacing, 0.0)["hd95"]


def assd(pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_], spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm (see ``surface_metrics``)."""
    return surface_metrics(pred, ref, spacing, 0.0)["assd"]


def normalized_surface_dice(
    pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_], spacing: Sequence[float], tolerance_mm: float
) -> float:
    """Surface Dice (NSD) at ``tolerance_mm``: share of both surfaces within the tolerance of the other."""
    return surface_metrics(pred, ref, spacing, tolerance_mm)["nsd"]


def _check(pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_], spacing: Sequence[float]) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing has {len(spacing)} values for a {pred.ndim}-D mask")
    if any(float(s) <= 0 for s in spacing):
        raise ValueError(f"spacing must be positive, got {tuple(spacing)}")
