"""The cascade (``cascade:`` section): the region-of-interest box, the training crops ``prepare`` writes and
puts back, the coarse -> fine prediction of a volume (with its fallback), and the config rules.

The prediction tests use threshold "models": one 1x1 convolution whose class-1 logit is 40 (x - 0.5), so a
pixel brighter than mid-grey is foreground at any input size; what the cascade adds (the largest component,
the crop, the paste) is then checked against hand-made volumes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segkit.config import validate_config
from segkit.errors import DataError
from segkit.io.volumes import Volume
from segkit.prepare.record import Geometry, Preprocessing
from segkit.prepare.roi import crop, foreground_box, main_components, paste, roi_box
from segkit.prepare.slicing import display_view, reassemble_volume, slice_case

CLASSES = [{"id": 1, "name": "heart", "color": [255, 0, 0]}]


def _cfg(tmp: Path | None = None, **cascade: object) -> object:
    raw = {
        "modality": "ct",
        "classes": CLASSES,
        "prepare": {"size": [48, 48], "ct_window": [0, 100], "empty_slices": "keep"},
        "data": {"channels": 1, "dir": str(tmp or "data")},
        "model": {"num_layers": 3},
        "train": {"run_dir": str((tmp or Path(".")) / "run"), "time_limit": 10},
        "cascade": {"enabled": True, "coarse_size": [16, 16], "margin_mm": 4.0, "jitter_mm": 0.0, **cascade},
    }
    return validate_config(raw)


# === roi_box ===


@given(
    h=st.integers(8, 80), w=st.integers(8, 80), data=st.data(),
    dy=st.floats(0.3, 3.0), dx=st.floats(0.3, 3.0), margin=st.floats(0, 20), jitter=st.floats(0, 10),
)
def test_roi_box_holds_the_foreground_and_its_margin_inside_the_slice(h, w, data, dy, dx, margin, jitter):
    r0 = data.draw(st.integers(0, h - 1))
    r1 = data.draw(st.integers(r0 + 1, h))
    c0 = data.draw(st.integers(0, w - 1))
    c1 = data.draw(st.integers(c0 + 1, w))
    mask = np.zeros((3, h, w), bool)
    mask[1, r0:r1, c0:c1] = True
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    box = roi_box(mask, (dy, dx), margin, rng=rng, jitter_mm=jitter)
    assert box is not None
    b0, b1, b2, b3 = box
    assert 0 <= b0 < b1 <= h and 0 <= b2 < b3 <= w
    # every foreground pixel, and the margin where the slice has room for it
    assert b0 <= max(0, r0 - int(margin / dy)) and b1 >= min(h, r1 + int(margin / dy))
    assert b2 <= max(0, c0 - int(margin / dx)) and b3 >= min(w, c1 + int(margin / dx))
    # square in mm unless cut by the slice's edge (rounding outwards: at most one pixel a side)
    if b0 > 0 and b1 < h and b2 > 0 and b3 < w:
        assert abs((b1 - b0) * dy - (b3 - b2) * dx) <= 2 * max(dy, dx) + 1e-6


def test_roi_box_by_hand_and_empty() -> None:
    mask = np.zeros((2, 40, 60), bool)
    mask[0, 10:20, 30:34] = True  # 10 rows x 4 cols of 1 x 2 mm pixels: 10 x 8 mm
    # + 5 mm a side: rows 5..25 (20 mm), cols 27.5..36.5 (18 mm) -> square 20 mm: cols 27..37 (5 px each side)
    assert roi_box(mask, (1.0, 2.0), 5.0) == (5, 25, 27, 37)
    assert roi_box(np.zeros((2, 8, 8), bool), (1.0, 1.0), 5.0) is None
    assert foreground_box(mask) == (10, 20, 30, 34)


def test_main_components_keep_the_structures_and_drop_the_specks() -> None:
    mask = np.zeros((4, 30, 30), bool)
    mask[0:3, 2:8, 2:8] = True  # 108 voxels
    mask[1:3, 20:25, 20:25] = True  # 50 voxels apart: a second structure (>= 10 % of the largest)
    mask[3, 28, 0] = True  # 1 voxel: a speck
    kept = main_components(mask)
    assert kept.sum() == 158 and not kept[3, 28, 0]
    assert main_components(np.zeros((2, 4, 4), bool)).sum() == 0


def test_crop_and_paste_are_inverse() -> None:
    img = np.arange(7 * 9 * 2, dtype=np.float32).reshape(7, 9, 2)
    box = (1, 5, 2, 8)
    back = paste(np.ascontiguousarray(crop(img, box)), box, (7, 9), fill=[1.0, -1.0])
    assert np.array_equal(back[1:5, 2:8], img[1:5, 2:8])
    assert (back[0, :, 0] == 1.0).all() and (back[0, :, 1] == -1.0).all()
    assert (back[:, 8] == [1.0, -1.0]).all()


# === prepare: the fine dataset's crops ===


def _volume_pair(shape=(40, 36, 6), box=(12, 24, 10, 20)) -> tuple[Volume, Volume]:
    """A CT-like volume (HU 0 / 100) with a bright cuboid in voxels [x0:x1, y0:y1, 1:5] and its label."""
    x0, x1, y0, y1 = box
    img = np.zeros(shape, np.float32)
    img[x0:x1, y0:y1, 1:5] = 100.0
    lbl = (img > 50).astype(np.uint8)
    aff = np.diag([1.5, 1.0, 3.0, 1.0])
    return Volume(img, aff, None), Volume(lbl, aff, None)


def test_training_crop_holds_the_label_and_puts_back_exactly(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    image, label = _volume_pair()
    sliced = slice_case(image, label, cfg, "c0", np.random.default_rng(0))
    geo = sliced.geometry
    assert geo.crop is not None and geo.size == (48, 48)
    r0, r1, c0, c1 = geo.crop
    assert geo.resize == pytest.approx((48 / (r1 - r0), 48 / (c1 - c0)))
    fg = display_view(np.moveaxis(label.data, 2, 0) != 0)  # RAS already: the display stack of the label
    fr0, fr1, fc0, fc1 = foreground_box(fg)
    assert r0 <= fr0 - 4 and r1 >= fr1 + 4  # 4 mm margin: 4 rows of 1 mm
    assert c0 <= fc0 - 2 and c1 >= fc1 + 2  # and 2 columns of 1.5 mm (rounded outwards)
    # the crops are upscaled to 48 x 48 (nearest), so putting them back is exact
    back = reassemble_volume({k: lbl for k, _, lbl in sliced.slices}, geo)
    assert np.array_equal(back, label.data)
    # the crop travels through dataset.json
    assert Geometry.from_json(geo.to_json()) == geo and geo.to_json()["crop"] == list(geo.crop)


def test_geometry_without_crop_writes_no_crop_key(tmp_path: Path) -> None:
    cfg = validate_config({**_cfg(tmp_path).model_dump(mode="json"), "cascade": {"enabled": False}})
    image, label = _volume_pair()
    geo = slice_case(image, label, cfg, "c0", np.random.default_rng(0)).geometry
    assert geo.crop is None and "crop" not in geo.to_json()


def test_jitter_is_seeded_per_case_and_moves_the_box(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, jitter_mm=6.0)
    image, label = _volume_pair(shape=(80, 80, 6), box=(30, 44, 30, 44))
    boxes = [slice_case(image, label, cfg, "c", np.random.default_rng(s)).geometry.crop for s in (1, 1, 2)]
    assert boxes[0] == boxes[1] and boxes[0] != boxes[2]


def test_a_cascade_case_without_foreground_is_refused(tmp_path: Path) -> None:
    image, label = _volume_pair()
    empty = Volume(np.zeros_like(label.data), label.affine, Path("empty_label.nii.gz"))
    with pytest.raises(DataError, match="no foreground to crop around"):
        slice_case(image, empty, _cfg(tmp_path), "c0", np.random.default_rng(0))
    with pytest.raises(DataError, match="needs a label volume"):
        slice_case(image, None, _cfg(tmp_path), "c0", np.random.default_rng(0))


# === config ===


def test_cascade_stages_split_the_time_and_the_folders(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, coarse_share=0.3, coarse_base_filters=4)
    coarse, fine = cfg.cascade_stages()
    assert not coarse.cascade.enabled and fine.cascade.enabled
    assert coarse.prepare.size == (16, 16) and coarse.data.image_size == (16, 16)
    assert coarse.data.dir == tmp_path / "coarse" and coarse.train.run_dir == tmp_path / "run" / "coarse"
    assert coarse.model.base_filters == 4 and fine.model.base_filters == cfg.model.base_filters
    # the fine stage's 7 minutes are its share; train_cascade gives it the limit minus the coarse stage's time
    assert coarse.train.time_limit == pytest.approx(3.0) and fine.train.time_limit == pytest.approx(7.0)
    assert not coarse.train.choose_postprocessing
    # the coarse dataset is another dataset; the crops' margin and jitter are part of the fine one's key
    assert coarse.prepare_fingerprint() != fine.prepare_fingerprint()
    assert _cfg(tmp_path, margin_mm=9.0).prepare_fingerprint() != cfg.prepare_fingerprint()


def test_cascade_refuses_patches_spacing_multi_worker_and_a_coarse_size_the_levels_cannot_pool(
    tmp_path: Path,
) -> None:
    from segkit.errors import ConfigError

    raw = _cfg(tmp_path).model_dump(mode="json")
    with pytest.raises((ConfigError, ValueError), match="multi_worker"):
        validate_config({**raw, "train": {**raw["train"], "strategy": "multi_worker"}})
    with pytest.raises((ConfigError, ValueError), match=r"cascade.coarse_size 96x80 is not divisible by 32 "
                                                        r"\(model.num_layers=6\): use 96x64 or 96x96"):
        validate_config({**raw, "model": {**raw["model"], "num_layers": 6},
                         "cascade": {**raw["cascade"], "coarse_size": [96, 80]}})
    with pytest.raises((ConfigError, ValueError), match="data.patches"):
        validate_config({**raw, "data": {**raw["data"], "patches": True}})
    with pytest.raises((ConfigError, ValueError), match="prepare.spacing"):
        validate_config({**raw, "prepare": {**raw["prepare"], "spacing": [1.0, 1.0]}})


# === prediction ===


def _threshold_model(size: int, at: float = 0.5):
    """(size, size, 1) -> softmax over [background, foreground], foreground where x > ``at``."""
    import keras

    inp = keras.Input((size, size, 1))
    conv = keras.layers.Conv2D(2, 1, activation="softmax")
    out = conv(inp)
    conv.set_weights([np.array([[[[0.0, 40.0]]]], np.float32), np.array([0.0, -40.0 * at], np.float32)])
    return keras.Model(inp, out)


def _cascade(cfg, coarse_at: float = 0.5):
    from segkit.predict.cascade import Cascade

    coarse_cfg = cfg.cascade_stages()[0]
    spec = Preprocessing.from_config(coarse_cfg)
    return Cascade(_threshold_model(16, coarse_at), coarse_cfg, spec, _threshold_model(48))


def test_cascade_segments_the_largest_region_and_nothing_outside_its_crop(tmp_path: Path) -> None:
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = _cfg(tmp_path)
    img = np.zeros((64, 64, 6), np.float32)
    img[20:40, 24:44, 1:5] = 100.0  # the heart: 20 x 20 x 4
    img[55:60, 2:7, 2] = 100.0  # a small bright spot far away: another component
    vol = Volume(img, np.eye(4), None)
    pred = predict_volume(_cascade(cfg), vol, Preprocessing.from_config(cfg), cfg,
                          VolumeSettings(8, probabilities=True))
    heart = np.zeros(img.shape, bool)
    heart[20:40, 24:44, 1:5] = True
    assert pred.crop is not None
    assert pred.labels[55:60, 2:7, 2].sum() == 0  # outside the crop: background
    dice = 2 * (heart & (pred.labels == 1)).sum() / (heart.sum() + (pred.labels == 1).sum())
    assert dice > 0.97
    assert pred.labels.shape == img.shape and "coarse" in pred.seconds
    probs = pred.probabilities
    assert probs is not None and probs.shape == (*img.shape, 2)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-4) and (probs[55:60, 2:7, 2, 0] == 1.0).all()
    assert np.array_equal(probs.argmax(-1), pred.labels)


def test_cascade_keeps_two_separate_structures_in_its_crop(tmp_path: Path) -> None:
    """Two organs apart (two lungs, two kidneys): both inside the crop, as in training (all foreground)."""
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = _cfg(tmp_path)
    img = np.zeros((64, 64, 6), np.float32)
    img[8:22, 20:40, 1:5] = 100.0
    img[42:54, 20:40, 1:5] = 100.0  # the second, 86 % of the first's size, 20 voxels apart
    pred = predict_volume(_cascade(cfg), Volume(img, np.eye(4), None), Preprocessing.from_config(cfg), cfg,
                          VolumeSettings(8))
    truth = img > 50
    assert (pred.labels[8:22, 20:40, 1:5] == 1).mean() > 0.9
    assert (pred.labels[42:54, 20:40, 1:5] == 1).mean() > 0.9
    assert 2 * ((pred.labels == 1) & truth).sum() / ((pred.labels == 1).sum() + truth.sum()) > 0.95


def test_cascade_falls_back_to_whole_slices_when_the_coarse_stage_finds_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = _cfg(tmp_path)
    vol = Volume(np.zeros((32, 32, 4), np.float32), np.eye(4), Path("dark.nii.gz"))
    with caplog.at_level(logging.WARNING):
        pred = predict_volume(_cascade(cfg), vol, Preprocessing.from_config(cfg), cfg, VolumeSettings(8))
    assert pred.crop is None and pred.labels.shape == (32, 32, 4) and pred.labels.sum() == 0
    assert "dark.nii.gz: the coarse stage found no foreground" in caplog.text


def _heart_box(heart: np.ndarray, cfg) -> tuple[int, int, int, int] | None:
    """The crop a cascade should settle on: the heart's display box + the inference margin (1 mm pixels)."""
    from segkit.predict.cascade import inference_margin

    return roi_box(display_view(np.moveaxis(heart, 2, 0)), (1.0, 1.0), inference_margin(cfg))


