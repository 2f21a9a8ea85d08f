"""segkit.io.slices: the one slice-I/O module (resize of stacks wider than OpenCV's 4 channels)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segkit.io.slices import resize_image


@pytest.mark.parametrize(
    ("channels", "size"), [(5, (30, 25)), (9, (37, 31)), (9, (24, 20)), (9, (96, 80)), (3, (30, 25))]
)
def test_resize_of_any_channel_count_equals_the_per_channel_resize(
    channels: int, size: tuple[int, int]
) -> None:
    """2.5D input (channels x (2k + 1) > 4) used to fail in cv2's area resize ("cn <= 4") on slices larger
    than data.image_size; every channel must come out as its own resize."""
    x = np.random.default_rng(channels).random((48, 40, channels), dtype=np.float32)
    y = resize_image(x, size)
    assert y.shape == (*size, channels) and y.dtype == np.float32
    flag = cv2.INTER_AREA if size[0] <= 48 else cv2.INTER_LINEAR
    for c in range(channels):
        np.testing.assert_allclose(
            y[..., c], cv2.resize(x[..., c], size[::-1], interpolation=flag), atol=1e-6
        )
