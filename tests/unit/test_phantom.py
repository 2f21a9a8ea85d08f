"""segkit.prepare.phantom: deterministic, learnable synthetic CT cases with a non-identity affine."""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from segkit.io.volumes import load_volume
from segkit.prepare.phantom import make_phantom, write_phantom_cases


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [make_phantom(np.random.default_rng(s)) for s in range(4)]


def test_same_seed_same_case_other_seed_other_case() -> None:
    a = make_phantom(np.random.default_rng(3))
    b = make_phantom(np.random.default_rng(3))
    c = make_phantom(np.random.default_rng(4))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])


def test_types_shape_and_affine(cases: list) -> None:
    image, label, affine = cases[0]
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert image.shape == label.shape == (64, 64, 40)
    assert "".join(nib.aff2axcodes(affine)) == "LPS"
    np.testing.assert_allclose(np.sqrt((affine[:3, :3] ** 2).sum(0)), [1.2, 1.2, 2.5])
    assert np.abs(affine[:3, 3]).sum() > 1.0
    small = make_phantom(np.random.default_rng(0), shape=(32, 40, 12))
    assert small[0].shape == small[1].shape == (32, 40, 12)


def test_every_structure_present_with_empty_slices(cases: list) -> None:
    for _, label, _ in cases:
        assert sorted(np.unique(label).tolist()) == [0, 1, 2, 3]
        has_fg = label.any(axis=(0, 1))
        assert not has_fg[:2].any() and not has_fg[-2:].any()  # label-free slices at both ends
        assert 15 <= has_fg.sum() <= 36
        for cls in (1, 2, 3):
            n_slices = int((label == cls).any(axis=(0, 1)).sum())
            assert 3 <= n_slices <= 34  # on some slices, never on all


def test_contrasts_are_distinct_and_ordered(cases: list) -> None:
    for image, label, _ in cases:
        means = [float(image[label == c].mean()) for c in (1, 2, 3)]
        tissue = float(image[(label == 0) & (image > -500)].mean())
        air = float(image[(label == 0) & (image < -500)].mean())
        assert -1100 < air < -900 and -20 < tissue < 70
        atrium, ventricle, vessel = means[1], means[0], means[2]
        assert tissue + 120 < atrium < ventricle - 60 and ventricle + 60 < vessel


def test_structures_are_learnable_sizes_and_adjacent(cases: list) -> None:
    for _, label, _ in cases:
        vessel = label == 3
        # Radius >= 2.5 px: a full cross-section has at least ~pi*2.5^2 = 19 pixels.
        areas = vessel.sum(axis=(0, 1))
        assert np.median(areas[areas > 0]) >= 19
        assert (label == 1).sum() > (label == 2).sum() > 0
        # Atrium touches the ventricle.
        assert (ndimage.binary_dilation(label == 1, iterations=2) & (label == 2)).any()


def test_fast_enough() -> None:
    start = time.perf_counter()
    for s in range(5):
        make_phantom(np.random.default_rng(100 + s))
    assert (time.perf_counter() - start) / 5 < 0.3


def test_write_phantom_cases(tmp_path: Path) -> None:
    pairs = write_phantom_cases(tmp_path / "raw", n=2, seed=11, shape=(32, 32, 16))
    assert [(p.name, q.name) for p, q in pairs] == [
        ("case_000_image.nii.gz", "case_000_label.nii.gz"),
        ("case_001_image.nii.gz", "case_001_label.nii.gz"),
    ]
    child = np.random.SeedSequence(11).spawn(2)[1]
    image, label, affine = make_phantom(np.random.default_rng(child), (32, 32, 16))
    img_vol, lbl_vol = load_volume(pairs[1][0]), load_volume(pairs[1][1])
    assert lbl_vol.data.dtype == np.uint8
    np.testing.assert_array_equal(lbl_vol.data, label)
    np.testing.assert_allclose(img_vol.data, image, atol=1e-3)
    np.testing.assert_allclose(img_vol.affine, affine, atol=1e-5)
    # Case 1 does not depend on how many cases are written.
    again = write_phantom_cases(tmp_path / "more", n=3, seed=11, shape=(32, 32, 16))
    np.testing.assert_array_equal(load_volume(again[1][1]).data, label)
