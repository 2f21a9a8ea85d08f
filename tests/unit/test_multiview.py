"""Multi-planar 2D (``prepare.extra_axes``): the config rules, the extra views ``prepare`` writes (train and
valid only, named ``<case>_ax<k>_<NNNN>``, the main view unchanged), their case ids, and inference averaging
the views' probabilities in the volume's own geometry.

The prediction tests use a threshold "model" (one 1x1 convolution, foreground where x > 0.5) as
``test_cascade.py`` does, so every view finds the same bright block and the average can be checked by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segkit.config import load_config, validate_config
from segkit.data.pipeline import case_of_stem, is_view_stem
from segkit.errors import ConfigError, DataError
from segkit.io.volumes import Volume
from segkit.prepare.outdir import slice_files, slice_stem
from segkit.prepare.record import Preprocessing

CLASSES = [{"id": 1, "name": "atrium", "color": [255, 0, 255]}]


def _raw(**prepare: object) -> dict:
    return {
        "modality": "mr",
        "classes": CLASSES,
        "prepare": {"size": [32, 32], "empty_slices": "keep", **prepare},
        "data": {"channels": 1},
        "model": {"num_layers": 3},
    }


# === config ===


def test_extra_axes_config_rules() -> None:
    assert validate_config(_raw(extra_axes=[0, 1])).prepare.extra_axes == (0, 1)
    assert validate_config(_raw()).prepare.extra_axes == ()
    for bad, says in (([0, 0], "each axis once"), ([2], "not prepare.axis (2)"), ([3], "")):
        with pytest.raises(ConfigError, match="extra_axes") as e:
            validate_config(_raw(extra_axes=bad))
        assert says in str(e.value)
    with pytest.raises(ConfigError, match="prepare.spacing"):
        validate_config(_raw(extra_axes=[0], spacing=[1.0, 1.0]))
    with pytest.raises(ConfigError, match="prepare.slabs"):
        validate_config(_raw(extra_axes=[0], slabs=2))
    for section, key, value in (("cascade", "enabled", True), ("data", "patches", True),
                                ("data", "context_slices", 1)):
        raw = _raw(extra_axes=[0, 1])
        raw.setdefault(section, {})[key] = value
        with pytest.raises(ConfigError, match=f"does not combine with {section}.{key}"):
            validate_config(raw)


def test_view_stems_belong_to_their_case() -> None:
    assert slice_stem("la_101", 7) == "la_101_0007"
    assert slice_stem("la_101", 7, view=0) == "la_101_ax0_0007"
    assert case_of_stem("la_101_ax0_0007", ["la_101"]) == ("la_101", None)
    assert case_of_stem("la_101_ax1_0012") == ("la_101", None)
    assert case_of_stem("la_101_0012", ["la_101"]) == ("la_101", 12)
    # a case id that itself ends like a view stays the longer, known id
    assert case_of_stem("p_ax0_0003", ["p_ax0"]) == ("p_ax0", 3)
    assert is_view_stem("la_101_ax2_0001") and not is_view_stem("la_101_0001")
    # a known case's prefix does not claim another case's view: "a" + "_foo_ax0_0003" is case "a_foo"'s
    assert case_of_stem("a_foo_ax0_0003", ["a", "a_foo"]) == ("a_foo", None)
    assert case_of_stem("a_foo_ax0_0003", ["a"]) == ("a_foo", None)


# === prepare ===


def _prepare(repo_root: Path, out: Path, *sets: str):
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare

    cfg = load_config(repo_root / "configs" / "demo.yaml",
                      ["prepare.size=[32,32]", "prepare.empty_slices=keep", *sets])
    report = run_prepare("phantom", None, out, cfg,
                         PrepareOptions(workers=1, source_options=SourceOptions(phantom_n=4)))
    assert report.ok, report.failures
    return cfg


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.glob("*/*/*.png"))}


def test_prepare_writes_the_extra_views_of_training_and_validation_cases(repo_root: Path,
                                                                         tmp_path: Path) -> None:
    _prepare(repo_root, tmp_path / "one")
    cfg = _prepare(repo_root, tmp_path / "multi", "prepare.extra_axes=[0,1]")
    one, multi = _files(tmp_path / "one"), _files(tmp_path / "multi")
    views = {k: v for k, v in multi.items() if is_view_stem(Path(k).stem)}
    # the main view is exactly a single-axis dataset's
    assert {k: v for k, v in multi.items() if k not in views} == one
    splits = json.loads((tmp_path / "multi" / "splits.json").read_text())
    manifest = json.loads((tmp_path / "multi" / "dataset.json").read_text())
    for split, cases in splits.items():
        if not isinstance(cases, list):
            continue
        for case in cases:
            for axis in (0, 1):
                imgs = [k for k in views if k.startswith(f"{split}/images/{case}_ax{axis}_")]
                masks = [k for k in views if k.startswith(f"{split}/masks/{case}_ax{axis}_")]
                if split == "test":  # test cases are scored on volumes: no extra slices
                    assert imgs == [] and masks == []
                    continue
                assert imgs and [m.replace("/masks/", "/images/") for m in masks] == imgs
                # empty_slices: keep -> one slice per index along that axis of the RAS volume
                shape = manifest["cases"][case]["canonical_shape"]
                assert sorted(int(Path(k).stem.rsplit("_", 1)[1]) for k in imgs) == list(range(shape[axis]))
            record = json.loads((tmp_path / "multi" / "records" / "cases" / f"{case}.json").read_text())
            listed = {f for f in record["files"] if is_view_stem(Path(f).stem)}
            assert listed == {k for k in views if f"/{case}_ax" in k}
            # the prepare report counts every slice written, views included
            assert record["n_slices_written"] == len([f for f in record["files"] if "/images/" in f])
            # the files segkit removes on --overwrite or a re-prepare of the case include the views
            found = {p.relative_to(tmp_path / "multi").as_posix()
                     for p in slice_files(tmp_path / "multi", case)}
            assert found == {k for k in multi if Path(k).stem.startswith(f"{case}_")}
    assert cfg.prepare.extra_axes == (0, 1)
    assert any(k.startswith("train/images/") for k in views) and any(k.startswith("valid/") for k in views)


def test_the_main_view_is_a_one_plane_datasets_when_empty_slices_are_sampled(repo_root: Path,
                                                                               tmp_path: Path) -> None:
    """With ``empty_slices: fraction`` the views draw their label-free slices after the main view, so the main
    view's files are exactly those of a one-plane dataset."""
    sets = ["prepare.empty_slices=fraction", "prepare.empty_fraction=0.3"]
    _prepare(repo_root, tmp_path / "one", *sets)
    _prepare(repo_root, tmp_path / "multi", *sets, "prepare.extra_axes=[0,1]")
    one, multi = _files(tmp_path / "one"), _files(tmp_path / "multi")
    assert {k: v for k, v in multi.items() if not is_view_stem(Path(k).stem)} == one
    assert len(multi) > len(one)


