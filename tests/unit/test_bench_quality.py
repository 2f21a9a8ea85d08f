"""scripts/bench_quality.py: the recipes it trains are the presets it names, and the fixed split is
enforced."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "scripts" / "bench_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("dataset", ["la", "acdc"])
def test_recommended_recipe_is_the_preset_with_the_bench_split(bench, dataset: str, tmp_path: Path) -> None:  # noqa: ANN001
    from segkit.config import load_config

    cfg = bench.recipe_config(dataset, "recommended", tmp_path, 20.0, quick=False)
    preset = load_config(REPO / "configs" / f"{bench.DATASETS[dataset]['preset']}.yaml")
    assert cfg.model == preset.model and cfg.loss == preset.loss and cfg.augment == preset.augment
    assert cfg.train.time_limit == 20.0 and cfg.train.run_dir == tmp_path / "run"
    assert cfg.data.dir == tmp_path / "data" and cfg.evaluate.split == "test"
    assert cfg.prepare.split.test == bench.DATASETS[dataset]["split"]["test"]


def test_seed_recipe_keeps_the_seed_settings_at_128_and_six_levels(bench, tmp_path: Path) -> None:  # noqa: ANN001
    from segkit.config import load_config

    cfg = bench.recipe_config("acdc", "seed", tmp_path, 5.0, quick=False)
    seed = load_config(REPO / "configs" / "seed" / "whole-heart.yaml")
    assert [c.name for c in cfg.classes] == ["RV", "MYO", "LV"]
    assert cfg.data.image_size == (128, 128) and cfg.prepare.size == (128, 128)
    assert cfg.model.num_layers == 6 and cfg.model.base_kernels == seed.model.base_kernels
    assert cfg.train.learning_rate == seed.train.learning_rate and cfg.augment == seed.augment
    assert cfg.prepare.split.group_by == r"^(patient\d+)_"


def test_a_moved_split_stops_the_bench(bench, tmp_path: Path) -> None:  # noqa: ANN001
    ds = bench.DATASETS["la"]
    (tmp_path / "splits.json").write_text(json.dumps({"test": ds["test"], "valid": ds["valid"], "train": []}))
    assert bench.check_split("la", tmp_path, quick=False)["test"] == ds["test"]
    (tmp_path / "splits.json").write_text(json.dumps({"test": ["la_101"], "valid": ds["valid"], "train": []}))
    with pytest.raises(SystemExit, match="the split moved"):
        bench.check_split("la", tmp_path, quick=False)


def test_table_lists_every_result(bench) -> None:  # noqa: ANN001
    r = {"dataset": "la", "recipe": "seed", "tag": "", "epochs": 3, "train_time_s": 600.0,
         "per_case": {"a": {}, "b": {}}, "mean_fg_dice": 0.5, "sd_fg_dice": 0.1,
         "per_class_dice": {"LA": 0.5},
         "mean_hd95_mm": 12.345, "postprocessing": {"tta": True, "largest_component": [1]}}
    lines = bench.table([r]).splitlines()
    assert lines[2] == "| la | seed | 3 (10.0 min) | 2 | 0.500 ± 0.100 | LA 0.500 | 12.35 | TTA, LCC [1] |"
    # two seeds of one tag are told apart; a run without --seed (folder without -seedN) shows no seed
    seeded = bench.table([{**r, "tag": "s9", "seed": 7, "run": "la-seed-s9-seed7"},
                          {**r, "tag": "s9", "seed": 42, "run": "la-seed-s9"}]).splitlines()
    assert "| seed (s9, seed 7) |" in seeded[2] and "| seed (s9) |" in seeded[3]


def test_model_override_and_cv_keep_the_bench_test_patients(bench, tmp_path: Path) -> None:  # noqa: ANN001
    """--models swaps only model.name; --cv K keeps the four LA test patients of the single-split bench, so
    the fold ensemble is scored on exactly the patients of the README table."""
    from segkit.config import validate_config
    from segkit.prepare.split import split_cases

    cfg = bench.recipe_config("la", "recommended", tmp_path, 10.0, quick=False, model="unet3plus")
    plain = bench.recipe_config("la", "recommended", tmp_path, 10.0, quick=False)
    assert cfg.model.name == "unet3plus" and cfg.model.base_filters == plain.model.base_filters
    ids = sorted(p.name.removesuffix(".nii.gz")
                 for p in (bench.DATASETS["la"]["src"] / "imagesTr").glob("*.nii.gz"))
    assert len(ids) == 16
    raw = plain.model_dump(mode="json")
    raw["prepare"]["split"]["folds"] = 3
    folded = split_cases(ids, validate_config(raw).prepare.split, plain.seed)
    assert folded["test"] == bench.DATASETS["la"]["test"]
    assert sorted(c for f in folded["kfold"] for c in f) == sorted(set(ids) - set(folded["test"]))


def test_acdc80_roi_recipe_is_the_acdc_preset_at_128_on_the_same_patients(bench, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = bench.recipe_config("acdc80-roi", "recommended", tmp_path, 40.0, quick=False)
    preset = bench.recipe_config("acdc80", "recommended", tmp_path, 40.0, quick=False)
    assert cfg.prepare.size == cfg.data.image_size == (128, 128) and not cfg.cascade.enabled  # one model
    assert preset.cascade.enabled and preset.data.image_size == (96, 96)  # the preset is the cascade
    # the net measured in the README (the preset of the day: 6 levels); all else the preset's
    assert cfg.model.num_layers == 6 and cfg.model.model_copy(update={"num_layers": 5}) == preset.model
    assert cfg.prepare.split == preset.prepare.split
    assert bench.DATASETS["acdc80-roi"]["test"] == bench.DATASETS["acdc80"]["test"]
    assert len({c.split("_")[0] for c in bench.DATASETS["acdc80"]["test"]}) == 16


def test_acdc80_whole_is_the_previous_acdc_preset_on_the_same_patients(bench, tmp_path: Path) -> None:  # noqa: ANN001
    """The baseline of the README's two-seed comparison: whole slices at 192 x 192, 6 levels, no cascade; all
    else the preset's."""
    cfg = bench.recipe_config("acdc80-whole", "recommended", tmp_path, 40.0, quick=False)
    preset = bench.recipe_config("acdc80", "recommended", tmp_path, 40.0, quick=False)
    assert cfg.prepare.size == cfg.data.image_size == (192, 192) and cfg.model.num_layers == 6
    assert not cfg.cascade.enabled and preset.cascade.enabled
    assert cfg.model.model_copy(update={"num_layers": 5}) == preset.model and cfg.train == preset.train
    assert bench.DATASETS["acdc80-whole"]["test"] == bench.DATASETS["acdc80"]["test"]


