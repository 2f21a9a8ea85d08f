"""Per-case volume metrics of ``evaluate_model``: every slice of a test volume is scored against the ORIGINAL
label volume (false positives on slices that ``prepare`` did not write count), with a reported fallback to the
written slices when the sources are gone; 2D slice cases (chest-CT) are stacked, Dice/IoU only.

The "models" are 1x1 convolutions with zero weights whose bias picks one class everywhere, so every expected
number follows from voxel counts by hand.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from segkit.config import load_config, validate_config
from segkit.evaluate.run import evaluate_model
from segkit.prepare import PrepareOptions, SourceOptions, run_prepare

SHAPE = (16, 16, 10)  # X, Y, Z; slicing axis 2 (Z), 16x16 slices: prepare.size [16, 16] means no resize
AFFINE = np.diag([-0.8, -0.9, 2.0, 1.0])  # LPS-like, anisotropic spacing
ALL_TEST = "prepare.split={train: 0, valid: 0, test: 1}"


def read_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as f:
        return {(r["case_id"], r["class_name"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def volume_case(tmp_path_factory: pytest.TempPathFactory, constant_model) -> dict[str, object]:  # noqa: ANN001
    """One NIfTI case prepared with ``empty_slices: drop`` (only Z slices 3, 4, 5 written) and an
    all-class-1 model."""
    root = tmp_path_factory.mktemp("evvol")
    raw = root / "raw"
    raw.mkdir()
    img = np.linspace(-400, 400, int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)
    lbl = np.zeros(SHAPE, np.uint8)
    lbl[4:10, 5:12, 3:6] = 1  # 6 * 7 * 3 = 126 voxels on Z slices 3..5
    lbl[10:13, 2:5, 4] = 2  # 9 voxels on Z slice 4
    nib.save(nib.Nifti1Image(img, AFFINE), str(raw / "c1_image.nii.gz"))
    nib.save(nib.Nifti1Image(lbl, AFFINE), str(raw / "c1_label.nii.gz"))
    cfg = validate_config(
        {
            "name": "tiny-eval",
            "modality": "ct",
            "classes": [{"id": 1, "name": "a", "color": [255, 0, 0]},
                        {"id": 2, "name": "b", "color": [0, 255, 0]}],
            "prepare": {"axis": 2, "size": [16, 16], "ct_window": [-500, 500], "empty_slices": "drop",
                        "split": {"train": 0, "valid": 0, "test": 1}},
            "data": {"image_size": [16, 16], "channels": 1, "dir": str(root / "data")},
            "model": {"name": "flexunet", "base_filters": 4, "num_layers": 3},
            "train": {"run_dir": str(root / "run")},
            "infer": {"batch_size": 8, "tta": False, "largest_component": False},
            "evaluate": {"split": "test", "nsd_tolerance_mm": 1.0},
        }
    )
    globs = SourceOptions(image_glob="*_image.nii.gz", label_glob="*_label.nii.gz")
    report = run_prepare("nifti", raw, root / "data", cfg, PrepareOptions(workers=1, source_options=globs))
    assert report.ok
    written = sorted(p.name for p in (root / "data" / "test" / "images").iterdir())
    assert written == ["c1_0003.png", "c1_0004.png", "c1_0005.png"]  # label-free slices dropped
    constant_model(root / "run" / "model.keras", 1, [0.0, 10.0, -10.0])  # class 1 everywhere
    return {"root": root, "cfg": cfg, "raw": raw}


def test_false_positives_on_unwritten_slices_lower_dice(volume_case: dict[str, object]) -> None:
    root, cfg = volume_case["root"], volume_case["cfg"]
    res = evaluate_model(cfg, out_dir=root / "eval")  # type: ignore[arg-type]
    rows = read_rows(res.csv_path)
    n_vox, ref1 = 16 * 16 * 10, 126
    a = rows[("c1", "a")]
    # every voxel of the volume is predicted class 1: the 7 unwritten slices add 7 * 256 false positives
    assert int(a["pred_voxels"]) == n_vox and int(a["tp"]) == ref1 and int(a["fp"]) == n_vox - ref1
    assert float(a["dice"]) == pytest.approx(2 * ref1 / (ref1 + n_vox), abs=1e-6)  # 0.0938
    assert float(a["iou"]) == pytest.approx(ref1 / n_vox, abs=1e-6)
    written_only = 2 * ref1 / (ref1 + 3 * 256)  # 0.2819: what the 3 written slices alone would give
    assert float(a["dice"]) < written_only
    b = rows[("c1", "b")]
    assert int(b["ref_voxels"]) == 9 and int(b["pred_voxels"]) == 0 and float(b["dice"]) == 0.0
    assert float(b["fp_volume_mm3"]) == 0.0
    assert float(a["hd95_mm"]) >= 0 and 0 <= float(a["nsd"]) <= 1  # surface metrics computed (spacing known)
    summary = json.loads(res.json_path.read_text())
    assert summary["reference"] == "original label volumes"
    assert summary["reference_per_case"] == {"c1": "original label volumes"}
    assert summary["volumetric"] is True and summary["n_cases"] == 1
    # the per-slice table still covers the written slices only: 3 slices x 2 classes
    with open(res.slices_csv_path, newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert summary["per_slice"]["a"]["pooled_dice"] == pytest.approx(written_only, abs=1e-6)


def test_missing_sources_fall_back_to_written_slices(
    volume_case: dict[str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture,
    recording_progress,  # noqa: ANN001 - conftest.RecordingProgress
) -> None:
    root, cfg, raw = volume_case["root"], volume_case["cfg"], volume_case["raw"]
    moved = tmp_path / "raw-moved"
    shutil.move(str(raw), str(moved))  # the dataset's source files are gone
    rec = recording_progress()
    try:
        with caplog.at_level(logging.WARNING, logger="segkit.evaluate.run"):
            res = evaluate_model(cfg, out_dir=root / "eval-fallback", progress=rec)  # type: ignore[arg-type]
    finally:
        shutil.move(str(moved), str(raw))
    assert rec.tasks == [("evaluate", 3, 3)]  # the written slices only: no volume to segment
    a = read_rows(res.csv_path)[("c1", "a")]
    assert int(a["pred_voxels"]) == 3 * 256 and int(a["ref_voxels"]) == 126
    assert float(a["dice"]) == pytest.approx(2 * 126 / (126 + 3 * 256), abs=1e-6)
    summary = json.loads(res.json_path.read_text())
    assert summary["reference"] == "reassembled written slices"
    assert any("reference = reassembled written slices" in r.getMessage() and "c1" in r.getMessage()
               for r in caplog.records)


def test_progress_reports_a_start_then_advances_summing_to_its_total(
    volume_case: dict[str, object], tmp_path: Path, recording_progress  # noqa: ANN001 - conftest.RecordingProgress
) -> None:
    """The one ``segkit.progress.Progress`` protocol: evaluate, infer and the post-processing choice each
    start a task with its total and advance by exactly that much."""
    from segkit.infer.options import InferOptions
    from segkit.infer.run import infer
    from segkit.postprocess import choose_postprocessing

    cfg, raw = volume_case["cfg"], volume_case["raw"]
    rec = recording_progress()
    evaluate_model(cfg, out_dir=tmp_path / "eval", progress=rec)  # type: ignore[arg-type]
    assert rec.calls[0][0] == "start"
    # 3 slice PNGs + all 10 slices of the volume (sources exist)
    assert rec.tasks == [("evaluate", 3 + 10, 13)]

    rec = recording_progress()  # a folder of image + label: the label-named file is skipped (issue 18)
    res = infer(cfg, raw, tmp_path / "infer", progress=rec)  # type: ignore[arg-type]
    assert len(res.volumes) == 1 and res.plan.skipped == ("c1_label.nii.gz",)
    assert rec.tasks == [("c1_image.nii.gz", 10, 10)]
    rec = recording_progress()  # --glob picks files by name: one task per volume, named by its file
    res = infer(cfg, raw, tmp_path / "infer_all", options=InferOptions(glob="c1_*"),  # type: ignore[arg-type]
                progress=rec)
    assert rec.tasks == [("c1_image.nii.gz", 10, 10), ("c1_label.nii.gz", 10, 10)]

    rec = recording_progress()  # every slice of the volume, without and with flip TTA
    pp = choose_postprocessing(cfg, split="test", progress=rec, write=False)  # type: ignore[arg-type]
    assert pp is not None and pp.cases == ("c1",)
    assert rec.tasks == [("postprocessing", 20, 20)]


def test_slices2d_cases_are_stacked_without_surface_metrics(
    tmp_path: Path, repo_root: Path, constant_model  # noqa: ANN001 - conftest.constant_model
) -> None:
    """Chest-CT-style case: 1-based gapped slice numbers (1, 3, 5), non-square 24x32 slices, "spacing" in
    pixels."""
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "masks").mkdir()
    rng = np.random.default_rng(0)
    mask = np.zeros((24, 32, 3), np.uint8)
    mask[:, :16, 0] = 255  # lung (R channel) = left half: 16 x 8 = 128 pixels per slice at 16x16
    for k in (1, 3, 5):
        cv2.imwrite(str(raw / "images" / f"P7_{k}.png"), rng.integers(0, 255, (24, 32), dtype=np.uint8))
        cv2.imwrite(str(raw / "masks" / f"P7_mask_{k}.png"), cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
    cfg = load_config(
        repo_root / "configs" / "seed" / "chest-ct.yaml",
        ["prepare.size=[16,16]", "prepare.empty_slices=keep", ALL_TEST, "data.image_size=[16,16]",
         f"data.dir={tmp_path / 'data'}", f"train.run_dir={tmp_path / 'run'}", "infer.batch_size=4",
         "infer.tta=false", "model.num_layers=3", "model.base_kernels=3"],
    )
    assert run_prepare("chest-ct", raw, tmp_path / "data", cfg, PrepareOptions(workers=1)).ok
    manifest = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert manifest["cases"]["P7"]["kind"] == "slices2d" and manifest["cases"]["P7"]["slices"] == [1, 3, 5]
    constant_model(tmp_path / "run" / "model.keras", 3, [0.0, -10.0, -10.0, 10.0])  # lung (id 3) everywhere

    res = evaluate_model(cfg, out_dir=tmp_path / "eval")
    rows = read_rows(res.csv_path)
    lung = rows[("P7", "lung")]
    assert int(lung["ref_voxels"]) == 3 * 128 and int(lung["pred_voxels"]) == 3 * 256
    assert float(lung["dice"]) == pytest.approx(2 * 384 / (384 + 768), abs=1e-6)  # 2/3
    assert float(lung["iou"]) == pytest.approx(0.5, abs=1e-6)
    assert (lung["hd95_mm"], lung["assd_mm"], lung["nsd"]) == ("", "", "")  # no spacing in mm: left empty
    assert rows[("P7", "heart")]["dice"] == "nan"  # empty reference, empty prediction: excluded
    summary = json.loads(res.json_path.read_text())
    assert summary["volumetric"] is False and summary["surface_distance_implementation"] is None
    assert summary["reference"] == "stacked written slices"
    assert summary["per_class"]["lung"]["hd95_mm"]["n"] == 0
    assert summary["per_class"]["lung"]["dice"]["mean"] == pytest.approx(2 / 3, abs=1e-6)


def test_the_choice_scores_what_evaluate_reports(volume_case: dict[str, object], tmp_path: Path) -> None:
    """The post-processing choice and ``evaluate`` share one Dice and one reduction: for the same model and
    cases, each variant's per-class mean Dice equals evaluate's reported mean with that TTA / filter
    setting."""
    from segkit.postprocess import choose_postprocessing

    cfg = volume_case["cfg"]
    pp = choose_postprocessing(cfg, split="test", write=False)  # type: ignore[arg-type]
    assert pp is not None and pp.cases == ("c1",)
    every = [c.id for c in cfg.effective_classes]  # type: ignore[attr-defined]
    for variant, tta, lcc in (("plain", False, False), ("plain+lcc", False, True), ("tta", True, False),
                              ("tta+lcc", True, True), ("plain+fg", False, ["foreground"]),
                              ("plain+fg+lcc", False, ["foreground", *every]),
                              ("tta+fg", True, ["foreground"]),
                              ("tta+fg+lcc", True, ["foreground", *every])):
        infer = cfg.infer.model_copy(update={"tta": tta, "largest_component": lcc})  # type: ignore[attr-defined]
        ev = evaluate_model(cfg.model_copy(update={"infer": infer}), split="test",  # type: ignore[attr-defined]
                            out_dir=tmp_path / variant)
        reported = {name: s["dice"]["mean"] for name, s in ev.summary["per_class"].items()}
        assert pp.dice[variant] == reported, variant  # exactly equal, not approximately
    assert pp.dice["plain"]["b"] == 0.0  # class b is in the reference and never predicted


def test_boxplot_of_one_case_draws_its_point(tmp_path: Path) -> None:
    from segkit.evaluate.run import boxplot

    classes = [(1, "ventricle"), (2, "atrium")]
    path = boxplot(tmp_path / "b.png", [{"class_id": 1, "dice": 0.9}, {"class_id": 2, "dice": None}], "dice",
                   classes)
    assert path is not None
    img = cv2.imread(str(path)).astype(int)  # BGR
    assert ((img[..., 0] - img[..., 2]) > 60).sum() > 20  # the case's point (tab:blue); a plain box has none
    assert boxplot(tmp_path / "none.png", [{"class_id": 1, "dice": float("nan")}], "dice", classes) is None