def test_extra_axes_refuse_2d_slice_folders(tmp_path: Path) -> None:
    from segkit.io.volumes import CaseKind
    from segkit.prepare.cases import CaseTask, _prepare_case
    from segkit.prepare.sources import CaseSpec

    cfg = validate_config(_raw(extra_axes=[0]))
    image = tmp_path / "images" / "a_0000.png"
    spec = CaseSpec("a", image, None, kind=CaseKind.SLICES2D, slices=((0, image, None),))
    # refused before any slice is read (the PNG does not even exist), with the fix named
    with pytest.raises(DataError, match="folder of 2D slices") as e:
        _prepare_case(CaseTask(spec, cfg, tmp_path / "out", "train", "k"), {})
    assert e.value.path == image and "prepare.extra_axes: []" in str(e.value.hint)
    assert not (tmp_path / "out").exists()


# === inference ===


def _threshold_model(size: int):
    import keras

    inp = keras.Input((size, size, 1))
    conv = keras.layers.Conv2D(2, 1, activation="softmax")
    out = conv(inp)
    conv.set_weights([np.array([[[[0.0, 40.0]]]], np.float32), np.array([0.0, -20.0], np.float32)])
    return keras.Model(inp, out)


def _volume(affine: np.ndarray) -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 30, (40, 36, 24)).astype(np.float32)
    block = np.zeros(img.shape, bool)
    block[10:30, 8:26, 6:18] = True
    img[block] = 100.0
    return Volume(img, affine, None), block