def _count_fine_passes(monkeypatch: pytest.MonkeyPatch, fine, empty_after: int | None = None) -> list:
    """Record each call of ``predict_volume`` on the fine model (its crop and seconds); the call after the
    first ``empty_after`` returns an empty prediction (a refined crop where the fine model finds nothing)."""
    import dataclasses

    import segkit.predict.volume as pv

    real, calls = pv.predict_volume, []

    def counted(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        pred = real(model, *args, **kwargs)
        if model is fine:
            calls.append((kwargs.get("crop"), dict(pred.seconds)))
            if empty_after is not None and len(calls) == empty_after + 1:
                pred = dataclasses.replace(pred, labels=np.zeros_like(pred.labels),
                                           labels2d=np.zeros_like(pred.labels2d))
        return pred

    monkeypatch.setattr(pv, "predict_volume", counted)
    return calls


@pytest.mark.parametrize("passes", [0, 1, 3])
def test_refinement_takes_the_crop_again_from_the_fine_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passes: int
) -> None:
    """A coarse false positive (a dim region the coarse model, threshold 0.2, takes for heart) widens the
    coarse box; a refinement pass crops around what the fine model (threshold 0.5) found: the heart's own box
    + the inference margin (margin_mm + jitter_mm / 2), a fixed point: a third pass is not run, since the
    second box equals the first. Without refinement the crop stays the coarse one."""
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = _cfg(tmp_path, refine_passes=passes, jitter_mm=4.0)
    img = np.zeros((64, 64, 6), np.float32)
    img[20:34, 24:38, 1:5] = 100.0  # the heart (HU 100 -> 1.0)
    img[42:56, 24:38, 1:5] = 30.0  # a dim neighbour (0.3): foreground to the coarse model only
    img[4:6, 4:6, 2] = 30.0  # a speck the coarse model also sees: main_components drops it
    heart = img > 50
    cascade = _cascade(cfg, coarse_at=0.2)
    calls = _count_fine_passes(monkeypatch, cascade.fine)
    pred = predict_volume(cascade, Volume(img, np.eye(4), None), Preprocessing.from_config(cfg), cfg,
                          VolumeSettings(8))
    target = _heart_box(heart, cfg)
    assert pred.crop is not None and target is not None
    r0, r1, c0, c1 = pred.crop
    assert len(calls) == (1 if passes == 0 else 2)
    if passes == 0:  # the coarse box holds the dim region too: longer than the heart's box
        assert (r1 - r0) > (target[1] - target[0]) + 10 or (c1 - c0) > (target[3] - target[2]) + 10
    else:
        assert pred.crop == target and calls[1][0] == target and calls[0][0] != target
    assert 2 * ((pred.labels == 1) & heart).sum() / ((pred.labels == 1).sum() + heart.sum()) > 0.97
    for key in ("preprocess", "predict", "reassemble"):  # the fine stage's times add up over its passes
        assert pred.seconds[key] == pytest.approx(sum(s[key] for _, s in calls))
    assert pred.seconds["coarse"] > 0


