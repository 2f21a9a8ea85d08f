"""segkit plan on real data (the 20 ACDC volumes: the quickest real set) and the planned config trained as
written (on small synthetic volumes, with only the epochs and steps cut for test time)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.config import load_config
from segkit.plan import PlanOptions, run_plan

pytestmark = pytest.mark.data


def test_plan_of_acdc_writes_fingerprint_and_config(shared_data: Path, tmp_path: Path) -> None:
    """ACDC (20 volumes, 1.5 x 1.5 x 10 mm, the heart in ~9 % of the field of view): both files; the config
    loads with segkit's validator, slices across z, a cascade (coarse whole slices at a quarter of the
    median slice, fine crops of the largest box + 15 mm a side at 1.5 mm), the preset's class names, a split
    by patient (the preset's own pattern)."""
    data = shared_data / "volumes" / "acdc_cine_mri"
    result = run_plan(data, tmp_path / "plan", PlanOptions("acdc-plan", 20, 2, "acdc"))
    fp = json.loads(result.fingerprint_path.read_text(encoding="utf-8"))
    s = fp["summary"]
    assert (s["cases"], s["modality"], s["spacing"]["median"]) == (20, "mr", [1.5, 1.5, 10.0])
    assert set(s["classes"]) == {"0", "1", "2", "3"} and len(fp["cases"]) == 20
    assert fp["cases"][0]["case_id"] == "patient002_frame01" and fp["plan"]["cascade"] is True
    assert fp["cases"][0]["image"] == "patient002_frame01_image.nii.gz"  # relative to DATA: no absolute path
    assert str(data) not in result.fingerprint_path.read_text(encoding="utf-8")
    cfg = load_config(result.config_path)
    assert [c.name for c in cfg.classes] == ["RV", "MYO", "LV"] and cfg.modality == "mr"
    assert (cfg.prepare.axis, cfg.prepare.spacing, cfg.data.patches) == (2, None, False)
    assert cfg.cascade.enabled and cfg.cascade.coarse_size == (64, 48)  # the 256 x 224 px median slice / 4
    # the median case's box + 2 x 15 mm = ~92 px at 1.5 mm: 96 with 5 levels (a 6 px bottleneck)
    assert cfg.data.image_size == (96, 96) == cfg.prepare.size and cfg.model.num_layers == 5
    assert cfg.prepare.split.group_by == r"^(patient\d+)_" and cfg.train.time_limit == 20  # the preset's
    assert cfg.train.batch_size == 4 and cfg.train.epochs >= 1
    text = result.config_path.read_text(encoding="utf-8")
    assert "# cascade: true" in text and "segkit prepare nifti" in text
    assert "\ncascade:\n  enabled: true  # the foreground box is 9% of the field of view" in text
    # the ACDC preset is this plan's cascade (measured on 80 patients against the whole slice; README)
    preset = load_config("acdc")
    assert (preset.cascade, preset.data.image_size, preset.prepare.size, preset.model.num_layers) == (
        cfg.cascade, cfg.data.image_size, cfg.prepare.size, cfg.model.num_layers)
    assert cfg.augment == preset.augment and cfg.augment.shift.p == 0.5  # the preset's tuned augmentation


def _volumes(folder: Path, n: int) -> None:
    """``n`` MR-like cases 40 x 40 x 6 at 1 mm: a bright 24 px square (class 1), a darker core (class 2)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.normal(50, 5, (40, 40, 6)).astype(np.float32)
        label = np.zeros((40, 40, 6), np.uint8)
        c = 14 + 2 * i
        label[c - 12 : c + 12, c - 12 : c + 12, 1:5] = 1
        label[c - 3 : c + 3, c - 3 : c + 3, 1:5] = 2
        image[label == 1] += 100
        image[label == 2] += 40
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"case{i}_image.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), folder / f"case{i}_label.nii.gz")


TEST_TIME = ["train.epochs=1", "train.steps_per_epoch=2", "train.validation_steps=1",
             "train.jit_compile=false", "train.epoch_change_infer.enabled=false",
             "train.choose_postprocessing=false"]


@pytest.mark.slow
def test_planned_config_prepares_and_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan -> prepare -> train with the written config; only what costs test time is cut (one epoch of two
    steps, one validation step, no XLA compilation, no epoch grids, no post-processing choice)."""
    from segkit.prepare import run_prepare
    from segkit.prepare.sources import SourceOptions
    from segkit.train.fit import train_model

    monkeypatch.chdir(tmp_path)
    _volumes(tmp_path / "raw", 5)
    result = run_plan(tmp_path / "raw", tmp_path / "plan", PlanOptions("tiny", 1, 1))
    cfg = load_config(result.config_path)
    assert cfg.data.image_size == (28, 28) and cfg.model.num_layers == 3  # box 24 px + 10 % a side: 28.8
    globs = SourceOptions(image_glob="*_image.nii.gz", label_glob="*_label.nii.gz")
    from segkit.prepare.run import PrepareOptions

    report = run_prepare("nifti", tmp_path / "raw", Path(cfg.data.dir), cfg,
                         PrepareOptions(workers=1, source_options=globs))
    assert not report.failures
    short = load_config(result.config_path, TEST_TIME)
    trained = train_model(short)
    assert trained.epochs_done == 1 and (Path(cfg.train.run_dir) / "model.keras").is_file()
