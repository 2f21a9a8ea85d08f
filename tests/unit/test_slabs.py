"""``prepare.slabs``: one labelled volume cut into blocks of slices, each its own case. The blocks
partition the volume's slices but for the gaps, keep every voxel's world position, are recorded in
``dataset.json`` and read back by ``evaluate`` (the reference is the source label's block, not the whole
volume); a class no training block holds is named in a warning.

The model in the evaluation test is a 1x1 convolution whose bias picks class 1 everywhere, so every expected
number follows from voxel counts by hand.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.config import load_config, validate_config
from segkit.errors import DataError
from segkit.io.volumes import Slab, Volume, VolumeRef, load_volume, read_header
from segkit.prepare.record import CaseRecord
from segkit.prepare.report import untrained_classes

REPO = Path(__file__).resolve().parents[2]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 200), count=st.integers(2, 7), gap_mm=st.floats(0, 25),
       step=st.sampled_from([0.625, 1.5, 2.0, 10.0]))
def test_blocks_partition_the_slices_but_for_the_gaps(n: int, count: int, gap_mm: float, step: float) -> None:
    """Blocks in order, sizes within one of each other, consecutive ones exactly ``ceil(gap_mm / step)``
    slices apart, the first at slice 0 and the last ending at the last slice; too few slices: one line."""
    affine = np.diag([0.7, 0.7, step, 1.0])
    gap = math.ceil(gap_mm / step - 1e-6) if gap_mm > 0 else 0
    slabs = [Slab(2, k, count, gap_mm) for k in range(1, count + 1)]
    if n - (count - 1) * gap < count:
        with pytest.raises(DataError, match=f"^{n} slices along axis 2 cannot hold {count} slabs") as err:
            slabs[0].bounds((4, 4, n), affine)
        assert err.value.hint == "lower prepare.slabs or prepare.slab_gap_mm"
        return
    bounds = [s.bounds((4, 4, n), affine) for s in slabs]
    assert {axis for axis, _, _ in bounds} == {2}
    sizes = [stop - start for _, start, stop in bounds]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert bounds[0][1] == 0 and bounds[-1][2] == n
    assert all(b[1] - a[2] == gap for a, b in zip(bounds, bounds[1:], strict=False))


def test_a_block_keeps_every_voxel_where_it_was_in_the_world(tmp_path: Path) -> None:
    """An LPS volume stored with its axial axis first: ``prepare.axis`` 2 (axial) cuts array axis 0. Each
    block's voxels hold the whole volume's values at the same world points, and ``read_header`` gives the
    block's shape and affine without reading voxels."""
    affine = np.array([[0.0, 0.0, -0.8, 10.0],   # array axis 2 -> -x (L)
                       [0.0, -0.9, 0.0, 20.0],   # array axis 1 -> -y (P)
                       [2.5, 0.0, 0.0, -30.0],   # array axis 0 -> z (S): the axial axis
                       [0.0, 0.0, 0.0, 1.0]])
    data = np.arange(23 * 5 * 6, dtype=np.int16).reshape(23, 5, 6)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    whole = load_volume(path)
    seen: list[int] = []
    for k in (1, 2, 3):
        ref = VolumeRef(path, slab=Slab(2, k, 3, 5.0))
        block = load_volume(ref)
        shape, head_affine = read_header(ref)
        assert shape == block.data.shape and np.allclose(head_affine, block.affine)
        assert block.data.shape[1:] == (5, 6)
        for i in range(block.data.shape[0]):
            world = block.affine @ [i, 3, 4, 1]
            j = np.linalg.solve(whole.affine, world)
            assert np.allclose(j, np.round(j)) and data[int(round(j[0])), 3, 4] == block.data[i, 3, 4]
            seen.append(int(round(j[0])))
    # 23 slices - 2 gaps of 2 = 19 = 7 + 6 + 6; the gap slices 7-8 and 15-16 belong to no block
    assert seen == [*range(0, 7), *range(9, 15), *range(17, 23)]
    assert isinstance(whole, Volume)


