"""The CLI shell: help, version, config show/check and the error boundary."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from segkit import __version__
from segkit.cli.app import app

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_help_lists_every_command() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("prepare", "train", "evaluate", "infer", "augment-preview", "config"):
        assert cmd in r.stdout


def test_each_command_has_help() -> None:
    for cmd in (["prepare"], ["train"], ["evaluate"], ["infer"], ["augment-preview"], ["config", "show"]):
        r = runner.invoke(app, [*cmd, "--help"])
        assert r.exit_code == 0, (cmd, r.output)
        assert "Usage" in r.stdout


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.stdout


def test_config_show_prints_resolved_defaults_with_overrides() -> None:
    r = runner.invoke(app, ["config", "show", str(CONFIGS / "demo.yaml"), "--set", "train.epochs=3"])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.stdout)
    assert shown["train"]["epochs"] == 3
    assert shown["evaluate"]["nsd_tolerance_mm"] == 2.0
    assert "early_stopping" in shown["train"]  # defaults visible


def test_bad_config_is_one_stderr_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [{id: 1, name: a, color: [1, 2, 3]}]\nmodel: {num_layer: 3}\n")
    r = runner.invoke(app, ["config", "show", str(bad)])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: unknown key 'model.num_layer'")
    assert "Traceback" not in r.output


def test_config_check_all_presets() -> None:
    r = runner.invoke(app, ["config", "check", *map(str, sorted(CONFIGS.glob("*.yaml")))])
    assert r.exit_code == 0, r.output
    assert r.stdout.count("ok: ") == len(list(CONFIGS.glob("*.yaml")))
