"""The fold range check (``segkit.cv.check_folds``): one place for ``segkit train --fold`` and
``run_cv``; the fold lock around training (stubbed), also taken over while a fold trains."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from segkit import cv
from segkit.config import Config, load_config
from segkit.errors import ConfigError, DataError
from segkit.io.run_lock import HOST as HOST_NAME


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


# --- folds as parallel jobs: the fold lock (segkit.io.run_lock), with training stubbed out ---


def _hold(lock: Path, **fields: object) -> None:
    """A lock file as another job writes it (``segkit.io.run_lock``)."""
    from segkit.io.run_lock import HOST

    record = {"state": "running", "host": HOST, "pid": os.getpid(), "started": "2026-12-06T07:00:00Z",
              "command": "segkit cv x.yaml --fold 1", "pid_start": None, **fields}
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps(record), encoding="utf-8")


@pytest.fixture
def stub_training(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, dict]]:
    """Replace ``train_model``: record (fold, the fold's lock record during training) instead of training."""
    from segkit.train import fit

    calls: list[tuple[int, dict]] = []

    def train_model(cfk: Config, **_: object) -> None:
        lock = Path(cfk.train.run_dir).with_name(f"fold_{cfk.data.fold}.lock")
        calls.append((int(cfk.data.fold or 0), json.loads(lock.read_text())))

    monkeypatch.setattr(fit, "train_model", train_model)
    return calls


def test_a_plain_cv_skips_a_fold_another_job_trains_and_writes_no_summary(
    three_folds: Config, stub_training: list[tuple[int, dict]]
) -> None:
    run = Path(three_folds.train.run_dir)
    sleeper = subprocess.Popen(["sleep", "60"])  # the live process of the other job, on this host
    try:
        _hold(run / "fold_1.lock", pid=sleeper.pid)
        notices: list[str] = []
        result = cv.run_cv(three_folds, hooks=cv.CVHooks(notice=notices.append))
        assert [k for k, _ in stub_training] == [0, 2]  # fold 1 is not resumed or overwritten
        assert all(rec["pid"] == os.getpid() and rec["state"] == "running" for _, rec in stub_training)
        assert notices == [f"fold 2/3 (fold_1): being trained by another job (host {HOST_NAME}, pid "
                           f"{sleeper.pid}, since 2026-12-06T07:00:00Z), skipped"]
        assert result.running == {1: f"host {HOST_NAME}, pid {sleeper.pid}, since 2026-12-06T07:00:00Z"}
        assert result.summary == {} and result.trained == [0, 2]
        assert cv.fold_state(cv.fold_config(three_folds, 1)) == "running"
        assert sorted(p.name for p in run.glob("*.lock")) == ["fold_1.lock"]  # ours released
        # named with --fold, the same fold is an error, one line
        with pytest.raises(cv.FoldBusy) as busy:
            cv.run_cv(three_folds, folds=[1])
        assert busy.value.one_line() == (
            f"{run / 'fold_1.lock'}: fold 1 is being trained by another job (host {HOST_NAME},"
            f" pid {sleeper.pid}, since 2026-12-06T07:00:00Z) (hint: wait for it to finish; if that job is"
            " gone, rerun with --break-lock or delete the lock)")
        assert [k for k, _ in stub_training] == [0, 2] and not (run / "fold_1").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the job died without removing its lock: stale on this host, the next job takes the fold
    notices = []
    cv.run_cv(three_folds, folds=[1], hooks=cv.CVHooks(notice=notices.append))
    assert [k for k, _ in stub_training] == [0, 2, 1] and not (run / "fold_1.lock").exists()
    assert notices[0].endswith("(its process no longer runs on this host)")


def test_another_hosts_lock_holds_until_broken(
    three_folds: Config, stub_training: list[tuple[int, dict]]
) -> None:
    run = Path(three_folds.train.run_dir)
    _hold(run / "fold_0.lock", host="node07", pid=4242)
    with pytest.raises(cv.FoldBusy, match="host node07, pid 4242"):
        cv.run_cv(three_folds, folds=[0])
    notices: list[str] = []
    cv.run_cv(three_folds, folds=[0], break_lock=True, hooks=cv.CVHooks(notice=notices.append))
    assert [k for k, _ in stub_training] == [0] and notices[0].endswith("(--break-lock)")
    assert not (run / "fold_0.lock").exists()


def test_a_fold_whose_lock_is_taken_over_stops_at_the_next_training_event(
    three_folds: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segkit.io import run_lock
    from segkit.train import fit

    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.01)
    run = Path(three_folds.train.run_dir)
    lock = run / "fold_0.lock"
    written: list[str] = []

    def train_model(cfk: Config, *, progress: Callable[[object], None], **_: object) -> None:
        progress("epoch_begin 1")
        _hold(lock, host="node07", pid=4242)  # a job on node07 broke the lock (--break-lock) and took it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the next batches: the heartbeat notices within 0.01 s
            progress("batch")
            time.sleep(0.01)
        written.append("train_summary.json")  # not reached

    monkeypatch.setattr(fit, "train_model", train_model)
    events: list[object] = []
    with pytest.raises(cv.FoldLost) as lost:
        cv.run_cv(three_folds, folds=[0], hooks=cv.CVHooks(train_progress=events.append))
    assert lost.value.one_line() == (
        f"{lock}: fold 0 was taken over by another job (host node07, pid 4242, since 2026-12-06T07:00:00Z)"
        " while this job trained it: stopped before writing more (hint: two jobs trained this fold; let the"
        " other one finish it, or stop it and rerun this one)")
    assert events[0] == "epoch_begin 1" and written == []
    assert json.loads(lock.read_text())["host"] == "node07"  # the other job's lock is left alone
    assert not (run / "cv_summary.json").exists()


def test_segkit_train_fold_stops_like_cv_when_its_lock_is_taken_over(
    three_folds: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train_fold`` (``segkit train --fold k``) holds the fold's lock and checks it at every event."""
    from segkit.io import run_lock
    from segkit.train import fit

    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.01)
    cfk = cv.train_fold_config(three_folds, 1, option="--fold")
    lock = Path(three_folds.train.run_dir) / "fold_1.lock"
    seen: list[dict] = []

    def train_model(cfg: Config, *, progress: Callable[[object], None], **_: object) -> str:
        seen.append(json.loads(lock.read_text()))  # held by this process while it trains
        progress("epoch_begin 1")
        if len(seen) == 2:  # the second run: another job takes the lock over meanwhile
            _hold(lock, host="node07", pid=4242)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                progress("batch")
                time.sleep(0.01)
        return "result"

    monkeypatch.setattr(fit, "train_model", train_model)
    events: list[object] = []
    assert cv.train_fold(cfk, progress=events.append) == "result"
    assert seen[0]["pid"] == os.getpid() and events == ["epoch_begin 1"]
    assert not lock.exists()  # released after training
    with pytest.raises(cv.FoldLost, match="fold 1 was taken over by another job"):
        cv.train_fold(cfk, progress=events.append)
    assert json.loads(lock.read_text())["host"] == "node07"  # the other job's lock is left alone
