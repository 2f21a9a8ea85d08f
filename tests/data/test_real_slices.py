"""The pipeline pairs and decodes the real seed-experiment slices in ../shared/data/slices to the right ids.

Hand-checked pixels were read from the raw PNGs (RGB) and looked up in each dataset's reference.config
rgb_map.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from segkit.config import Config, load_config
from segkit.data.pipeline import list_pairs, make_dataset, read_image, read_mask
from segkit.errors import DataError

pytestmark = pytest.mark.data

REPO = Path(__file__).resolve().parents[2]
# Chest-CT masks were JPEG-compressed once: edge pixels blend up to 238 RGB units away from every class colour
# (e.g. green/blue halfway mixes), so decoding them needs a tolerance above that.
CHEST_CT_TOLERANCE = ["data.mask_tolerance=255"]
CASES = {
    # dataset: (overrides, ids found over all 36 masks, [(file, (row, col), raw RGB, id)])
    "whole-heart": ([], set(range(9)), [("10000_121.png", (227, 176), (255, 255, 0), 3),
                                        ("10000_121.png", (408, 129), (128, 128, 128), 8)]),
    "hocm": ([], set(range(8)), [("10001_169.png", (140, 204), (110, 110, 110), 7),
                                 ("10001_169.png", (156, 156), (255, 255, 0), 5)]),
    "chest-ct": (CHEST_CT_TOLERANCE, {0, 1, 2, 3}, [("10018.png", (326, 131), (0, 0, 251), 3),
                                                    ("10018.png", (245, 9), (0, 0, 0), 0)]),
}


def cfg_for(name: str, overrides: list[str]) -> Config:
    return load_config(REPO / "configs" / "seed" / f"{name}.yaml", overrides)  # the seed experiments' format


def seed_rgb_map(folder: Path) -> dict[tuple[int, int, int], int]:
    text = (folder / "reference.config").read_text(encoding="utf-8")
    literal = re.search(r"^rgb_map\s*=\s*(\{.*?\})", text, re.MULTILINE | re.DOTALL)
    assert literal is not None
    return ast.literal_eval(literal.group(1))


@pytest.mark.parametrize("name", sorted(CASES))
def test_class_table_matches_the_seed_rgb_map(shared_data: Path, name: str) -> None:
    cfg = cfg_for(name, CASES[name][0])
    ours = {(0, 0, 0): 0, **{tuple(c.color): c.id for c in cfg.effective_classes}}
    assert ours == seed_rgb_map(shared_data / "slices" / name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_masks_decode_to_the_right_ids(shared_data: Path, name: str) -> None:
    overrides, expected_ids, pixels = CASES[name]
    cfg = cfg_for(name, overrides)
    folder = shared_data / "slices" / name
    pairs = list_pairs(folder)
    assert len(pairs) == 36 and all(i.stem == m.stem for i, m in pairs)
    found: set[int] = set()
    for _, mask_path in pairs:
        ids = read_mask(mask_path, cfg)
        assert ids.shape == (512, 512) and ids.dtype == np.uint8
        assert ids.max() < cfg.num_classes  # every pixel got a class id of the table
        found |= set(np.unique(ids).tolist())
    assert found == expected_ids
    for file, (r, c), raw, class_id in pixels:
        rgb = cv2.imread(str(folder / "masks" / file))[..., ::-1]
        assert tuple(int(v) for v in rgb[r, c]) == raw
        assert read_mask(folder / "masks" / file, cfg)[r, c] == class_id


def test_chest_ct_noisy_edges_go_to_the_nearest_class(shared_data: Path) -> None:
    cfg = cfg_for("chest-ct", CHEST_CT_TOLERANCE)
    path = shared_data / "slices" / "chest-ct" / "masks" / "10018.png"
    rgb = cv2.imread(str(path))[..., ::-1].astype(int)
    ids = read_mask(path, cfg)
    exact = {(0, 0, 0): 0, (255, 0, 0): 1, (0, 255, 0): 2, (0, 0, 255): 3}
    noisy = np.ones(ids.shape, bool)
    for colour in exact:
        noisy &= np.any(rgb != colour, axis=-1)
    assert noisy.sum() > 1000  # the JPEG noise is real
    palette = np.array(list(exact), int)
    nearest = ((rgb[..., None, :] - palette) ** 2).sum(-1).argmin(-1)
    assert np.array_equal(ids, nearest)


def test_tight_tolerance_names_the_noisy_file_and_colour(shared_data: Path) -> None:
    cfg = cfg_for("chest-ct", ["data.mask_tolerance=20"])
    path = shared_data / "slices" / "chest-ct" / "masks" / "10018.png"
    with pytest.raises(DataError) as e:
        read_mask(path, cfg)
    assert e.value.path == path
    assert "which is no class colour" in e.value.message and "tolerance 20" in e.value.message


def test_real_images_decode(shared_data: Path) -> None:
    jpg = shared_data / "slices" / "chest-ct" / "images" / "10018.jpg"
    png = shared_data / "slices" / "hocm" / "images" / "10001_169.png"
    img = read_image(jpg, cfg_for("chest-ct", CHEST_CT_TOLERANCE))
    assert img.shape == (512, 512, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    gray = read_image(png, cfg_for("hocm", []))
    raw = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 2 and np.array_equal(gray[..., 1], raw / np.float32(255))


def test_real_slices_through_tf_data(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "slices" / "whole-heart"
    for _, m in list_pairs(src)[:4]:
        for sub in ("images", "masks"):
            (tmp_path / "train" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(src / sub / m.name, tmp_path / "train" / sub / m.name)
    cfg = cfg_for("whole-heart", [f"data.dir={tmp_path}", "data.image_size=[128,128]", "train.batch_size=4"])
    x, y = next(iter(make_dataset(cfg, "train", training=True)))
    assert tuple(x.shape) == (4, 128, 128, 3) and tuple(y.shape) == (4, 128, 128, 9)
    assert np.array_equal(y.numpy().sum(-1), np.ones((4, 128, 128), np.float32))