@pytest.mark.parametrize("probabilities", [False, True])
def test_a_refined_crop_where_the_fine_model_finds_nothing_keeps_the_crop_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, probabilities: bool
) -> None:
    """Never an empty answer from a refinement: when the fine model finds nothing in the refined crop, the
    crop before it and its labels (and probabilities, segmented again when they were asked for) stay."""
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = _cfg(tmp_path, refine_passes=2)
    img = np.zeros((64, 64, 6), np.float32)
    img[20:34, 24:38, 1:5] = 100.0
    img[42:56, 24:38, 1:5] = 30.0
    cascade = _cascade(cfg, coarse_at=0.2)
    calls = _count_fine_passes(monkeypatch, cascade.fine, empty_after=1)
    vol, settings = Volume(img, np.eye(4), Path("h.nii.gz")), VolumeSettings(8, probabilities=probabilities)
    with caplog.at_level(logging.WARNING):
        pred = predict_volume(cascade, vol, Preprocessing.from_config(cfg), cfg, settings)
    assert "h.nii.gz: the fine stage found nothing in its refined crop" in caplog.text
    assert f"kept {calls[0][0]}" in caplog.text
    assert pred.crop == calls[0][0] and calls[1][0] != calls[0][0]
    assert len(calls) == (3 if probabilities else 2)  # the first crop segmented again for its probabilities
    heart = img > 50
    assert 2 * ((pred.labels == 1) & heart).sum() / ((pred.labels == 1).sum() + heart.sum()) > 0.97
    if probabilities:
        assert pred.probabilities is not None and np.array_equal(pred.probabilities.argmax(-1), pred.labels)
    else:
        assert pred.probabilities is None
    for key in ("preprocess", "predict", "reassemble"):  # every pass's time, the repeated one included
        assert pred.seconds[key] == pytest.approx(sum(s[key] for _, s in calls))


