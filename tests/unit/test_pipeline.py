"""segkit.data.pipeline: pairing, decoding and the tf.data pipeline on tiny synthetic 64x64 datasets."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from segkit.config import Config, validate_config
from segkit.data.pipeline import (
    context_table,
    dataset_size,
    list_pairs,
    make_dataset,
    read_image,
    read_mask,
    unwrap_data_error,
)
from segkit.errors import ConfigError, DataError

COLORS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)}


def tiny_config(root: Path, **data: object) -> Config:
    raw = {
        "seed": 3,
        "classes": [{"id": i, "name": f"c{i}", "color": list(c)} for i, c in COLORS.items()],
        "data": {"dir": str(root), "image_size": [64, 64], "channels": 1, **data},
        "train": {"batch_size": 2},
        "augment": {"hflip": {"p": 0.5}, "rotate": {"p": 0.5}, "brightness": {"p": 0.5}},
    }
    return validate_config(raw)


def label_map(i: int, size: int = 64) -> np.ndarray:
    """Class 1 square, class 2 bar, class 3 disc; positions move with i so every sample differs."""
    m = np.zeros((size, size), np.uint8)
    m[8 + i : 24 + i, 8:24] = 1
    m[40:44, 10 : 50 - i] = 2
    cv2.circle(m, (44, 20 + i), 6, 3, -1)
    return m


def write_pair(folder: Path, stem: str, labels: np.ndarray, image_ext: str = ".png") -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    gray = (labels.astype(np.float32) * 60 + 20).astype(np.uint8)  # class k -> 20 + 60k
    cv2.imwrite(str(folder / "images" / f"{stem}{image_ext}"), gray)
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    for k, c in COLORS.items():
        rgb[labels == k] = c
    cv2.imwrite(str(folder / "masks" / f"{stem}.png"), rgb[..., ::-1])


def make_tiny_dataset(root: Path, n_train: int = 6, n_valid: int = 3) -> Path:
    for split, n in (("train", n_train), ("valid", n_valid)):
        for i in range(n):
            write_pair(root / split, f"case{i // 3}_{i % 3:04d}", label_map(i))
    return root


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "ds")


# === list_pairs ===


def test_list_pairs_pairs_by_stem_sorted_and_mixed_suffixes(tmp_path: Path) -> None:
    split = tmp_path / "train"
    write_pair(split, "b_0001", label_map(0), ".jpg")
    write_pair(split, "a_0002", label_map(1))
    pairs = list_pairs(split)
    assert [(i.name, m.name) for i, m in pairs] == [
        ("a_0002.png", "a_0002.png"),
        ("b_0001.jpg", "b_0001.png"),
    ]


def test_unpaired_files_are_listed_by_name_with_count(tmp_path: Path) -> None:
    split = tmp_path / "train"
    write_pair(split, "ok_0000", label_map(0))
    for i in range(6):
        cv2.imwrite(str(split / "images" / f"lonely_{i}.png"), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(split / "masks" / "orphan_mask.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError) as e:
        list_pairs(split)
    msg = e.value.one_line()
    assert "7 unpaired files" in msg
    assert "lonely_0.png, lonely_1.png, lonely_2.png, lonely_3.png, lonely_4.png ... and 2 more" in msg
    assert e.value.path == split


def test_single_unpaired_mask_is_named(tmp_path: Path) -> None:
    split = tmp_path / "valid"
    write_pair(split, "ok_0000", label_map(0))
    cv2.imwrite(str(split / "masks" / "x_0009.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"1 unpaired file .*: x_0009.png$"):
        list_pairs(split)


def test_missing_and_empty_split_name_the_folder_with_prepare_hint(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        list_pairs(tmp_path / "train")
    assert e.value.path == tmp_path / "train"
    assert "split folder not found" in e.value.message and "segkit prepare" in (e.value.hint or "")
    (tmp_path / "test" / "images").mkdir(parents=True)
    (tmp_path / "test" / "masks").mkdir(parents=True)
    with pytest.raises(DataError, match="split holds no image/mask pairs"):
        list_pairs(tmp_path / "test")
    (tmp_path / "valid" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="'masks' folder not found"):
        list_pairs(tmp_path / "valid")


def test_dataset_size(tiny: Path) -> None:
    cfg = tiny_config(tiny)
    assert dataset_size(cfg, "train") == 6 and dataset_size(cfg, "valid") == 3


def test_include_valid_trains_on_both_folders_and_validates_on_valid(tiny: Path) -> None:
    """nnU-Net's fold 'all': the train split is train/ and valid/ together; valid stays what it was."""
    raw = tiny_config(tiny).model_dump(mode="json")
    raw["train"].update(include_valid=True, model_checkpoint="last")
    raw["augment"]["enabled"] = False
    cfg = validate_config(raw)
    assert dataset_size(cfg, "train") == 9 and dataset_size(cfg, "valid") == 3
    _, y = _collect(make_dataset(cfg, "train", training=True))
    expected = sorted(float(read_mask(m, cfg).sum())
                      for f in ("train", "valid") for _, m in list_pairs(tiny / f))
    assert sorted(float(v) for v in y.argmax(-1).sum(axis=(1, 2))) == expected


