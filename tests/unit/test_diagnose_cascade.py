"""scripts/diagnose_cascade.py's crop numbers, against hand-computed cases (the end-to-end run against
`segkit evaluate` is in tests/cli/test_cascade_cli.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def diag():  # noqa: ANN201
    path = REPO / "scripts" / "diagnose_cascade.py"
    spec = importlib.util.spec_from_file_location("diagnose_cascade", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_crop_numbers_of_a_centred_and_an_off_centre_crop(diag) -> None:  # noqa: ANN001
    ref = np.zeros((3, 100, 100), np.uint8)
    ref[1, 40:60, 30:50] = 2  # rows 40..59, columns 30..49: centre (50, 40), 20 x 20 px
    ref[2, 45:55, 35:45] = 1
    centred = diag.crop_numbers(ref, (10, 90, 0, 80))  # 80 x 80 around (50, 40)
    assert centred == {"inside": 1.0, "offset": 0.0, "fill": 0.25}
    off = diag.crop_numbers(ref, (30, 70, 30, 70))  # 40 x 40 around (50, 50): 10 px off in columns
    assert off == {"inside": 1.0, "offset": 0.25, "fill": 0.5}
    cut = diag.crop_numbers(ref, (40, 60, 40, 60))  # columns 40..59: half of the 20-wide box
    assert cut["inside"] == pytest.approx((20 * 10 + 10 * 5) / (400 + 100))  # 0.5
    assert diag.crop_numbers(ref, None) == {"inside": None, "offset": None, "fill": None}
    assert diag.crop_numbers(np.zeros_like(ref), (0, 10, 0, 10))["inside"] is None


def test_dice_of_masks(diag) -> None:  # noqa: ANN001
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert diag.dice(a, b) is None
    a[0, :2] = True
    b[0, 1:3] = True
    assert diag.dice(a, b) == pytest.approx(2 * 1 / 4)
