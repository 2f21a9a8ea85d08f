"""segkit.prepare.record: the typed case geometry, case records and preprocessing recipe of dataset.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from segkit.config import load_config
from segkit.errors import DataError
from segkit.prepare import PrepareOptions, SourceOptions, run_prepare
from segkit.prepare.record import (
    REWRITE_HINT,
    SLICES2D,
    VOLUME,
    CaseRecord,
    Geometry,
    Preprocessing,
    case_records,
)
from segkit.prepare.slicing import reassemble_volume


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> tuple[Path, dict]:
    """A prepared phantom dataset (3 volume cases, LPS-like affines) and its dataset.json."""
    out = tmp_path_factory.mktemp("record") / "data"
    cfg = load_config(repo_root / "configs" / "demo.yaml", ["prepare.size=[32,32]"])
    report = run_prepare(
        "phantom", None, out, cfg, PrepareOptions(workers=1, source_options=SourceOptions(phantom_n=3))
    )
    assert report.ok
    return out, json.loads((out / "dataset.json").read_text(encoding="utf-8"))


def test_geometry_json_round_trip_on_prepared_volume_cases(phantom: tuple[Path, dict]) -> None:
    out, manifest = phantom
    path = out / "dataset.json"
    records = case_records(manifest, path)
    assert list(records) == list(manifest["cases"])
    for case_id, rec in records.items():
        raw = manifest["cases"][case_id]
        # the entry written by prepare comes back key for key, in the same order (dataset.json bytes)
        assert json.dumps(rec.to_json(), indent=2) == json.dumps(raw, indent=2)
        g = rec.geometry
        assert g.kind == VOLUME and "kind" not in raw
        assert Geometry.from_json(g.to_json()) == g
        assert Geometry.from_json(json.loads(json.dumps(g.to_json()))) == g
        assert g.shape == tuple(raw["shape"]) and g.affine_array.shape == (4, 4)
        assert g.slices == tuple(raw["slices"]) and g.intensity == raw["intensity"]
        # the record read back puts the written slices back where they came from
        labels = {k: np.full(g.slice_shape, 1, np.uint8) for k in g.slices}
        back = reassemble_volume(labels, g)
        assert (
            back.shape == g.shape and int(back.sum()) == len(g.slices) * g.slice_shape[0] * g.slice_shape[1]
        )


def test_geometry_json_round_trip_on_a_prepared_2d_case(tmp_path: Path, repo_root: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "masks").mkdir()
    mask = np.zeros((24, 32, 3), np.uint8)
    mask[:, :16, 0] = 255
    for k in (1, 3, 5):
        cv2.imwrite(str(raw / "images" / f"P7_{k}.png"), np.full((24, 32), 40 * k, np.uint8))
        cv2.imwrite(str(raw / "masks" / f"P7_mask_{k}.png"), mask)
    cfg = load_config(
        repo_root / "configs" / "seed" / "chest-ct.yaml",
        ["prepare.size=[16,16]", "prepare.empty_slices=keep", "prepare.split={train: 1, valid: 0, test: 0}"],
    )
    assert run_prepare("chest-ct", raw, tmp_path / "data", cfg, PrepareOptions(workers=1)).ok
    path = tmp_path / "data" / "dataset.json"
    entry = json.loads(path.read_text(encoding="utf-8"))["cases"]["P7"]
    rec = CaseRecord.from_json(entry, path, "P7")
    assert json.dumps(rec.to_json()) == json.dumps(entry)  # "kind" first, "n_slices" after "slices"
    g = rec.geometry
    assert g.kind == SLICES2D and g.slice_spacing is None and g.slice_shape == (24, 32)
    assert g.slices == (1, 3, 5) and g.source_slices is not None and len(g.source_slices) == 3
    assert rec.volume_files() is None
    assert Geometry.from_json(g.to_json()) == g


def test_missing_or_bad_key_is_one_line_naming_file_case_and_key(phantom: tuple[Path, dict]) -> None:
    out, manifest = phantom
    path = out / "dataset.json"
    case_id = next(iter(manifest["cases"]))
    broken = copy.deepcopy(manifest)
    del broken["cases"][case_id]["ornt_transform"]
    with pytest.raises(DataError) as e:
        case_records(broken, path)
    line = e.value.one_line()
    assert line == f"{path}: case '{case_id}' lacks key 'ornt_transform' (hint: {REWRITE_HINT})"
    assert "\n" not in line
    with pytest.raises(DataError, match="case record lacks key 'shape'") as e:
        Geometry.from_json({"axis": 2}, path="x/dataset.json")
    assert e.value.path == "x/dataset.json" and e.value.hint == REWRITE_HINT

    bad = copy.deepcopy(manifest["cases"][case_id])
    bad["shape"] = [64, 64]
    with pytest.raises(DataError, match=r"case 'c' has a bad 'shape': expected 3 values, got 2"):
        Geometry.from_json(bad, path, "c")
    bad = copy.deepcopy(manifest["cases"][case_id])
    bad["axis"] = 3
    with pytest.raises(DataError, match="has a bad 'axis'"):
        Geometry.from_json(bad, path)
    with pytest.raises(DataError, match="case record is not a JSON object"):
        CaseRecord.from_json(["not", "a", "record"], path)


def test_older_records_without_slice_spacing_or_size_still_load(phantom: tuple[Path, dict]) -> None:
    _, manifest = phantom
    entry = copy.deepcopy(next(iter(manifest["cases"].values())))
    size = tuple(entry["size"])
    del entry["slice_spacing"]  # before prepare.spacing
    g = CaseRecord.from_json(entry).geometry
    assert g.slice_spacing is None and "slice_spacing" not in g.to_json()
    assert json.dumps(CaseRecord.from_json(entry).to_json()) == json.dumps(entry)
    del entry["size"]  # the oldest records: slice_shape * resize
    assert Geometry.from_json(entry).size == size


def test_preprocessing_from_dataset_json_and_its_errors(phantom: tuple[Path, dict], repo_root: Path) -> None:
    out, manifest = phantom
    path = out / "dataset.json"
    pre = Preprocessing.from_json(manifest, path)
    cfg = load_config(repo_root / "configs" / "demo.yaml", ["prepare.size=[32,32]"])
    assert pre == Preprocessing.from_config(cfg) and pre.modality == "ct"
    assert pre.to_json() == {"prepare": manifest["prepare"], "modality": manifest["modality"]}
    with pytest.raises(DataError) as e:
        Preprocessing.from_json({"prepare": manifest["prepare"]}, path)
    assert (
        e.value.one_line() == f"{path}: the preprocessing recipe lacks key 'modality' (hint: {REWRITE_HINT})"
    )
    bad = {"modality": "ct", "prepare": {**manifest["prepare"], "size": [4, 4]}}
    with pytest.raises(DataError, match=r"the 'prepare' section is invalid: size: .*at least 8x8") as e:
        Preprocessing.from_json(bad, "run/preprocessing.json", hint="train the run again")
    assert e.value.path == "run/preprocessing.json" and "\n" not in e.value.one_line()


def test_preprocessing_spec_reads_run_copy_then_dataset_json_then_config(
    phantom: tuple[Path, dict], repo_root: Path, tmp_path: Path
) -> None:
    from segkit.predict.recipe import preprocessing_spec

    out, manifest = phantom
    run = tmp_path / "run"
    cfg = load_config(repo_root / "configs" / "demo.yaml",
                      ["prepare.size=[48,48]", f"data.dir={tmp_path / 'none'}", f"train.run_dir={run}"])
    assert preprocessing_spec(cfg) == Preprocessing.from_config(cfg)  # no run copy, no dataset.json
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"dir": out})})
    assert preprocessing_spec(cfg) == Preprocessing.from_json(
        manifest
    )  # the dataset's recipe, not the config's
    assert preprocessing_spec(cfg).prepare.size == (32, 32)
    run.mkdir()
    kept = run / "preprocessing.json"
    recipe = {
        "prepare": {**manifest["prepare"], "size": [40, 40]},
        "modality": "ct",
        "classes": [],
        "source": "x",
    }
    kept.write_text(json.dumps(recipe))
    assert preprocessing_spec(cfg).prepare.size == (40, 40)  # the run's own copy wins
    kept.write_text(json.dumps({"prepare": manifest["prepare"]}))
    with pytest.raises(DataError) as e:
        preprocessing_spec(cfg)
    assert (
        e.value.path == kept
        and "lacks key 'modality'" in e.value.message
        and "train the run again" in e.value.hint
    )
