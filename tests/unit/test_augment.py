"""segkit.data.augment: seeded albumentations transforms, image/mask consistency, descriptions."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.config import Config, validate_config
from segkit.data.augment import Augmenter, describe_augmentation

GEOMETRIC = [
    "hflip",
    "vflip",
    "rotate90",
    "rotate",
    "scale",
    "shift",
    "shear",
    "elastic",
    "grid_distortion",
    "optical_distortion",
]
INTENSITY = ["brightness", "contrast", "gamma", "noise", "blur"]


def config(on: dict[str, float], size: tuple[int, int] = (64, 64), **extra: object) -> Config:
    aug: dict[str, object] = {name: {"p": 0.0} for name in GEOMETRIC + INTENSITY}
    aug.update({name: {"p": p} for name, p in on.items()})
    aug.update(extra)
    return validate_config(
        {
            "seed": 11,
            "classes": [
                {"id": 1, "name": "a", "color": [255, 0, 0]},
                {"id": 2, "name": "b", "color": [0, 255, 0]},
            ],
            "data": {"image_size": list(size), "channels": 1},
            "augment": aug,
        }
    )


def sample(h: int = 64, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 5:25] = 1
    mask[40:50, 30:60] = 2
    rng = np.random.default_rng(0)
    image = (0.2 + 0.3 * mask + 0.05 * rng.random((h, w))).astype(np.float32)[..., None]
    return image, mask


def test_describe_lists_active_transforms_with_ranges_in_order() -> None:
    cfg = config({"hflip": 0.5, "rotate": 0.3, "optical_distortion": 0.2, "gamma": 1.0})
    assert describe_augmentation(cfg) == [
        "hflip p=0.5",
        "rotate p=0.3 angle -15..15 deg",
        "optical_distortion p=0.2 k -0.2..0.2 (k>0 barrel, k<0 pincushion)",
        "gamma p=1 gamma 0.8..1.25",
    ]
    off = cfg.model_copy(update={"augment": cfg.augment.model_copy(update={"enabled": False})})
    assert describe_augmentation(off) == []


def test_hflip_flips_image_and_mask_together() -> None:
    image, mask = sample()
    img2, m2 = Augmenter(config({"hflip": 1.0}))(image, mask, epoch=0, index=0)
    assert np.array_equal(m2, mask[:, ::-1]) and np.allclose(img2, image[:, ::-1])


def test_intensity_transforms_touch_the_image_only() -> None:
    image, mask = sample()
    aug = Augmenter(config({n: 1.0 for n in INTENSITY}))
    img2, m2 = aug(image, mask, epoch=0, index=0)
    assert np.array_equal(m2, mask)
    assert not np.allclose(img2, image) and img2.dtype == np.float32
    assert 0.0 <= img2.min() and img2.max() <= 1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_mask_dtype_kept_and_no_new_labels(dtype: type) -> None:
    image, mask = sample()
    aug = Augmenter(config({n: 1.0 for n in GEOMETRIC + INTENSITY}))
    for index in range(4):
        _, m2 = aug(image, mask.astype(dtype), epoch=0, index=index)
        assert m2.dtype == dtype and m2.shape == mask.shape
        assert set(np.unique(m2)) <= {0, 1, 2}


def test_same_seed_same_output_other_sample_or_epoch_differs() -> None:
    image, mask = sample()
    cfg = config({n: 0.7 for n in GEOMETRIC + INTENSITY})
    a = Augmenter(cfg)(image, mask, epoch=2, index=5)
    b = Augmenter(cfg)(image, mask, epoch=2, index=5)  # a new augmenter: nothing carried in hidden state
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    outs = [Augmenter(cfg)(image, mask, epoch=e, index=i)[0] for e, i in [(2, 6), (3, 5), (0, 0)]]
    assert all(not np.array_equal(a[0], o) for o in outs)


def test_transforms_draw_independently() -> None:
    """hflip and vflip at p=0.5 must not always fire together (albumentations' Compose seed would couple
    them)."""
    image, mask = sample()
    aug = Augmenter(config({"hflip": 0.5, "vflip": 0.5}))
    seen = set()
    for index in range(24):
        _, m2 = aug(image, mask, epoch=0, index=index)
        seen.add(
            (
                np.array_equal(m2, mask[:, ::-1]) or np.array_equal(m2, mask[::-1, ::-1]),
                np.array_equal(m2[::-1], mask) or np.array_equal(m2, mask[::-1, ::-1]),
            )
        )
    assert seen == {(False, False), (True, False), (False, True), (True, True)}


def test_shift_translates_image_and_mask_together_within_the_limit() -> None:
    """A shift moves the whole picture: the mask's box keeps its size, moves by at most ``limit`` of the
    image side, the image moves with it, and what enters at the edge is background (0)."""
    mask = np.zeros((64, 64), np.uint8)
    mask[24:40, 22:42] = 1  # central: a shift of up to 0.2 x 64 px keeps it inside
    mask[30:34, 30:34] = 2
    image = (0.2 + 0.3 * mask).astype(np.float32)[..., None]
    aug = Augmenter(config({"shift": 1.0}, shift={"p": 1.0, "limit": 0.2}))
    assert describe_augmentation(aug.cfg) == ["shift p=1 up to 0.2 of the height and width"]
    moves = set()
    rows, cols = np.nonzero(mask == 1)
    for index in range(12):
        img2, m2 = aug(image, mask, epoch=0, index=index)
        r2, c2 = np.nonzero(m2 == 1)
        assert abs(r2.size - rows.size) <= 40  # the same region, moved (nearest neighbour: +-1 row/column)
        dr, dc = int(r2.min() - rows.min()), int(c2.min() - cols.min())
        assert abs(dr) <= 0.2 * 64 + 1 and abs(dc) <= 0.2 * 64 + 1
        extent = (rows.max() - rows.min(), cols.max() - cols.min())
        assert (r2.max() - r2.min(), c2.max() - c2.min()) == extent
        # the image moved with the mask: bright where the moved class 2 is, dark background where 0 entered
        assert img2[..., 0][m2 == 2].mean() > 0.7 and img2[..., 0][m2 == 0].max() <= 0.21
        moves.add((dr, dc))
    assert len(moves) > 6  # random, not one fixed offset


def test_shift_limit_is_a_share_of_the_height_in_rows_and_of_the_width_in_columns() -> None:
    """On a 48 x 64 image a limit of 0.25 moves by at most 12 rows and 16 columns, and columns move further
    than rows can (x and y are not swapped)."""
    mask = np.zeros((48, 64), np.uint8)
    mask[20:28, 28:36] = 1
    image = (0.2 + 0.5 * mask).astype(np.float32)[..., None]
    aug = Augmenter(config({"shift": 1.0}, size=(48, 64), shift={"p": 1.0, "limit": 0.25}))
    drs, dcs = [], []
    for index in range(40):
        _, m2 = aug(image, mask, epoch=0, index=index)
        r2, c2 = np.nonzero(m2 == 1)
        drs.append(int(r2.min()) - 20)
        dcs.append(int(c2.min()) - 28)
    assert max(map(abs, drs)) <= 12 and max(map(abs, dcs)) <= 16
    assert max(map(abs, dcs)) > 12  # a column move that a share of the height could not give


def test_rotate90_keeps_the_shape_of_non_square_images() -> None:
    image, mask = sample(48, 64)
    img2, m2 = Augmenter(config({"rotate90": 1.0}, size=(48, 64)))(image, mask, epoch=0, index=0)
    assert img2.shape == (48, 64, 1) and np.array_equal(m2, mask[::-1, ::-1])  # 180 degrees


def test_optical_distortion_sign_barrel_magnifies_the_centre() -> None:
    """k > 0 (barrel) magnifies the image centre: a central square grows; k < 0 (pincushion) shrinks it."""
    mask = np.zeros((101, 101), np.uint8)
    mask[30:71, 30:71] = 1  # 41 x 41 = 1681 px
    image = mask[..., None].astype(np.float32)
    barrel = Augmenter(
        config({"optical_distortion": 1.0}, size=(101, 101), optical_distortion={"p": 1.0, "k": [0.3, 0.3]})
    )
    pincushion = Augmenter(config({}, size=(101, 101), optical_distortion={"p": 1.0, "k": [-0.3, -0.3]}))
    assert barrel(image, mask, epoch=0, index=0)[1].sum() > 1681 + 30
    assert pincushion(image, mask, epoch=0, index=0)[1].sum() < 1681 - 30


def test_multichannel_stacks_are_warped_as_one() -> None:
    image, mask = sample()
    stack = np.concatenate([image, image, image], axis=-1)  # 2.5D: 3 slices
    img2, _ = Augmenter(config({"rotate": 1.0, "elastic": 1.0}))(stack, mask, epoch=0, index=1)
    assert img2.shape == (64, 64, 3)
    assert np.array_equal(img2[..., 0], img2[..., 1]) and np.array_equal(img2[..., 0], img2[..., 2])


def test_no_active_transform_returns_input_unchanged() -> None:
    image, mask = sample()
    img2, m2 = Augmenter(config({}))(image, mask, epoch=0, index=0)
    assert img2 is image and m2 is mask
