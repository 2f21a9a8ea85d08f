"""Surface metrics against geometry computed by hand (after MONAI's tests/metrics/test_surface_dice.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segkit.metrics.surface import (
    IMPLEMENTATION,
    assd,
    hd95,
    normalized_surface_dice,
    surface_mask,
    surface_metrics,
)


def _rods() -> tuple[np.ndarray, np.ndarray]:
    """Two 20-voxel rods of 2x2 cross-section along axis 0, the prediction shifted by 10 voxels.

    With a 2x2 cross-section every voxel is a surface voxel (each has an in-plane neighbour outside).
    ref x in [5, 25), pred x in [15, 35); spacing (2, 0.5, 0.5) mm.
    pred -> ref: x in [15, 25) lie on ref (0 mm, 40 voxels); x = 25..34 are (x - 24) * 2 mm = 2, 4, ..., 20 mm
    from the ref end at x = 24 (4 voxels each; any in-plane detour is longer).
    ref -> pred is the mirror image: 40 zeros and 4 x {2, 4, ..., 20}.
    """
    ref = np.zeros((40, 6, 6), bool)
    pred = np.zeros_like(ref)
    ref[5:25, 2:4, 2:4] = True
    pred[15:35, 2:4, 2:4] = True
    return pred, ref


SPACING = (2.0, 0.5, 0.5)


def test_shifted_rods_anisotropic() -> None:
    pred, ref = _rods()
    m = surface_metrics(pred, ref, SPACING, tolerance_mm=4.0)
    # 80 sorted distances per side: 40 zeros, then 2 at ranks 40-43, 4 at 44-47, ..., 18 at 72-75,
    # 20 at 76-79.
    # P95 (linear) = rank 0.95 * 79 = 75.05 -> 18 + 0.05 * (20 - 18) = 18.1 mm on both sides.
    assert m["hd95"] == pytest.approx(18.1)
    # ASSD: each side sums 4 * (2 + 4 + ... + 20) = 4 * 110 = 440 mm; (440 + 440) / 160 = 5.5 mm.
    assert m["assd"] == pytest.approx(5.5)
    # NSD at 4 mm: per side 40 + 4 + 4 = 48 within tolerance -> 96 / 160 = 0.6.
    assert m["nsd"] == pytest.approx(0.6)
    assert hd95(pred, ref, SPACING) == pytest.approx(18.1)
    assert assd(pred, ref, SPACING) == pytest.approx(5.5)


def test_spacing_scales_distances() -> None:
    pred, ref = _rods()
    # the shift is along axis 0 only: doubling the in-plane spacing changes nothing, doubling axis 0
    # doubles all
    assert hd95(pred, ref, (2.0, 1.0, 1.0)) == pytest.approx(18.1)
    assert hd95(pred, ref, (4.0, 0.5, 0.5)) == pytest.approx(36.2)
    assert assd(pred, ref, (4.0, 0.5, 0.5)) == pytest.approx(11.0)


def test_nsd_monotone_in_tolerance() -> None:
    pred, ref = _rods()
    # tolerance 0: only the 40 + 40 overlapping voxels -> 0.5; 20 mm and beyond: all -> 1.
    tols = [0.0, 1.0, 2.0, 3.9, 4.0, 10.0, 19.9, 20.0, 50.0]
    values = [normalized_surface_dice(pred, ref, SPACING, t) for t in tols]
    assert values[0] == pytest.approx(0.5)
    assert values[2] == pytest.approx(88 / 160)  # 40 + 4 per side
    assert values[-2] == values[-1] == 1.0
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))


def test_single_voxels_3d() -> None:
    # one voxel each, offset (0, 3, 4) voxels at spacing (1, 1, 0.5) mm -> sqrt(3^2 + 2^2) = sqrt(13) mm
    ref = np.zeros((3, 8, 10), bool)
    pred = np.zeros_like(ref)
    ref[1, 2, 2] = True
    pred[1, 5, 6] = True
    m = surface_metrics(pred, ref, (1.0, 1.0, 0.5), tolerance_mm=3.0)
    assert m["hd95"] == pytest.approx(math.sqrt(13)) and m["assd"] == pytest.approx(math.sqrt(13))
    assert m["nsd"] == 0.0
    assert surface_metrics(pred, ref, (1.0, 1.0, 0.5), tolerance_mm=3.7)["nsd"] == 1.0


def test_identical_masks_and_surface() -> None:
    ref = np.zeros((7, 7, 7), bool)
    ref[1:6, 1:6, 1:6] = True
    s = surface_mask(ref)
    assert s.sum() == 125 - 27  # a 5^3 cube minus its 3^3 interior
    m = surface_metrics(ref, ref, (0.7, 0.7, 3.0), tolerance_mm=0.0)
    assert m == {"hd95": 0.0, "assd": 0.0, "nsd": 1.0}


def test_empty_masks() -> None:
    empty = np.zeros((5, 5, 5), bool)
    some = empty.copy()
    some[2, 2, 2] = True
    both = surface_metrics(empty, empty, (1, 1, 1), 1.0)
    assert all(math.isnan(v) for v in both.values())  # both empty -> NaN
    fp_only = surface_metrics(some, empty, (1, 1, 1), 1.0)
    assert all(math.isnan(v) for v in fp_only.values())  # reference empty -> NaN (FP counted elsewhere)
    missed = surface_metrics(empty, some, (1, 1, 1), 1.0)
    assert missed == {"hd95": math.inf, "assd": math.inf, "nsd": 0.0}  # reference present, prediction empty


def test_bad_arguments() -> None:
    a = np.ones((3, 3, 3), bool)
    with pytest.raises(ValueError, match="spacing has 2 values for a 3-D mask"):
        surface_metrics(a, a, (1.0, 1.0), 1.0)
    with pytest.raises(ValueError,
                       match=r"prediction shape \(3, 3, 3\) differs from reference shape \(3, 3\)"):
        surface_metrics(a, a[0], (1.0, 1.0, 1.0), 1.0)
    assert IMPLEMENTATION == "scipy.ndimage.distance_transform_edt (sampling=spacing)"