def test_one_volume_prepared_as_blocks_and_evaluated_on_each_block(tmp_path: Path, constant_model) -> None:  # noqa: ANN001
    """A 30-slice volume, ``prepare.slabs: 3`` with 4 mm gaps at 2 mm a slice: cases c1_slab1..3 of 9, 9 and
    8 slices (30 - 2 x 2 = 26), recorded with their block; ``evaluate`` (all class 1) scores each against its
    own block of the source label, so the gap slices' foreground counts nowhere."""
    from segkit.evaluate.run import evaluate_model
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare
    from segkit.prepare.manifest import load_manifest
    from segkit.prepare.record import case_records

    shape = (16, 16, 30)
    affine = np.diag([-0.8, -0.9, 2.0, 1.0])
    raw = tmp_path / "raw"
    raw.mkdir()
    img = np.linspace(-400, 400, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    lbl = np.zeros(shape, np.uint8)
    lbl[4:10, 5:12, :] = 1  # 42 voxels on every slice, the gap slices 9-10 and 20-21 included
    nib.save(nib.Nifti1Image(img, affine), str(raw / "c1_image.nii.gz"))
    nib.save(nib.Nifti1Image(lbl, affine), str(raw / "c1_label.nii.gz"))
    cfg = validate_config({
        "name": "slabs",
        "modality": "ct",
        "classes": [{"id": 1, "name": "a", "color": [255, 0, 0]}],
        "prepare": {"axis": 2, "size": [16, 16], "ct_window": [-500, 500], "empty_slices": "keep",
                    "slabs": 3, "slab_gap_mm": 4.0, "split": {"train": 0, "valid": 0, "test": 1}},
        "data": {"image_size": [16, 16], "channels": 1, "dir": str(tmp_path / "data")},
        "model": {"name": "flexunet", "base_filters": 4, "num_layers": 3},
        "train": {"run_dir": str(tmp_path / "run")},
        "infer": {"batch_size": 8, "tta": False, "largest_component": False},
        "evaluate": {"split": "test", "nsd_tolerance_mm": 1.0},
    })
    globs = SourceOptions(image_glob="*_image.nii.gz", label_glob="*_label.nii.gz")
    report = run_prepare("nifti", raw, tmp_path / "data", cfg,
                         PrepareOptions(workers=1, source_options=globs))
    assert report.ok and report.warnings == []
    records = case_records(load_manifest(tmp_path / "data"))
    assert {c: (r.slab, r.geometry.shape, r.geometry.affine[2][3]) for c, r in records.items()} == {
        "c1_slab1": (Slab(2, 1, 3, 4.0), (16, 16, 9), 0.0),
        "c1_slab2": (Slab(2, 2, 3, 4.0), (16, 16, 9), 22.0),   # slice 11 at 2 mm
        "c1_slab3": (Slab(2, 3, 3, 4.0), (16, 16, 8), 44.0),   # slice 22
    }
    written = sorted(p.name for p in (tmp_path / "data" / "test" / "images").iterdir())
    assert written == [f"c1_slab{k}_{i:04d}.png" for k, n in ((1, 9), (2, 9), (3, 8)) for i in range(n)]
    record = records["c1_slab2"]
    assert CaseRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    bad = {**record.to_json(), "slab": {"axis": 2, "index": 4, "count": 3, "gap_mm": 4.0}}
    with pytest.raises(DataError, match="case 'c1_slab2' has a bad 'slab'"):
        CaseRecord.from_json(bad, tmp_path / "dataset.json", "c1_slab2")
    refs = record.volume_refs()
    assert refs is not None and load_volume(refs[1]).data.shape == (16, 16, 9)

    constant_model(tmp_path / "run" / "model.keras", 1, [0.0, 10.0])  # class 1 everywhere
    res = evaluate_model(cfg, out_dir=tmp_path / "eval")
    with open(res.csv_path, newline="") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f)}
    for case, n in (("c1_slab1", 9), ("c1_slab2", 9), ("c1_slab3", 8)):
        assert int(rows[case]["pred_voxels"]) == 256 * n and int(rows[case]["ref_voxels"]) == 42 * n
        assert float(rows[case]["dice"]) == pytest.approx(2 * 42 / (42 + 256), abs=1e-6)
    summary = json.loads(res.json_path.read_text())
    assert set(summary["reference_per_case"].values()) == {"original label volumes"}

    # the source shrank below its blocks since prepare: each block is scored on its written slices instead
    nib.save(nib.Nifti1Image(img[..., :4], affine), str(raw / "c1_image.nii.gz"))
    nib.save(nib.Nifti1Image(lbl[..., :4], affine), str(raw / "c1_label.nii.gz"))
    res = evaluate_model(cfg, out_dir=tmp_path / "eval-shrunk")
    summary = json.loads(res.json_path.read_text())
    assert set(summary["reference_per_case"].values()) == {"reassembled written slices"}


