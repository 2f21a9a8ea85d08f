"""Augmentation preview grids: N augmented training samples, each as image | image with colour-mask overlay.

Layout: ``cols = min(n, 4)`` samples per row, ``rows = ceil(n / cols)``; each sample is two panels of
(ph, pw) = ``data.image_size`` scaled down so the longer side is at most ``MAX_PANEL`` px, with ``GAP`` px of
white between panels and around the grid. So the PNG is
``(rows * (ph + GAP) + GAP) x (cols * 2 * (pw + GAP) + GAP)`` pixels (height x width).

Example:
    >>> path = write_preview(cfg, Path("preview.png"), n=8)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from segkit.data.augment import Augmenter
from segkit.data.pipeline import context_table, patch_rng, read_sample, split_pairs
from segkit.io.atomic import write_with
from segkit.io.palette import encode_mask, palette_array
from segkit.seeds import Stream, generator

if TYPE_CHECKING:  # pragma: no cover
    from segkit.config import Config

log = logging.getLogger(__name__)

MAX_PANEL = 256
MIN_PANEL = 128
GAP = 4


def panel_size(cfg: Config) -> tuple[int, int]:
    """(height, width) of one preview panel: the model input scaled so the longer side is <= MAX_PANEL, and
    a small input (64x64) enlarged by a whole factor until that side is >= MIN_PANEL (readable)."""
    h, w = cfg.data.image_size
    f = MAX_PANEL / max(h, w) if max(h, w) > MAX_PANEL else float(max(1, -(-MIN_PANEL // max(h, w))))
    return max(1, round(h * f)), max(1, round(w * f))


def grid_shape(cfg: Config, n: int) -> tuple[int, int]:
    """(height, width) in pixels of the preview PNG for ``n`` samples (see the module docstring)."""
    ph, pw = panel_size(cfg)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    return rows * (ph + GAP) + GAP, cols * 2 * (pw + GAP) + GAP


def _to_rgb(image: npt.NDArray[np.float32], cfg: Config) -> npt.NDArray[np.uint8]:
    """(H, W, C') float 0..1 -> (H, W, 3) uint8, showing the centre slice of a 2.5D stack."""
    c = cfg.data.channels
    k = cfg.data.context_slices
    centre = image[..., k * c : (k + 1) * c]
    if centre.shape[-1] == 1:
        centre = np.repeat(centre, 3, axis=-1)
    return np.clip(np.rint(centre * 255.0), 0, 255).astype(np.uint8)


def render_preview(cfg: Config, n: int = 16, split: str = "train") -> npt.NDArray[np.uint8]:
    """Render ``n`` augmented samples of ``cfg.data.dir / split`` as one RGB grid.

    Samples are drawn without replacement while possible (``segkit.seeds``' PREVIEW stream of ``cfg.seed``);
    sample j is augmented as sample index ``pair index`` of epoch ``j // len(pairs)``, i.e. exactly as
    training would.

    Args:
        cfg: the config (data, augment, infer.alpha for the overlay opacity).
        n: number of samples (>= 1).
        split: the split folder to draw from.

    Returns:
        (height, width, 3) uint8 RGB, size ``grid_shape(cfg, n)``.

    Raises:
        DataError: missing/empty split, unpaired or unreadable files.
        ValueError: n < 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    pairs = split_pairs(cfg, split)
    k = cfg.data.context_slices
    context = context_table(pairs, k, Path(cfg.data.dir) / "dataset.json") if k > 0 else None
    rng = generator(cfg.seed, Stream.PREVIEW)
    order = np.concatenate([rng.permutation(len(pairs)) for _ in range(math.ceil(n / len(pairs)))])[:n]
    augmenter = Augmenter(cfg)
    palette = palette_array([c.color for c in cfg.effective_classes])
    ph, pw = panel_size(cfg)
    height, width = grid_shape(cfg, n)
    cols = min(n, 4)
    grid = np.full((height, width, 3), 255, dtype=np.uint8)
    alpha = cfg.infer.alpha
    for j, idx in enumerate(order):
        epoch = j // len(pairs)
        image, mask = read_sample(pairs, int(idx), cfg, context, patch_rng(cfg, epoch, int(idx)))
        image, mask = augmenter(image, mask, epoch=epoch, index=int(idx))
        rgb = _to_rgb(image, cfg)
        colour = encode_mask(mask, palette)
        fg = (mask > 0)[..., None]
        overlay = np.where(fg, np.rint((1 - alpha) * rgb + alpha * colour), rgb).astype(np.uint8)
        r, c = divmod(j, cols)
        y = GAP + r * (ph + GAP)
        for p, panel in enumerate((rgb, overlay)):
            x = GAP + (2 * c + p) * (pw + GAP)
            interp = cv2.INTER_AREA if panel.shape[0] > ph else cv2.INTER_NEAREST
            grid[y : y + ph, x : x + pw] = cv2.resize(panel, (pw, ph), interpolation=interp)
    log.debug("preview of %d samples from %s", n, split)
    return grid


def write_preview(cfg: Config, out: Path, n: int = 16, split: str = "train") -> Path:
    """Render the preview (``render_preview``) and write it atomically as PNG to ``out``; returns ``out``."""
    grid = render_preview(cfg, n=n, split=split)
    out = Path(out)

    def _write(tmp: Path) -> None:
        ok, buf = cv2.imencode(".png", grid[..., ::-1])
        if not ok:
            raise OSError(f"PNG encoding failed for {out}")
        tmp.write_bytes(buf.tobytes())

    write_with(out, _write)
    return out
