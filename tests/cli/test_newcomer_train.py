"""Issue 21: one tiny training run with ``model_checkpoint: last`` and ``train.tensorboard: true``:
model.keras is last.keras (one file, two names), TensorBoard event files in the run folder, curves.png with
per-class Dice and the learning rate, segkit's version in the run header; ``config show`` keeping a preset's
comments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from segkit import __version__
from segkit.cli.app import app
from segkit.config import load_config

runner = CliRunner()
TINY = ["model.num_layers=3", "model.base_filters=8", "train.epochs=2", "train.batch_size=4",
        "train.steps_per_epoch=2", "train.validation_steps=1", "train.jit_compile=false",
        "train.epoch_change_infer.enabled=false", "train.model_checkpoint=last", "train.tensorboard=true"]


@pytest.mark.slow
def test_tiny_run_one_model_file_tensorboard_and_header(tmp_path: Path, repo_root: Path) -> None:
    demo = repo_root / "configs" / "demo.yaml"
    data, run = tmp_path / "data", tmp_path / "run"
    res = runner.invoke(app, ["prepare", "phantom", "--out", str(data), "--config", str(demo), "--n", "3",
                              "--workers", "1"])
    assert res.exit_code == 0, res.output
    args = ["train", str(demo)]
    for s in [*TINY, f"data.dir={data}", f"train.run_dir={run}"]:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert f"segkit {__version__}" in res.stderr and "device" in res.stderr
    model, last = run / "model.keras", run / "last.keras"
    assert model.stat().st_ino == last.stat().st_ino  # one 62 MB file on LA, not two
    assert model.stat().st_nlink == 2
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_config_show_preset_keeps_its_comments() -> None:
    res = runner.invoke(app, ["config", "show", "left-atrial"])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert text.startswith("# Left atrium (cardiac MRI")
    assert "batch_size: 4  # more optimizer steps per CPU-minute" in text
    assert "model_checkpoint: last  # the final, annealed weights" in text
    assert yaml.safe_load(text) == load_config("left-atrial").to_yaml_data()  # comments only