def test_acdc80_cascade_recipe_is_the_acdc_preset_as_a_cascade_on_the_same_patients(bench, tmp_path: Path) -> None:  # noqa: ANN001, E501
    cfg = bench.recipe_config("acdc80-cascade", "recommended", tmp_path, 40.0, quick=False)
    whole = bench.recipe_config("acdc80", "recommended", tmp_path, 40.0, quick=False)
    assert cfg.cascade.enabled and cfg.cascade.coarse_size == (64, 64) and cfg.cascade.coarse_share == 0.2
    assert cfg.prepare.size == cfg.data.image_size == (128, 128) and cfg.train.time_limit == 40.0
    assert cfg.model.num_layers == 6 and cfg.prepare.split == whole.prepare.split  # as measured (README)
    assert bench.DATASETS["acdc80-cascade"]["test"] == bench.DATASETS["acdc80"]["test"]
    for own in ("acdc80-cascade", "acdc80-whole", "acdc80-roi"):
        with pytest.raises(SystemExit, match=f"plans the whole source itself, not {own}'s own settings"):
            bench.recipe_config(own, "plan", tmp_path, 40.0, quick=False)


def test_oracle_crop_keeps_every_foreground_voxel_and_the_world_position(bench, tmp_path: Path) -> None:  # noqa: ANN001
    import nibabel as nib
    import numpy as np

    src = tmp_path / "src"
    src.mkdir()
    acdc = bench.DATASETS["acdc80"]["src"]
    for part in ("image", "label"):
        (src / f"patient002_frame01_{part}.nii.gz").symlink_to(acdc / f"patient002_frame01_{part}.nii.gz")
    dst = bench.crop_source(src, tmp_path / "dst", margin=10)
    lab = nib.load(str(src / "patient002_frame01_label.nii.gz"))
    cut = nib.load(str(dst / "patient002_frame01_label.nii.gz"))
    img = nib.load(str(dst / "patient002_frame01_image.nii.gz"))
    full, part = np.asarray(lab.dataobj), np.asarray(cut.dataobj)
    assert part.shape[0] == part.shape[1] < min(full.shape[:2]) and part.shape[2] == full.shape[2]
    assert img.shape == part.shape and np.allclose(img.affine, cut.affine)
    assert (part > 0).sum() == (full > 0).sum() > 0
    ys, xs, _ = np.nonzero(part)  # the margin: 10 voxels of background at least on the box's tight sides
    assert min(ys.min(), xs.min(), part.shape[0] - 1 - ys.max(), part.shape[1] - 1 - xs.max()) >= 10
    i0, j0 = (np.round(np.linalg.solve(lab.affine, cut.affine @ [0, 0, 0, 1])[:2])).astype(int)
    assert np.array_equal(full[i0 : i0 + part.shape[0], j0 : j0 + part.shape[1]], part)