def test_slab_settings_are_checked_and_leave_other_datasets_fingerprints_alone() -> None:
    """``slabs`` below 2 and negative gaps are refused; the prepare fingerprint of a config without slabs is
    the one segkit wrote before the key existed (its datasets are not prepared again)."""
    one_plane = "prepare.extra_axes=[]"  # the preset's three planes do not combine with slabs
    preset = REPO / "configs" / "left-atrial.yaml"
    with pytest.raises(Exception, match="slabs"):
        load_config(preset, [one_plane, "prepare.slabs=1"])
    with pytest.raises(Exception, match="slab_gap_mm"):
        load_config(preset, [one_plane, "prepare.slabs=3", "prepare.slab_gap_mm=-1"])
    # the LA preset in one plane, as it was before prepare.extra_axes existed: the same fingerprint
    la = load_config(preset, [one_plane])
    assert la.prepare_fingerprint() == "088553e5c12db8a0e60627ec4931babe9e1e19186466d607530608468a878013"
    slabs = load_config(preset, [one_plane, "prepare.slabs=3"])
    assert slabs.prepare_fingerprint() != la.prepare_fingerprint()
    assert load_config(preset).prepare_fingerprint() != la.prepare_fingerprint()


def test_a_class_no_training_slice_holds_is_warned() -> None:
    def split(**pixels: int) -> dict[str, object]:
        return {"cases": 1, "slices": 1, "pixels": {"background": 10, **pixels}}

    summary = {"train": split(a=5, b=0, c=0), "valid": split(a=1, b=3, c=0), "test": split(a=1, b=2, c=0)}
    assert untrained_classes(summary) == [
        "class b: pixels in the valid and test splits only, none in train: no model can learn it (change the "
        "split or seed, or label more cases)"]
    summary["valid"] = split(a=1, b=0, c=0)
    assert untrained_classes(summary, slabs=True) == [
        "class b: pixels in the test split only, none in train: no model can learn it (it lies within the "
        "blocks held out; other prepare.slabs or seed, or label more volumes)"]
    summary["train"] = split(a=5, b=1, c=0)
    assert untrained_classes(summary) == []
    summary["train"] = {"cases": 0, "slices": 0, "pixels": {"background": 0, "a": 0, "b": 0, "c": 0}}
    assert untrained_classes(summary) == []  # a dataset to evaluate on only


