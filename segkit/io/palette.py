"""Class ids <-> RGB colour masks.

Background is id 0 and black. Encoding is exact; decoding maps every pixel to the nearest class colour and
rejects pixels farther than ``tolerance`` (Euclidean RGB distance) from every colour, so JPEG-noisy masks
decode cleanly while a wrong class table is caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError


def palette_array(colors: Sequence[Sequence[int]]) -> npt.NDArray[np.uint8]:
    """(N+1, 3) uint8 palette: row 0 is black background, row i the colour of class i."""
    return np.asarray([(0, 0, 0), *[tuple(c) for c in colors]], dtype=np.uint8)


def encode_mask(labels: npt.NDArray[np.integer], palette: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(H, W) integer class ids -> (H, W, 3) uint8 RGB colour mask.

    Raises:
        DataError: a label value has no colour in the palette.
    """
    labels = np.asarray(labels)
    if labels.size:
        hi = int(labels.max())
        lo = 0 if labels.dtype.kind == "u" else int(labels.min())
        if lo < 0 or hi >= len(palette):
            bad = hi if hi >= len(palette) else lo
            raise DataError(f"label value {bad} has no colour (classes 0..{len(palette) - 1})")
    # np.take along axis 0 is ~4x faster than fancy indexing with an intp copy of the labels.
    return np.take(np.asarray(palette, dtype=np.uint8), labels, axis=0)


def decode_mask(
    rgb: npt.NDArray[np.uint8],
    palette: npt.NDArray[np.uint8],
    tolerance: float = 60.0,
    path: Path | None = None,
) -> npt.NDArray[np.uint8]:
    """(H, W, 3) RGB colour mask -> (H, W) uint8 class ids by nearest palette colour.

    Args:
        rgb: the colour mask, RGB channel order.
        palette: (N+1, 3) palette from ``palette_array``.
        tolerance: largest accepted RGB distance to the nearest colour.
        path: named in the error.

    Raises:
        DataError: a pixel is farther than ``tolerance`` from every class colour.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise DataError(f"expected an RGB mask (H, W, 3), got shape {rgb.shape}", path=path)
    # Work on unique colours: masks have few distinct colours. Packing RGB into one uint32 makes np.unique a
    # 1-D sort (~10x faster than unique over rows).
    flat = rgb.reshape(-1, 3).astype(np.uint32)
    packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq_packed, inverse = np.unique(packed, return_inverse=True)
    uniq = np.stack([(uniq_packed >> 16) & 255, (uniq_packed >> 8) & 255, uniq_packed & 255], axis=1)
    d2 = ((uniq[:, None, :].astype(np.int32) - palette[None, :, :].astype(np.int32)) ** 2).sum(-1)
    nearest = d2.argmin(1)
    dist = np.sqrt(d2[np.arange(len(uniq)), nearest])
    bad = dist > tolerance
    if bad.any():
        worst = uniq[bad][np.argmax(dist[bad])]
        count = int(np.isin(inverse.ravel(), np.flatnonzero(bad)).sum())
        raise DataError(
            f"{count} pixels have colour {tuple(int(c) for c in worst)}, which is no class colour "
            f"(nearest is {dist[bad].max():.0f} away, tolerance {tolerance:g})",
            path=path,
            hint="add the class to 'classes' in the config or raise data.mask_tolerance",
        )
    return nearest[inverse.ravel()].astype(np.uint8).reshape(rgb.shape[:2])
