"""Presets: configs/*.yaml ship as the package data ``segkit.presets``; any CONFIG argument takes their
names."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from segkit.cli.common import load
from segkit.cli.prepare import preset_config
from segkit.config import load_config, preset_description, preset_names, preset_path, resolve_config_path
from segkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
FILES = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))
CLASSES = [{"id": 1, "name": "a", "color": [255, 0, 0]}]


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_preset_names_are_the_files_in_configs() -> None:
    names = preset_names()
    assert sorted(f"{n}.yaml" for n in names) == FILES
    assert "left-atrial" in names and "seed/whole-heart" in names
    assert names.index("whole-heart") < names.index("seed/alcapa")  # top-level presets first
    assert all(preset_path(n) == CONFIGS / f"{n}.yaml" for n in names)  # a checkout reads its own configs/


def test_pyproject_ships_every_preset_and_every_subpackage() -> None:
    from setuptools import find_packages

    tool = pyproject()["tool"]["setuptools"]
    assert tool["package-dir"] == {"segkit.presets": "configs"}
    globs = tool["package-data"]["segkit.presets"]
    assert all(any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs) for f in FILES), (
        globs
    )
    # packages is an explicit list (a mapped package is invisible to packages.find): a new subpackage must
    # join it
    assert sorted(tool["packages"]) == sorted(
        [*find_packages(str(REPO), include=["segkit*"]), "segkit.presets"]
    )


def test_a_preset_name_loads_the_same_config_as_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # names must not depend on the working directory
    by_path = load_config(CONFIGS / "left-atrial.yaml")
    assert load_config("left-atrial") == by_path
    assert load_config("left-atrial.yaml") == by_path
    assert load_config(Path("seed/whole-heart")) == load_config(CONFIGS / "seed" / "whole-heart.yaml")
    assert load_config("demo", ["train.epochs=3"]).train.epochs == 3
    assert resolve_config_path("seed/hocm.yaml") == CONFIGS / "seed" / "hocm.yaml"
    assert preset_description("left-atrial").startswith("Left atrium (cardiac MRI")


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("left-atrail", "left-atrial"),
        ("seed/whole-hart", "seed/whole-heart"),
        ("configs/left-atrial.yaml", "left-atrial"),
    ],
)
def test_a_misspelled_name_is_one_line_with_did_you_mean(
    given: str, meant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(given)
    line = e.value.one_line()
    assert line.startswith(f"{given}: config file not found, nor a preset of that name")
    assert f"did you mean '{meant}'?" in line and "seed/whole-heart" in line and "\n" not in line


def test_unknown_names_without_a_close_preset_and_missing_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config("zzz")
    assert "did you mean" not in e.value.one_line() and "preset: acdc, alcapa" in e.value.one_line()
    with pytest.raises(ConfigError, match="config file not found") as e:
        load_config(tmp_path / "left-atrial")  # an absolute path is never a preset name
    assert "did you mean" not in e.value.one_line()
    with pytest.raises(ConfigError, match="no preset named 'nope'"):
        preset_path("nope")


def test_an_existing_path_beats_a_preset_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "left-atrial.yaml").write_text(yaml.safe_dump({"name": "mine", "classes": CLASSES}))
    assert load_config("left-atrial.yaml").name == "mine"  # the file in the working directory
    assert load_config("left-atrial").name == "left-atrial"  # no file of that name: the preset
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "hocm").write_text(yaml.safe_dump({"name": "own", "classes": CLASSES}))
    assert load_config("seed/hocm").name == "own"
    run = tmp_path / "demo"  # a run folder (config.yaml inside) beats the preset of its name
    run.mkdir()
    with pytest.raises(ConfigError, match="not a segkit run folder"):
        load_config(run)  # an absolute folder without config.yaml is no preset
    assert load("demo").name == "demo" and load("demo").train.run_dir == Path("demo/run")  # the preset
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "run", "classes": CLASSES}))
    cfg = load("demo")
    assert cfg.name == "run" and cfg.train.run_dir == Path("demo")


def test_prepare_takes_the_source_preset_never_a_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump({"name": "mine", "classes": CLASSES}))
    assert preset_config("phantom") == CONFIGS / "demo.yaml"
    assert preset_config("left-atrial") == CONFIGS / "left-atrial.yaml"


@pytest.mark.slow
def test_an_installed_wheel_outside_the_repo_names_its_presets(tmp_path: Path) -> None:
    """Build the wheel (from a copy of the sources, so no build/ lands in the repo), install it into a folder,
    and run the CLI from a working directory outside the repo with only that folder and the dependencies
    importable."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("segkit", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    wheel = next((tmp_path / "dist").glob("segkit-*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    shutil.rmtree(src)  # nothing of the sources is left to find
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *deps]), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def segkit(*args: str) -> subprocess.CompletedProcess:
        code = (
            "import sys, segkit; print('segkit from', segkit.__file__); from segkit.cli.app import app; "
            f"app({list(args)!r})"
        )
        # -S: no site-packages .pth files, so no editable install of segkit can answer instead of the wheel
        return subprocess.run(
            [sys.executable, "-S", "-c", code],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = segkit("config", "show", "left-atrial")
    assert r.returncode == 0, r.stderr
    assert f"segkit from {site / 'segkit' / '__init__.py'}" in r.stdout
    shown = yaml.safe_load(r.stdout.split("\n", 1)[1])
    assert shown["name"] == "left-atrial" and shown["data"]["dir"] == "data/left-atrial"
    r = segkit("config", "presets")
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert sorted(f"{n}.yaml" for n in listed) == FILES
    r = segkit("config", "show", "seed/whole-hart")
    assert r.returncode == 2 and "did you mean 'seed/whole-heart'?" in r.stderr