def test_refinement_crops_after_the_fallback_when_the_fine_model_finds_the_heart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The coarse model (threshold 0.9) misses a mid-bright heart (0.7): the fine model segments the whole
    slices (the fallback, warned), then the refinement pass crops around what it found."""
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = _cfg(tmp_path)
    img = np.zeros((64, 64, 6), np.float32)
    img[20:34, 24:38, 1:5] = 70.0
    vol = Volume(img, np.eye(4), Path("dim.nii.gz"))
    with caplog.at_level(logging.WARNING):
        pred = predict_volume(_cascade(cfg, coarse_at=0.9), vol, Preprocessing.from_config(cfg), cfg,
                              VolumeSettings(8))
    assert "dim.nii.gz: the coarse stage found no foreground" in caplog.text
    target = _heart_box(img > 50, cfg)  # the whole-slice pass (48 px for 64) blurs its edge by a pixel
    assert pred.crop is not None and target is not None
    assert np.abs(np.subtract(pred.crop, target)).max() <= 1
    heart = img > 50
    assert 2 * ((pred.labels == 1) & heart).sum() / ((pred.labels == 1).sum() + heart.sum()) > 0.97


def test_a_geometry_spec_never_reuses_the_reference_crop(tmp_path: Path) -> None:
    """Evaluate passes the prepared case's Geometry (its crop came from the reference labels): the cascade's
    crop must come from the coarse stage instead."""
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = _cfg(tmp_path)
    image, label = _volume_pair(shape=(64, 64, 6), box=(20, 40, 24, 44))
    geo = slice_case(image, label, cfg, "c0", np.random.default_rng(0)).geometry
    moved = np.roll(image.data, 16, axis=1)  # the heart moved: the recorded crop no longer holds it
    pred = predict_volume(_cascade(cfg), Volume(moved, image.affine, None), geo, cfg, VolumeSettings(8))
    assert pred.crop != geo.crop
    ref = np.roll(label.data, 16, axis=1)
    assert 2 * ((pred.labels == 1) & (ref == 1)).sum() / ((pred.labels == 1).sum() + ref.sum()) > 0.97


# === training: checks before anything is deleted, the resume rules, the time split ===


@pytest.fixture(scope="module")
def phantom_cascade(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    """The demo config as a tiny cascade and its two prepared phantom datasets (no training)."""
    from segkit.config import load_config
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare

    root = tmp_path_factory.mktemp("cascade-train")
    sets = ["cascade.enabled=true", "cascade.coarse_size=[16,16]", "prepare.size=[32,32]",
            "data.image_size=[32,32]", "model.num_layers=3", f"data.dir={root / 'data'}",
            f"train.run_dir={root / 'run'}", "train.time_limit=10"]
    cfg = load_config(repo_root / "configs" / "demo.yaml", sets)
    report = run_prepare("phantom", None, root / "data", cfg,
                         PrepareOptions(workers=1, source_options=SourceOptions(phantom_n=3)))
    assert not report.failures and report.coarse is not None and report.coarse.manifest is not None
    return {"root": root, "cfg": cfg}


def test_overwrite_deletes_nothing_when_a_dataset_is_missing(phantom_cascade: dict, tmp_path: Path) -> None:
    from segkit.train import train_model

    cfg = phantom_cascade["cfg"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"a user's model")
    data = tmp_path / "data"  # the fine dataset alone: prepared before the config became a cascade
    shutil.copytree(phantom_cascade["root"] / "data", data, ignore=shutil.ignore_patterns("coarse"))
    moved = cfg.model_copy(update={"data": cfg.data.model_copy(update={"dir": data}),
                                   "train": cfg.train.model_copy(update={"run_dir": run})})
    with pytest.raises(DataError, match="split is missing") as e:
        train_model(moved, overwrite=True)
    assert "coarse" in str(e.value.path) and (run / "model.keras").read_bytes() == b"a user's model"


def test_resume_refuses_a_coarse_stage_of_another_config(phantom_cascade: dict, tmp_path: Path) -> None:
    from segkit.errors import ConfigError
    from segkit.train import train_model

    cfg = phantom_cascade["cfg"].model_copy(update={"train": phantom_cascade["cfg"].train.model_copy(
        update={"run_dir": tmp_path / "run"})})
    other = cfg.model_copy(update={"cascade": cfg.cascade.model_copy(update={"coarse_base_filters": 4})})
    coarse_dir = tmp_path / "run" / "coarse"
    coarse_dir.mkdir(parents=True)
    (coarse_dir / "config.yaml").write_text(other.cascade_stages()[0].to_yaml())
    with pytest.raises(ConfigError, match="trained with another config") as e:
        train_model(cfg, resume=True)
    assert "coarse" in str(e.value.path)


def test_the_fine_stage_gets_the_limit_minus_the_coarse_time(
    phantom_cascade: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fine stage's limit is the total minus the coarse stage's recorded training time; the fine run's
    summary records the total (segkit cv compares it on a rerun), and a finished coarse stage is not retrained
    on --resume."""
    import json

    import segkit.train.fit as fit
    from segkit.errors import ConfigError
    from segkit.io.run_folder import TrainSummary, write_train_summary

    cfg = phantom_cascade["cfg"].model_copy(update={"train": phantom_cascade["cfg"].train.model_copy(
        update={"run_dir": tmp_path / "run"})})
    seen: list = []
    coarse_s = [60.0]

    def fake_train_one(stage, *, resume=False, overwrite=False, progress=None):  # noqa: ANN001, ANN202
        run = Path(stage.train.run_dir)
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(stage.to_yaml())
        write_train_summary(run, TrainSummary(stop_reason="time_limit", epochs_done=3,
                                              epochs=stage.train.epochs, train_time_s=coarse_s[0],
                                              time_limit_min=stage.train.time_limit,
                                              postprocessing=None))
        seen.append((run.name, stage.train.time_limit, resume))
        return fit.TrainResult(run, run / "model.keras", run / "last.keras", "val_fg_dice", 0.5, 3, 0, 3,
                               True)

    monkeypatch.setattr(fit, "train_one", fake_train_one)
    result = fit.train_model(cfg)
    # the coarse stage's share is 2.5 min but it used 1: the fine stage gets the other 9
    assert seen == [("coarse", pytest.approx(2.5), False), ("run", pytest.approx(9.0), False)]
    assert result.coarse is not None and result.run_dir == tmp_path / "run"
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["cascade"] == {"time_limit_min": 10, "coarse_train_time_s": 60.0}
    seen.clear()
    fit.train_model(cfg, resume=True)
    assert [s[0] for s in seen] == ["run"]  # the finished coarse stage is kept
    seen.clear()
    coarse_s[0] = 540.0  # a coarse stage that overran: the fine stage keeps a quarter of the limit
    fit.train_model(cfg, overwrite=True)
    assert seen == [("coarse", pytest.approx(2.5), False), ("run", pytest.approx(2.5), False)]
    # a run folder holding a cross-validation run is refused before anything trains, --overwrite or not
    seen.clear()
    cv = tmp_path / "cv"
    (cv / "fold_0").mkdir(parents=True)
    (cv / "fold_0" / "config.yaml").write_text("x: 1")
    in_cv = cfg.model_copy(update={"train": cfg.train.model_copy(update={"run_dir": cv})})
    with pytest.raises(ConfigError, match="cross-validation run"):
        fit.train_model(in_cv, overwrite=True)
    assert seen == []


