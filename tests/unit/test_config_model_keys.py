"""model.name and loss.name checked with the config; model keys the chosen model does not read: refused when
the user set them, one warning when a preset or a run's saved config brought them, silent for defaults."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from segkit.config import LOSS_NAMES, MODEL_CATALOG, load_config, validate_config
from segkit.errors import ConfigError

CLASSES = [{"id": 1, "name": "a", "color": [255, 0, 0]}, {"id": 2, "name": "b", "color": [0, 255, 0]}]


def own_file(tmp_path: Path, model: dict) -> Path:
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump({"classes": CLASSES, "model": model}))
    return p


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_segkit_config_stays_free_of_tensorflow() -> None:
    import subprocess

    code = "import sys, segkit.config; print('keras' in sys.modules or 'tensorflow' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "False", res.stderr


def test_an_unknown_model_name_is_refused_with_the_config() -> None:
    with pytest.raises(ConfigError) as e:
        validate_config({"classes": CLASSES, "model": {"name": "transunett"}}, source="c.yaml")
    assert e.value.one_line() == (
        "c.yaml: key 'model.name': unknown model 'transunett' (hint: did you mean 'transunet'? valid models: "
        + ", ".join(MODEL_CATALOG.names())
        + ")"
    )
    assert (
        validate_config({"classes": CLASSES, "model": {"name": "Attention_UNet"}}).model.name
        == "Attention_UNet"
    )


def test_an_unknown_loss_name_gets_the_registry_message_and_the_names_are_the_losses() -> None:
    from segkit.losses import LOSSES

    assert LOSS_NAMES.names() == LOSSES.names()  # the TensorFlow-free table is the Keras registry's
    with pytest.raises(ConfigError) as e:
        validate_config({"classes": CLASSES, "loss": {"name": "dice_c"}})
    assert e.value.message == "key 'loss.name': unknown loss 'dice_c'"
    assert e.value.hint is not None and e.value.hint.startswith(
        "did you mean 'dice-ce'? valid losses: bce-dice"
    )
    for name in ("ce", "dice", "dice_ce", "focal", "tversky", "bce_dice"):
        assert validate_config({"classes": CLASSES, "loss": {"name": name}}).loss.name == name


def test_keys_the_model_does_not_read_in_the_users_own_file_are_refused(tmp_path: Path) -> None:
    path = own_file(tmp_path, {"name": "u2net", "dropout_rate": 0.1, "transunet": {"depth": 3}})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.path == path
    assert e.value.message == "model 'u2net' does not use model.dropout_rate, model.transunet.depth"
    assert e.value.hint == (
        "u2net takes model.base_filters, model.num_layers, model.max_filters, model.norm, "
        "model.u2net.*; remove the others or choose a model that uses them"
    )


def test_keys_set_on_the_command_line_are_refused_even_over_a_preset() -> None:
    with pytest.raises(ConfigError) as e:
        load_config("demo", ["model.name=multiresunet", "model.dilation=2"])
    assert e.value.path == "--set" and e.value.message == "model 'multiresunet' does not use model.dilation"
    with pytest.raises(ConfigError, match=r"model 'flexunet' does not use model\.swinunet\.window"):
        load_config("demo", ["model.swinunet.window=2"])


def test_keys_a_preset_brings_give_one_warning_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="segkit.config"):
        cfg = load_config("demo", ["model.name=u2net"])
    assert cfg.model.name == "u2net"
    (line,) = warnings_of(caplog)
    # demo.yaml sets base_kernels 3 and dropout_rate 0.0 (not the defaults); its dilation 1 is the default
    assert "demo.yaml: model 'u2net' does not use model.base_kernels, model.dropout_rate (ignored" in line
    assert "dilation" not in line.split("(ignored")[0]


def test_a_run_folders_saved_config_loads_with_a_warning_at_most(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(load_config("demo", ["model.name=u2net"]).to_yaml())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segkit.config"):
        assert load_config(run).model.name == "u2net"
        assert load_config(run / "config.yaml").model.name == "u2net"
    assert len(warnings_of(caplog)) == 2 and "model.transunet" not in warnings_of(caplog)[0]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.yaml").write_text(
        validate_config({"classes": CLASSES, "model": {"name": "u2net"}}).to_yaml()
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segkit.config"):
        load_config(plain)  # every key present, all at their defaults
    assert warnings_of(caplog) == []
    older = tmp_path / "older"  # saved before model.block existed: still the run's own config, not the user's
    older.mkdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["model"]["block"]
    (older / "config.yaml").write_text(yaml.safe_dump(saved))
    cfg = load_config(older)
    assert cfg.model.name == "u2net" and cfg.model.block == "relu_norm"


def test_defaults_and_keys_the_model_reads_are_silent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="segkit.config"):
        load_config(own_file(tmp_path, {"name": "u2net", "base_filters": 8, "u2net": {"mid_ratio": 1.0}}))
        load_config("demo", ["model.name=transunet", "model.transunet.depth=1"])
        load_config("left-atrial")
    assert warnings_of(caplog) == []


def test_config_check_refuses_in_one_line_with_exit_2(tmp_path: Path) -> None:
    from segkit.cli.app import app

    path = own_file(tmp_path, {"name": "multiresunet", "base_kernels": 5})
    res = CliRunner().invoke(app, ["config", "check", str(path)])
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        f"error: {path}: model 'multiresunet' does not use model.base_kernels (hint: multiresunet takes "
        "model.base_filters, model.num_layers, model.max_filters, model.norm, model.multiresunet.*; "
        "remove the others or choose a model that uses them)"
    )
    bad = CliRunner().invoke(app, ["config", "check", "demo", str(own_file(tmp_path, {"name": "unet4"}))])
    assert bad.exit_code == 2 and "unknown model 'unet4'" in bad.stderr and "did you mean" in bad.stderr
