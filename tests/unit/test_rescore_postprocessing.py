"""scripts/rescore_postprocessing.py: a run's post-processing chosen again on its validation volumes and both
choices scored on the test volumes, the run's own files untouched."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.config import validate_config
from segkit.prepare import PrepareOptions, SourceOptions, run_prepare

REPO = Path(__file__).resolve().parents[2]
SHAPE = (16, 16, 10)


@pytest.fixture(scope="module")
def rescore():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("rescore_postprocessing",
                                                  REPO / "scripts" / "rescore_postprocessing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_run_is_scored_with_its_old_and_its_new_choice(
    rescore, tmp_path: Path, constant_model  # noqa: ANN001 - conftest.constant_model
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    img = np.full(SHAPE, -400, np.float32)
    img[4:10, 5:12, 3:6] = 400  # bright where class a is ...
    img[0:2, 0:2, 7:9] = 400  # ... and in a stray block far from it (8 voxels), which the model takes for a
    lbl = np.zeros(SHAPE, np.uint8)
    lbl[4:10, 5:12, 3:6] = 1  # 126 voxels, one piece
    lbl[10:13, 2:5, 4] = 2  # 9 voxels touching it (at a corner): the foreground is one piece too
    for case in ("c1", "c2"):
        nib.save(nib.Nifti1Image(img, np.diag([0.8, 0.9, 2.0, 1.0])), str(raw / f"{case}_image.nii.gz"))
        nib.save(nib.Nifti1Image(lbl, np.diag([0.8, 0.9, 2.0, 1.0])), str(raw / f"{case}_label.nii.gz"))
    run = tmp_path / "bench" / "run"
    cfg = validate_config({
        "classes": [{"id": 1, "name": "a", "color": [255, 0, 0]},
                    {"id": 2, "name": "b", "color": [0, 255, 0]}],
        "modality": "ct",
        "prepare": {"axis": 2, "size": [16, 16], "ct_window": [-500, 500],
                    "split": {"train": 0, "valid": 0.5, "test": 0.5}},
        "data": {"image_size": [16, 16], "channels": 1, "dir": str(tmp_path / "data")},
        "model": {"name": "flexunet", "base_filters": 4, "num_layers": 3},
        "train": {"run_dir": str(run)},
        "infer": {"batch_size": 8},
        "evaluate": {"split": "test"},
    })
    globs = SourceOptions(image_glob="*_image.nii.gz", label_glob="*_label.nii.gz")
    options = PrepareOptions(workers=1, source_options=globs)
    assert run_prepare("nifti", raw, tmp_path / "data", cfg, options).ok
    constant_model(run / "model.keras", 1, [0.0, -14.0, -10.0], weight=[0.0, 20.0, 0.0])  # a where bright
    (run / "config.yaml").write_text(json.dumps(cfg.model_dump(mode="json")))  # JSON is YAML
    old = {"tta": False, "largest_component": []}
    (run / "postprocessing.json").write_text(json.dumps(old))

    assert rescore.main([str(tmp_path / "bench"), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "bench" / "rescore.json").read_text())
    assert json.loads((run / "postprocessing.json").read_text()) == old  # the run's own choice is kept
    # the validation volume: both filters remove the stray block (a: 252/260 -> 1); on the foreground's
    # filtered labels a's own filter ties, and a, b and the foreground are one piece in the reference
    chosen = json.loads((tmp_path / "out" / "bench" / "postprocessing.json").read_text())
    assert chosen["dice"]["plain"]["a"] == pytest.approx(2 * 126 / (126 + 134))
    assert chosen["dice"]["plain+fg"]["a"] == 1.0 and chosen["dice"]["plain+lcc"]["a"] == 1.0
    assert chosen["largest_component"] == ["foreground", 1, 2] and chosen["foreground_components"] == [1]
    assert result["after"]["largest_component"] == ["foreground", 1, 2]
    assert result["before"]["largest_component"] == []
    # the test volume, scored with each choice (b is never predicted)
    assert result["before"]["per_class_dice"] == {"a": pytest.approx(252 / 260), "b": 0.0}
    assert result["after"]["per_class_dice"] == {"a": 1.0, "b": 0.0}
    assert result["changed"] == json.loads((tmp_path / "data" / "splits.json").read_text())["test"]
    assert (tmp_path / "out" / "bench" / "after" / "evaluation.csv").is_file()
