"""The newcomer stumbles of issue 21 that config loading decides: 3 (prepared size), 8 (--set blamed), 10
(a volume given as CONFIG)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from segkit.config import load_config
from segkit.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2] / "../shared/data"
LA_VOLUME = SHARED / "volumes/la2018_lge_mri/imagesTr/la_100.nii.gz"


def test_set_type_error_blames_set_with_a_list_hint() -> None:
    with pytest.raises(ConfigError) as e:
        load_config("left-atrial", ["prepare.size=96"])
    line = e.value.one_line()
    assert line.startswith("--set: key 'prepare.size'"), line
    assert "--set 'prepare.size=[96,96]'" in line and "more problem" not in line
    with pytest.raises(ConfigError) as e:
        load_config("left-atrial", ["train.epochs=abc"])
    assert e.value.one_line().startswith("--set: key 'train.epochs'")
    assert "segkit config show" in e.value.one_line()


def test_file_type_error_still_blames_the_file(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("classes: [{id: 1, name: a, color: [1, 2, 3]}]\ntrain: {epochs: abc}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, ["train.batch_size=2"])
    assert e.value.one_line().startswith(f"{p}: key 'train.epochs'")


def test_unet_alias_is_flexunet() -> None:
    from segkit.models import MODELS

    assert MODELS.canonical(load_config("left-atrial", ["model.name=unet"]).model.name) == "flexunet"


@pytest.mark.parametrize("make", ["gzip", "nul"])
def test_binary_file_as_config_is_not_a_yaml_config(tmp_path: Path, make: str) -> None:
    p = tmp_path / "scan.nii.gz"
    p.write_bytes(gzip.compress(b"\x5c\x01" * 100) if make == "gzip" else b"ab\0cd")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    line = e.value.one_line()
    assert "not a YAML config" in line and "segkit config presets" in line and "codec" not in line


def test_real_la_volume_as_config() -> None:
    with pytest.raises(ConfigError, match="not a YAML config"):
        load_config(LA_VOLUME)


def test_prepare_size_override_moves_the_presets_image_size() -> None:
    cfg = load_config("left-atrial", ["prepare.size=[96,96]"])
    assert cfg.data.image_size == (96, 96)
    explicit = load_config("left-atrial", ["prepare.size=[96,96]", "data.image_size=[128,128]"])
    assert explicit.data.image_size == (128, 128)
    one_plane = "prepare.extra_axes=[]"  # patches take one plane
    patches = load_config("left-atrial", ["prepare.size=[96,96]", "data.patches=true", one_plane])
    assert patches.data.image_size == (128, 128)  # patches of 128 cropped from (padded) 96 slices: on purpose


def test_later_commands_take_the_prepared_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config("left-atrial").data.image_size == (128, 128)  # nothing prepared yet
    data = tmp_path / "data" / "left-atrial"
    data.mkdir(parents=True)
    (data / "dataset.json").write_text(json.dumps({"prepare": {"size": [96, 96]}}))
    assert load_config("left-atrial").data.image_size == (96, 96)
    assert load_config("left-atrial", ["data.image_size=[128,128]"]).data.image_size == (128, 128)
    one_plane = "prepare.extra_axes=[]"
    assert load_config("left-atrial", ["data.patches=true", one_plane]).data.image_size == (128, 128)
    own = tmp_path / "own.yaml"  # the user's own file pins image_size: kept
    text = load_config("left-atrial").to_yaml()
    own.write_text(text.replace("image_size: [96, 96]", "image_size: [64, 64]"))
    assert load_config(own).data.image_size == (64, 64)
    assert os.getcwd() == str(tmp_path)