def test_include_valid_is_refused_where_the_valid_cases_must_stay_unseen(tiny: Path) -> None:
    raw = tiny_config(tiny).model_dump(mode="json")
    raw["train"]["include_valid"] = True
    with pytest.raises(ConfigError, match="set train.model_checkpoint: last"):
        validate_config(raw)  # the default keeps the best epoch, judged on the valid cases
    raw["train"]["model_checkpoint"] = "last"
    from segkit.cv import fold_config

    with pytest.raises(ConfigError, match="would train each fold on its own held-out cases"):
        fold_config(validate_config(raw), 1)  # segkit cv / train --fold set data.fold without validating
    raw["data"]["fold"] = 1
    with pytest.raises(ConfigError, match="does not combine with data.fold"):
        validate_config(raw)


# === read_image / read_mask ===


def test_read_image_channels_range_and_resize(tiny: Path, tmp_path: Path) -> None:
    path = tiny / "train" / "images" / "case0_0000.png"
    img1 = read_image(path, tiny_config(tiny))
    assert img1.shape == (64, 64, 1) and img1.dtype == np.float32
    assert img1[0, 0, 0] == pytest.approx(20 / 255) and img1[10, 10, 0] == pytest.approx(80 / 255)
    img3 = read_image(path, tiny_config(tiny, channels=3))
    assert img3.shape == (64, 64, 3) and np.array_equal(img3[..., 0], img3[..., 2])  # gray replicated
    img32 = read_image(path, tiny_config(tiny, image_size=[32, 48]))
    assert img32.shape == (32, 48, 1) and 0.0 <= img32.min() and img32.max() <= 1.0


def test_read_mask_decodes_colours_with_tolerance_and_resizes_nearest(tmp_path: Path) -> None:
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:32, :32] = (250, 8, 3)  # JPEG-like noise around red: 9 away -> class 1
    rgb[32:, 32:] = (0, 0, 255)
    rgb[:32, 32:] = (3, 250, 0)
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    cfg = tiny_config(tmp_path)
    m = read_mask(path, cfg)
    assert m.dtype == np.uint8 and m.shape == (64, 64)
    assert (m[0, 0], m[0, 63], m[63, 63], m[63, 0]) == (1, 2, 3, 0)
    small = read_mask(path, tiny_config(tmp_path, image_size=[17, 23]))  # odd size: nearest only
    assert small.shape == (17, 23) and set(np.unique(small)) == {0, 1, 2, 3}


def test_unknown_mask_colour_names_file_and_colour(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[4:6, 4:6] = (200, 100, 50)
    path = tmp_path / "bad_0001.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    with pytest.raises(DataError) as e:
        read_mask(path, tiny_config(tmp_path))
    assert e.value.path == path
    assert "4 pixels have colour (200, 100, 50), which is no class colour" in e.value.message


def test_gray_mask_mode_thresholds(tmp_path: Path) -> None:
    gray = np.zeros((64, 64), np.uint8)
    gray[:, 32:] = 200
    gray[:, 60:] = 100  # below threshold 128 -> background
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), gray)
    raw = tiny_config(tmp_path).model_dump(mode="json")
    raw["classes"] = [{"id": 1, "name": "fg", "color": [255, 255, 255]}]
    raw["data"]["mask_mode"] = "gray"
    m = read_mask(path, validate_config(raw))
    assert m[:, :32].max() == 0 and m[:, 32:60].min() == 1 and m[:, 60:].max() == 0


def test_unreadable_image_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image file") as e:
        read_image(path, tiny_config(tmp_path))
    assert e.value.path == path


