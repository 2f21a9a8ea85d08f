"""The region of interest of a cascade (``cascade:`` config section): one in-plane box per volume.

A box is ``(r0, r1, c0, c1)``, half-open rows and columns of the volume's display slices at their original
size (``Geometry.slice_shape``); every slice of the volume is cut to it. ``prepare`` takes it from the
reference labels (``roi_box`` with a seeded jitter), ``segkit.predict.cascade`` from the coarse model's
prediction (its 3D components of at least a tenth of the largest one's size: the main structures, not the
specks). The margin is in mm and the box is made square
in mm, so a crop resized to a square ``prepare.size`` keeps the anatomy's proportions.

Example:
    >>> mask = np.pad(np.ones((3, 4, 4), bool), ((0, 0), (10, 10), (20, 20)))   # rows 10..14, cols 20..24
    >>> roi_box(mask, (1.0, 2.0), 4.0)   # 1 x 2 mm pixels, 4 mm a side, then 16 mm square
    (4, 20, 18, 26)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Box = tuple[int, int, int, int]


#: components of the coarse foreground at least this share of the largest one's size make the region
MIN_COMPONENT_SHARE = 0.1


def main_components(mask: npt.NDArray[np.bool_], share: float = MIN_COMPONENT_SHARE) -> npt.NDArray[np.bool_]:
    """The 26-connected components of a (N, H, W) boolean stack with at least ``share`` of the largest one's
    voxels (empty stays empty): the structures (two lungs, the kidneys) stay, specks of noise go."""
    from scipy import ndimage

    comp, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    if n <= 1:
        return np.asarray(mask, dtype=bool)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    keep = np.flatnonzero(sizes >= share * sizes.max())
    return np.isin(comp, keep)


def foreground_box(mask: npt.NDArray[np.bool_]) -> Box | None:
    """The in-plane bounding box of a (N, H, W) or (H, W) boolean mask over all slices; None when empty."""
    plane: npt.NDArray[np.bool_] = np.asarray(mask, dtype=bool)
    if plane.ndim == 3:
        plane = np.asarray(plane.any(axis=0))
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _fit(lo: float, hi: float, n: int) -> tuple[int, int]:
    """[lo, hi) rounded outwards, shifted inside 0..n when it fits, else cut to it."""
    a, b = int(np.floor(lo)), int(np.ceil(hi))
    if b - a >= n:
        return 0, n
    if a < 0:
        a, b = 0, b - a
    if b > n:
        a, b = a - (b - n), n
    return a, b


def roi_box(
    mask: npt.NDArray[np.bool_],
    spacing: Sequence[float],
    margin_mm: float,
    *,
    rng: np.random.Generator | None = None,
    jitter_mm: float = 0.0,
) -> Box | None:
    """The crop of a volume around the foreground of ``mask``: its box, ``margin_mm`` on every side, square
    in mm, inside the slice.

    Args:
        mask: (N, H, W) boolean stack of display slices at their original size (or one (H, W) plane).
        spacing: (row, column) mm of a display pixel (``Geometry.slice_spacing``; (1, 1) when unknown).
        margin_mm: added on each side of the foreground's box.
        rng: draws the jitter (training crops); None: no jitter.
        jitter_mm: each side moves out by a further uniform 0..``jitter_mm`` mm (the box shifts and widens).

    Returns:
        ``(r0, r1, c0, c1)``, or None when ``mask`` has no foreground. A box wider than the slice is cut to
        the slice (then not square).
    """
    box = foreground_box(mask)
    if box is None:
        return None
    h, w = mask.shape[-2:]
    dy, dx = (float(s) if s and s > 0 else 1.0 for s in spacing)
    extra = rng.uniform(0.0, jitter_mm, size=4) if rng is not None and jitter_mm > 0 else np.zeros(4)
    r0 = box[0] - (margin_mm + extra[0]) / dy
    r1 = box[1] + (margin_mm + extra[1]) / dy
    c0 = box[2] - (margin_mm + extra[2]) / dx
    c1 = box[3] + (margin_mm + extra[3]) / dx
    side_mm = max((r1 - r0) * dy, (c1 - c0) * dx)  # square in mm around the same centre
    rc, cc = (r0 + r1) / 2, (c0 + c1) / 2
    r0, r1 = _fit(rc - side_mm / dy / 2, rc + side_mm / dy / 2, h)
    c0, c1 = _fit(cc - side_mm / dx / 2, cc + side_mm / dx / 2, w)
    return r0, r1, c0, c1


def crop(img: npt.NDArray, box: Box) -> npt.NDArray:
    """``img[r0:r1, c0:c1]`` (a view) of one display slice (any trailing channel axes kept)."""
    r0, r1, c0, c1 = box
    return img[r0:r1, c0:c1]


def paste(
    part: npt.NDArray, box: Box, shape: Sequence[int], fill: float | Sequence[float] = 0
) -> npt.NDArray:
    """The inverse of ``crop``: ``part`` put at ``box`` in a new array of ``shape`` (+ ``part``'s trailing
    axes) filled with ``fill`` elsewhere (per channel when a sequence)."""
    r0, r1, c0, c1 = box
    out = np.empty((int(shape[0]), int(shape[1]), *part.shape[2:]), dtype=part.dtype)
    out[...] = np.asarray(fill, dtype=part.dtype)
    out[r0:r1, c0:c1] = part
    return out