PERMUTED = np.array([[0.0, 0.0, -1.5, 0.0], [-0.8, 0.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0, 0, 0, 1.0]])


@pytest.mark.parametrize("affine", [np.eye(4), np.diag([-0.8, -0.8, 1.5, 1.0]), PERMUTED])
def test_views_are_averaged_in_the_volume_geometry(affine: np.ndarray) -> None:
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = validate_config(_raw(extra_axes=[0, 1]))
    single = validate_config(_raw())
    vol, block = _volume(affine)
    model = _threshold_model(32)
    counted: list[tuple[str, int]] = []

    class Count:
        def start(self, total: int, description: str = "") -> None:
            counted.append(("start", total))

        def advance(self, n: int = 1) -> None:
            counted.append(("advance", n))

    keep = VolumeSettings(8, probabilities=True)
    pred = predict_volume(model, vol, Preprocessing.from_config(cfg), cfg, keep, Count())
    per_view = []
    for axis in (2, 0, 1):
        c = validate_config(_raw(axis=axis))
        p = predict_volume(model, vol, Preprocessing.from_config(c), single, keep)
        per_view.append(p.probabilities)
    assert pred.probabilities is not None
    np.testing.assert_allclose(pred.probabilities, np.mean(per_view, axis=0), atol=1e-6)
    assert np.array_equal(pred.labels, pred.probabilities.argmax(-1))
    inside = (pred.labels == 1)
    assert 2 * (inside & block).sum() / (inside.sum() + block.sum()) > 0.95
    # the main view's display slices are re-cut from the averaged labels: one per slice along the RAS axial
    # axis at its size; putting them back (reassemble_volume: the inverse path) gives the labels exactly
    from segkit.prepare.slicing import reassemble_volume

    n_axial = pred.geometry.canonical_shape[2]
    assert pred.labels2d.shape == (n_axial, *pred.geometry.slice_shape)
    assert np.array_equal(reassemble_volume(dict(enumerate(pred.labels2d)), pred.geometry), pred.labels)
    # the progress counts every view's slices once
    assert counted[0] == ("start", 24 + 40 + 36) and sum(n for k, n in counted if k == "advance") == 100
    without = predict_volume(model, vol, Preprocessing.from_config(cfg), cfg, VolumeSettings(8))
    assert without.probabilities is None and np.array_equal(without.labels, pred.labels)


