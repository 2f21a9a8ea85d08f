"""A cascade (``cascade.enabled``) through the CLI on the phantom: `prepare` writes both datasets, `train`
both stages into one run folder, `evaluate` scores whole source volumes through both stages, `infer` writes
labels in the input's geometry, `export` carries both stages and `infer BUNDLE` gives the run's labels.

Tiny and short (one epoch of two steps per stage): this checks the wiring, not the quality (the ACDC bench
measures that: `python scripts/bench_quality.py --datasets acdc80-cascade`).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from segkit.cli.app import app

runner = CliRunner()

SETS = [
    "cascade.enabled=true", "cascade.coarse_size=[16,16]", "cascade.margin_mm=4", "cascade.jitter_mm=2",
    "prepare.size=[32,32]", "data.image_size=[32,32]", "model.num_layers=3", "model.base_filters=4",
    "train.epochs=1", "train.steps_per_epoch=2", "train.validation_steps=1", "train.jit_compile=false",
    "train.choose_postprocessing=true", "train.epoch_change_infer.enabled=false", "infer.batch_size=16",
]


def _sets(root: Path) -> list[str]:
    args: list[str] = []
    for s in [*SETS, f"data.dir={root / 'data'}", f"train.run_dir={root / 'run'}"]:
        args += ["--set", s]
    return args


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, object]:
    root = tmp_path_factory.mktemp("cascade")
    config = str(repo_root / "configs" / "demo.yaml")
    res = runner.invoke(app, ["prepare", "phantom", "--config", config, "--out", str(root / "data"),
                              "--n", "4", "--workers", "1", *_sets(root)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", config, *_sets(root)])
    assert res.exit_code == 0, res.output
    return {"root": root, "config": config, "train_output": res.output}


def test_prepare_writes_the_crops_and_the_coarse_whole_slices(trained: dict) -> None:
    data = trained["root"] / "data"
    fine = json.loads((data / "dataset.json").read_text())
    coarse = json.loads((data / "coarse" / "dataset.json").read_text())
    assert set(fine["cases"]) == set(coarse["cases"])
    splits = json.loads((data / "splits.json").read_text())
    assert splits == json.loads((data / "coarse" / "splits.json").read_text())
    for cid, case in fine["cases"].items():
        r0, r1, c0, c1 = case["crop"]
        assert 0 <= r0 < r1 <= case["slice_shape"][0] and 0 <= c0 < c1 <= case["slice_shape"][1]
        assert case["size"] == [32, 32] and "crop" not in coarse["cases"][cid]
        assert coarse["cases"][cid]["size"] == [16, 16]


def test_train_writes_both_stages_into_one_run_folder(trained: dict) -> None:
    run = trained["root"] / "run"
    assert (run / "model.keras").is_file() and (run / "coarse" / "model.keras").is_file()
    assert (run / "postprocessing.json").is_file() and not (run / "coarse" / "postprocessing.json").exists()
    out = trained["train_output"]
    assert "coarse stage: " in out and "fine stage: " in out


def test_evaluate_scores_the_source_volumes_through_both_stages(trained: dict) -> None:
    root = trained["root"]
    res = runner.invoke(app, ["evaluate", trained["config"], *_sets(root), "--split", "test"])
    assert res.exit_code == 0, res.output
    summary = json.loads((root / "run" / "evaluation" / "evaluation.json").read_text())
    assert summary["reference"] == "original label volumes" and summary["n_cases"] >= 1
    assert summary["slice_images"].startswith("reference-label crops")


def test_infer_and_the_exported_bundle_give_the_same_labels(trained: dict) -> None:
    root = trained["root"]
    src = sorted((root / "data" / "raw").glob("*_image.nii.gz"))[0]
    res = runner.invoke(app, ["infer", trained["config"], *_sets(root), "--input", str(src),
                              "--output", str(root / "inf")])
    assert res.exit_code == 0, res.output
    seg = root / "inf" / src.name.replace(".nii.gz", "_seg.nii.gz")
    run_labels = np.asarray(nib.load(seg).dataobj)
    assert run_labels.shape == nib.load(src).shape
    res = runner.invoke(app, ["export", str(root / "run"), "--format", "onnx", "--out", str(root / "bundle")])
    assert res.exit_code == 0, res.output
    meta = json.loads((root / "bundle" / "bundle.json").read_text())
    assert meta["cascade"]["coarse"] == "coarse" and "coarse/bundle.json" in meta["files"]
    res = runner.invoke(app, ["infer", str(root / "bundle"), "--input", str(src), "--output",
                              str(root / "inf-b")])
    assert res.exit_code == 0, res.output
    bundle_labels = np.asarray(nib.load(root / "inf-b" / seg.name).dataobj)
    assert np.mean(bundle_labels == run_labels) >= 0.999
    # a damaged coarse stage is refused by its checksum, naming the file
    (root / "bundle" / "coarse" / "preprocessing.json").write_text("{}")
    res = runner.invoke(app, ["infer", str(root / "bundle"), "--input", str(src), "--output",
                              str(root / "inf-c")])
    assert res.exit_code != 0 and "coarse/preprocessing.json" in res.output
    # ... and by the coarse bundle's own listing when the outer one was rewritten to match
    from segkit.predict.bundle import bundle_files

    meta["files"] = bundle_files(root / "bundle")
    (root / "bundle" / "bundle.json").write_text(json.dumps(meta))
    res = runner.invoke(app, ["infer", str(root / "bundle"), "--input", str(src), "--output",
                              str(root / "inf-d")])
    assert res.exit_code != 0 and "preprocessing.json does not match its sha256" in res.output
    assert "coarse" in res.output


def test_a_folder_of_slices_is_refused_by_a_cascade(trained: dict) -> None:
    root = trained["root"]
    res = runner.invoke(app, ["infer", trained["config"], *_sets(root), "--input",
                              str(root / "data" / "test" / "images"), "--output", str(root / "inf-s")])
    assert res.exit_code != 0 and "a cascade (cascade.enabled) segments volumes" in res.output


def test_diagnose_cascade_scores_as_evaluate_does(trained: dict, repo_root: Path, tmp_path: Path) -> None:
    """scripts/diagnose_cascade.py runs both stages as `segkit evaluate` does: its fine-stage Dice per case
    and class is evaluate's (no TTA, no component filter), and the crop numbers are shares."""
    import csv
    import importlib.util

    root = trained["root"]
    res = runner.invoke(app, ["evaluate", trained["config"], *_sets(root), "--split", "test",
                              "--set", "infer.tta=false", "--set", "infer.largest_component=false",
                              "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    with (tmp_path / "ev" / "evaluation.csv").open() as fh:
        expected = {(r["case_id"], r["class_name"]): r["dice"] for r in csv.DictReader(fh)}
    spec = importlib.util.spec_from_file_location("diagnose_cascade",
                                                  repo_root / "scripts" / "diagnose_cascade.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(root / "run"), "--out", str(tmp_path / "diag.json")]) == 0
    rows = json.loads((tmp_path / "diag.json").read_text())["cases"]
    assert {c for c, _ in expected} == set(rows) and any(d != "" for d in expected.values())
    for (case, cls), dice in expected.items():
        got = rows[case]["fine"][cls]["dice"]
        assert (got is None and dice == "") or abs(got - float(dice)) < 1e-6, (case, cls, got, dice)
        crop = rows[case]["crop"]
        assert crop["inside"] is None or 0.0 <= crop["inside"] <= 1.0
    boxes = [r["box"] for r in rows.values()]
    assert any(b is not None for b in boxes)  # the coarse stage found something: the crop path ran
    assert all(set(r) >= {"coarse_box", "coarse_crop"} for r in rows.values())
    assert sum(v["pred_voxels"] for r in rows.values() for v in r["fine"].values()) > 0
    with pytest.raises(SystemExit, match="not test volumes of this run: nope"):
        mod.main([str(root / "run"), "--cases", "nope"])
    import yaml

    cfg = yaml.safe_load((root / "run" / "config.yaml").read_text())
    cfg["cascade"]["enabled"] = False
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit, match="not a cascade run"):
        mod.main([str(tmp_path / "plain")])
