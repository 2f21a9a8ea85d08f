"""``segkit augment-preview``: writes the grid PNG and lists the active transforms; bad input -> exit 2."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml
from typer.testing import CliRunner

from segkit.cli.app import app


def write_dataset(root: Path, n: int = 3) -> None:
    for i in range(n):
        labels = np.zeros((64, 64), np.uint8)
        labels[10 + i : 30 + i, 10:30] = 1
        labels[40:50, 20:60] = 2
        for sub in ("images", "masks"):
            (root / "train" / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "train" / "images" / f"c_{i:04d}.png"), (labels * 100 + 20).astype(np.uint8))
        rgb = np.zeros((64, 64, 3), np.uint8)
        rgb[labels == 1] = (255, 0, 0)
        rgb[labels == 2] = (0, 255, 0)
        cv2.imwrite(str(root / "train" / "masks" / f"c_{i:04d}.png"), rgb[..., ::-1])


def write_config(path: Path, data_dir: Path) -> Path:
    raw = {
        "name": "t",
        "classes": [
            {"id": 1, "name": "a", "color": [255, 0, 0]},
            {"id": 2, "name": "b", "color": [0, 255, 0]},
        ],
        "data": {"dir": str(data_dir), "image_size": [64, 64], "channels": 1},
        "augment": {"hflip": {"p": 0.5}, "rotate": {"p": 1.0, "limit": 20}, "elastic": {"p": 0.3}},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_writes_grid_png_of_expected_size_and_lists_transforms(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "ds")
    out = tmp_path / "sub" / "preview.png"
    res = CliRunner().invoke(
        app, ["augment-preview", str(cfg), "--n", "5", "--out", str(out), "--set", "augment.vflip.p=0.25"]
    )
    assert res.exit_code == 0, res.output
    grid = cv2.imread(str(out))
    # 5 samples -> 4 per row, 2 rows; 64x64 panels enlarged x2 to 128, 4 px gaps: (2*132+4) x (4*2*132+4)
    assert grid.shape == (268, 1060, 3) and out.stat().st_size > 1000
    assert grid[4:68, 4:68].std() > 0  # the first image panel is not blank
    assert (grid[4:68, 72:136] != grid[4:68, 4:68]).any()  # the overlay panel shows the mask colours
    for line in (
        "hflip p=0.5",
        "vflip p=0.25",
        "rotate p=1 angle -20..20 deg",
        "elastic p=0.3 alpha 30 px, sigma 5 px",
    ):
        assert line in res.stdout
    assert not list(out.parent.glob(".preview.png.*"))  # atomic write left no temporary file


def test_missing_dataset_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "nowhere")
    res = CliRunner().invoke(app, ["augment-preview", str(cfg), "--out", str(tmp_path / "p.png")])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"error: {tmp_path / 'nowhere' / 'train'}: split folder not found (hint: run `segkit prepare`"
    )
    assert not (tmp_path / "p.png").exists()


def test_help_lists_options() -> None:
    res = CliRunner().invoke(app, ["augment-preview", "--help"])
    assert res.exit_code == 0 and "--n" in res.output and "--out" in res.output and "--split" in res.output
