"""dataset.json: checksums, fingerprint, build / write / load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from segkit.config import load_config
from segkit.errors import DataError
from segkit.io.hashing import sha256_file, sha256_files
from segkit.prepare.manifest import build_manifest, config_fingerprint, load_manifest, write_manifest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_sha256_streams_in_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000  # 256 kB
    p = tmp_path / "v.bin"
    p.write_bytes(data)
    assert sha256_file(p, chunk_size=4096) == hashlib.sha256(data).hexdigest()
    assert sha256_file(p) == sha256_file(p, chunk_size=7)
    with pytest.raises(DataError, match="cannot read file") as e:
        sha256_file(tmp_path / "missing.nii")
    assert e.value.path == tmp_path / "missing.nii"


def test_sha256_files_depends_on_names_and_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    h = sha256_files([a, b])
    assert h != sha256_files([b, a])
    b.write_bytes(b"3")
    assert h != sha256_files([a, b])


def test_fingerprint_tracks_prepare_seed_and_source() -> None:
    cfg = load_config(CONFIGS / "demo.yaml")
    base = config_fingerprint(cfg, "phantom")
    assert base == config_fingerprint(load_config(CONFIGS / "demo.yaml"), "phantom")
    assert base != config_fingerprint(cfg, "hocm")
    assert base != config_fingerprint(load_config(CONFIGS / "demo.yaml", ["seed=8"]), "phantom")
    assert base != config_fingerprint(load_config(CONFIGS / "demo.yaml", ["prepare.size=[32,32]"]), "phantom")
    # Training settings do not change what prepare writes.
    assert base == config_fingerprint(load_config(CONFIGS / "demo.yaml", ["train.epochs=1"]), "phantom")


def test_build_write_load_roundtrip(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "demo.yaml", ["prepare.binary=true"])
    cases = {"b": {"split": "test", "slices": [1]}, "a": {"split": "train", "slices": [0, 2]}}
    m = build_manifest(cfg, "phantom", cases)
    assert list(m["cases"]) == ["a", "b"]
    assert m["classes"] == [{"id": 1, "name": "foreground", "color": [255, 0, 0]}]  # effective classes
    assert m["fingerprint"] == cfg.prepare_fingerprint()
    assert m["prepare"]["binary"] is True and m["source"] == "phantom" and m["modality"] == "ct"
    path = write_manifest(tmp_path, m)
    assert path == tmp_path / "dataset.json"
    assert load_manifest(tmp_path) == json.loads(json.dumps(m))
    assert not [p for p in tmp_path.iterdir() if p.name != "dataset.json"]  # no temporary left behind


def test_load_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset.json not found: not a complete prepared dataset"):
        load_manifest(tmp_path)
    (tmp_path / "dataset.json").write_text('{"name": "x"}')
    with pytest.raises(DataError, match="dataset.json lacks key 'segkit_version'"):
        load_manifest(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read dataset.json"):
        load_manifest(tmp_path)