def test_2d_slice_sources_are_refused_before_anything_is_written(shared_data: Path, tmp_path: Path) -> None:
    from segkit.config import load_config
    from segkit.errors import ConfigError
    from segkit.prepare import run_prepare

    cfg = load_config("chest-ct", ["cascade.enabled=true", "cascade.coarse_size=[64,64]"])
    with pytest.raises(ConfigError, match="is a set of 2D slices: a cascade") as e:
        run_prepare("chest-ct", shared_data / "slices" / "chest-ct", tmp_path / "out", cfg)
    assert e.value.hint == "set cascade.enabled: false for 2D slices" and not (tmp_path / "out").exists()


def test_composite_display_pastes_the_fine_crop_into_the_coarse_slices_at_the_original_size() -> None:
    from segkit.predict.cascade import composite_display

    coarse = np.full((2, 8, 6), 10, np.uint8)
    ramp = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4) * 10  # not symmetric: a transposed paste differs
    fine = np.stack([ramp, 255 - ramp])
    out = composite_display(coarse, fine, (4, 10, 2, 6), (16, 12))  # a 6 x 4 box, at the fine slices' size
    assert out.shape == (2, 16, 12) and out.dtype == np.uint8
    assert np.array_equal(out[0, 4:10, 2:6], ramp) and np.array_equal(out[1, 4:10, 2:6], 255 - ramp)
    inside = np.zeros((16, 12), bool)
    inside[4:10, 2:6] = True
    assert (out[:, ~inside] == 10).all()  # the coarse slice everywhere else
    fallback = composite_display(coarse, fine, None, (6, 4))  # no crop: the fine stage's whole slices
    assert np.array_equal(fallback, fine)


