"""``segkit prepare nifti`` end to end on real volumes: the command, its PNG files and ``dataset.json``.

``tests/data/test_real_volumes.py`` checks the slicing functions directly; this file goes through the CLI
(Typer's ``CliRunner`` on ``segkit.cli.app.app``) with a config YAML, the ``nifti`` source's globs and the
real files (symlinked into ``tmp_path`` under matching names; nothing is copied into the repo).

The reference is computed here, independently of segkit's geometry code:

- NIfTI: ``nib.as_closest_canonical`` reorients the raw label to RAS;
- NRRD: ``pynrrd`` reads the raw array, the LPS -> RAS affine is built by hand and ``nibabel.orientations``
  reorients;
- display convention (written out as index arithmetic): for the RAS slice ``s = ras[:, :, k]`` of shape
  (X, Y), ``display[r, c] = s[X - 1 - c, Y - 1 - r]`` (= ``s.T[::-1, ::-1]``: anterior at the top, patient
  right on the image's left);
- resizing: OpenCV ``INTER_NEAREST_EXACT`` (the only interpolation segkit applies to label maps).

What the command wrote is read back from the mask PNGs (``read_rgb`` + ``decode_mask``) and compared with
that reference: labelled voxels must land on the right class.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import nibabel as nib
import nrrd
import numpy as np
import pytest
import yaml
from nibabel import orientations as nio
from PIL import Image
from typer.testing import CliRunner

from segkit.cli.app import app
from segkit.io.palette import decode_mask, palette_array
from segkit.io.png import read_rgb

pytestmark = pytest.mark.data

COLORS = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
    (255, 0, 255), (128, 128, 128), (255, 128, 0), (128, 0, 255),
]


def write_config(path: Path, n_classes: int, modality: str, size: tuple[int, int], empty: str) -> Path:
    cfg = {
        "name": f"real-{modality}",
        "seed": 3,
        "modality": modality,
        "classes": [{"id": i + 1, "name": f"s{i + 1}", "color": list(COLORS[i])} for i in range(n_classes)],
        "prepare": {
            "axis": 2,
            "size": list(size),
            "ct_window": [-200, 600],
            "empty_slices": empty,
            "split": {"train": 1, "valid": 0, "test": 0},  # one case: all of it in train
        },
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_prepare_cli(src: Path, out: Path, config: Path, image_glob: str, label_glob: str) -> dict:
    result = CliRunner().invoke(
        app,
        ["prepare", "nifti", str(src), "--out", str(out), "--config", str(config),
         "--image-glob", image_glob, "--label-glob", label_glob, "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "dataset.json").read_text(encoding="utf-8"))


def display(ras_slice: np.ndarray) -> np.ndarray:
    """Independent display convention: ``out[r, c] = s[X - 1 - c, Y - 1 - r]`` for ``s`` of shape (X, Y)."""
    nx, ny = ras_slice.shape
    rows = np.arange(ny)[:, None]
    cols = np.arange(nx)[None, :]
    return ras_slice[nx - 1 - cols, ny - 1 - rows]


def reference_slice(ref_ras: np.ndarray, k: int, size: tuple[int, int]) -> np.ndarray:
    """Expected class ids of written slice ``k``: display convention, then nearest-exact resize if needed."""
    expected = np.ascontiguousarray(display(ref_ras[:, :, k]).astype(np.uint8))
    if expected.shape != size:
        expected = cv2.resize(expected, (size[1], size[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    return expected


def written_slices(split_dir: Path, case_id: str) -> tuple[list[int], list[int]]:
    """Slice indices in the file names of ``images/`` and ``masks/`` (``<case_id>_<k:04d>.png``)."""
    def indices(sub: str) -> list[int]:
        names = sorted(p.name for p in (split_dir / sub).iterdir())
        assert all(n.startswith(f"{case_id}_") and n.endswith(".png") for n in names), names
        return sorted(int(n[len(case_id) + 1 : -4]) for n in names)

    return indices("images"), indices("masks")


def check_masks(
    split_dir: Path, case_id: str, ref_ras: np.ndarray, size: tuple[int, int], n_classes: int
) -> set[int]:
    """Decode every written mask and compare it with the reference; returns the class ids seen."""
    palette = palette_array(COLORS[:n_classes])
    seen: set[int] = set()
    for path in sorted((split_dir / "masks").glob(f"{case_id}_*.png")):
        k = int(path.stem.rsplit("_", 1)[1])
        ids = decode_mask(read_rgb(path), palette, tolerance=0, path=path)
        assert ids.shape == size
        np.testing.assert_array_equal(ids, reference_slice(ref_ras, k, size), err_msg=f"{path.name}")
        seen |= set(np.unique(ids).tolist())
    return seen


def check_png_formats(split_dir: Path, case_id: str, k: int, size: tuple[int, int]) -> None:
    """Images are 8-bit grayscale PNGs and masks 24-bit RGB PNGs, as PIL and OpenCV read them."""
    img_path = split_dir / "images" / f"{case_id}_{k:04d}.png"
    mask_path = split_dir / "masks" / f"{case_id}_{k:04d}.png"
    with Image.open(img_path) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", (size[1], size[0]))
    with Image.open(mask_path) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (size[1], size[0]))
        np.testing.assert_array_equal(np.asarray(im), read_rgb(mask_path))
    raw = cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.shape == size


def test_prepare_nifti_real_ct_resized(shared_data: Path, tmp_path: Path) -> None:
    """TotalSegmentator aorta CT (LPS, 1.5 mm, labels 0..9) at 150 x 100: rows upscaled, columns
    downscaled."""
    base = shared_data / "volumes" / "totalseg_aorta_ct"
    img_src, lbl_src = base / "aorta_ct_image.nii.gz", base / "aorta_ct_structures_label.nii.gz"
    src = tmp_path / "raw"
    src.mkdir()
    (src / "aorta_image.nii.gz").symlink_to(img_src)
    (src / "aorta_label.nii.gz").symlink_to(lbl_src)
    size = (150, 100)  # native display plane is (A 126 rows, R 120 columns)
    config = write_config(tmp_path / "ct.yaml", 9, "ct", size, "keep")
    out = tmp_path / "out"
    manifest = run_prepare_cli(src, out, config, "*_image.nii.gz", "*_label.nii.gz")

    # Independent reference: nibabel alone.
    lbl_img = nib.load(str(lbl_src))
    raw = np.asarray(lbl_img.dataobj)
    ras = nib.as_closest_canonical(lbl_img)
    assert "".join(nib.aff2axcodes(lbl_img.affine)) == "LPS" and "".join(nib.aff2axcodes(ras.affine)) == "RAS"
    ref_ras = np.asarray(ras.dataobj).astype(np.uint8)
    assert raw.shape == (120, 126, 164) and ref_ras.shape == (120, 126, 164)

    rec = manifest["cases"]["aorta"]
    assert manifest["source"] == "nifti" and manifest["modality"] == "ct" and rec["split"] == "train"
    assert [c["color"] for c in manifest["classes"]] == [list(c) for c in COLORS]
    assert rec["shape"] == list(raw.shape)
    assert np.allclose(rec["spacing"], lbl_img.header.get_zooms()[:3]) and np.allclose(rec["spacing"], 1.5)
    assert np.allclose(np.asarray(rec["affine"]), lbl_img.affine)
    assert rec["orientation"] == "LPS" and rec["axis"] == 2 and rec["n_slices"] == 164
    assert rec["slice_shape"] == [126, 120] and rec["resize"] == pytest.approx([150 / 126, 100 / 120])
    assert rec["image"] == str(img_src.resolve()) and rec["label"] == str(lbl_src.resolve())

    # empty_slices: keep -> every axial slice, and the file names say exactly the recorded indices.
    split_dir = out / "train"
    images, masks = written_slices(split_dir, "aorta")
    assert images == masks == rec["slices"] == list(range(164))
    for other in ("valid", "test"):
        assert not any((out / other).rglob("*.png"))

    seen = check_masks(split_dir, "aorta", ref_ras, size, 9)
    assert seen == set(range(10)) == set(np.unique(ref_ras).tolist())  # every structure came through
    check_png_formats(split_dir, "aorta", rec["slices"][82], size)


def test_prepare_nifti_real_nrrd_native(shared_data: Path, tmp_path: Path) -> None:
    """PyRadiomics brain1 MRI in NRRD (LPS world), 1 label, at the native 256 x 256: exact equality."""
    base = shared_data / "volumes" / "pyradiomics_nrrd"
    img_src, lbl_src = base / "brain1_image.nrrd", base / "brain1_label.nrrd"
    src = tmp_path / "raw"
    src.mkdir()
    (src / "brain1_image.nrrd").symlink_to(img_src)
    (src / "brain1_label.nrrd").symlink_to(lbl_src)
    size = (256, 256)
    config = write_config(tmp_path / "mr.yaml", 1, "mr", size, "drop")
    out = tmp_path / "out"
    manifest = run_prepare_cli(src, out, config, "*_image.nrrd", "*_label.nrrd")

    # Independent reference: pynrrd + LPS -> RAS by hand + nibabel.orientations.
    raw, header = nrrd.read(str(lbl_src))
    assert header["space"] == "left-posterior-superior"
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = lps_to_ras @ np.asarray(header["space directions"], dtype=float).T  # column i = axis i step
    aff[:3, 3] = lps_to_ras @ np.asarray(header["space origin"], dtype=float)
    ornt = nio.ornt_transform(nio.io_orientation(aff), nio.axcodes2ornt("RAS"))
    ref_ras = nio.apply_orientation(raw, ornt).astype(np.uint8)
    assert raw.shape == (256, 256, 25) and ref_ras.shape[:2] == (256, 256)

    rec = manifest["cases"]["brain1"]
    assert manifest["modality"] == "mr" and rec["split"] == "train"
    assert rec["shape"] == list(raw.shape)
    assert np.allclose(np.asarray(rec["affine"]), aff)
    assert np.allclose(rec["spacing"], np.linalg.norm(aff[:3, :3], axis=0))
    assert rec["orientation"] == "".join(nio.aff2axcodes(aff))
    assert rec["slice_shape"] == [256, 256] and rec["resize"] == [1.0, 1.0]
    # MR: the recorded window is the 0.5/99.5 percentiles of the WHOLE image volume.
    image_raw, _ = nrrd.read(str(img_src))
    lo, hi = np.percentile(image_raw, [0.5, 99.5])
    assert rec["intensity"]["kind"] == "mr_percentile"
    assert rec["intensity"]["low"] == pytest.approx(lo) and rec["intensity"]["high"] == pytest.approx(hi)

    # empty_slices: drop -> exactly the labelled slices of the reference, named by their index.
    labelled = [k for k in range(ref_ras.shape[2]) if ref_ras[:, :, k].any()]
    assert 0 < len(labelled) < ref_ras.shape[2]
    images, masks = written_slices(out / "train", "brain1")
    assert images == masks == rec["slices"] == labelled

    seen = check_masks(out / "train", "brain1", ref_ras, size, 1)
    assert seen == {0, 1}
    check_png_formats(out / "train", "brain1", labelled[len(labelled) // 2], size)