def test_a_geometry_spec_keeps_its_recorded_recipe_for_the_extra_views() -> None:
    """``segkit evaluate`` repeats a prepared case's recorded ``Geometry``; the extra views keep its recorded
    intensity recipe along their axes and give the same average as a ``Preprocessing`` spec."""
    from segkit.predict.volume import VolumeSettings, predict_volume, view_spec
    from segkit.prepare.slicing import volume_to_slices

    cfg = validate_config(_raw(extra_axes=[0, 1]))
    vol, _ = _volume(np.eye(4))
    geometry = volume_to_slices(vol.data, vol.affine, Preprocessing.from_config(cfg)).geometry
    sagittal = view_spec(geometry, 0)
    assert sagittal.axis == 0 and sagittal.intensity == geometry.intensity and sagittal.size == geometry.size
    assert view_spec(Preprocessing.from_config(cfg), 1).prepare.extra_axes == ()
    model = _threshold_model(32)
    a = predict_volume(model, vol, geometry, cfg, VolumeSettings(8, probabilities=True))
    b = predict_volume(model, vol, Preprocessing.from_config(cfg), cfg, VolumeSettings(8, probabilities=True))
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_evaluate_infer_and_the_choice_segment_every_view(
    tmp_path: Path, constant_model, recording_progress  # noqa: ANN001 - conftest fixtures
) -> None:
    """A NIfTI case (LPS-like affine) through ``evaluate``, ``infer`` and the post-processing choice with
    ``prepare.extra_axes``: each progress task totals the slices of all three views and advances by exactly
    that; the bright block is found in the volume's own geometry; the slice scores hold the written (main
    view) slices only."""
    import nibabel as nib

    from segkit.evaluate.run import evaluate_model
    from segkit.infer.run import infer
    from segkit.postprocess import choose_postprocessing
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare

    shape = (14, 12, 10)
    raw = tmp_path / "raw"
    raw.mkdir()
    img = np.full(shape, 10.0, np.float32)
    lbl = np.zeros(shape, np.uint8)
    lbl[3:10, 4:9, 2:8] = 1
    img[lbl == 1] = 200.0
    affine = np.diag([-1.0, -1.0, 1.2, 1.0])
    nib.save(nib.Nifti1Image(img, affine), str(raw / "c1_image.nii.gz"))
    nib.save(nib.Nifti1Image(lbl, affine), str(raw / "c1_label.nii.gz"))
    cfg = validate_config({
        "modality": "mr", "classes": CLASSES,
        "prepare": {"size": [16, 16], "empty_slices": "keep", "extra_axes": [0, 1],
                    "split": {"train": 0, "valid": 0, "test": 1}},
        "data": {"image_size": [16, 16], "channels": 1, "dir": str(tmp_path / "data")},
        "model": {"num_layers": 3}, "train": {"run_dir": str(tmp_path / "run")},
        "infer": {"batch_size": 8, "tta": False, "largest_component": False},
    })
    globs = SourceOptions(image_glob="*_image.nii.gz", label_glob="*_label.nii.gz")
    opts = PrepareOptions(workers=1, source_options=globs)
    assert run_prepare("nifti", raw, tmp_path / "data", cfg, opts).ok
    written = sorted(p.stem for p in (tmp_path / "data" / "test" / "images").iterdir())
    assert written == [f"c1_{k:04d}" for k in range(10)]  # a test case: the main view only
    # foreground where x > 0.5
    constant_model(tmp_path / "run" / "model.keras", 1, [0.0, -20.0], [0.0, 40.0])
    views = 10 + 14 + 12  # axial (z), sagittal (x), coronal (y)

    rec = recording_progress()
    ev = evaluate_model(cfg, out_dir=tmp_path / "eval", progress=rec)
    assert rec.tasks == [("evaluate", 10 + views, 10 + views)]
    assert ev.summary["per_class"]["atrium"]["dice"]["mean"] > 0.99
    assert ev.summary["n_slices"] == 10

    rec = recording_progress()
    res = infer(cfg, raw / "c1_image.nii.gz", tmp_path / "infer", progress=rec)
    assert rec.tasks == [("c1_image.nii.gz", views, views)]
    out = nib.load(str(res.volumes[0].seg_path))
    assert np.allclose(out.affine, affine) and np.array_equal(np.asarray(out.dataobj) == 1, lbl == 1)

    rec = recording_progress()
    pp = choose_postprocessing(cfg, split="test", progress=rec, write=False)
    assert pp is not None and rec.tasks == [("postprocessing", 2 * views, 2 * views)]


def test_training_refuses_a_dataset_prepared_with_other_views(tmp_path: Path) -> None:
    """Inference averages the config's views, so ``train`` refuses a dataset whose planes differ from them."""
    from segkit.train.fit import check_views

    data = tmp_path / "data"
    data.mkdir()
    raw = _raw(extra_axes=[0, 1])
    raw["data"]["dir"] = str(data)
    (data / "dataset.json").write_text(json.dumps({"prepare": {"axis": 2}}))  # one plane (before the key)
    with pytest.raises(DataError, match=r"prepared with prepare.extra_axes \[\], the config says \[0, 1\]"):
        check_views(validate_config(raw))
    (data / "dataset.json").write_text(json.dumps({"prepare": {"axis": 2, "extra_axes": [1, 0]}}))
    check_views(validate_config(raw))  # the same planes, in any order: accepted
    (data / "dataset.json").write_text(json.dumps({"prepare": {"axis": 1, "extra_axes": [0]}}))
    raw1 = _raw(extra_axes=[0], axis=2)
    raw1["data"]["dir"] = str(data)
    with pytest.raises(DataError, match="extra_axes"):  # other planes: axis 1 + 0 is not axis 2 + 0
        check_views(validate_config(raw1))
    (data / "dataset.json").write_text(json.dumps({"prepare": {"axis": 2, "extra_axes": [0, 1]}}))
    raw["prepare"].pop("extra_axes")
    with pytest.raises(DataError, match=r"with prepare.extra_axes \[0, 1\], the config says \[\]") as e:
        check_views(validate_config(raw))
    assert "set prepare.extra_axes=[0, 1]" in str(e.value.hint) and e.value.path == data / "dataset.json"
