"""Patch cutting (data.patches): shapes, padding, foreground oversampling, and agreement of image and mask."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from segkit.data.patches import center_patch, pad_to, random_patch

shapes = st.tuples(st.integers(5, 90), st.integers(5, 90))
sizes = st.tuples(st.integers(4, 64), st.integers(4, 64))


def _coded(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An image whose pixel value encodes its position, and a mask with one foreground pixel."""
    img = (np.arange(h * w, dtype=np.float32).reshape(h, w, 1) + 1.0)
    return img, np.zeros((h, w), np.uint8)


@given(shape=shapes, size=sizes, seed=st.integers(0, 2**16), fy=st.floats(0, 0.999), fx=st.floats(0, 0.999))
def test_foreground_patch_always_holds_the_foreground_pixel(shape, size, seed, fy, fx) -> None:  # noqa: ANN001
    img, mask = _coded(*shape)
    y, x = int(fy * shape[0]), int(fx * shape[1])
    mask[y, x] = 2
    pimg, pmask = random_patch(img, mask, size, np.random.default_rng(seed), foreground=1.0)
    assert pimg.shape == (*size, 1) and pmask.shape == tuple(size)
    assert (pmask == 2).sum() == 1  # the only foreground pixel is inside the window
    # the image moved with the mask: the foreground sits on the pixel coded for (y, x)
    assert pimg[pmask == 2][0, 0] == img[y, x, 0]


@given(shape=shapes, size=sizes, seed=st.integers(0, 2**16))
def test_random_patch_is_a_window_of_the_padded_slice(shape, size, seed) -> None:  # noqa: ANN001
    img, mask = _coded(*shape)
    pimg, pmask = random_patch(img, mask, size, np.random.default_rng(seed), foreground=0.0)
    padded, _ = pad_to(img, mask, size)
    assert pimg.shape == (*size, 1)
    # every pixel code is unique: locate the window by its top-left pixel and compare all of it
    ys, xs = np.nonzero(padded[..., 0] == pimg[0, 0, 0]) if pimg[0, 0, 0] > 0 else (None, None)
    if ys is not None:
        y, x = int(ys[0]), int(xs[0])
        np.testing.assert_array_equal(pimg, padded[y : y + size[0], x : x + size[1]])
    else:  # the window starts in the zero padding: it is the padded slice's top-left (padding is centred)
        assert pimg.shape[0] >= 1 and set(np.unique(pimg)) <= set(np.unique(padded))
    assert not pmask.any()


def test_center_patch_and_padding_by_hand() -> None:
    img = np.arange(1, 31, dtype=np.float32).reshape(5, 6, 1)
    mask = (img[..., 0] > 15).astype(np.uint8)
    cimg, cmask = center_patch(img, mask, (3, 2))
    np.testing.assert_array_equal(cimg[..., 0], [[9, 10], [15, 16], [21, 22]])
    np.testing.assert_array_equal(cmask, [[0, 0], [0, 1], [1, 1]])
    pimg, pmask = center_patch(img, mask, (7, 8))  # padded: one row/column of zeros on each side
    assert pimg.shape == (7, 8, 1) and pmask.shape == (7, 8)
    assert pimg[0].sum() == 0 and pimg[:, 0].sum() == 0 and pimg[1, 1, 0] == 1 and pimg[5, 6, 0] == 30
    assert pmask.sum() == mask.sum()


def test_same_seed_same_patch() -> None:
    img, mask = _coded(80, 70)
    mask[40:45, 10:12] = 1
    a = random_patch(img, mask, (32, 32), np.random.default_rng([3, 1, 7]))
    b = random_patch(img, mask, (32, 32), np.random.default_rng([3, 1, 7]))
    np.testing.assert_array_equal(a[0], b[0])