def test_image_and_mask_of_different_sizes_are_refused_not_resized(tmp_path: Path) -> None:
    from segkit.data.pipeline import read_sample

    write_pair(tmp_path / "train", "a_0000", label_map(0, 64))
    write_pair(tmp_path / "m", "a_0000", label_map(0, 48))
    (tmp_path / "m" / "masks" / "a_0000.png").replace(tmp_path / "train" / "masks" / "a_0000.png")
    pairs = list_pairs(tmp_path / "train")
    with pytest.raises(DataError) as e:
        read_sample(pairs, 0, tiny_config(tmp_path))
    assert e.value.one_line() == (
        f"{pairs[0][0]}: image is 64x64 but its mask a_0000.png is 48x48 "
        "(hint: image and mask of a slice must have the same size; re-export the pair)"
    )


# === 2.5D context ===


def test_context_table_repeats_edge_slices_and_skips_gaps(tmp_path: Path) -> None:
    names = ["a_0000", "a_0001", "a_0002", "a_0005", "b_0007"]
    pairs = [(tmp_path / f"{s}.png", tmp_path / f"{s}.png") for s in names]
    t = context_table(pairs, 2)
    assert t.tolist() == [
        [0, 0, 0, 1, 2],  # a_0000: border -> repeat itself
        [0, 0, 1, 2, 2],  # a_0001: -2 missing -> nearest written (-1 = a_0000); +2 = a_0003 missing -> a_0002
        [0, 1, 2, 2, 2],  # a_0002: +1, +2 missing (gap to 5) -> itself
        [3, 3, 3, 3, 3],  # a_0005: a_0003/a_0004 missing -> itself
        [4, 4, 4, 4, 4],  # b_0007: alone in its case
    ]


def test_context_table_uses_case_ids_from_dataset_json(tmp_path: Path) -> None:
    names = ["pt_1_0003", "pt_1_0004", "pt_10004"]  # with rsplit alone, pt_10004 would be case 'pt' idx 10004
    pairs = [(tmp_path / f"{s}.png", tmp_path / f"{s}.png") for s in names]
    (tmp_path / "dataset.json").write_text(json.dumps({"cases": {"pt_1": {}, "pt": {}}}))
    t = context_table(pairs, 1, tmp_path / "dataset.json")
    assert t.tolist() == [[0, 0, 1], [0, 1, 1], [2, 2, 2]]


# === make_dataset ===


def _collect(ds) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_dataset_shapes_dtypes_and_one_hot(tiny: Path) -> None:
    cfg = tiny_config(tiny)
    x, y = _collect(make_dataset(cfg, "train", training=True))
    assert x.shape == (6, 64, 64, 1) and x.dtype == np.float32
    assert y.shape == (6, 64, 64, 4) and y.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.array_equal(y.sum(-1), np.ones((6, 64, 64), np.float32))
    assert set(np.unique(y)) == {0.0, 1.0}
    first = next(iter(make_dataset(cfg, "train", training=True)))
    assert tuple(first[0].shape) == (2, 64, 64, 1)  # batched by train.batch_size


def test_validation_is_neither_shuffled_nor_augmented(tiny: Path) -> None:
    cfg = tiny_config(tiny)
    ds = make_dataset(cfg, "valid", training=False)
    for _ in range(2):  # every epoch the same
        x, y = _collect(ds)
        for i, (img, msk) in enumerate(list_pairs(tiny / "valid")):
            assert np.array_equal(x[i], read_image(img, cfg))
            assert np.array_equal(y[i].argmax(-1), read_mask(msk, cfg))


def test_training_is_reproducible_fresh_per_epoch_and_resumable(tiny: Path) -> None:
    cfg = tiny_config(tiny)
    ds = make_dataset(cfg, "train", training=True)
    e0, e1 = _collect(ds), _collect(ds)
    again = _collect(make_dataset(cfg, "train", training=True))
    assert np.array_equal(e0[0], again[0]) and np.array_equal(e0[1], again[1])  # rerun repeats itself
    assert not np.array_equal(e0[0], e1[0])  # next epoch: new order / new augmentation
    resumed = _collect(make_dataset(cfg, "train", training=True, seed_offset=1))
    assert np.array_equal(resumed[0], e1[0]) and np.array_equal(resumed[1], e1[1])  # resume at epoch 1
    other = _collect(make_dataset(cfg.model_copy(update={"seed": 4}), "train", training=True))
    assert not np.array_equal(other[0], e0[0])


