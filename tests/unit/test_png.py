"""segkit.io.png: RGB order on disk and back, grayscale, atomic writes, decode errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segkit.errors import DataError
from segkit.io.png import read_gray, read_rgb, write_png


def test_rgb_is_stored_as_real_rgb_and_read_back(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)  # red
    rgb[1, 1] = (0, 0, 255)  # blue
    write_png(tmp_path / "m.png", rgb)
    # Independent reader (OpenCV gives BGR): the red pixel has its 255 in the last channel.
    bgr = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_COLOR)
    assert tuple(bgr[0, 0]) == (0, 0, 255) and tuple(bgr[1, 1]) == (255, 0, 0)
    np.testing.assert_array_equal(read_rgb(tmp_path / "m.png"), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]


def test_gray_roundtrip(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    write_png(tmp_path / "sub" / "g.png", gray)
    out = read_gray(tmp_path / "sub" / "g.png")
    assert out.dtype == np.uint8 and out.shape == (6, 10)
    np.testing.assert_array_equal(out, gray)
    assert read_rgb(tmp_path / "sub" / "g.png").shape == (6, 10, 3)


def test_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="cannot decode") as info:
        read_gray(tmp_path / "bad.png")
    assert info.value.path == tmp_path / "bad.png"
    with pytest.raises(DataError, match="not found"):
        read_rgb(tmp_path / "none.png")
    with pytest.raises(DataError, match="uint8"):
        write_png(tmp_path / "f.png", np.zeros((3, 3), np.float32))
    assert not (tmp_path / "f.png").exists()
