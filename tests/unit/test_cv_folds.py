"""The fold range check (``segkit.cv.check_folds``): one place for ``segkit train --fold`` and
``run_cv``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segkit import cv
from segkit.config import Config, load_config
from segkit.errors import ConfigError, DataError


def _config(tmp_path: Path, repo_root: Path, folds: list[list[str]] | None) -> Config:
    data = tmp_path / "data"
    data.mkdir()
    splits: dict[str, object] = {"train": ["a", "b", "c"], "valid": ["d"], "test": ["e"]}
    if folds is not None:
        splits["kfold"] = folds
    (data / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    return load_config(repo_root / "configs" / "demo.yaml",
                       [f"data.dir={data}", f"train.run_dir={tmp_path / 'run'}"])


@pytest.fixture
def three_folds(tmp_path: Path, repo_root: Path) -> Config:
    return _config(tmp_path, repo_root, [["a", "b"], ["c"], ["d"]])


def test_check_folds_gives_all_folds_or_the_asked_ones_sorted_once(three_folds: Config) -> None:
    assert cv.check_folds(three_folds) == (3, [0, 1, 2])
    assert cv.check_folds(three_folds, [2, 0, 2]) == (3, [0, 2])


def test_check_folds_refuses_a_fold_out_of_range_naming_the_option(three_folds: Config) -> None:
    with pytest.raises(ConfigError) as plain:
        cv.check_folds(three_folds, [1, 3])
    assert plain.value.message == "fold 3 is out of range: the dataset has 3 folds"
    assert plain.value.path is None and plain.value.hint == "use folds in 0..2"
    with pytest.raises(ConfigError) as option:
        cv.check_folds(three_folds, [-1], option="--fold")
    assert option.value.message == "fold -1 is out of range: the dataset has 3 folds"
    assert option.value.path == "--fold" and option.value.hint == "use --fold 0..2"


def test_a_dataset_without_folds_is_refused(tmp_path: Path, repo_root: Path) -> None:
    with pytest.raises(DataError, match="no cross-validation folds"):
        cv.check_folds(_config(tmp_path, repo_root, None))


def test_train_fold_config_checks_then_sets_the_fold(three_folds: Config) -> None:
    cfk = cv.train_fold_config(three_folds, 1)
    assert cfk.data.fold == 1
    assert Path(cfk.train.run_dir) == Path(three_folds.train.run_dir) / "fold_1"
    with pytest.raises(ConfigError) as e:
        cv.train_fold_config(three_folds, 3)
    assert e.value.one_line() == ("--fold: fold 3 is out of range: the dataset has 3 folds"
                                  " (hint: use --fold 0..2)")


def test_run_cv_refuses_a_fold_out_of_range_before_touching_the_run_folder(three_folds: Config) -> None:
    with pytest.raises(ConfigError) as e:
        cv.run_cv(three_folds, folds=[0, 5])
    assert e.value.one_line() == "fold 5 is out of range: the dataset has 3 folds (hint: use folds in 0..2)"
    assert not Path(three_folds.train.run_dir).exists()


def test_both_callers_go_through_check_folds(three_folds: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[int] | None, str | None]] = []

    class Stop(Exception):
        pass

    def spy(
        cfg: Config, folds: list[int] | None = None, *, option: str | None = None
    ) -> tuple[int, list[int]]:
        calls.append((None if folds is None else list(folds), option))
        raise Stop

    monkeypatch.setattr(cv, "check_folds", spy)
    with pytest.raises(Stop):
        cv.train_fold_config(three_folds, 2)
    with pytest.raises(Stop):
        cv.run_cv(three_folds, folds=[1])
    with pytest.raises(Stop):
        cv.run_cv(three_folds)
    assert calls == [([2], "--fold"), ([1], None), (None, None)]