def test_the_overlay_of_a_cascade_shows_the_crop_sharp_at_the_original_slice_size(tmp_path: Path) -> None:
    """The montage draws on ``display_stack()``: inside the crop, the fine stage's pixels."""
    from segkit.predict.volume import VolumeSettings, predict_volume

    cfg = _cfg(tmp_path)
    img = np.zeros((64, 64, 6), np.float32)
    img[20:40, 24:44, 1:5] = 100.0
    img[23, 38, 2] = 0.0  # a one-pixel hole off the crop's diagonal: the 16-pixel coarse slice blurs it away
    pred = predict_volume(_cascade(cfg), Volume(img, np.eye(4), None), Preprocessing.from_config(cfg), cfg,
                          VolumeSettings(8))
    assert pred.coarse_stack is not None and pred.coarse_stack.shape[1:] == (16, 16)
    shown = pred.display_stack()
    assert shown.shape == pred.labels2d.shape and shown.dtype == np.uint8
    assert pred.crop is not None
    r0, r1, c0, c1 = pred.crop
    spot = np.zeros(img.shape, bool)
    spot[23, 38, 2] = True
    (hr,), (hc,) = np.nonzero(display_view(np.moveaxis(spot, 2, 0))[2])  # the hole on display axes
    assert r0 <= hr < r1 and c0 <= hc < c1 and hr - r0 != hc - c0
    assert int(shown[2, hr, hc]) < int(shown[2, r0:r1, c0:c1].max()) - 100  # dark in the fine crop