def test_the_endless_stream_batches_each_epoch_as_the_epoch_by_epoch_one(tmp_path: Path) -> None:
    """5 samples in batches of 2: every epoch ends with its own batch of 1, in the endless stream (training's)
    as epoch by epoch, and a stream resumed at epoch 1 reads what the uninterrupted one read from there."""
    cfg = tiny_config(make_tiny_dataset(tmp_path / "ds", n_train=5))
    by_epoch = make_dataset(cfg, "train", training=True)
    expected = [b for _ in range(3) for b in by_epoch]  # epochs 0, 1, 2
    endless = list(make_dataset(cfg, "train", training=True, endless=True).take(9))
    assert [int(x.shape[0]) for x, _ in endless] == [2, 2, 1] * 3
    for (x, y), (ex, ey) in zip(endless, expected, strict=True):
        assert np.array_equal(x, ex) and np.array_equal(y, ey)
    resumed = list(make_dataset(cfg, "train", training=True, endless=True, seed_offset=1).take(6))
    for (x, _), (ex, _) in zip(resumed, endless[3:], strict=True):
        assert np.array_equal(x, ex)


def test_training_without_augmentation_yields_each_sample_once(tiny: Path) -> None:
    cfg = tiny_config(tiny).model_copy(
        update={"augment": tiny_config(tiny).augment.model_copy(update={"enabled": False})}
    )
    x, y = _collect(make_dataset(cfg, "train", training=True))
    expected = sorted(float(read_mask(m, cfg).sum()) for _, m in list_pairs(tiny / "train"))
    assert sorted(float(v) for v in y.argmax(-1).sum(axis=(1, 2))) == expected


def test_context_slices_stack_neighbours_as_channels(tiny: Path) -> None:
    cfg = tiny_config(tiny, context_slices=1, channels=3)
    x, _ = _collect(make_dataset(cfg, "valid", training=False))
    assert x.shape == (3, 64, 64, 9)
    pairs = list_pairs(tiny / "valid")  # case0_0000..0002
    single = [read_image(p[0], cfg) for p in pairs]
    assert np.array_equal(x[0], np.concatenate([single[0], single[0], single[1]], -1))  # border repeats
    assert np.array_equal(x[1], np.concatenate(single, -1))


def test_bad_colour_surfaces_as_data_error_naming_the_file(tiny: Path) -> None:
    bad = tiny / "valid" / "masks" / "case0_0001.png"
    cv2.imwrite(str(bad), np.full((64, 64, 3), (50, 100, 200), np.uint8))
    import tensorflow as tf

    with pytest.raises(tf.errors.OpError) as e:
        _collect(make_dataset(tiny_config(tiny), "valid", training=False))
    err = unwrap_data_error(e.value)
    assert isinstance(err, DataError)
    assert err.one_line().startswith(
        f"{bad}: 4096 pixels have colour (200, 100, 50), which is no class colour"
    )  # BGR file
    assert unwrap_data_error(ValueError("something else")) is None


def test_patches_cut_model_size_windows_from_larger_slices(tmp_path: Path) -> None:
    """data.patches: slices of 96x80 and 40x50 (two sizes, as two cases at one spacing would have) become
    64x64 training patches whose image and mask agree, and centre patches for validation."""
    for split, n in (("train", 4), ("valid", 2)):
        for i in range(n):
            size = (96, 80) if i % 2 == 0 else (40, 50)
            m = np.zeros(size, np.uint8)
            m[size[0] // 2 - 3 : size[0] // 2 + 3, 5:9] = 1 + i % 3
            write_pair(tmp_path / split, f"case{i}_{i:04d}", m)
    cfg = tiny_config(tmp_path, patches=True, foreground_oversample=1.0)
    cfg = cfg.model_copy(update={"augment": cfg.augment.model_copy(update={"enabled": False})})
    x, y = _collect(make_dataset(cfg, "train", training=True))
    assert x.shape == (4, 64, 64, 1) and y.shape == (4, 64, 64, 4)
    labels = y.argmax(-1)
    assert all((labels[j] > 0).any() for j in range(4))  # every patch was placed on the foreground
    expected_gray = (20 + 60 * labels).astype(np.float32) / 255.0
    inside = x[..., 0] > 0  # padding (zeros) aside, image and mask moved together
    np.testing.assert_allclose(x[..., 0][inside], expected_gray[inside], atol=1 / 255)
    xv, yv = _collect(make_dataset(cfg, "valid", training=False))
    assert xv.shape == (2, 64, 64, 1)
    assert yv.argmax(-1).sum() > 0
