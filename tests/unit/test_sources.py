"""Source adapters on tiny raw layouts that mimic the published file names."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from segkit.config import load_config
from segkit.errors import DataError, SegkitError
from segkit.io.palette import decode_mask, palette_array
from segkit.io.png import read_rgb
from segkit.prepare.run import PrepareOptions, run_prepare
from segkit.prepare.slices2d import chest_mask_to_labels
from segkit.prepare.sources import SOURCES, SourceOptions, discover

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
AFFINE = np.array([[0, -0.8, 0, 10], [0.9, 0, 0, -5], [0, 0, 2.0, 3], [0, 0, 0, 1]], dtype=float)


def nii(path: Path, label: bool = False, value: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if label:
        arr = np.zeros((16, 16, 8), np.uint8)
        arr[4:10, 5:12, 2:6] = value
    else:
        arr = np.linspace(-500, 500, 16 * 16 * 8, dtype=np.float32).reshape(16, 16, 8)
    nib.save(nib.Nifti1Image(arr, AFFINE), str(path))
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_registry_lists_every_source_and_rejects_unknown() -> None:
    assert SOURCES.names() == ["alcapa", "chest-ct", "hocm", "hvsmr", "left-atrial", "nifti", "phantom"]
    with pytest.raises(SegkitError, match="unknown source 'hvsmrr'") as e:
        SOURCES.get("hvsmrr")
    assert "did you mean 'hvsmr'" in (e.value.hint or "")


def test_hvsmr(tmp_path: Path) -> None:
    root = tmp_path / "HVSMR-2.0"
    d = root / "cropped_norm"
    for i in (1, 2, 10):
        nii(d / f"pat{i}_cropped_norm.nii.gz")
        nii(d / f"pat{i}_cropped_seg.nii.gz", label=True)
    touch(d / "pat1_cropped_seg_endpoints.nii.gz")
    touch(d / "pat3_cropped_norm.nii.gz")  # no label
    for src in (d, root):  # the cropped_norm/ folder or its parent
        found = discover("hvsmr", src)
        assert [c.case_id for c in found.cases] == ["pat1", "pat10", "pat2"]
        assert found.cases[0].label == d / "pat1_cropped_seg.nii.gz"
        assert found.problems == ["pat3_cropped_norm.nii.gz: no label file for case 'pat3'"]


def test_hocm(tmp_path: Path) -> None:
    for i in (1, 2):
        nii(tmp_path / f"{i}_image.nii")
        nii(tmp_path / f"{i}_label.nii", label=True)
    touch(tmp_path / "7_label.nii")
    found = discover("hocm", tmp_path)
    assert [(c.case_id, c.image.name, c.label.name) for c in found.cases] == [
        ("1", "1_image.nii", "1_label.nii"),
        ("2", "2_image.nii", "2_label.nii"),
    ]
    assert found.problems == ["7_label.nii: no image file for case '7'"]


@pytest.mark.parametrize(
    "layout",
    [
        ("{id}_image.nii.gz", "{id}_label.nii.gz"),
        ("{id}.img.nii.gz", "{id}.label.nii.gz"),
        ("images/{id}.nii.gz", "labels/{id}.nii.gz"),
    ],
)
def test_alcapa_layouts(tmp_path: Path, layout: tuple[str, str]) -> None:
    for cid in ("a01", "a02"):
        touch(tmp_path / layout[0].format(id=cid))
        touch(tmp_path / layout[1].format(id=cid))
    found = discover("alcapa", tmp_path)
    assert [c.case_id for c in found.cases] == ["a01", "a02"] and not found.problems


def test_left_atrial_skips_macos_forks(tmp_path: Path) -> None:
    for n in (3, 4):
        touch(tmp_path / "imagesTr" / f"la_{n:03d}.nii.gz")
        touch(tmp_path / "labelsTr" / f"la_{n:03d}.nii.gz")
    touch(tmp_path / "imagesTr" / "._la_003.nii.gz")
    touch(tmp_path / "imagesTs" / "la_001.nii.gz")  # test images have no labels: ignored
    touch(tmp_path / "imagesTr" / "la_005.nii.gz")
    found = discover("left-atrial", tmp_path)
    assert [c.case_id for c in found.cases] == ["la_003", "la_004"]
    assert found.problems == ["la_005.nii.gz: no label file for case 'la_005'"]
    with pytest.raises(DataError, match="folder imagesTr/ not found"):
        discover("left-atrial", tmp_path / "imagesTr")


def test_nifti_globs_and_nrrd(tmp_path: Path) -> None:
    touch(tmp_path / "brain1_image.nrrd")
    touch(tmp_path / "brain1_label.nrrd")
    touch(tmp_path / "ct_image.nii.gz")
    touch(tmp_path / "ct_label.nii.gz")
    touch(tmp_path / "lonely_image.nii.gz")
    found = discover("nifti", tmp_path, SourceOptions("*_image.nrrd", "*_label.nrrd"))
    assert [(c.case_id, c.image.name, c.label.name) for c in found.cases] == [
        ("brain1", "brain1_image.nrrd", "brain1_label.nrrd")
    ]
    found = discover("nifti", tmp_path, SourceOptions("*_image.nii.gz", "*_label.nii.gz"))
    assert [c.case_id for c in found.cases] == ["ct"]
    assert found.problems == ["lonely_image.nii.gz: no label file for case 'lonely'"]
    with pytest.raises(DataError, match="needs --image-glob and --label-glob"):
        discover("nifti", tmp_path)
    with pytest.raises(DataError, match="must contain exactly one"):
        discover("nifti", tmp_path, SourceOptions("*_*.nii.gz", "*_label.nii.gz"))


def test_missing_source_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="source folder not found") as e:
        discover("hocm", tmp_path / "nope")
    assert e.value.path == tmp_path / "nope"
    with pytest.raises(DataError, match="no cases found"):
        discover("hocm", tmp_path)


# === chest-ct ===


def chest_mask(lung: bool, heart: bool, trachea: bool) -> np.ndarray:
    """32x32 RGB mask: lung (R) left half, heart (G) centre square, trachea (B) small square inside heart."""
    rgb = np.zeros((32, 32, 3), np.uint8)
    if lung:
        rgb[4:28, 2:16, 0] = 255
    if heart:
        rgb[10:22, 10:22, 1] = 255
    if trachea:
        rgb[14:18, 14:18, 2] = 255
    return rgb


def write_jpg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 75])


def make_chest(root: Path, patients: dict[str, int], nested: bool, with_csv: bool) -> None:
    img_dir = root / "images" / "images" if nested else root / "images"
    mask_dir = root / "masks" / "masks" if nested else root / "masks"
    rows = []
    rng = np.random.default_rng(0)
    for pid, n in patients.items():
        for k in range(n):
            img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            write_jpg(img_dir / f"{pid}_{k}.jpg", img)
            write_jpg(mask_dir / f"{pid}_mask_{k}.jpg", chest_mask(True, k % 2 == 0, k == 0))
            rows.append((f"{pid}_{k}.jpg", f"{pid}_mask_{k}.jpg"))
    if with_csv:
        with (root / "train.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["ImageId", "MaskId"])
            w.writerows(rows)


def test_chest_mask_thresholds_channels_with_precedence() -> None:
    cfg = load_config(CONFIGS / "chest-ct.yaml")  # 1 trachea, 2 heart, 3 lung
    rgb = chest_mask(True, True, True)
    ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 60])
    noisy = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert len(np.unique(noisy.reshape(-1, 3), axis=0)) > 4  # real JPEG noise
    lbl = chest_mask_to_labels(noisy, cfg)
    assert lbl[16, 16] == 1  # trachea wins over heart and lung
    assert lbl[11, 11] == 2  # heart wins over lung
    assert lbl[6, 4] == 3  # lung only
    assert lbl[30, 30] == 0
    clean = chest_mask_to_labels(rgb, cfg)
    assert np.mean(clean == lbl) > 0.97
    binary = chest_mask_to_labels(rgb, load_config(CONFIGS / "chest-ct.yaml", ["prepare.binary=true"]))
    assert set(np.unique(binary)) == {0, 1}
    with pytest.raises(DataError, match="the config lacks lung, heart, trachea"):
        chest_mask_to_labels(rgb, load_config(CONFIGS / "demo.yaml"))


@pytest.mark.parametrize("nested,with_csv", [(True, True), (False, False)])
def test_chest_ct_discovery_groups_by_patient(tmp_path: Path, nested: bool, with_csv: bool) -> None:
    make_chest(tmp_path, {"ID0001": 3, "ID0002": 2}, nested, with_csv)
    found = discover("chest-ct", tmp_path)
    assert [c.case_id for c in found.cases] == ["ID0001", "ID0002"]
    assert [c.kind for c in found.cases] == ["slices2d", "slices2d"]
    c0 = found.cases[0]
    assert [(k, img.name, m.name) for k, img, m in c0.slices] == [
        (0, "ID0001_0.jpg", "ID0001_mask_0.jpg"),
        (1, "ID0001_1.jpg", "ID0001_mask_1.jpg"),
        (2, "ID0001_2.jpg", "ID0001_mask_2.jpg"),
    ]
    assert not found.problems


def test_chest_ct_csv_reports_missing_files(tmp_path: Path) -> None:
    make_chest(tmp_path, {"ID0001": 2}, nested=True, with_csv=True)
    (tmp_path / "masks" / "masks" / "ID0001_mask_1.jpg").unlink()
    found = discover("chest-ct", tmp_path)
    assert found.problems == [
        "ID0001_mask_1.jpg: mask of ID0001_1.jpg listed in train.csv but not found in masks/",
    ]
    assert [len(c.slices) for c in found.cases] == [1]


def test_chest_ct_prepare_end_to_end(tmp_path: Path) -> None:
    make_chest(tmp_path / "raw", {"P1": 2, "P2": 2, "P3": 2}, nested=True, with_csv=True)
    cfg = load_config(
        CONFIGS / "chest-ct.yaml",
        ["prepare.size=[16,16]", "prepare.empty_slices=keep", "prepare.split.valid=0.3"],
    )
    report = run_prepare("chest-ct", tmp_path / "raw", tmp_path / "out", cfg, PrepareOptions(workers=1))
    assert report.ok and report.manifest is not None
    masks = sorted((tmp_path / "out").glob("*/masks/*.png"), key=lambda p: p.name)
    assert [p.name for p in masks] == sorted(f"P{i}_{k:04d}.png" for i in (1, 2, 3) for k in (0, 1))
    # Slice 0 of each patient has all three structures: decode the written colour mask back to ids.
    mask0 = next(p for p in masks if p.name == "P1_0000.png")
    ids = decode_mask(read_rgb(mask0), palette_array([c.color for c in cfg.classes]), tolerance=0)
    assert ids[8, 8] == 1 and ids[3, 2] == 3  # trachea centre, lung (rows 4:28, cols 2:16 at 32 px -> /2)
    assert (
        report.summary["train"]["cases"] + report.summary["valid"]["cases"] + report.summary["test"]["cases"]
        == 3
    )
