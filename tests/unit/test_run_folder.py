"""The run-folder layout: one owner of the file names; cv.json and train_summary.json readers/writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segkit.errors import ModelError
from segkit.io import run_folder as rf


def test_names_are_the_files_segkit_writes() -> None:
    assert rf.MODEL_FILE == "model.keras" and rf.CONFIG_FILE == "config.yaml"
    assert rf.CV_FILE == "cv.json" and rf.fold_name(3) == "fold_3"
    assert set(rf.SINGLE_RUN_FILES) <= set(rf.RUN_OUTPUTS)
    assert not set(rf.SINGLE_RUN_FILES) & set(rf.CV_ROOT_OUTPUTS)


def test_model_paths_of_a_run_and_of_a_cv_folder(tmp_path: Path) -> None:
    assert rf.model_paths(tmp_path) == [tmp_path / "model.keras"]
    rf.write_cv_folds(tmp_path, 2)
    assert json.loads((tmp_path / "cv.json").read_text()) == {"folds": ["fold_0", "fold_1"]}
    with pytest.raises(ModelError, match="fold model is missing"):
        rf.model_paths(tmp_path)
    for k in range(2):
        (tmp_path / f"fold_{k}").mkdir()
        (tmp_path / f"fold_{k}" / "model.keras").write_bytes(b"x")
    assert rf.model_paths(tmp_path) == [tmp_path / "fold_0/model.keras", tmp_path / "fold_1/model.keras"]
    (tmp_path / "cv.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read cv.json"):
        rf.model_paths(tmp_path)


def test_train_summary_keys(tmp_path: Path) -> None:
    fit = rf.TrainSummary("epochs", 3, 3, 12.345, None, None, "val_dice", "best", 0.5, 2)
    rf.write_train_summary(tmp_path, fit)
    got = json.loads((tmp_path / "train_summary.json").read_text())
    assert list(got) == ["stop_reason", "epochs_done", "epochs", "train_time_s", "time_limit_min", "monitor",
                         "model_checkpoint", "best_value", "best_epoch", "postprocessing"]
    assert got["train_time_s"] == 12.3 and rf.read_train_summary(tmp_path) == got
    rf.write_train_summary(tmp_path, rf.TrainSummary("complete", 4, 4, 1.0, 2.0))
    assert rf.read_train_summary(tmp_path) == {"stop_reason": "complete", "epochs_done": 4, "epochs": 4,
                                               "train_time_s": 1.0, "time_limit_min": 2.0,
                                               "postprocessing": None}
    assert rf.read_train_summary(tmp_path / "none") is None