def _fake_stages(bench, monkeypatch: pytest.MonkeyPatch, seen: dict) -> None:  # noqa: ANN001
    """run_one's prepare, training and evaluation replaced by recorders: prepare writes the bench's split,
    training records its config, evaluation scores one class of the test cases."""
    from types import SimpleNamespace

    import segkit.evaluate.run
    import segkit.prepare
    import segkit.train

    ds = bench.DATASETS["acdc80"]

    def prepare(source, src, out, cfg, opts):  # noqa: ANN001, ANN202
        seen["prepare_seed"] = cfg.seed
        out.mkdir(parents=True, exist_ok=True)
        (out / "splits.json").write_text(json.dumps({"test": ds["test"], "valid": ds["valid"]}))
        return SimpleNamespace(failures=[])

    def train(cfg, resume, overwrite):  # noqa: ANN001, ANN202
        seen["train"] = (cfg.seed, cfg.cascade_stages()[0].seed, resume)
        return SimpleNamespace(epochs_done=1, train_time_s=1.0, stop_reason="epochs", monitor="val_fg_dice",
                               best_value=0.5, history=[])

    def evaluate(cfg):  # noqa: ANN001, ANN202
        rows = [{"case_id": c, "class_name": k, "dice": 0.5, "hd95_mm": 1.0}
                for c in ds["test"] for k in ("RV", "MYO", "LV")]
        return SimpleNamespace(rows=rows)

    monkeypatch.setattr(segkit.prepare, "run_prepare", prepare)
    monkeypatch.setattr(segkit.train, "train_model", train)
    monkeypatch.setattr(segkit.evaluate.run, "evaluate_model", evaluate)


def test_seed_trains_both_cascade_stages_with_it_on_data_prepared_with_the_recipes(
    bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """--seed 7: prepare (and so the split) keeps the preset's seed 42, training and the cascade's coarse
    stage get 7, the run folder is named -seed7 and its result says 7; the folder's result is reused for the
    same seed and refused for another; a run folder trained with another seed is refused before prepare."""
    seen: dict = {}
    _fake_stages(bench, monkeypatch, seen)
    r = bench.run_one("acdc80", "recommended", tmp_path, 1.0, False, "t", seed=7)
    assert seen == {"prepare_seed": 42, "train": (7, 7, False)} and r["seed"] == 7
    assert (tmp_path / "acdc80-recommended-t-seed7" / "result.json").is_file()
    assert r["run"] == "acdc80-recommended-t-seed7" and bench.run_label(r) == "recommended (t, seed 7)"
    seen.clear()
    again = bench.run_one("acdc80", "recommended", tmp_path, 1.0, False, "t", seed=7)
    assert again["seed"] == 7 and not seen
    # a result written before the run folder was recorded: labelled from the folder's name
    saved = tmp_path / "acdc80-recommended-t-seed7" / "result.json"
    saved.write_text(json.dumps({k: v for k, v in json.loads(saved.read_text()).items() if k != "run"}))
    assert bench.run_label(bench.run_one("acdc80", "recommended", tmp_path, 1.0, False, "t", seed=7)) \
        == "recommended (t, seed 7)"
    # a folder of that name holding another seed's result (renamed by hand): refused, not returned
    (tmp_path / "acdc80-recommended-x-seed3").mkdir()
    (tmp_path / "acdc80-recommended-x-seed3" / "result.json").write_text(json.dumps({"seed": 7}))
    with pytest.raises(SystemExit, match="trained with seed 7, not --seed 3"):
        bench.run_one("acdc80", "recommended", tmp_path, 1.0, False, "x", seed=3)
    # an interrupted cascade (stopped in its coarse stage) of another seed: refused before prepare
    coarse = tmp_path / "acdc80-recommended-y-seed5" / "run" / "coarse"
    coarse.mkdir(parents=True)
    (coarse / "config.yaml").write_text("seed: 42\n")
    with pytest.raises(SystemExit, match="coarse/config.yaml was trained with seed 42, not 5"):
        bench.run_one("acdc80", "recommended", tmp_path, 1.0, False, "y", seed=5)
    assert not seen
    # the same seed: resumed (the coarse stage's config is enough to tell)
    (coarse / "config.yaml").write_text("seed: 5\n")
    bench.run_one("acdc80", "recommended", tmp_path, 1.0, False, "y", seed=5)
    assert seen["train"] == (5, 5, True)


def test_the_aorta_is_planned_as_blocks_with_the_bench_split(bench, tmp_path: Path) -> None:  # noqa: ANN001
    """The one aorta CT volume: the plan recipe only (no preset), its 5 blocks split 3 / 1 / 1 as the bench
    fixes it, the lumen labels paired by the bench's globs."""
    with pytest.raises(SystemExit, match="aorta has no preset of its own: only --recipes plan"):
        bench.recipe_config("aorta", "recommended", tmp_path, 20.0, quick=False)
    cfg = bench.recipe_config("aorta", "plan", tmp_path, 20.0, quick=False)
    assert (cfg.prepare.slabs, cfg.prepare.slab_gap_mm, cfg.modality) == (5, 10.0, "ct")
    assert [c.id for c in cfg.classes] == [1, 2]  # true and false lumen
    assert (cfg.prepare.split.train, cfg.prepare.split.valid, cfg.prepare.split.test) == (3, 1, 1)
    assert cfg.train.time_limit == 20.0 and cfg.data.dir == tmp_path / "data"
