"""Real volumes: labelled voxels land on the right class after reorientation, slicing and resizing.

The reference is computed here, independently of segkit's geometry code: nibabel reorients the raw label
array (``as_closest_canonical`` / ``nibabel.orientations``), the display convention is applied with explicit
index arithmetic, and OpenCV resizes with nearest neighbour. What segkit wrote is read back from the PNG
files and decoded to class ids.

Display convention (segkit.prepare.slicing): on an axial slice of the RAS volume, row 0 is the most anterior
y and column 0 the most right x (radiological: patient right on the image's left).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import nibabel as nib
import nrrd
import numpy as np
import pytest
from nibabel import orientations as nio

from segkit.config import Config, validate_config
from segkit.io.palette import decode_mask, palette_array
from segkit.io.png import read_gray, read_rgb
from segkit.io.volumes import load_volume
from segkit.prepare.slicing import reassemble_volume, slice_case, write_slices

pytestmark = pytest.mark.data

CT_COLORS = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
    (255, 0, 255), (128, 128, 128), (255, 128, 0), (128, 0, 255),
]


def make_cfg(n_classes: int, modality: str, size: tuple[int, int]) -> Config:
    return validate_config(
        {
            "modality": modality,
            "classes": [
                {"id": i + 1, "name": f"s{i + 1}", "color": list(CT_COLORS[i])} for i in range(n_classes)
            ],
            "prepare": {"axis": 2, "size": list(size), "ct_window": [-200, 600], "empty_slices": "drop"},
        }
    )


def display_axial(ras_slice: np.ndarray) -> np.ndarray:
    """Independent display: out[r, c] = ras[X - 1 - c, Y - 1 - r] (anterior top, patient right on the
    left)."""
    nx, ny = ras_slice.shape
    rows = np.arange(ny)[:, None]
    cols = np.arange(nx)[None, :]
    return ras_slice[nx - 1 - cols, ny - 1 - rows]


def decode_png_mask(path: Path, palette: np.ndarray) -> np.ndarray:
    """Read a written mask PNG and decode it to class ids with ``decode_mask``.

    ``decode_mask`` runs on the mask's distinct colours only (packed to uint32 here), which gives the same
    ids per pixel and keeps ~400 real-size masks within the test budget.
    """
    rgb = read_rgb(path).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    uniq = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=-1).astype(np.uint8)
    ids = decode_mask(uniq[:, None, :], palette, tolerance=0, path=path)[:, 0]
    return ids[inverse.reshape(packed.shape)]


def decode_written(out_dir: Path, case_id: str, palette: np.ndarray) -> dict[int, np.ndarray]:
    masks = sorted((out_dir / "masks").glob(f"{case_id}_*.png"))
    return {int(p.stem.rsplit("_", 1)[1]): decode_png_mask(p, palette) for p in masks}


def check_against_reference(
    decoded: dict[int, np.ndarray], ref_ras: np.ndarray, size: tuple[int, int], native: bool
) -> None:
    labelled = [k for k in range(ref_ras.shape[2]) if ref_ras[:, :, k].any()]
    assert sorted(decoded) == labelled  # empty_slices: drop -> exactly the labelled slices
    for k in labelled:
        expected = display_axial(ref_ras[:, :, k]).astype(np.uint8)
        if not native:
            expected = cv2.resize(expected, (size[1], size[0]), interpolation=cv2.INTER_NEAREST_EXACT)
        assert decoded[k].shape == size
        np.testing.assert_array_equal(decoded[k], expected, err_msg=f"slice {k}")


# === CT: TotalSegmentator aorta crop, LPS, 1.5 mm, 9 labels ===


@pytest.fixture(scope="module")
def ct_paths(shared_data: Path) -> tuple[Path, Path]:
    base = shared_data / "volumes" / "totalseg_aorta_ct"
    return base / "aorta_ct_image.nii.gz", base / "aorta_ct_structures_label.nii.gz"


@pytest.fixture(scope="module")
def ct_reference(ct_paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw label, RAS label and RAS image computed by nibabel alone."""
    lbl_img = nib.load(str(ct_paths[1]))
    ras_lbl = nib.as_closest_canonical(lbl_img)
    assert nib.aff2axcodes(ras_lbl.affine) == ("R", "A", "S")
    ras_img = nib.as_closest_canonical(nib.load(str(ct_paths[0])))
    return (
        np.asarray(lbl_img.dataobj),
        np.asarray(ras_lbl.dataobj).astype(np.uint8),
        np.asarray(ras_img.dataobj).astype(np.float64),
    )


