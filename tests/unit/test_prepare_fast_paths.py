"""The fast paths of ``segkit prepare`` give exactly what the plain code gives.

- ``encode_mask_png`` (per-channel LUT, empty-mask cache) decodes to the same RGB as ``encode_mask``;
- ``encode_png`` writes standard 8-bit gray / 24-bit RGB PNGs (PIL and OpenCV agree);
- ``display_slices`` (chunked, one copy per chunk) equals ``to_display(apply_intensity(np.take(...)))`` per
  slice, for every axis, sparse index lists and chunk boundaries;
- ``map_labels`` skipping the volume histogram maps exactly like the exact set of present values;
- ``class_pixels`` equals ``np.bincount``.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segkit.config import validate_config
from segkit.errors import DataError
from segkit.io.atomic import write_bytes
from segkit.io.palette import encode_mask, palette_array
from segkit.io.png import encode_mask_png, encode_png, read_rgb, write_png
from segkit.prepare import slicing
from segkit.prepare.cases import class_pixels
from segkit.prepare.normalize import apply_intensity

PALETTE = palette_array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)])


def test_encode_mask_png_equals_encode_mask_and_caches_empty(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (37, 53)).astype(np.uint8)
    write_bytes(tmp_path / "fast.png", encode_mask_png(labels, PALETTE))
    write_png(tmp_path / "plain.png", encode_mask(labels, PALETTE))
    np.testing.assert_array_equal(read_rgb(tmp_path / "fast.png"), PALETTE[labels])
    np.testing.assert_array_equal(read_rgb(tmp_path / "fast.png"), read_rgb(tmp_path / "plain.png"))
    empty = np.zeros((37, 53), np.uint8)
    first, second = encode_mask_png(empty, PALETTE), encode_mask_png(empty, PALETTE)
    assert first is second  # encoded once per shape
    with Image.open(io.BytesIO(first)) as im:
        assert (im.mode, im.size) == ("RGB", (53, 37)) and not np.asarray(im).any()
    with pytest.raises(DataError, match="label value 5 has no colour"):
        encode_mask_png(np.full((2, 2), 5, np.uint8), PALETTE)
    with pytest.raises(DataError, match="uint8"):
        encode_mask_png(np.zeros((2, 2), np.int32), PALETTE)


def test_encode_png_is_standard_gray_and_rgb() -> None:
    gray = np.arange(64 * 48, dtype=np.uint32).reshape(64, 48).astype(np.uint8)
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    with Image.open(io.BytesIO(encode_png(gray))) as im:
        assert (im.format, im.mode) == ("PNG", "L")
        np.testing.assert_array_equal(np.asarray(im), gray)
    with Image.open(io.BytesIO(encode_png(rgb))) as im:
        assert (im.format, im.mode) == ("PNG", "RGB")
        np.testing.assert_array_equal(np.asarray(im), rgb)
    decoded = cv2.imdecode(np.frombuffer(encode_png(rgb[..., ::-1], bgr=True), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[..., ::-1], rgb)  # bgr=True input is stored as the same RGB


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_display_slices_equals_per_slice_path(axis: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(axis)
    vol = rng.integers(-1200, 1500, (11, 9, 13)).astype(np.int16)
    ras = np.asfortranarray(vol)[::-1, :, ::-1]  # F-ordered, flipped: like a reoriented NIfTI
    recipe = {"kind": "ct_window", "low": -300.0, "high": 500.0}
    n = ras.shape[axis]
    monkeypatch.setattr(slicing, "SLICE_CHUNK", 3)
    for indices in (list(range(n)), [0, 1, 5, 6, 7, n - 1], [4]):
        got = list(slicing.display_slices(ras, axis, indices, lambda b: apply_intensity(b, recipe)))
        assert [k for k, _ in got] == indices
        for k, img in got:
            expected = slicing.to_display(apply_intensity(np.take(ras, k, axis), recipe))
            assert img.flags.c_contiguous
            np.testing.assert_array_equal(img, expected)
        labels = list(slicing.display_slices(ras, axis, indices))
        for k, lbl in labels:
            np.testing.assert_array_equal(lbl, slicing.to_display(np.take(ras, k, axis)))
    with pytest.raises(DataError, match="sorted"):
        list(slicing.display_slices(ras, axis, [2, 1]))


def test_map_labels_without_histogram_maps_like_exact_values() -> None:
    base = {"classes": [{"id": i, "name": f"c{i}", "color": [i * 20, 0, 0]} for i in (1, 2, 3)]}
    lbl = np.zeros((6, 5, 4), np.uint8)
    lbl[1, 1, 1], lbl[2, 2, 2] = 1, 3  # value 2 absent
    cases = [
        ({}, {0: 0, 1: 1, 3: 3}),
        ({"binary": True}, {0: 0, 1: 1, 3: 1}),
        ({"label_map": {1: 2, 2: 1, 3: 3}}, {0: 0, 1: 2, 3: 3}),
    ]
    for prepare, table in cases:
        out = slicing.map_labels(lbl, validate_config({**base, "prepare": prepare}))
        np.testing.assert_array_equal(out, np.vectorize(table.get)(lbl).astype(np.uint8))
    with pytest.raises(DataError, match="unexpected label values 1"):
        slicing.map_labels(lbl, validate_config({**base, "prepare": {"label_map": {3: 1}}}))
    big = lbl.copy()
    big[0, 0, 0] = 7  # above the class count: found by the exact path, reported
    with pytest.raises(DataError, match="unexpected label values 7"):
        slicing.map_labels(big, validate_config(base))


@pytest.mark.parametrize("n_classes", [1, 2, 4, 17, 18, 40])
def test_class_pixels_equals_bincount(n_classes: int) -> None:
    lbl = np.random.default_rng(n_classes).integers(0, n_classes + 2, (31, 29)).astype(np.uint8)
    expected = np.bincount(lbl.ravel(), minlength=n_classes)[:n_classes]
    np.testing.assert_array_equal(class_pixels(lbl, n_classes), expected)
    assert class_pixels(np.zeros((3, 4), np.uint8), n_classes).tolist() == [12] + [0] * (n_classes - 1)
