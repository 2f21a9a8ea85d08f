"""Cross-validation on the phantom: one ``prepare --folds 3``, ``segkit train --fold``, ``segkit cv``
(resumable fold by fold), the run folder as an ensemble for ``evaluate`` and ``infer`` -- also after the
dataset is gone.

Tiny models (flexunet, 4 filters, 3 levels, 32x32) and one two-step epoch per fold: the figures are
meaningless, the files, case bookkeeping and resumption are what is tested.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from segkit.cli.app import app
from segkit.config import load_config
from segkit.io.run_lock import HOST

runner = CliRunner()

TINY = [
    "model.num_layers=3", "model.base_filters=4", "data.image_size=[32,32]", "infer.batch_size=16",
    "train.epochs=1", "train.steps_per_epoch=2", "train.validation_steps=1", "train.batch_size=4",
    "train.epoch_change_infer.enabled=false", "train.jit_compile=false", "train.choose_postprocessing=true",
]


def _sets(*items: str) -> list[str]:
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module")
def cv_setup(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cv")
    config = repo_root / "configs" / "demo.yaml"
    data = root / "data"
    res = runner.invoke(app, ["prepare", "phantom", "--out", str(data), "--config", str(config), "--n", "8",
                              "--folds", "3", "--workers", "1"])
    assert res.exit_code == 0, res.output
    return {"root": root, "config": config, "data": data}


def _base(s: dict[str, Path], run: Path) -> list[str]:
    return _sets(*TINY, f"data.dir={s['data']}", f"train.run_dir={run}")


@pytest.fixture(scope="module")
def fold_2_trained(cv_setup: dict[str, Path]) -> Path:
    """``segkit train --fold 2`` into the folder the cross-validation test completes with ``segkit cv`` (which
    takes that fold as done): one fold training fewer for the module."""
    run = cv_setup["root"] / "cv_run"
    res = runner.invoke(app, ["train", str(cv_setup["config"]), "--fold", "2", *_base(cv_setup, run)])
    assert res.exit_code == 0, res.output
    return run


def _cases_of(pairs: list[tuple[Path, Path]], ids: list[str]) -> set[str]:
    from segkit.data.pipeline import case_of_stem

    return {case_of_stem(img.stem, ids)[0] for img, _ in pairs}


def test_folds_select_slices_by_case_id(cv_setup: dict[str, Path]) -> None:
    from segkit.data.pipeline import split_pairs

    splits = json.loads((cv_setup["data"] / "splits.json").read_text())
    folds, test = splits["kfold"], splits["test"]
    assert len(folds) == 3 and all(folds)
    every = sorted(c for f in folds for c in f)
    assert len(every) == len(set(every)) and not set(every) & set(test)  # every case in exactly one fold
    ids = every + test
    for k in range(3):
        cfg = load_config(cv_setup["config"], [*TINY, f"data.dir={cv_setup['data']}", f"data.fold={k}"])
        valid, train = split_pairs(cfg, "valid"), split_pairs(cfg, "train")
        assert _cases_of(valid, ids) == set(folds[k])
        assert _cases_of(train, ids) == {c for j, f in enumerate(folds) if j != k for c in f}
        assert _cases_of(split_pairs(cfg, "test"), ids) == set(test)
        assert not {p[0] for p in valid} & {p[0] for p in train}
    # without a fold the folders are the split (fold 0 was written to train/ and valid/)
    plain = load_config(cv_setup["config"], [*TINY, f"data.dir={cv_setup['data']}"])
    assert _cases_of(split_pairs(plain, "valid"), ids) == set(folds[0])


def test_fold_out_of_range_and_dataset_without_folds_are_one_line(
    cv_setup: dict[str, Path], tmp_path: Path
) -> None:
    res = runner.invoke(app, ["train", str(cv_setup["config"]), "--fold", "3",
                              *_base(cv_setup, tmp_path / "r")])
    assert res.exit_code == 2 and "fold 3 is out of range: the dataset has 3 folds" in res.stderr
    flat = tmp_path / "flat"
    assert runner.invoke(app, ["prepare", "phantom", "--out", str(flat), "--config", str(cv_setup["config"]),
                               "--n", "3", "--workers", "1"]).exit_code == 0
    res = runner.invoke(app, ["cv", str(cv_setup["config"]), *_sets(*TINY, f"data.dir={flat}",
                                                                    f"train.run_dir={tmp_path / 'r2'}")])
    assert res.exit_code == 2 and "has no cross-validation folds" in res.stderr and "--folds" in res.stderr
    assert not (tmp_path / "r2").exists()


def test_cv_trains_every_fold_resumably_and_the_run_is_an_ensemble(
    cv_setup: dict[str, Path], fold_2_trained: Path
) -> None:
    run = fold_2_trained  # fold 2 trained by `segkit train --fold 2`: cv takes it as done
    cfg_path = str(cv_setup["config"])
    splits = json.loads((cv_setup["data"] / "splits.json").read_text())

    # one fold first (as after an interruption): no summary yet. A job killed on this host left fold 0's lock:
    # stale (its pid is gone), removed with a notice, and the fold trains under this job's own lock
    dead = subprocess.Popen(["true"])
    dead.wait()
    since = "2026-12-06T07:00:00Z"
    (run / "fold_0.lock").write_text(json.dumps({"host": HOST, "pid": dead.pid, "started": since}))
    res = runner.invoke(app, ["cv", cfg_path, "--fold", "0", *_base(cv_setup, run)])
    assert res.exit_code == 0, res.output
    assert (f"removed the lock {run / 'fold_0.lock'} of host {HOST}, pid {dead.pid}, since {since}"
            " (its process no longer runs on this host)") in res.stderr
    assert not (run / "fold_0.lock").exists()  # released after training
    assert (run / "fold_0" / "train_summary.json").is_file() and not (run / "fold_1").exists()
    assert not (run / "cv_summary.json").exists() and "no summary" in res.stdout
    stamp = (run / "fold_0" / "model.keras").stat().st_mtime_ns

    fold_2 = (run / "fold_2" / "model.keras").stat().st_mtime_ns
    res = runner.invoke(app, ["cv", cfg_path, *_base(cv_setup, run)])
    assert res.exit_code == 0, res.output
    assert "fold 1/3 (fold_0): done before, skipped" in res.stderr
    assert "fold 3/3 (fold_2): done before, skipped" in res.stderr  # trained by `segkit train --fold 2`
    assert (run / "fold_0" / "model.keras").stat().st_mtime_ns == stamp  # not retrained
    assert (run / "fold_2" / "model.keras").stat().st_mtime_ns == fold_2
    for k in range(3):
        saved = load_config(run / f"fold_{k}" / "config.yaml")
        assert saved.data.fold == k and Path(saved.train.run_dir) == run / f"fold_{k}"
    summary = json.loads((run / "cv_summary.json").read_text())
    assert summary["folds"] == 3 and [f["cases"] for f in summary["per_fold"]] == splits["kfold"]
    assert summary["pooled"]["cases"] == sum(len(f) for f in splits["kfold"])
    assert set(summary["classes"]) == {"ventricle", "atrium", "vessel"}
    rows = list(csv.DictReader(open(run / "cv_cases.csv", newline="")))
    assert len(rows) == 3 * summary["pooled"]["cases"]
    for r in rows:
        assert r["case_id"] in splits["kfold"][int(r["fold"])]
    # the pooled mean is the mean over all validation cases of their foreground-mean Dice (hand-computed)
    by_case: dict[str, list[float]] = {}
    for r in rows:
        if r["dice"] not in ("", "None", "nan"):
            by_case.setdefault(r["case_id"], []).append(float(r["dice"]))
    expect = np.mean([np.mean(v) for v in by_case.values()])
    assert summary["pooled"]["mean_fg_dice"] == pytest.approx(expect, abs=1e-9)
    fold_means = [f["mean_fg_dice"] for f in summary["per_fold"]]
    assert summary["across_folds"]["mean_fg_dice"]["mean"] == pytest.approx(np.mean(fold_means))
    assert summary["across_folds"]["mean_fg_dice"]["sd"] == pytest.approx(np.std(fold_means))
    assert json.loads((run / "cv.json").read_text()) == {"folds": ["fold_0", "fold_1", "fold_2"]}
    assert (run / "postprocessing.json").is_file()
    assert json.loads((run / "postprocessing.json").read_text())["split"] == "cv"
    assert "| pooled |" in (run / "cv_summary.md").read_text()

    # a third run trains nothing: the finished folds are skipped, and a fold killed after its last epoch (no
    # train_summary.json yet) resumes with nothing left, taken as done; the summary is written again
    # (one run for both: each full run scores every fold again)
    stamps = [(run / f"fold_{k}" / "model.keras").stat().st_mtime_ns for k in range(3)]
    (run / "fold_1" / "train_summary.json").unlink()
    (run / "cv_summary.json").unlink()
    res = runner.invoke(app, ["cv", cfg_path, *_base(cv_setup, run)])
    assert res.exit_code == 0, res.output
    assert "fold 1/3 (fold_0): done before, skipped" in res.stderr
    assert "fold 2/3 (fold_1): resuming" in res.stderr
    assert "fold 3/3 (fold_2): done before, skipped" in res.stderr
    assert [(run / f"fold_{k}" / "model.keras").stat().st_mtime_ns for k in range(3)] == stamps
    assert (run / "fold_1" / "train_summary.json").is_file()
    again = json.loads((run / "cv_summary.json").read_text())["pooled"]  # the same models, the same scores
    assert again["cases"] == summary["pooled"]["cases"]
    assert again["mean_fg_dice"] == pytest.approx(summary["pooled"]["mean_fg_dice"], abs=1e-6)

    # a config that allows more training resumes a finished fold; the others are then unfinished for it
    res = runner.invoke(app, ["cv", cfg_path, "--fold", "0", *_base(cv_setup, run),
                              "--set", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert "fold 1/3 (fold_0): resuming" in res.stderr and "no summary" in res.stdout
    # back to 1 epoch: fold 0 has more, done
    res = runner.invoke(app, ["cv", cfg_path, *_base(cv_setup, run)])
    assert res.exit_code == 0 and res.stderr.count("done before, skipped") == 3

    # the dataset re-split under finished folds: refused, they would be scored on cases they trained on
    split_file = cv_setup["data"] / "splits.json"
    original = split_file.read_text()
    changed = json.loads(original)
    changed["kfold"][0], changed["kfold"][1] = changed["kfold"][1], changed["kfold"][0]
    split_file.write_text(json.dumps(changed))
    try:
        res = runner.invoke(app, ["cv", cfg_path, *_base(cv_setup, run)])
    finally:
        split_file.write_text(original)
    assert res.exit_code == 2 and "trained on another split of the dataset" in res.stderr

    # a single training run and a cross-validation run never share a folder
    res = runner.invoke(app, ["train", cfg_path, *_base(cv_setup, run), "--overwrite"])
    assert res.exit_code == 2 and "holds a cross-validation run" in res.stderr
    assert (run / "cv.json").is_file() and (run / "fold_0" / "model.keras").is_file()

    # segkit evaluate RUN_DIR: the ensemble of the three fold models on the test cases
    res = runner.invoke(app, ["evaluate", str(run)])
    assert res.exit_code == 0, res.output
    ev = json.loads((run / "evaluation" / "evaluation.json").read_text())
    assert ev["model"] == [str(run / f"fold_{k}" / "model.keras") for k in range(3)]
    assert ev["split"] == "test" and ev["n_cases"] == len(splits["test"])

    # segkit infer RUN_DIR after the dataset folder is gone (the volume copied out first)
    vol = sorted((cv_setup["data"] / "raw").rglob("*image*.nii.gz"))[0]
    keep = cv_setup["root"] / vol.name
    shutil.copy(vol, keep)
    moved = cv_setup["root"] / "data_gone"
    cv_setup["data"].rename(moved)
    try:
        res = runner.invoke(app, ["infer", str(run), "--input", str(keep), "--output", str(run / "inf")])
        assert res.exit_code == 0, res.output
    finally:
        moved.rename(cv_setup["data"])
    seg = nib.load(str(next((run / "inf").glob("*_seg.nii.gz"))))
    src = nib.load(str(keep))
    assert seg.shape == src.shape and np.allclose(seg.affine, src.affine, atol=1e-5)


def test_train_fold_writes_into_its_fold_folder(fold_2_trained: Path) -> None:
    run = fold_2_trained  # `segkit train --fold 2` (the cv test adds the other folds, never a model here)
    info = load_config(run / "fold_2" / "config.yaml")
    assert info.data.fold == 2 and (run / "fold_2" / "model.keras").is_file()
    assert not (run / "model.keras").exists()


# another job on this host: takes the fold locks argv[1:] and holds them until it is killed
HOLDER = """
import sys, time
from segkit.io.run_lock import acquire_lock
locks = [acquire_lock(p) for p in sys.argv[1:]]
print("held", flush=True)
time.sleep(300)
"""


def test_folds_trained_by_another_job_are_neither_resumed_nor_pooled(
    cv_setup: dict[str, Path], tmp_path: Path, repo_root: Path
) -> None:
    run = tmp_path / "array"
    cfg_path = str(cv_setup["config"])
    locks = [str(run / f"fold_{k}.lock") for k in range(3)]
    other = subprocess.Popen([sys.executable, "-c", HOLDER, *locks], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(repo_root)})
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        who = f"host {HOST}, pid {other.pid}, since "
        for cmd in (["cv", cfg_path, "--fold", "1"], ["train", cfg_path, "--fold", "1"]):
            res = runner.invoke(app, [*cmd, *_base(cv_setup, run)])
            assert res.exit_code == 2, res.output
            assert f"fold 1 is being trained by another job ({who}" in res.stderr
            assert "--break-lock" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        res = runner.invoke(app, ["cv", cfg_path, *_base(cv_setup, run)])  # the pooling job, too early
        assert res.exit_code == 0, res.output
        for k in range(3):
            assert f"fold {k + 1}/3 (fold_{k}): being trained by another job ({who}" in res.stderr
        assert "no summary while other jobs train fold(s) 0, 1, 2" in res.stdout
        assert sorted(p.name for p in run.iterdir()) == ["fold_0.lock", "fold_1.lock", "fold_2.lock"]
    finally:
        other.kill()
        other.wait()


def test_break_lock_without_a_fold_is_refused_in_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["cv", str(tmp_path / "any.yaml"), "--break-lock"])  # refused before reading it
    assert res.exit_code == 2 and res.stderr.splitlines() == [
        "error: --break-lock: --break-lock needs --fold: it would break the lock of every fold being trained"
        " (hint: name the dead fold with --fold k)"]


def test_cv_refuses_a_folder_holding_a_single_run(cv_setup: dict[str, Path], tmp_path: Path) -> None:
    single = tmp_path / "single"
    single.mkdir()
    (single / "model.keras").write_bytes(b"not really")
    res = runner.invoke(app, ["cv", str(cv_setup["config"]), *_base(cv_setup, single)])
    assert res.exit_code == 2 and "holds a single training run" in res.stderr
    assert sorted(p.name for p in single.iterdir()) == ["model.keras"]


def test_summary_counts_unbounded_hd95_and_refuses_overlapping_folds() -> None:
    from segkit.cv import summarize_cv
    from segkit.errors import DataError

    def row(case: str, dice: float | None, hd: float | None) -> dict:
        return {"case_id": case, "class_name": "A", "dice": dice, "hd95_mm": hd}

    s = summarize_cv([[row("a", 0.5, 2.0), row("b", 0.0, float("inf"))], [row("c", 1.0, 4.0)]], ["A"])
    assert s["per_fold"][0]["hd95_unbounded"] == 1 and s["pooled"]["hd95_unbounded"] == 1
    assert s["pooled"]["mean_hd95_mm"] == pytest.approx(3.0)  # the finite ones; the infinite one is counted
    assert s["pooled"]["mean_fg_dice"] == pytest.approx(0.5) and s["pooled"]["cases"] == 3
    assert s["across_folds"]["mean_fg_dice"]["mean"] == pytest.approx((0.25 + 1.0) / 2)
    with pytest.raises(DataError, match="'a' is in the validation cases of two folds"):
        summarize_cv([[row("a", 0.5, 2.0)], [row("a", 0.7, 1.0)]], ["A"])
