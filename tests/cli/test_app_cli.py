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
    for cmd in (["prepare"], ["train"], ["evaluate"], ["infer"], ["augment-preview"], ["config", "show"],
                ["config", "presets"]):
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


def test_config_commands_take_preset_names() -> None:
    r = runner.invoke(app, ["config", "show", "left-atrial", "--set", "train.epochs=3"])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.stdout)
    assert shown["name"] == "left-atrial" and shown["train"]["epochs"] == 3
    r = runner.invoke(app, ["config", "check", "demo", "seed/hocm.yaml"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["ok: demo", "ok: seed/hocm.yaml"]
    r = runner.invoke(app, ["config", "show", "left-atrail"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: left-atrail: config file not found")
    assert "did you mean 'left-atrial'?" in r.stderr


def test_config_presets_lists_every_preset_with_its_description() -> None:
    r = runner.invoke(app, ["config", "presets"])
    assert r.exit_code == 0, r.output
    rows = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert sorted(f"{name}.yaml" for name in rows) == sorted(p.relative_to(CONFIGS).as_posix()
                                                            for p in CONFIGS.rglob("*.yaml"))
    assert rows["demo"].startswith("The phantom: synthetic CT-like volumes")
    r = runner.invoke(app, ["config", "presets", "--paths"])
    assert r.exit_code == 0 and f"seed/whole-heart  {CONFIGS / 'seed' / 'whole-heart.yaml'}" in r.stdout
