"""In-plane resampling to a target spacing (prepare.spacing) and patch-mode volume inference (data.patches) on
real volumes: the restored labels keep the original shape and affine, and the sliding window lands exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.config import validate_config
from segkit.io.volumes import load_volume
from segkit.predict.volume import resize_probs
from segkit.prepare.record import Geometry
from segkit.prepare.slicing import map_labels, reassemble_volume, slice_case

LA = [{"id": 1, "name": "LA", "color": [255, 0, 255]}]
CT9 = [{"id": i, "name": f"s{i}", "color": [20 * i, 0, 0]} for i in range(1, 10)]


def _round_trip(image: Path, label: Path, classes: list[dict], modality: str, spacing: list[float],
                **prepare: object) -> tuple[list[float], Geometry, np.ndarray, np.ndarray]:
    """Resample the label slices to ``spacing`` as prepare does, restore them the way inference restores its
    predictions (one-hot probabilities resampled bilinearly, argmax, reassembly) and score against the
    original."""
    cfg = validate_config({"modality": modality, "classes": classes,
                           "prepare": {"axis": 2, "spacing": spacing, "empty_slices": "keep", **prepare}})
    img, lbl = load_volume(image), load_volume(label)
    sliced = slice_case(img, lbl, cfg, "case", np.random.default_rng(0))
    h0, w0 = sliced.geometry.slice_shape
    k = len(classes) + 1
    restored = {
        idx: resize_probs(np.eye(k, dtype=np.float32)[lab], (h0, w0)).argmax(-1).astype(np.uint8)
        for idx, _, lab in sliced.slices
    }
    out = reassemble_volume(restored, sliced.geometry)
    ref = map_labels(lbl.data, cfg)
    dice = [2 * np.sum((out == c) & (ref == c)) / (np.sum(out == c) + np.sum(ref == c))
            for c in range(1, k) if np.any(ref == c)]
    return dice, sliced.geometry, out, lbl.affine


@pytest.mark.data
def test_la_mri_resampled_to_0_8_mm_and_restored(shared_data: Path) -> None:
    root = shared_data / "volumes" / "la2018_lge_mri"
    dice, geometry, out, affine = _round_trip(root / "imagesTr" / "la_100.nii.gz",
                                            root / "labelsTr" / "la_100.nii.gz", LA, "mr", [0.8, 0.8])
    assert geometry.slice_spacing == (0.625, 0.625)
    assert geometry.slice_shape == (139, 186)
    assert geometry.size == (109, 145)  # 139 * 0.625 / 0.8 = 108.6, 186 * 0.625 / 0.8 = 145.3
    assert out.shape == (186, 139, 88) == geometry.shape
    np.testing.assert_allclose(geometry.affine_array, affine)
    assert dice[0] >= 0.99, dice


@pytest.mark.data
def test_lps_ct_resampled_to_1_mm_and_restored(shared_data: Path) -> None:
    root = shared_data / "volumes" / "totalseg_aorta_ct"
    dice, geometry, out, affine = _round_trip(root / "aorta_ct_image.nii.gz",
                                            root / "aorta_ct_structures_label.nii.gz",
                                            CT9, "ct", [1.0, 1.0], unknown_labels="background")
    assert geometry.orientation == "LPS"
    assert geometry.size == (189, 180)  # 1.5 mm -> 1.0 mm
    assert out.shape == (120, 126, 164)
    np.testing.assert_allclose(geometry.affine_array, affine)
    assert len(dice) == 9 and min(dice) >= 0.99, dice


@pytest.mark.data
def test_patch_model_slides_over_larger_ct_slices_exactly(shared_data: Path, tmp_path: Path) -> None:
    """A 64x64-input threshold "model" on 126x120 slices (data.patches): the Gaussian sliding window must give
    exactly the labels of the full-resolution threshold, in the original LPS geometry (no resize anywhere)."""
    import keras

    from segkit.infer.volume import infer_volume
    from segkit.prepare.normalize import scale_to_uint8

    src = shared_data / "volumes" / "totalseg_aorta_ct" / "aorta_ct_image.nii.gz"
    ct = tmp_path / "ct.nii.gz"
    shutil.copy(src, ct)
    cfg = validate_config({
        "modality": "ct",
        "classes": [{"id": 1, "name": "bright", "color": [255, 0, 0]},
                    {"id": 2, "name": "never", "color": [0, 255, 0]}],
        "prepare": {"axis": 2, "spacing": [1.5, 1.5], "ct_window": [-200, 600]},
        "data": {"image_size": [64, 64], "channels": 1, "patches": True, "dir": str(tmp_path / "none")},
        "infer": {"batch_size": 4},
    })
    inp = keras.Input((64, 64, 1))
    conv = keras.layers.Conv2D(3, 1, activation="softmax")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.array([[[[0.0, 100.0, 0.0]]]], np.float32),
                      np.array([0.0, -50.0, -1000.0], np.float32)])
    res = infer_volume(model, ct, cfg, tmp_path / "out")
    seg = nib.load(str(res.seg_path))
    labels = np.asarray(seg.dataobj)
    data = np.asarray(nib.load(str(src)).dataobj)
    expected = (scale_to_uint8(data, -200.0, 600.0) >= 128).astype(np.uint8)
    assert 1000 < expected.sum() < expected.size // 2
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(seg.affine, nib.load(str(src)).affine, atol=1e-5)
