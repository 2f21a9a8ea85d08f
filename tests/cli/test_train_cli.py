"""`segkit train`: a tiny phantom run interrupted after epoch 1 of 3 and resumed, its outputs, and the
one-line errors (bad key, missing split, unpaired file, non-empty run folder, other config, NaN loss).

The training tests share one module-scoped run (64x64, num_layers 3, 2 steps per epoch), ~30 s on 2 cores.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
import yaml
from typer.testing import CliRunner

from segkit.cli.app import app
from segkit.config import load_config
from segkit.errors import ConfigError
from segkit.train import callbacks as cb
from segkit.train.fit import check_run_dir, config_difference, truncate_history_csv

runner = CliRunner()

TINY = [
    "model.num_layers=3",
    "model.base_filters=8",
    "train.epochs=3",
    "train.batch_size=4",
    "train.steps_per_epoch=2",
    "train.validation_steps=2",
    "train.learning_rate=0.003",
    "train.epoch_change_infer.num_images=2",
    "train.jit_compile=false",  # XLA compilation costs more than it saves for 2-step epochs
    "train.choose_postprocessing=true",  # demo.yaml leaves it off; these runs check it
]


def _args(config: Path, data: Path, run: Path, *extra: str) -> list[str]:
    args = ["train", str(config)]
    for s in [*TINY, f"data.dir={data}", f"train.run_dir={run}", *extra]:
        args += ["--set", s]
    return args


def _stderr_lines(result) -> list[str]:  # noqa: ANN001 - click Result
    return [line for line in result.stderr.splitlines() if line.strip()]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo_config(repo_root: Path) -> Path:
    return repo_root / "configs" / "demo.yaml"


@pytest.fixture(scope="module")
def phantom_data(tmp_path_factory: pytest.TempPathFactory, demo_config: Path) -> Path:
    """A tiny prepared phantom dataset (4 cases of 64x64x40, one worker) made by `segkit prepare phantom`."""
    out = tmp_path_factory.mktemp("phantom") / "data"
    res = runner.invoke(app, ["prepare", "phantom", "--out", str(out), "--config", str(demo_config),
                              "--n", "4", "--workers", "1"])
    assert res.exit_code == 0, res.output
    for split in ("train", "valid"):
        assert any((out / split / "images").iterdir())
    return out


@dataclass
class Runs:
    data: Path
    run: Path
    first: object
    second: object
    rows_after_first: list[dict[str, str]]
    backup_epoch_after_first: int | None


def _interrupt_after_first_epoch(mp: pytest.MonkeyPatch) -> None:
    """Make the CLI's progress reporter raise KeyboardInterrupt (as from Ctrl-C) right after epoch 1."""
    original = cb.ProgressReporter.on_epoch_end

    def interrupt_after_first(self: cb.ProgressReporter, epoch: int, logs: dict | None = None) -> None:
        original(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt

    mp.setattr(cb.ProgressReporter, "on_epoch_end", interrupt_after_first)


def _train_interrupted_after_first_epoch(config: Path, data: Path, run: Path, *extra: str) -> None:
    """``segkit train`` interrupted right after epoch 1 (exit code 130, the backup of epoch 1 kept)."""
    with pytest.MonkeyPatch.context() as mp:
        _interrupt_after_first_epoch(mp)
        first = runner.invoke(app, _args(config, data, run, *extra))
    assert first.exit_code == 130, first.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, phantom_data: Path, demo_config: Path) -> Runs:
    """Train 3 epochs, interrupted (KeyboardInterrupt, as from Ctrl-C) right after epoch 1 completed, then
    `--resume`."""
    run = tmp_path_factory.mktemp("runs") / "run"
    with pytest.MonkeyPatch.context() as mp:
        _interrupt_after_first_epoch(mp)
        first = runner.invoke(app, _args(demo_config, phantom_data, run))
    rows = _csv_rows(run / "history.csv")
    backup_epoch = cb.backup_epoch(run / "backup")
    second = runner.invoke(app, _args(demo_config, phantom_data, run, ) + ["--resume"])
    return Runs(phantom_data, run, first, second, rows, backup_epoch)


# === training (slow) ===


