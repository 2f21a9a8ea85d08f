"""Property tests of the overlap and surface metrics (small random masks)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segkit.metrics.overlap import dice, iou
from segkit.metrics.surface import surface_metrics

masks = arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)))
spacings = st.tuples(*[st.floats(0.25, 4.0, allow_nan=False) for _ in range(3)])


@given(masks)
def test_dice_of_itself_is_one(a: np.ndarray) -> None:
    if a.any():
        assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    else:
        assert math.isnan(dice(a, a))  # both empty -> NaN (nnU-Net)


@given(st.data())
def test_dice_symmetric_and_in_range(data: st.DataObject) -> None:
    a = data.draw(masks)
    b = data.draw(arrays(np.bool_, a.shape))
    if a.any() and b.any():
        assert dice(a, b) == dice(b, a)
        assert 0.0 <= dice(a, b) <= 1.0 and 0.0 <= iou(a, b) <= dice(a, b)
    elif b.any():  # only the reference (b) present -> 0
        assert dice(a, b) == 0.0
    elif not a.any():
        assert math.isnan(dice(a, b))


@given(masks, spacings)
def test_surface_metrics_of_itself(a: np.ndarray, spacing: tuple[float, float, float]) -> None:
    m = surface_metrics(a, a, spacing, tolerance_mm=0.0)
    if a.any():
        assert m == {"hd95": 0.0, "assd": 0.0, "nsd": 1.0}
    else:
        assert all(math.isnan(v) for v in m.values())


@given(st.data(), spacings)
def test_surface_symmetric_and_bounded(data: st.DataObject, spacing: tuple[float, float, float]) -> None:
    a = data.draw(masks)
    b = data.draw(arrays(np.bool_, a.shape))
    if not (a.any() and b.any()):
        return
    ab = surface_metrics(a, b, spacing, 1.0)
    ba = surface_metrics(b, a, spacing, 1.0)
    assert math.isclose(ab["hd95"], ba["hd95"]) and math.isclose(ab["assd"], ba["assd"])
    assert math.isclose(ab["nsd"], ba["nsd"]) and 0.0 <= ab["nsd"] <= 1.0
    diag = math.sqrt(sum((n * s) ** 2 for n, s in zip(a.shape, spacing, strict=True)))
    assert 0.0 <= ab["assd"] <= diag + 1e-9 and 0.0 <= ab["hd95"] <= diag + 1e-9
