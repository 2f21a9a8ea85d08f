"""segkit.plan: the fingerprint against hand-computed values on small synthetic volumes, the layout detection
and the planning rules (no TensorFlow here; the real-data plan and its training run are in
tests/data/test_plan_real.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.config import load_config
from segkit.errors import DataError
from segkit.plan.fingerprint import case_fingerprint, fingerprint_cases, guess_modality, relative_path
from segkit.plan.layout import detect_layout, find_cases
from segkit.plan.render import render_config
from segkit.plan.rules import (
    MAX_PARTS,
    PATIENT_PART,
    SLABS,
    PlanOptions,
    budget_plan,
    cascade_comment,
    class_entries,
    levels_for,
    plan_geometry,
    round_to,
    slab_count,
    split_entry,
)
from segkit.prepare.sources import CaseSpec

REPO = Path(__file__).resolve().parents[2]


def _pair(folder: Path, case: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> CaseSpec:
    folder.mkdir(parents=True, exist_ok=True)
    img, lbl = folder / f"{case}_image.nii.gz", folder / f"{case}_label.nii.gz"
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), img)
    nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), lbl)
    return CaseSpec(case, img, lbl)


def test_fingerprint_of_an_lps_case_by_hand(tmp_path: Path) -> None:
    """An LPS volume (x, y flipped, spacings 2, 1, 3 mm): canonical shape and spacing, the box in voxels and
    mm, the foreground statistics and the class counts, all computed by hand."""
    image = np.full((10, 8, 4), -1024.0)
    label = np.zeros((10, 8, 4), np.uint8)
    label[2:5, 1:7, 1:3] = 1  # 3 x 6 x 2 = 36 voxels
    label[6, 2, 0] = 3  # one voxel of class 3: the box grows to x 2..6, y 1..6, z 0..2
    image[label == 1] = 100.0
    image[label == 3] = 200.0
    affine = np.diag([-2.0, -1.0, 3.0, 1.0])
    rec, sample = case_fingerprint(_pair(tmp_path, "c1", image, label, affine))
    assert rec["orientation"] == "LPS" and rec["shape"] == [10, 8, 4] and rec["spacing"] == [2.0, 1.0, 3.0]
    fg = rec["foreground"]
    assert fg["voxels"] == 37 and fg["fraction"] == round(37 / 320, 6)
    assert fg["bbox_vox"] == [5, 6, 3] and fg["bbox_mm"] == [10.0, 6.0, 9.0]
    assert rec["classes"] == {"0": 283, "1": 36, "3": 1}
    values = np.array([100.0] * 36 + [200.0])
    it = rec["intensity"]
    assert it["min"] == -1024.0 and it["max"] == 200.0
    assert it["mean"] == pytest.approx(values.mean(), abs=1e-4) and it["std"] == pytest.approx(values.std(),
                                                                                                 abs=1e-4)
    assert it["p00_5"] == 100.0 and it["p99_5"] == pytest.approx(np.percentile(values, 99.5), abs=1e-4)
    assert sorted(sample.tolist()) == sorted(values.tolist())
    assert guess_modality([rec])[0] == "ct"


@given(
    lo=st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 2)),
    ext=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 3)),
    spacing=st.tuples(*[st.sampled_from([0.5, 1.0, 1.5, 10.0])] * 3),
    value=st.floats(0, 500, allow_nan=False),
)
def test_fingerprint_box_and_statistics_vary(lo: tuple[int, ...], ext: tuple[int, ...],
                                             spacing: tuple[float, ...], value: float) -> None:
    """A box of any place and size in a RAS volume of any spacing: its extent in voxels and mm, its voxel
    count, the foreground mean, and MR (no HU-like minimum)."""
    import tempfile

    shape = (12, 12, 6)
    label = np.zeros(shape, np.uint8)
    box = tuple(slice(a, a + e) for a, e in zip(lo, ext, strict=True))
    label[box] = 2
    image = np.zeros(shape)
    image[box] = value
    with tempfile.TemporaryDirectory() as tmp:
        rec, _ = case_fingerprint(_pair(Path(tmp), "c", image, label, np.diag([*spacing, 1.0])))
    assert rec["foreground"]["bbox_vox"] == list(ext)
    assert rec["foreground"]["bbox_mm"] == [round(e * s, 2) for e, s in zip(ext, spacing, strict=True)]
    assert rec["foreground"]["voxels"] == int(np.prod(ext)) == rec["classes"]["2"]
    assert rec["intensity"]["mean"] == pytest.approx(value, abs=1e-3)
    assert guess_modality([rec])[0] == "mr"


def test_summary_pools_cases(tmp_path: Path) -> None:
    """Two cases: median / max spacing and shape, class frequencies and the pooled foreground percentiles."""
    specs = []
    for i, (sp, v) in enumerate([(1.0, 10.0), (2.0, 30.0)]):
        label = np.zeros((8, 8, 4), np.uint8)
        label[:2, :2, :1] = 1  # 4 voxels
        image = np.where(label > 0, v, 0.0)
        specs.append(_pair(tmp_path, f"p{i}", image, label, np.diag([sp, sp, 5.0, 1.0])))
    fp = fingerprint_cases(specs)
    s = fp["summary"]
    assert s["cases"] == 2 and s["spacing"]["median"] == [1.5, 1.5, 5.0] and s["spacing"]["max"] == [2, 2, 5]
    assert s["classes"]["1"] == {"voxels": 8, "fraction": round(8 / 512, 6), "of_foreground": 1.0, "cases": 2}
    pooled = np.array([10.0] * 4 + [30.0] * 4)
    assert s["foreground_intensity"]["mean"] == 20.0
    assert s["foreground_intensity"]["p99_5"] == pytest.approx(np.percentile(pooled, 99.5), abs=1e-4)


def test_layouts_are_found_as_prepare_pairs_them(tmp_path: Path) -> None:
    label = np.zeros((4, 4, 2), np.uint8)
    label[0, 0, 0] = 1
    msd = tmp_path / "msd"
    for sub in ("imagesTr", "labelsTr"):
        (msd / sub).mkdir(parents=True)
        for case in ("la_001", "la_002"):
            nib.save(nib.Nifti1Image(label, np.eye(4)), msd / sub / f"{case}.nii.gz")
    assert detect_layout(msd).source == "left-atrial"
    assert [c.case_id for c in find_cases(msd, detect_layout(msd)).cases] == ["la_001", "la_002"]
    acdc = tmp_path / "acdc"
    for case in ("patient001_frame01", "patient002_frame01"):
        _pair(acdc, case, label * 1.0, label, np.eye(4))
    lay = detect_layout(acdc)
    assert (lay.source, lay.options.image_glob, lay.options.label_glob) == (
        "nifti", "*_image.nii.gz", "*_label.nii.gz")
    lay = detect_layout(acdc, "*_frame01_image.nii.gz", "*_frame01_label.nii.gz")  # given globs win
    assert [c.case_id for c in find_cases(acdc, lay).cases] == ["patient001", "patient002"]
    with pytest.raises(DataError, match="no known dataset layout"):
        detect_layout(tmp_path)


def test_one_labelled_case_is_planned_as_blocks_of_its_slices(tmp_path: Path) -> None:
    """One labelled case is found (unlabelled images are left out) and planned as ``SLABS`` blocks, fewer when
    the volume is short (each block at least ``MIN_SLAB_SLICES`` slices after the 10 mm gaps), refused below
    3; the split sends one block to validation and one to test."""
    label = np.zeros((4, 4, 2), np.uint8)
    label[0, 0, 0] = 1
    _pair(tmp_path, "a", label * 1.0, label, np.eye(4))
    nib.save(nib.Nifti1Image(label * 1.0, np.eye(4)), tmp_path / "b_image.nii.gz")
    assert [c.case_id for c in find_cases(tmp_path, detect_layout(tmp_path)).cases] == ["a"]

    def one(slices: int, step: float) -> dict[str, object]:
        return {"cases": [{"case_id": "a", "image": "a_image.nii.gz", "shape": [64, 64, slices],
                           "spacing": [1.0, 1.0, step]}]}

    assert slab_count(one(164, 1.5), 2) == SLABS == 5  # 164 - 4 gaps of 7 = 136 >= 5 x 8
    assert slab_count(one(70, 1.0), 2) == 4  # 5 blocks: 70 - 40 = 30 < 40; 4: 70 - 30 = 40 >= 32
    assert slab_count(one(44, 1.0), 2) == 3  # 44 - 20 = 24 = 3 x 8
    with pytest.raises(DataError, match=r"^1 labelled case \(a\) of 43 slices along axis 2: too few to cut "
                       r"into 3 blocks of 8 slices 10 mm apart") as err:
        slab_count(one(43, 1.0), 2)
    assert err.value.hint == "add a labelled case" and err.value.path == Path("a_image.nii.gz")
    assert slab_count({"cases": [one(164, 1.5)["cases"][0]] * 2}, 2) is None  # two cases: no blocks
    preset = load_config(REPO / "configs" / "hocm.yaml")
    assert split_entry(one(164, 1.5), preset, 5)[1] == {"train": 3, "valid": 1, "test": 1}


def test_fingerprint_paths_are_relative_to_the_dataset(tmp_path: Path) -> None:
    """fingerprint.json records where each case lies below DATA, never an absolute path (DICOM folders above
    the dataset often carry patient names)."""
    label = np.zeros((4, 4, 2), np.uint8)
    label[0, 0, 0] = 1
    data = tmp_path / "Doe_John_MRN123" / "raw"
    for case in ("p1", "p2"):
        _pair(data / case, "scan", label * 1.0, label, np.eye(4))
    lay = detect_layout(data, "*/scan_image.nii.gz", "*/scan_label.nii.gz")
    fp = fingerprint_cases(find_cases(data, lay).cases, root=data)
    assert [(c["case_id"], c["image"], c["label"]) for c in fp["cases"]] == [
        ("p1", "p1/scan_image.nii.gz", "p1/scan_label.nii.gz"),
        ("p2", "p2/scan_image.nii.gz", "p2/scan_label.nii.gz")]
    assert "Doe_John" not in json.dumps(fp)
    assert relative_path(tmp_path / "elsewhere" / "x.nii.gz", data) == "x.nii.gz"  # outside DATA: the name


def test_levels_and_rounding() -> None:
    assert [levels_for(s) for s in (8, 15, 16, 31, 32, 128, 135, 192, 256)] == [2, 2, 3, 3, 4, 6, 6, 6, 7]
    assert round_to(135, 32) == 128 and round_to(241, 32) == 256 and round_to(10, 32) == 32


def _case(shape: list[int], spacing: list[float], box_mm: list[float]) -> dict:
    return {"shape": shape, "spacing": spacing, "foreground": {"bbox_mm": box_mm, "bbox_vox": [1, 1, 1]}}


def test_geometry_crop_or_cascade() -> None:
    """A foreground filling half the field of view: the box + 10 % a side; one filling 5 %: a cascade.
    Display rows are canonical y, columns x."""
    summary = {"spacing": {"median": [1.0, 1.0, 1.0]}}
    big = plan_geometry({"summary": summary, "cases": [_case([200, 100, 50], [1, 1, 1], [150, 60, 10])]})
    # box (rows, cols) = (60, 150) mm * 1.2 = (72, 180), at most the slice (100, 200): levels from 72 -> 5
    assert (big.axis, big.spacing, big.num_layers, big.size, big.coarse_size) == (
        2, (1.0, 1.0), 5, (64, 176), None)
    small = plan_geometry({"summary": summary, "cases": [_case([200, 100, 50], [1, 1, 1], [20, 50, 10])]})
    # a cascade: box 50 mm + 15 mm a side = 80 px square (5 levels, multiples of 16); coarse (100, 200) / 4
    assert small.size == (80, 80) and small.num_layers == 5 and small.coarse_size == (32, 48)
    # three cases: the crop follows the median case's box (50 mm), not the largest (90 mm)
    three = [_case([200, 100, 50], [1, 1, 1], [20, b, 10]) for b in (30, 50, 90)]
    assert plan_geometry({"summary": summary, "cases": three}).size == (80, 80)
    # the same box in a 120 x 120 mm slice: 7 % of it, but the 80 mm crop would cover 44 % (>= 40 %):
    # no cascade, the box + 10 % a side
    tight = plan_geometry({"summary": summary, "cases": [_case([120, 120, 50], [1, 1, 1], [20, 50, 10])]})
    assert tight.coarse_size is None and tight.size == (60, 24) and round(tight.crop_share, 3) == 0.444
    assert cascade_comment(tight) == (
        "cascade: false -- the foreground box covers 7% of the field of view, but its crop with margins "
        "would cover 44% of the slice (>= 40%): little background to crop away for a coarse stage's cost")
    assert cascade_comment(small).startswith("cascade: true -- the foreground box covers 5% of the field")
    aniso = {"spacing": {"median": [1.5, 1.5, 10.0]}}
    flat = [_case([64, 64, 10], [1.5, 1.5, 10], [30, 30, 50])]
    assert plan_geometry({"summary": aniso, "cases": flat}).axis == 2
    coarse_x = {"spacing": {"median": [8.0, 1.0, 1.0]}}
    geo = plan_geometry({"summary": coarse_x, "cases": [_case([10, 64, 64], [8, 1, 1], [40, 40, 40])]})
    assert geo.axis == 0 and geo.spacing == (1.0, 1.0)


def test_a_key_of_no_section_is_never_dropped() -> None:
    with pytest.raises(ValueError, match="planned key nosuch.key is in no section"):
        render_config([("nosuch.key", 1, "why")], [])


def test_rendered_yaml_reads_back() -> None:
    import yaml

    entries = [("name", "x", "why"), ("classes", [{"id": 1, "name": "a", "color": [1, 2, 3]}], "found"),
               ("prepare.split", {"train": 1, "group_by": "^(.+)_[^_]+$"}, "ratios"),
               ("data.patches", True, "mm")]
    text = render_config(entries, ["head"])
    assert yaml.safe_load(text) == {"name": "x", "classes": [{"id": 1, "name": "a", "color": [1, 2, 3]}],
                                    "prepare": {"split": {"train": 1, "group_by": "^(.+)_[^_]+$"}},
                                    "data": {"patches": True}}
    lines = text.splitlines()
    keys = [line for line in lines if not line.startswith(("  - ", "#")) and not line.endswith(":")]
    assert keys and all("  # " in line for line in keys)  # a reason on every key (sections: none)


def test_budget_sizes_epochs_and_batch() -> None:
    """images = minutes x 60 x 43 GFLOP/s x cores / (3 x GFLOP an image): 10 min, 1 core, 1 GFLOP -> 8,600
    images, 86 epochs of 100 slices at batch 4; a budget of 21 steps -> batch 2; 215,000 steps -> batch 8."""
    plan = {k: v for k, v, _ in budget_plan(1.0, 100, PlanOptions("x", 10, 1))}
    assert plan == {"train.epochs": 86, "train.batch_size": 4, "train.time_limit": 10}
    assert {k: v for k, v, _ in budget_plan(1.0, 100, PlanOptions("x", 0.1, 1))}["train.batch_size"] == 2
    many = {k: v for k, v, _ in budget_plan(0.01, 100, PlanOptions("x", 10, 1))}
    assert many["train.batch_size"] == 8 and many["train.epochs"] == 8600
    # native bfloat16: 1.7 x the images (8,600 x 1.7 = 14,620 -> 146 epochs), said in the reason
    half = budget_plan(1.0, 100, PlanOptions("x", 10, 1), bf16=True)
    assert half[0][1] == 146 and "x 1.7 (bfloat16 on this CPU, segkit.plan.rules.BF16_SPEEDUP)" in half[0][2]


def test_the_plan_counts_on_bfloat16_only_where_auto_chooses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from segkit.plan.rules import _trains_bf16_here

    preset = load_config(REPO / "configs" / "left-atrial.yaml")  # jit_compile: auto, precision: auto
    seed = load_config(REPO / "configs" / "seed" / "left-atrial.yaml")  # jit_compile: true
    monkeypatch.setenv("SEGKIT_BF16", "1")
    assert _trains_bf16_here(preset) and not _trains_bf16_here(seed)
    monkeypatch.setenv("SEGKIT_BF16", "0")
    assert not _trains_bf16_here(preset)


def _ids(*ids: str) -> dict:
    return {"cases": [{"case_id": i} for i in ids]}


def test_split_by_patient_only_where_ids_name_patients() -> None:
    acdc, la = load_config("acdc"), load_config("left-atrial")
    parts = _ids("p1_f1", "p1_f2", "p2_f1", "p2_f2", "p3_f1")
    key, split, _ = split_entry(parts, la)
    assert key == "prepare.split" and split["group_by"] == PATIENT_PART
    assert split["train"] == la.prepare.split.train
    # the preset's own pattern wins where it matches every id
    ids = _ids(*[f"patient{p:03d}_frame0{f}" for p in range(1, 6) for f in (1, 2)])
    assert split_entry(ids, acdc)[1]["group_by"] == r"^(patient\d+)_"
    assert split_entry(parts, acdc)[1]["group_by"] == PATIENT_PART  # acdc's pattern names no patient here
    assert "group_by" not in split_entry(_ids("la_100", "la_101", "la_102"), acdc)[1]  # one 'patient': la
    assert split_entry(_ids("a", "b"), acdc)[1] == {"train": 1, "valid": 1, "test": 0}
    # two sites of 10 cases each are no patients: 2 'patients' < 3 splits, and 10 parts > MAX_PARTS
    sites = _ids(*[f"site{s}_{i:03d}" for s in "AB" for i in range(1, 11)])
    assert "group_by" not in split_entry(sites, acdc)[1] and "group_by" not in split_entry(sites, la)[1]
    many = _ids(*[f"s{p}_{i}" for p in range(6) for i in range(5)])  # 6 groups of 5 parts: > MAX_PARTS
    assert "group_by" not in split_entry(many, la)[1]


_PRESETS = {}


def _preset(name: str):  # noqa: ANN202 - a Config, loaded once for all examples
    if name not in _PRESETS:
        _PRESETS[name] = load_config(name)
    return _PRESETS[name]


_ID = st.builds(lambda head, part: head if part is None else f"{head}_{part}",
                st.sampled_from(["a", "b", "c", "siteA", "patient001", "patient002", "x_y"]),
                st.one_of(st.none(), st.integers(0, 12)))


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(_ID, min_size=2, max_size=24, unique=True),
       preset=st.sampled_from(["acdc", "left-atrial"]))
def test_planned_split_always_splits(ids: list[str], preset: str) -> None:
    """Whatever the case ids (2 or more), the planned split is one segkit prepare makes: every split with a
    positive ratio gets a case, and a guessed patient holds at most MAX_PARTS cases."""
    from segkit.config import SplitConfig
    from segkit.prepare.split import patient_groups, split_cases

    _, split, _ = split_entry(_ids(*ids), _preset(preset))
    out = split_cases(ids, SplitConfig(**split), seed=0)
    assert sorted(c for k in ("train", "valid", "test") for c in out[k]) == sorted(ids)
    assert out["train"] and out["valid"]
    if split.get("group_by") == PATIENT_PART:
        assert max(len(v) for v in patient_groups(ids, PATIENT_PART).values()) <= MAX_PARTS


def test_classes_named_from_the_preset_and_gaps_mapped() -> None:
    acdc = load_config("acdc")
    three = class_entries({"summary": {"classes": {"0": {}, "1": {}, "2": {}, "3": {}}}}, acdc)
    assert [c["name"] for c in three[0][1]] == ["RV", "MYO", "LV"] and len(three) == 1
    gaps = class_entries({"summary": {"classes": {"0": {}, "2": {}, "7": {}}}}, acdc)
    assert [c["name"] for c in gaps[0][1]] == ["class_2", "class_7"]
    assert gaps[1][:2] == ("prepare.label_map", {2: 1, 7: 2})
    colors = [tuple(c["color"]) for c in gaps[0][1]]
    assert len(set(colors)) == 2 and (0, 0, 0) not in colors