@pytest.mark.slow
def test_interrupt_leaves_a_resumable_run(runs: Runs) -> None:
    assert runs.first.exit_code == 130, runs.first.output
    lines = [line for line in runs.first.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted (hint: `segkit train ")
    assert "--resume` continues the run from its last completed epoch" in lines[0]
    assert [r["epoch"] for r in runs.rows_after_first] == ["1"]  # 1-based, as the console counts
    assert runs.backup_epoch_after_first == 1


@pytest.mark.slow
def test_resume_starts_at_epoch_2_and_completes_history(runs: Runs) -> None:
    res = runs.second
    assert res.exit_code == 0, res.output
    assert "resuming at epoch 2" in res.stderr
    assert "epoch 2/3" in res.stderr and "epoch 3/3" in res.stderr
    assert "epoch 1/3" not in res.stderr
    rows = _csv_rows(runs.run / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[0] == runs.rows_after_first[0]  # the first epoch's row is kept, not rewritten
    assert not (runs.run / "backup").exists()  # the backup is removed after a completed run


@pytest.mark.slow
def test_start_facts_and_result_are_printed(runs: Runs) -> None:
    res = runs.second
    assert "model flexunet:" in res.stderr and "parameters" in res.stderr and "GFLOP/image" in res.stderr
    assert "precision float32" in res.stderr and "device CPU" in res.stderr
    n_train = len(list((runs.data / "train" / "images").iterdir()))
    n_valid = len(list((runs.data / "valid" / "images").iterdir()))
    assert f"train {n_train} / valid {n_valid} pairs" in res.stderr
    assert res.stdout.startswith("best val_fg_dice ")


@pytest.mark.slow
def test_infer_from_the_run_folder_alone(runs: Runs, demo_config: Path, tmp_path: Path) -> None:
    """`segkit infer RUN_DIR`: the run folder carries the preprocessing recipe, so it segments a scan the same
    way after the folder moved and without the prepared dataset."""
    import nibabel as nib
    import numpy as np

    pre = json.loads((runs.run / "preprocessing.json").read_text())
    manifest = json.loads((runs.data / "dataset.json").read_text())
    assert pre["prepare"] == manifest["prepare"] and pre["modality"] == manifest["modality"]
    scan = sorted((runs.data / "raw").glob("*_image.nii.gz"))[0]
    with_data = tmp_path / "with_data"
    res = runner.invoke(app, ["infer", str(demo_config), "--input", str(scan), "--output", str(with_data),
                              *[a for s in [*TINY, f"data.dir={runs.data}", f"train.run_dir={runs.run}"]
                                for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    moved = tmp_path / "moved_run"
    shutil.copytree(runs.run, moved)
    alone = tmp_path / "alone"
    res = runner.invoke(app, ["infer", str(moved), "--input", str(scan), "--output", str(alone),
                              "--set", f"data.dir={tmp_path / 'no_dataset_here'}",
                              "--set", "prepare.size=[40,40]"])  # the recorded recipe wins over the config
    assert res.exit_code == 0, res.output
    a = np.asarray(nib.load(next(with_data.glob("*_seg.nii.gz"))).dataobj)
    b = np.asarray(nib.load(next(alone.glob("*_seg.nii.gz"))).dataobj)
    np.testing.assert_array_equal(a, b)
    # the dataset prepared again with another recipe after training: the run's own recipe still wins
    reprepared = tmp_path / "reprepared"
    reprepared.mkdir()
    changed = {**manifest, "prepare": {**manifest["prepare"], "size": [40, 40]}}
    (reprepared / "dataset.json").write_text(json.dumps(changed))
    again = tmp_path / "again"
    res = runner.invoke(app, ["infer", str(moved), "--input", str(scan), "--output", str(again),
                              "--set", f"data.dir={reprepared}"])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(a, np.asarray(nib.load(next(again.glob("*_seg.nii.gz"))).dataobj))
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    res = runner.invoke(app, ["infer", str(not_a_run), "--input", str(scan)])
    assert res.exit_code == 2 and "not a segkit run folder (config.yaml missing)" in res.stderr


@pytest.mark.slow
def test_history_csv_and_json(runs: Runs) -> None:
    rows = _csv_rows(runs.run / "history.csv")
    for col in ("epoch", "loss", "val_loss", "fg_dice", "val_fg_dice", "lr", "val_seed_dice_coef_multiclass",
                "val_dice_ventricle", "val_dice_atrium", "val_dice_vessel"):
        assert col in rows[0], col
    assert "learning_rate" not in rows[0]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.003] * 3)
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0]  # training lowers the loss
    hist = json.loads((runs.run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h["loss"] for h in hist] == pytest.approx(losses, rel=1e-6)


@pytest.mark.slow
def test_run_folder_holds_every_output(runs: Runs, demo_config: Path) -> None:
    import keras

    run = runs.run
    saved = load_config(run / "config.yaml")
    assert saved == load_config(demo_config, [*TINY, f"data.dir={runs.data}", f"train.run_dir={run}"])
    versions = json.loads((run / "versions.json").read_text())
    keys = {"python", "tensorflow", "keras", "numpy", "segkit", "seed", "precision", "device"}
    assert keys <= set(versions)
    assert versions["seed"] == 7 and versions["precision"] == "float32"
    assert (run / "splits.json").read_bytes() == (runs.data / "splits.json").read_bytes()
    curves = cv2.imread(str(run / "curves.png"))
    assert curves is not None and curves.ndim == 3
    previews = sorted(p.name for p in (run / "epoch_infer").iterdir())
    assert previews == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    grid = cv2.imread(str(run / "epoch_infer" / "epoch_003.png"))
    assert grid.shape == (28 + 2 * 64 * 3, 3 * 64 * 3, 3)  # titles, 2 rows of 3 tiles, enlarged x3
    import segkit.losses  # noqa: F401 - registers the custom loss/metrics for the compiled load
    import segkit.metrics.training  # noqa: F401

    # compiled: loss and metrics round-trip
    best = keras.models.load_model(run / "model.keras", safe_mode=True)
    assert type(best.loss).__name__ == "DiceCELoss"
    for name in ("model.keras", "last.keras"):
        model = keras.models.load_model(run / name, safe_mode=True, compile=False)  # how infer loads it
        assert tuple(model.output.shape) == (None, 64, 64, 4)
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # no temporary checkpoint left behind
    # post-processing decided on the validation volumes (phantom cases keep their source files)
    pp = json.loads((run / "postprocessing.json").read_text())
    assert isinstance(pp["tta"], bool) and set(pp["largest_component"]) <= {"foreground", 1, 2, 3}
    assert pp["split"] == "valid"
    assert pp["cases"] == json.loads((runs.data / "splits.json").read_text())["valid"]
    assert set(pp["dice"]) == {f"{tta}{fg}{lcc}" for tta in ("plain", "tta") for fg in ("", "+fg")
                               for lcc in ("", "+lcc")}
    assert len(pp["foreground_components"]) == len(pp["cases"])
    # the phantom's three structures are one connected piece in each validation reference
    assert set(pp["reference_components"]) == {"ventricle", "atrium", "vessel"}
    components = pp["reference_components"]
    assert all(n == [1] * len(pp["cases"]) for n in components.values()), components
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["stop_reason"] == "epochs" and summary["postprocessing"] == pp


@pytest.mark.slow
def test_rerun_into_the_finished_run_is_refused(runs: Runs, demo_config: Path) -> None:
    before = (runs.run / "model.keras").stat().st_mtime_ns
    res = runner.invoke(app, _args(demo_config, runs.data, runs.run))
    assert res.exit_code == 2
    assert _stderr_lines(res) == [
        f"error: {runs.run}: run folder is not empty (hint: use --resume to continue it, --overwrite to "
        "replace it, or set train.run_dir to a new folder)"
    ]
    other = runner.invoke(app, _args(demo_config, runs.data, runs.run, "train.learning_rate=0.001")
                          + ["--resume"])
    assert other.exit_code == 2
    assert "cannot resume: the run was trained with another config (train.learning_rate" in other.stderr
    done = runner.invoke(app, _args(demo_config, runs.data, runs.run) + ["--resume"])
    assert done.exit_code == 2
    assert "the run already completed 3 of train.epochs=3 epochs" in done.stderr
    assert "--set train.epochs=13" in done.stderr
    assert (runs.run / "model.keras").stat().st_mtime_ns == before  # nothing was touched


@pytest.mark.slow
def test_nan_loss_ends_with_one_line_error(runs: Runs, demo_config: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, _args(demo_config, runs.data, tmp_path / "run", "train.learning_rate=1e30",
                                   "train.clipvalue=null", "train.epochs=2",
                                   "train.epoch_change_infer.enabled=false"))
    assert res.exit_code == 2, res.output
    lines = [line for line in _stderr_lines(res) if line.startswith("error:")]
    assert len(lines) == 1
    assert "the loss became NaN at epoch 1" in lines[0]
    assert "lower train.learning_rate (now 1e+30)" in lines[0]


@pytest.mark.slow
def test_resume_of_a_finished_older_0_based_run_renumbers_its_history_and_trains_more(
    runs: Runs, demo_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "old-run"
    shutil.copytree(runs.run, run)  # a copy, so the other tests see the 3-epoch run unchanged
    new_rows = _csv_rows(runs.run / "history.csv")
    lines = (run / "history.csv").read_text().splitlines()  # as Keras' CSVLogger wrote it: epochs from 0
    old = [lines[0], *(f"{int(line.split(',')[0]) - 1},{line.split(',', 1)[1]}" for line in lines[1:])]
    (run / "history.csv").write_text("\r\n".join(old) + "\r\n")
    res = runner.invoke(app, _args(demo_config, runs.data, run, "train.epochs=4") + ["--resume"])
    assert res.exit_code == 0, res.output
    assert "resuming at epoch 4" in res.stderr and "epoch 4/4" in res.stderr and "epoch 3/4" not in res.stderr
    rows = _csv_rows(run / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[:3] == new_rows  # renumbered, every other cell kept
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3, 4]
    assert (run / "epoch_infer" / "epoch_004.png").is_file()


# === errors before training (fast) ===


def test_help_lists_the_options() -> None:
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    for opt in ("--set", "--resume", "--overwrite"):
        assert opt in res.stdout


def test_bad_config_key_is_one_line(demo_config: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", str(demo_config), "--set", "train.epoch=2"])
    assert res.exit_code == 2
    lines = _stderr_lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "unknown key 'train.epoch'" in lines[0] and "train.epochs" in lines[0]


def _copy_split(src: Path, dst: Path, split: str, n: int) -> None:
    for sub in ("images", "masks"):
        (dst / split / sub).mkdir(parents=True)
        for p in sorted((src / split / sub).iterdir())[:n]:
            shutil.copy(p, dst / split / sub / p.name)


def test_missing_split_is_one_line(phantom_data: Path, demo_config: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _copy_split(phantom_data, data, "train", 4)  # no valid/
    res = runner.invoke(app, _args(demo_config, data, tmp_path / "run"))
    assert res.exit_code == 2
    lines = _stderr_lines(res)
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {data / 'valid'}: ") and "'valid' split is missing" in lines[0]
    assert not (tmp_path / "run").exists()


def test_unpaired_file_is_one_line(phantom_data: Path, demo_config: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _copy_split(phantom_data, data, "train", 4)
    _copy_split(phantom_data, data, "valid", 2)
    stray = data / "train" / "images" / "case_999_0001.png"
    shutil.copy(next((data / "train" / "images").iterdir()), stray)
    res = runner.invoke(app, _args(demo_config, data, tmp_path / "run"))
    assert res.exit_code == 2
    lines = _stderr_lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "case_999_0001" in lines[0]


@pytest.mark.slow
def test_unknown_mask_colour_found_during_training_is_one_line(
    phantom_data: Path, demo_config: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _copy_split(phantom_data, data, "train", 4)
    _copy_split(phantom_data, data, "valid", 2)
    bad = sorted((data / "train" / "masks").iterdir())[0]
    mask = cv2.imread(str(bad))
    mask[:4, :4] = (0, 200, 200)  # BGR (200, 200, 0): far from every class colour of demo.yaml
    cv2.imwrite(str(bad), mask)
    res = runner.invoke(app, _args(demo_config, data, tmp_path / "run", "train.epochs=1"))
    assert res.exit_code == 2, res.output
    lines = [ln for ln in _stderr_lines(res) if ln.startswith("error")]
    assert len(lines) == 1 and bad.name in lines[0] and "(200, 200, 0)" in lines[0]
    assert "Traceback" not in res.output
    assert not (tmp_path / "run" / "model.keras").exists()


def test_incomplete_dataset_is_refused(phantom_data: Path, demo_config: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(phantom_data, data)
    (data / "dataset.json").unlink()  # as left by an interrupted prepare or a pending shard
    res = runner.invoke(app, _args(demo_config, data, tmp_path / "run"))
    assert res.exit_code == 2
    lines = _stderr_lines(res)
    assert len(lines) == 1 and lines[0].startswith(f"error: {data}: the dataset is incomplete")


def test_non_empty_run_dir_refused_without_overwrite(
    phantom_data: Path, demo_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    res = runner.invoke(app, _args(demo_config, phantom_data, run))
    assert res.exit_code == 2
    assert _stderr_lines(res) == [
        f"error: {run}: run folder is not empty (hint: use --overwrite to replace it, or set train.run_dir "
        "to a new folder)"
    ]
    assert (run / "notes.txt").read_text() == "mine"


# === run-folder helpers (fast) ===


def _cfg(run: Path, *extra: str):  # noqa: ANN202 - Config
    repo = Path(__file__).resolve().parents[2]
    return load_config(repo / "configs" / "demo.yaml", [f"train.run_dir={run}", *extra])


def test_overwrite_removes_only_run_outputs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "epoch_infer").mkdir(parents=True)
    (run / "epoch_infer" / "epoch_001.png").write_bytes(b"x")
    for name in ("model.keras", "history.csv", "config.yaml"):
        (run / name).write_text("old")
    (run / "notes.txt").write_text("mine")
    assert check_run_dir(_cfg(run), resume=False, overwrite=True) is False
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_overwrite_with_a_symlinked_backup_removes_the_link_not_its_target(tmp_path: Path) -> None:
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    elsewhere.mkdir()
    (elsewhere / "precious.h5").write_bytes(b"someone else's")
    (run / "backup").symlink_to(elsewhere, target_is_directory=True)
    (run / "model.keras").write_text("old")
    from segkit.io.atomic import _HOST

    (run / f".last.keras.{_HOST}.99999999-x1y2z3w4.tmp.keras").write_bytes(b"left by a killed run")
    assert check_run_dir(_cfg(run), resume=False, overwrite=True) is False
    assert list(run.iterdir()) == []
    assert (elsewhere / "precious.h5").read_bytes() == b"someone else's"


def test_resume_and_overwrite_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        check_run_dir(_cfg(tmp_path / "run"), resume=True, overwrite=True)


def test_resume_of_empty_folder_starts_fresh(tmp_path: Path) -> None:
    assert check_run_dir(_cfg(tmp_path / "run"), resume=True, overwrite=False) is False


def test_config_difference_ignores_epochs_and_run_dir_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    saved = _cfg(run).to_yaml()
    assert config_difference(saved, _cfg(run, "train.epochs=50")) is None
    assert config_difference(saved, _cfg(tmp_path / "moved")) is None
    diff = config_difference(saved, _cfg(run, "model.base_filters=8"))
    assert diff == "model.base_filters: run has 16, config has 8"
    assert yaml.safe_load(saved)["train"]["run_dir"] == str(run)


def test_truncate_history_csv_drops_repeated_epochs(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss,lr\r\n1,1.0,0.1\r\n2,0.9,0.1\r\n3,0.8,0.1\r\n")
    truncate_history_csv(path, 2)  # the backup holds 2 completed epochs; epoch 3's row came from a killed run
    assert path.read_bytes() == b"epoch,loss,lr\r\n1,1.0,0.1\r\n2,0.9,0.1\r\n"
    truncate_history_csv(path, 5)
    assert path.read_bytes() == b"epoch,loss,lr\r\n1,1.0,0.1\r\n2,0.9,0.1\r\n"


def test_truncate_history_csv_of_a_0_based_file(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"  # written by Keras' CSVLogger before segkit counted epochs from 1
    path.write_bytes(b"epoch,loss,lr\r\n0,1.0,0.1\r\n1,0.9,0.1\r\n2,0.8,0.1\r\n")
    truncate_history_csv(path, 2)  # the backup holds 2 completed epochs; epoch 2's row came from a killed run
    assert path.read_bytes() == b"epoch,loss,lr\r\n0,1.0,0.1\r\n1,0.9,0.1\r\n"
    truncate_history_csv(path, 5)
    assert path.read_bytes() == b"epoch,loss,lr\r\n0,1.0,0.1\r\n1,0.9,0.1\r\n"


@pytest.mark.slow
def test_time_limit_stops_at_an_epoch_boundary_and_resume_counts_spent_time(
    tmp_path: Path, phantom_data: Path, demo_config: Path
) -> None:
    import keras

    run = tmp_path / "timed"
    # 0.3 s: the first epoch alone takes longer, so the run stops after it, at an epoch boundary.
    res = runner.invoke(app, _args(demo_config, phantom_data, run, "train.epochs=50")
                        + ["--time-limit", "0.005"])
    assert res.exit_code == 0, res.output
    assert "time limit 0.005 min" in res.stderr
    assert "1 epochs (time limit)" in res.stdout
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["stop_reason"] == "time_limit" and summary["epochs_done"] == 1
    rows = _csv_rows(run / "history.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    spent = float(rows[0]["time_s"])
    assert spent > 0.3
    model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)  # complete model
    model_mtime = (run / "model.keras").stat().st_mtime_ns
    assert tuple(model.output.shape) == (None, 64, 64, 4)
    assert not (run / "backup").exists()  # a finished (time-limited) run cleans up like any other

    again = runner.invoke(app, _args(demo_config, phantom_data, run, "train.epochs=50")
                          + ["--resume", "--time-limit", "0.005"])
    assert again.exit_code == 2
    assert "the run already used" in again.stderr and "train.time_limit=0.005 minutes" in again.stderr
    assert (run / "model.keras").stat().st_mtime_ns == model_mtime  # refused before anything was touched

    more = runner.invoke(app, _args(demo_config, phantom_data, run, "train.epochs=2")
                         + ["--resume", "--time-limit", "10"])
    assert more.exit_code == 0, more.output
    assert "resuming at epoch 2" in more.stderr and "spent)" in more.stderr
    rows = _csv_rows(run / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["time_s"]) == spent  # the first epoch's row is kept
    assert float(rows[1]["time_s"]) > spent  # the clock continued from the time already spent
    # first epochs of their calls (compile)
    assert rows[0]["epoch_s"] == "nan" and rows[1]["epoch_s"] == "nan"
    assert json.loads((run / "train_summary.json").read_text())["stop_reason"] == "epochs"


@pytest.mark.slow
def test_full_disk_during_training_is_one_line_and_the_run_resumes(
    small_disk, phantom_data: Path, demo_config: Path  # noqa: ANN001
) -> None:
    import subprocess

    disk = small_disk("160K")
    run = disk / "run"
    res = runner.invoke(app, _args(demo_config, phantom_data, run, "train.epochs=2"))
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write: no space left on the device" in errors[0], res.stderr
    assert errors[0].startswith(f"error: {run}/") and "Traceback" not in res.output
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]  # no torn temporaries
    subprocess.run(["mount", "-o", "remount,size=64M", str(disk)], check=True)  # the user frees space
    again = runner.invoke(app, [*_args(demo_config, phantom_data, run, "train.epochs=2"), "--resume"])
    assert again.exit_code == 0, again.output
    assert [r["epoch"] for r in _csv_rows(run / "history.csv")] == ["1", "2"]
    import keras

    keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)


@pytest.mark.slow
def test_model_checkpoint_last_keeps_the_final_epoch(
    tmp_path: Path, phantom_data: Path, demo_config: Path
) -> None:
    import keras
    import numpy as np

    run = tmp_path / "last"
    res = runner.invoke(app, _args(demo_config, phantom_data, run, "train.model_checkpoint=last",
                                   "train.choose_postprocessing=false", "train.epochs=2",
                                   "train.epoch_change_infer.enabled=false"))
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("final val_fg_dice ") and " at epoch 2; 2 epochs" in res.stdout
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["model_checkpoint"] == "last" and summary["best_epoch"] == 2
    rows = _csv_rows(run / "history.csv")
    assert summary["best_value"] == pytest.approx(float(rows[-1]["val_fg_dice"]))
    final = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    last = keras.models.load_model(run / "last.keras", safe_mode=True, compile=False)
    for a, b in zip(final.weights, last.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_deep_supervision_trains_resumes_and_saves_the_plain_network(
    phantom_data: Path, demo_config: Path, tmp_path: Path
) -> None:
    """``train.deep_supervision``: the heads are trained (their loss is in ``loss``) but only the network is
    saved; an interrupted run resumes from backup/ (weights of the heads included), a finished one from
    last.keras to more epochs (the heads start afresh)."""
    import keras
    import numpy as np

    run = tmp_path / "ds"
    ds = ["train.deep_supervision=1", "train.epochs=2"]
    _train_interrupted_after_first_epoch(demo_config, phantom_data, run, *ds)
    assert cb.backup_epoch(run / "backup") == 1
    second = runner.invoke(app, _args(demo_config, phantom_data, run, *ds) + ["--resume"])
    assert second.exit_code == 0, second.output
    assert "resuming at epoch 2" in second.stderr
    rows = _csv_rows(run / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "val_loss", "fg_dice", "val_fg_dice", "val_dice_ventricle"} <= set(rows[0])
    assert not any(k.startswith(("ds", "val_ds")) for k in rows[0])  # the log keys of a plain run
    assert sorted(p.name for p in (run / "epoch_infer").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    for name in ("model.keras", "last.keras"):
        model = keras.models.load_model(run / name, safe_mode=True, compile=False)
        assert tuple(model.output.shape) == (None, 64, 64, 4)
        assert not [layer.name for layer in model.layers if layer.name.startswith("ds")]
    x = np.random.default_rng(0).random((1, 64, 64, 1), dtype=np.float32)
    before = np.asarray(model(x))  # last.keras: epoch 2
    third = runner.invoke(app, _args(demo_config, phantom_data, run, "train.deep_supervision=1",
                                     "train.epochs=3") + ["--resume"])
    assert third.exit_code == 0, third.output
    assert "resuming at epoch 3" in third.stderr
    assert "heads and the optimizer state start afresh" in " ".join(third.stderr.split())
    after = keras.models.load_model(run / "last.keras", safe_mode=True, compile=False)
    assert not np.allclose(np.asarray(after(x)), before)  # the third epoch trained the saved network
    # the same data, no deep supervision: the loss of the main output alone (a different number)
    plain = tmp_path / "plain"
    res = runner.invoke(app, _args(demo_config, phantom_data, plain, "train.epochs=1"))
    assert res.exit_code == 0, res.output
    assert _csv_rows(plain / "history.csv")[0]["loss"] != rows[0]["loss"]


@pytest.mark.slow
def test_ema_saves_the_average_and_backs_up_the_trained_weights(
    phantom_data: Path, demo_config: Path, tmp_path: Path
) -> None:
    """``train.ema``: ``last.keras`` (and ``model.keras``) hold the weight average, ``backup/`` the trained
    weights with the average in the optimizer's state, so an interrupted run resumes where it was."""
    import h5py
    import keras
    import numpy as np

    run = tmp_path / "ema"
    ema = ["train.ema=0.5", "train.epochs=2"]
    _train_interrupted_after_first_epoch(demo_config, phantom_data, run, *ema)
    state = json.loads((run / "backup" / cb.BACKUP_STATE).read_text())
    saved = keras.models.load_model(run / "last.keras", safe_mode=True, compile=False)
    with h5py.File(run / "backup" / state["weights"], "r") as f:
        stored: dict[str, np.ndarray] = {}
        f.visititems(lambda name, obj: stored.__setitem__(name, np.asarray(obj))
                     if isinstance(obj, h5py.Dataset) else None)
    kernel = next(w for w in saved.weights if w.path.endswith("kernel"))
    average = np.asarray(kernel)
    matches = [name for name, value in stored.items() if value.shape == average.shape
               and np.array_equal(value, average)]
    # the average is in the optimizer's state, not in the model's weights of the backup
    assert matches and all(name.startswith("optimizer") for name in matches), matches
    trained = [value for name, value in stored.items() if not name.startswith("optimizer")
               and value.shape == average.shape]
    assert trained and not any(np.array_equal(value, average) for value in trained)
    second = runner.invoke(app, _args(demo_config, phantom_data, run, *ema) + ["--resume"])
    assert second.exit_code == 0, second.output
    assert "resuming at epoch 2" in second.stderr
    assert [r["epoch"] for r in _csv_rows(run / "history.csv")] == ["1", "2"]
    resumed = keras.models.load_model(run / "last.keras", safe_mode=True, compile=False)
    assert not np.array_equal(np.asarray(next(w for w in resumed.weights if w.path == kernel.path)), average)
