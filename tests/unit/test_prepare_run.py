"""``run_prepare``'s checks before any work, through ``PrepareOptions``: the messages the CLI shows too."""

from __future__ import annotations

from pathlib import Path

import pytest

from segkit.config import Config, load_config
from segkit.errors import DataError, SegkitError
from segkit.prepare import PrepareOptions, SourceOptions, run_prepare
from segkit.prepare.sources import SOURCES


@pytest.fixture
def cfg(repo_root: Path) -> Config:
    return load_config(repo_root / "configs" / "demo.yaml", ["prepare.size=[32,32]"])


def test_missing_src_is_refused_by_the_source(cfg: Config, tmp_path: Path) -> None:
    with pytest.raises(SegkitError, match="source 'hocm' needs a SRC folder") as e:
        run_prepare("hocm", None, tmp_path / "out", cfg)
    assert e.value.hint == f"e.g. {SOURCES.get('hocm').example}"
    SOURCES.get("phantom").check_src(None)  # a source without SRC accepts none
    assert not (tmp_path / "out").exists()


def test_out_is_required_unless_verifying_a_source_with_src(cfg: Config, tmp_path: Path) -> None:
    with pytest.raises(SegkitError, match="--out is required"):
        run_prepare("phantom", None, None, cfg)
    with pytest.raises(SegkitError, match="--out is required"):
        run_prepare("hocm", tmp_path, None, cfg)
    with pytest.raises(DataError, match="source folder not found"):  # verify: no --out needed, SRC is read
        run_prepare("hocm", tmp_path / "missing", None, cfg, PrepareOptions(verify_only=True))


def test_out_must_differ_from_src_and_splits_exclude_folds(cfg: Config, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--out must not be the source folder"):
        run_prepare("hocm", tmp_path, tmp_path, cfg)
    with pytest.raises(SegkitError, match="--splits and --folds exclude each other"):
        run_prepare("hocm", tmp_path, tmp_path / "out", cfg,
                    PrepareOptions(splits_file=tmp_path / "s.json", folds=3))


def test_verify_of_the_phantom_leaves_nothing_behind(cfg: Config, tmp_path: Path) -> None:
    two = SourceOptions(phantom_n=2)
    report = run_prepare("phantom", None, tmp_path / "out", cfg,
                         PrepareOptions(workers=1, verify_only=True, source_options=two))
    assert report.ok and report.verify_only and report.n_cases == 2
    assert list(tmp_path.iterdir()) == []
