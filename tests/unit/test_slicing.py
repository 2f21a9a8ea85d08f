"""segkit.prepare.slicing / normalize: one case -> slices -> files -> volume, with hand-checked numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segkit.config import Config, validate_config
from segkit.errors import DataError, GeometryError
from segkit.io.palette import decode_mask, palette_array
from segkit.io.png import read_gray, read_rgb
from segkit.io.volumes import Volume
from segkit.prepare.normalize import apply_intensity, intensity_recipe
from segkit.prepare.record import Preprocessing
from segkit.prepare.slicing import (
    from_display,
    reassemble_volume,
    resize_image,
    resize_label,
    slice_case,
    to_display,
    volume_to_slices,
    write_slices,
)

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
RECORD_KEYS = {
    "shape", "spacing", "affine", "orientation", "ornt_transform", "canonical_shape", "axis",
    "slice_shape", "resize", "intensity", "slices", "n_slices",
}


def make_cfg(size: tuple[int, int] = (8, 8), modality: str = "ct", **prepare: Any) -> Config:
    return validate_config(
        {
            "modality": modality,
            "classes": [{"id": i + 1, "name": f"c{i + 1}", "color": list(c)} for i, c in enumerate(COLORS)],
            "prepare": {"size": list(size), "ct_window": [-1000, 1000], "empty_slices": "keep", **prepare},
        }
    )


def ras_case(shape: tuple[int, int, int] = (8, 8, 6)) -> tuple[np.ndarray, np.ndarray]:
    """Image in HU with a distinct value per voxel, and labels on slices 2..3 only (RAS, identity affine)."""
    img = np.linspace(-900, 900, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    lbl = np.zeros(shape, np.uint8)
    lbl[1:3, 2:5, 2] = 1
    lbl[5, 6, 3] = 3
    lbl[6, 1, 3] = 2
    return img, lbl


def vol(data: np.ndarray, affine: np.ndarray | None = None, name: str = "x.nii.gz") -> Volume:
    return Volume(data, np.eye(4) if affine is None else affine, Path("/data") / name)


# === Display convention ===


def test_display_puts_anterior_top_and_patient_right_on_the_left() -> None:
    ras = np.zeros((3, 4), np.uint8)  # axial slice [x (R), y (A)]
    ras[2, 3] = 1  # most right, most anterior
    ras[0, 0] = 2  # most left, most posterior
    img = to_display(ras)
    assert img.shape == (4, 3)
    assert img[0, 0] == 1 and img[3, 2] == 2
    np.testing.assert_array_equal(from_display(img), ras)


def test_every_file_orientation_gives_the_same_slices() -> None:
    img, lbl = ras_case()
    cfg = make_cfg()
    ref = slice_case(vol(img), vol(lbl, name="l.nii.gz"), cfg, "c", np.random.default_rng(0))
    # Same anatomy stored LPS (x, y reversed) and permuted (array axes S, R, A).
    lps_aff = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_aff[:3, 3] = [7, 7, 0]
    perm_aff = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    for data_img, data_lbl, aff in (
        (img[::-1, ::-1], lbl[::-1, ::-1], lps_aff),
        (img.transpose(2, 0, 1), lbl.transpose(2, 0, 1), perm_aff),
    ):
        out = slice_case(
            vol(data_img, aff), vol(data_lbl, aff, "l.nii.gz"), cfg, "c", np.random.default_rng(0)
        )
        assert out.geometry.slices == ref.geometry.slices
        for (k1, i1, l1), (k2, i2, l2) in zip(out.slices, ref.slices, strict=True):
            assert k1 == k2
            np.testing.assert_array_equal(i1, i2)
            np.testing.assert_array_equal(l1, l2)
        back = reassemble_volume({k: lb for k, _, lb in out.slices}, out.geometry)
        np.testing.assert_array_equal(back, data_lbl)
    # Slice 3 of the RAS case: label 3 at (x=5, y=6) -> row 8-1-6 = 1, col 8-1-5 = 2;
    # label 2 at (6, 1) -> (6, 1).
    lbl3 = dict((k, lb) for k, _, lb in ref.slices)[3]
    assert lbl3[1, 2] == 3 and lbl3[6, 1] == 2 and int((lbl3 > 0).sum()) == 2


# === Checks and label mapping ===


def test_shape_and_affine_mismatch_name_both_files() -> None:
    img, lbl = ras_case()
    cfg = make_cfg()
    with pytest.raises(GeometryError) as info:
        slice_case(
            vol(img, name="p1_img.nii.gz"),
            vol(lbl[:, :, :5], name="p1_seg.nii.gz"),
            cfg,
            "c",
            np.random.default_rng(0),
        )
    msg = info.value.one_line()
    assert "p1_img.nii.gz (8, 8, 6)" in msg and "p1_seg.nii.gz (8, 8, 5)" in msg
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    with pytest.raises(GeometryError, match="affines differ") as info:
        slice_case(
            vol(img, name="p1_img.nii.gz"),
            vol(lbl, shifted, "p1_seg.nii.gz"),
            cfg,
            "c",
            np.random.default_rng(0),
        )
    assert "p1_img.nii.gz" in info.value.message and "p1_seg.nii.gz" in info.value.message
    # Within atol 1e-3 is the same geometry.
    shifted[0, 3] = 5e-4
    slice_case(vol(img), vol(lbl, shifted), cfg, "c", np.random.default_rng(0))


def test_nan_image_is_a_data_error_naming_the_file() -> None:
    img, lbl = ras_case()
    img[1, 1, 1] = np.nan
    img[2, 2, 2] = np.inf
    with pytest.raises(DataError) as e:
        slice_case(vol(img, name="p2_img.nii.gz"), vol(lbl), make_cfg(), "c", np.random.default_rng(0))
    assert e.value.one_line().startswith("/data/p2_img.nii.gz: image has 2 NaN/inf voxels")


def test_inference_on_a_nan_volume_names_the_file(tmp_path: Path) -> None:
    """Inference slices a volume in memory; the error must still name the file, not ``<memory>``."""
    img, _ = ras_case()
    img[0, 0, 0] = np.nan
    src = tmp_path / "scan_with_nan.nii.gz"
    with pytest.raises(DataError) as e:
        volume_to_slices(img, np.eye(4), Preprocessing.from_config(make_cfg()), "scan_with_nan", path=src)
    assert e.value.one_line().startswith(f"{src}: image has 1 NaN/inf voxels") and "<memory>" not in str(
        e.value.path
    )


def test_unexpected_label_values_are_listed_or_mapped_to_background() -> None:
    img, lbl = ras_case()
    lbl[0, 0, 0] = 7
    lbl[0, 0, 1] = 9
    with pytest.raises(DataError, match=r"unexpected label values 7, 9") as info:
        slice_case(vol(img), vol(lbl, name="p3_seg.nii.gz"), make_cfg(), "c", np.random.default_rng(0))
    assert "p3_seg.nii.gz" in info.value.one_line()
    out = slice_case(vol(img), vol(lbl), make_cfg(unknown_labels="background"), "c", np.random.default_rng(0))
    back = reassemble_volume({k: lb for k, _, lb in out.slices}, out.geometry)
    assert back[0, 0, 0] == 0 and back[0, 0, 1] == 0 and int((back == 1).sum()) == 6


def test_label_map_and_binary_merge() -> None:
    img, _ = ras_case()
    raw = np.zeros(img.shape, np.int32)
    raw[0, 0, 0], raw[1, 0, 0], raw[2, 0, 0] = 500, 205, 420
    cfg = make_cfg(label_map={500: 1, 205: 2, 420: 3})
    out = slice_case(vol(img), vol(raw), cfg, "c", np.random.default_rng(0))
    back = reassemble_volume({k: lb for k, _, lb in out.slices}, out.geometry)
    assert (back[0, 0, 0], back[1, 0, 0], back[2, 0, 0]) == (1, 2, 3) and back.dtype == np.uint8
    out = slice_case(vol(img), vol(raw), make_cfg(binary=True), "c", np.random.default_rng(0))
    back = reassemble_volume({k: lb for k, _, lb in out.slices}, out.geometry)
    assert sorted(np.unique(back).tolist()) == [0, 1] and int(back.sum()) == 3
    with pytest.raises(DataError, match="outside 0..3"):
        slice_case(vol(img), vol(raw), make_cfg(label_map={500: 4}), "c", np.random.default_rng(0))


# === Intensity ===


def test_ct_window_numbers() -> None:
    hu = np.array([-2000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0])
    recipe = intensity_recipe(hu, "ct", ct_window=(-1000, 1000))
    out = apply_intensity(hu, recipe)
    # (hu + 1000) * 255 / 2000, rounded half to even: 0 -> 127.5 -> 128, 500 -> 191.25 -> 191.
    assert out.tolist() == [0, 0, 128, 191, 255, 255]
    assert recipe == {"kind": "ct_window", "low": -1000.0, "high": 1000.0}
    np.testing.assert_array_equal(
        apply_intensity(hu[::-1], recipe), out[::-1]
    )  # element-wise: no data dependence


def test_mr_percentiles_use_the_whole_volume_never_one_slice() -> None:
    data = np.zeros((4, 4, 3), np.float32)
    data[..., 0], data[..., 1], data[..., 2] = 10.0, 20.0, 30.0
    recipe = intensity_recipe(data, "mr", mr_percentiles=(0.0, 100.0))
    out = apply_intensity(data, recipe)
    assert recipe == {"kind": "mr_percentile", "low": 10.0, "high": 30.0}
    # Per-slice scaling would make every (constant) slice 0; per-volume gives 0, 127.5 -> 128, 255.
    assert out[0, 0].tolist() == [0, 128, 255]
    cfg = make_cfg(modality="mr", mr_percentiles=[0.0, 100.0])
    sliced = slice_case(vol(data), None, cfg, "m", np.random.default_rng(0))
    assert sliced.geometry.intensity == recipe
    assert [int(i.mean()) for _, i, _ in sliced.slices] == [0, 128, 255]


# === Resizing ===


def test_resize_area_for_images_nearest_for_labels() -> None:
    img = np.array([[0, 4, 8, 8], [0, 4, 8, 8], [100, 100, 20, 20], [100, 100, 20, 40]], np.uint8)
    # INTER_AREA 4x4 -> 2x2 averages 2x2 blocks: 2, 8, 100, 25.
    assert resize_image(img, (2, 2)).tolist() == [[2, 8], [100, 25]]
    assert resize_image(img, (8, 8)).shape == (8, 8)
    lbl = np.array([[0, 1, 2], [3, 0, 1], [2, 3, 0]], np.uint8)
    for size in [(7, 5), (2, 2), (13, 11)]:
        out = resize_label(lbl, size)
        assert out.shape == size and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(resize_label(resize_label(lbl, (9, 9)), (3, 3)), lbl)


def test_resized_slices_and_record() -> None:
    img, lbl = ras_case((10, 12, 6))
    cfg = make_cfg(size=(24, 16))
    out = slice_case(vol(img), vol(lbl), cfg, "c", np.random.default_rng(0))
    rec = out.geometry
    assert RECORD_KEYS <= set(rec.to_json())
    json.dumps(rec.to_json())  # JSON-ready
    assert rec.shape == (10, 12, 6) and rec.canonical_shape == (10, 12, 6)
    assert rec.slice_shape == (12, 10) and rec.resize == (2.0, 1.6) and rec.n_slices == 6
    assert rec.orientation == "RAS" and rec.ornt_transform == ((0, 1), (1, 1), (2, 1))
    assert rec.spacing == (1.0, 1.0, 1.0) and rec.axis == 2
    for _, i2, l2 in out.slices:
        assert i2.shape == (24, 16) and l2 is not None and l2.shape == (24, 16)
    # Centre-aligned nearest back to 12x10 recovers the labels exactly (2x and 1.6x upscaling).
    back = reassemble_volume({k: lb for k, _, lb in out.slices}, rec)
    np.testing.assert_array_equal(back, lbl)


# === Empty slices ===


def test_empty_slice_policies_are_deterministic() -> None:
    img, lbl = np.zeros((8, 8, 40), np.float32), np.zeros((8, 8, 40), np.uint8)
    lbl[3, 3, 10:20] = 1  # 10 labelled slices, 30 empty
    fg = list(range(10, 20))
    keep = slice_case(vol(img), vol(lbl), make_cfg(empty_slices="keep"), "c", np.random.default_rng(0))
    drop = slice_case(vol(img), vol(lbl), make_cfg(empty_slices="drop"), "c", np.random.default_rng(0))
    assert keep.geometry.slices == tuple(range(40)) and drop.geometry.slices == tuple(fg)
    cfg = make_cfg(empty_slices="fraction", empty_fraction=0.2)
    a = list(slice_case(vol(img), vol(lbl), cfg, "c", np.random.default_rng(5)).geometry.slices)
    b = list(slice_case(vol(img), vol(lbl), cfg, "c", np.random.default_rng(5)).geometry.slices)
    assert a == b and len(a) == 10 + 6 and set(fg) <= set(a) and a == sorted(a)
    # Images without labels keep every slice.
    assert slice_case(vol(img), None, cfg, "c", np.random.default_rng(0)).geometry.slices == tuple(range(40))


# === Files and inference ===


def test_write_slices_files_decode_back(tmp_path: Path) -> None:
    img, lbl = ras_case()
    out = slice_case(vol(img), vol(lbl), make_cfg(empty_slices="drop"), "p7", np.random.default_rng(0))
    paths = write_slices(out, tmp_path / "train", palette_array(COLORS))
    names = sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    assert names == [
        "train/images/p7_0002.png",
        "train/images/p7_0003.png",
        "train/masks/p7_0002.png",
        "train/masks/p7_0003.png",
    ]
    for k, i2, l2 in out.slices:
        np.testing.assert_array_equal(read_gray(tmp_path / f"train/images/p7_{k:04d}.png"), i2)
        rgb = read_rgb(tmp_path / f"train/masks/p7_{k:04d}.png")
        np.testing.assert_array_equal(decode_mask(rgb, palette_array(COLORS), tolerance=0), l2)
    assert tuple(read_rgb(tmp_path / "train/masks/p7_0003.png")[1, 2]) == (0, 0, 255)  # class 3 is blue
    with pytest.raises(DataError, match="no colour") as info:
        write_slices(out, tmp_path / "bad", palette_array(COLORS[:1]))
    assert "masks/p7_0003.png" in info.value.one_line() and not (tmp_path / "bad").exists()


def test_reassemble_fills_unwritten_slices_with_zero_and_checks_indices() -> None:
    img, lbl = ras_case()
    out = slice_case(vol(img), vol(lbl), make_cfg(), "c", np.random.default_rng(0))
    only3 = {3: dict((k, lb) for k, _, lb in out.slices)[3]}
    back = reassemble_volume(only3, out.geometry)
    assert back.shape == (8, 8, 6) and int(back[..., 2].sum()) == 0
    np.testing.assert_array_equal(back[..., 3], lbl[..., 3])
    with pytest.raises(DataError, match="slice index 6 is outside 0..5"):
        reassemble_volume({6: only3[3]}, out.geometry)


def test_volume_to_slices_repeats_prepare_exactly() -> None:
    img, lbl = ras_case()
    aff = np.diag([-0.7, 0.7, 2.0, 1.0])
    cfg = make_cfg(size=(16, 16), empty_slices="drop")
    ref = slice_case(vol(img, aff), vol(lbl, aff), cfg, "c", np.random.default_rng(0))
    from_dataset_json = Preprocessing.from_json(
        {"prepare": cfg.prepare.model_dump(mode="json"), "modality": "ct"}
    )
    for spec in (Preprocessing.from_config(cfg), ref.geometry, from_dataset_json):
        again = volume_to_slices(img, aff, spec)
        assert (
            again.geometry.slices == tuple(range(6))
            and again.geometry.ornt_transform == ref.geometry.ornt_transform
        )
        imgs = {k: i for k, i, _ in again.slices}
        for k, i2, _ in ref.slices:
            np.testing.assert_array_equal(imgs[k], i2)
    with pytest.raises(DataError, match="lacks key 'modality'"):
        Preprocessing.from_json({"unrelated": 1})
    with pytest.raises(TypeError, match="needs a Preprocessing or a Geometry"):
        volume_to_slices(img, aff, cfg)  # type: ignore[arg-type]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_probabilities_reassemble_like_labels_on_a_non_ras_volume(axis: int) -> None:
    """One-hot maps of the predicted slices, put back, have the labels' argmax: orientation and the channel
    axis survive a non-square, LPS-like, permuted geometry."""
    from segkit.prepare.slicing import reassemble_probabilities, reassemble_volume

    shape = (9, 7, 5)
    affine = np.array([[0, -1.5, 0, 10], [-0.8, 0, 0, 5], [0, 0, 2.5, -3], [0, 0, 0, 1]], dtype=float)
    img = np.linspace(-500, 500, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    sliced = volume_to_slices(img, affine, Preprocessing.from_config(make_cfg(size=(8, 8), axis=axis)))
    h0, w0 = sliced.geometry.slice_shape
    n = sliced.geometry.canonical_shape[axis]
    labels2d = np.random.default_rng(axis).integers(0, 4, (n, h0, w0)).astype(np.uint8)
    probs = np.eye(4, dtype=np.float32)[labels2d] * 0.7 + 0.075  # a distribution per pixel, argmax = label
    vol_probs = reassemble_probabilities(probs, sliced.geometry)
    vol_labels = reassemble_volume({k: labels2d[k] for k in range(n)}, sliced.geometry)
    assert vol_probs.shape == (*shape, 4) and vol_labels.shape == shape
    np.testing.assert_array_equal(vol_probs.argmax(-1), vol_labels)
    np.testing.assert_allclose(vol_probs.sum(-1), 1.0, atol=1e-6)