def test_ct_native_size_exact_classes_images_and_reassembly(
    ct_paths: tuple[Path, Path], ct_reference: tuple, tmp_path: Path
) -> None:
    raw, ref_ras, hu_ras = ct_reference
    image, label = load_volume(ct_paths[0]), load_volume(ct_paths[1])
    assert "".join(nib.aff2axcodes(image.affine)) == "LPS" and image.data.shape == (120, 126, 164)
    size = (126, 120)  # axial display of the (R 120, A 126) plane: rows = A, cols = R
    cfg = make_cfg(9, "ct", size)
    sliced = slice_case(image, label, cfg, "aorta", np.random.default_rng(0))
    write_slices(sliced, tmp_path / "train", palette_array(CT_COLORS))
    decoded = decode_written(tmp_path / "train", "aorta", palette_array(CT_COLORS))
    check_against_reference(decoded, ref_ras, size, native=True)
    # Full-mask decode_mask on one slice gives the same ids as the colour-wise decode above.
    k0 = sorted(decoded)[len(decoded) // 2]
    full = decode_mask(
        read_rgb(tmp_path / "train" / "masks" / f"aorta_{k0:04d}.png"), palette_array(CT_COLORS), 0
    )
    np.testing.assert_array_equal(full, decoded[k0])
    assert set(np.unique(np.stack(list(decoded.values())))) == set(range(10))
    # Images: independent HU window (-200..600) scaled to 0..255 (float rounding may differ by 1 at .5).
    for k in (sorted(decoded)[0], sorted(decoded)[len(decoded) // 2]):
        expected = np.rint((np.clip(display_axial(hu_ras[:, :, k]), -200, 600) + 200) * 255 / 800)
        got = read_gray(tmp_path / "train" / "images" / f"aorta_{k:04d}.png").astype(np.float64)
        assert np.abs(got - expected).max() <= 1
    # Reassembly of the decoded PNG masks gives the original (LPS) label array exactly.
    back = reassemble_volume(decoded, sliced.geometry)
    assert back.shape == raw.shape == sliced.geometry.shape
    np.testing.assert_array_equal(back, raw)
    np.testing.assert_allclose(sliced.geometry.affine_array, nib.load(str(ct_paths[1])).affine)
    assert sliced.geometry.orientation == "LPS" and sliced.geometry.spacing == pytest.approx((1.5, 1.5, 1.5))


def test_ct_anatomy_is_the_right_way_up(ct_paths: tuple[Path, Path], tmp_path: Path) -> None:
    """Descending aorta (1) is anterior-left of the T12 vertebra (7): above it and to the image's right."""
    image, label = load_volume(ct_paths[0]), load_volume(ct_paths[1])
    sliced = slice_case(image, label, make_cfg(9, "ct", (126, 120)), "aorta", np.random.default_rng(0))
    both = [(k, lb) for k, _, lb in sliced.slices if (lb == 1).any() and (lb == 7).sum() > 50]
    assert both
    k, lb = both[len(both) // 2]
    aorta_rc = np.argwhere(lb == 1).mean(0)
    spine_rc = np.argwhere(lb == 7).mean(0)
    assert aorta_rc[0] < spine_rc[0]  # anterior = higher up on the image
    assert aorta_rc[1] > spine_rc[1]  # patient left = image right


def test_ct_resized_matches_nearest_of_reference(
    ct_paths: tuple[Path, Path], ct_reference: tuple, tmp_path: Path
) -> None:
    raw, ref_ras, _ = ct_reference
    size = (96, 80)  # downscale, different in each direction
    sliced = slice_case(
        load_volume(ct_paths[0]),
        load_volume(ct_paths[1]),
        make_cfg(9, "ct", size),
        "aorta",
        np.random.default_rng(0),
    )
    write_slices(sliced, tmp_path / "train", palette_array(CT_COLORS))
    decoded = decode_written(tmp_path / "train", "aorta", palette_array(CT_COLORS))
    check_against_reference(decoded, ref_ras, size, native=False)
    back = reassemble_volume(decoded, sliced.geometry)
    assert back.shape == raw.shape and sliced.geometry.resize == pytest.approx((96 / 126, 80 / 120))
    # Downscaling loses thin structures, but most labelled voxels come back in place.
    fg = raw > 0
    assert (back[fg] == raw[fg]).mean() > 0.75


# === MRI: PyRadiomics brain1 in NRRD (LPS world), 1 label ===


def test_nrrd_pair_native_and_resized(shared_data: Path, tmp_path: Path) -> None:
    base = shared_data / "volumes" / "pyradiomics_nrrd"
    img_path, lbl_path = base / "brain1_image.nrrd", base / "brain1_label.nrrd"
    # Independent reference: pynrrd + LPS -> RAS by hand + nibabel.orientations.
    raw, header = nrrd.read(str(lbl_path))
    assert header["space"] == "left-posterior-superior"
    aff = np.eye(4)
    aff[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(header["space directions"], dtype=float).T
    aff[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(header["space origin"], dtype=float)
    ornt = nio.ornt_transform(nio.io_orientation(aff), nio.axcodes2ornt("RAS"))
    ref_ras = nio.apply_orientation(raw, ornt).astype(np.uint8)

    image, label = load_volume(img_path), load_volume(lbl_path)
    np.testing.assert_allclose(label.affine, aff)
    palette = palette_array(CT_COLORS[:1])
    for size, native in (((256, 256), True), ((128, 160), False)):
        cfg = make_cfg(1, "mr", size)
        sliced = slice_case(image, label, cfg, "brain1", np.random.default_rng(0))
        out = tmp_path / f"s{size[0]}"
        write_slices(sliced, out, palette)
        decoded = decode_written(out, "brain1", palette)
        check_against_reference(decoded, ref_ras, size, native=native)
        if native:
            back = reassemble_volume(decoded, sliced.geometry)
            assert back.shape == raw.shape == (256, 256, 25)
            np.testing.assert_array_equal(back, raw)
            # MR: percentiles of the whole raw volume, not of a slice.
            img_raw, _ = nrrd.read(str(img_path))
            lo, hi = np.percentile(img_raw, [0.5, 99.5])
            assert sliced.geometry.intensity == {
                "kind": "mr_percentile",
                "low": pytest.approx(lo),
                "high": pytest.approx(hi),
            }
