"""Patches of the model input size cut from slices at their prepared size (``data.patches: true``).

Training crops a random ``data.image_size`` window from each slice; with probability
``data.foreground_oversample`` the window is placed so that it contains a randomly chosen foreground pixel
(nnU-Net forces a third of its patches to hold foreground, which keeps small structures in view when most of a
slice is background). Validation uses the centre window. Slices smaller than the window are zero-padded
(centred) first; padded pixels are background in the mask.

Example:
    >>> rng = np.random.default_rng(0)
    >>> image, mask = np.zeros((200, 150, 1), np.float32), np.zeros((200, 150), np.uint8)
    >>> img, msk = random_patch(image, mask, (128, 128), rng)
    >>> img.shape, msk.shape
    ((128, 128, 1), (128, 128))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def pad_to(
    image: npt.NDArray, mask: npt.NDArray | None, size: Sequence[int]
) -> tuple[npt.NDArray, npt.NDArray | None]:
    """Zero-pad (H, W[, C]) ``image`` and (H, W) ``mask`` to at least ``size`` = (h, w), centred."""
    h, w = int(size[0]), int(size[1])
    ph, pw = max(0, h - image.shape[0]), max(0, w - image.shape[1])
    if ph == 0 and pw == 0:
        return image, mask
    top, left = ph // 2, pw // 2
    spec = [(top, ph - top), (left, pw - left)]
    image = np.pad(image, spec + [(0, 0)] * (image.ndim - 2))
    if mask is not None:
        mask = np.pad(mask, spec)
    return image, mask


def _window(start_y: int, start_x: int, size: Sequence[int]) -> tuple[slice, slice]:
    return slice(start_y, start_y + int(size[0])), slice(start_x, start_x + int(size[1]))


def center_patch(
    image: npt.NDArray, mask: npt.NDArray | None, size: Sequence[int]
) -> tuple[npt.NDArray, npt.NDArray | None]:
    """The centre ``size`` window of a slice (zero-padded first when smaller)."""
    image, mask = pad_to(image, mask, size)
    y = (image.shape[0] - int(size[0])) // 2
    x = (image.shape[1] - int(size[1])) // 2
    win = _window(y, x, size)
    return image[win], (mask[win] if mask is not None else None)


def random_patch(
    image: npt.NDArray,
    mask: npt.NDArray,
    size: Sequence[int],
    rng: np.random.Generator,
    foreground: float = 0.33,
) -> tuple[npt.NDArray, npt.NDArray]:
    """A random ``size`` window of a slice and its mask.

    Args:
        image: (H, W, C) image.
        mask: (H, W) class ids.
        size: (h, w) window.
        rng: the sample's generator (seeded by seed, epoch and index in the pipeline).
        foreground: probability of placing the window around a random foreground pixel (when the slice has
            one).

    Returns:
        (h, w, C) image and (h, w) mask.
    """
    image, padded = pad_to(image, mask, size)
    assert padded is not None
    mask = padded
    h, w = int(size[0]), int(size[1])
    max_y, max_x = image.shape[0] - h, image.shape[1] - w
    if foreground > 0 and rng.random() < foreground:
        ys, xs = np.nonzero(mask)
        if ys.size:
            j = int(rng.integers(ys.size))
            cy, cx = int(ys[j]), int(xs[j])
            # every window start that keeps (cy, cx) inside, clipped to the slice
            lo_y, hi_y = max(0, cy - h + 1), min(max_y, cy)
            lo_x, hi_x = max(0, cx - w + 1), min(max_x, cx)
            y, x = int(rng.integers(lo_y, hi_y + 1)), int(rng.integers(lo_x, hi_x + 1))
            win = _window(y, x, size)
            return image[win], mask[win]
    y, x = int(rng.integers(max_y + 1)), int(rng.integers(max_x + 1))
    win = _window(y, x, size)
    return image[win], mask[win]