def _one_volume(raw: Path, slices: int, label_slices: slice) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    shape = (16, 16, slices)
    lbl = np.zeros(shape, np.uint8)
    lbl[4:10, 5:12, label_slices] = 1
    img = np.linspace(-400, 400, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    nib.save(nib.Nifti1Image(img, np.diag([0.8, 0.8, 2.0, 1.0])), str(raw / "c1_image.nii.gz"))
    nib.save(nib.Nifti1Image(lbl, np.diag([0.8, 0.8, 2.0, 1.0])), str(raw / "c1_label.nii.gz"))


def _slab_cfg(out: Path, slabs: int, **prepare: object):  # noqa: ANN202
    return validate_config({
        "name": "slabs", "modality": "ct", "classes": [{"id": 1, "name": "a", "color": [255, 0, 0]}],
        "prepare": {"axis": 2, "size": [16, 16], "ct_window": [-500, 500], "empty_slices": "keep",
                    "slabs": slabs, "slab_gap_mm": 0.0, "split": {"train": 1, "valid": 0, "test": 1},
                    **prepare},
        "data": {"image_size": [16, 16], "channels": 1, "dir": str(out)},
    })


def test_a_volume_too_short_for_its_blocks_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare

    _one_volume(tmp_path / "raw", 2, slice(None))
    globs = SourceOptions(image_glob="*_image.nii.gz", label_glob="*_label.nii.gz")
    report = run_prepare("nifti", tmp_path / "raw", tmp_path / "data", _slab_cfg(tmp_path / "data", 3),
                         PrepareOptions(workers=1, source_options=globs))
    assert report.failures == [f"{tmp_path / 'raw' / 'c1_image.nii.gz'}: 2 slices along axis 2 cannot hold 3 "
                               "slabs with gaps of 0 slices (0 mm) (hint: lower prepare.slabs or "
                               "prepare.slab_gap_mm)"]
    assert not (tmp_path / "data" / "dataset.json").exists() and not (tmp_path / "data" / "test").exists()


def test_an_empty_block_is_named_by_its_block(tmp_path: Path) -> None:
    """Foreground only in the first half of the slices: with 2 blocks the second is empty; the warning (and,
    with ``empty_labels: error``, the failure) names the block, not just the label file."""
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare

    _one_volume(tmp_path / "raw", 10, slice(0, 4))
    globs = SourceOptions(image_glob="*_image.nii.gz", label_glob="*_label.nii.gz")
    report = run_prepare("nifti", tmp_path / "raw", tmp_path / "data", _slab_cfg(tmp_path / "data", 2),
                         PrepareOptions(workers=1, source_options=globs))
    assert report.ok
    assert [w for w in report.warnings if "empty" in w] == [
        "c1_label.nii.gz (block 2 of 2, case c1_slab2): label volume is empty (no foreground voxel); kept "
        "(set prepare.empty_labels=allow for real negatives, or error to refuse such cases)"]
    report = run_prepare("nifti", tmp_path / "raw", tmp_path / "data-err",
                         _slab_cfg(tmp_path / "data-err", 2, empty_labels="error"),
                         PrepareOptions(workers=1, source_options=globs))
    assert report.failures == [f"{tmp_path / 'raw' / 'c1_label.nii.gz'}: block 2 of 2 of the label volume "
                               "(case c1_slab2) holds no foreground voxel (hint: lower prepare.slabs, or set "
                               "prepare.empty_labels=allow or warn)"]


def test_phantom_cases_keep_their_blocks(tmp_path: Path) -> None:
    """The phantom source moves its generated files into OUT/raw: its cases keep their blocks (each block
    case holds a third of the 40 slices, not the whole volume)."""
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare
    from segkit.prepare.manifest import load_manifest
    from segkit.prepare.record import case_records

    cfg = load_config(REPO / "configs" / "demo.yaml", ["prepare.slabs=3", "prepare.slab_gap_mm=0",
                                                        "prepare.size=[32,32]", "data.image_size=[32,32]"])
    report = run_prepare("phantom", None, tmp_path / "data", cfg,
                         PrepareOptions(workers=1, source_options=SourceOptions(phantom_n=1)))
    assert report.ok
    records = case_records(load_manifest(tmp_path / "data"))
    assert {c: (r.slab.index if r.slab else None, r.geometry.shape[2]) for c, r in records.items()} == {
        "case_000_slab1": (1, 14), "case_000_slab2": (2, 13), "case_000_slab3": (3, 13)}


def test_two_d_slice_sources_cannot_be_cut() -> None:
    from segkit.errors import ConfigError
    from segkit.io.volumes import CaseKind
    from segkit.prepare.sources import CaseSpec, Discovery, slab_cases

    flat = CaseSpec("p1", Path("/x/p1_0.png"), None, CaseKind.SLICES2D)
    with pytest.raises(ConfigError, match="case p1 is a set of 2D slices: prepare.slabs cuts volumes") as err:
        slab_cases(Discovery([flat]), 3, 2, 10.0)
    assert err.value.hint == "remove prepare.slabs for 2D slices"
