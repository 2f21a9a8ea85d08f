"""Epoch-change inference: ``EpochPreview`` writes ``image | truth | prediction`` grids (``preview_grid``,
enlarged and titled by ``titled_preview``) of fixed validation images after every epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt

from segkit.io.atomic import write_with
from segkit.io.palette import encode_mask


def preview_grid(
    images: npt.NDArray[np.float32],
    truth: npt.NDArray[np.integer],
    pred: npt.NDArray[np.integer],
    palette: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint8]:
    """Rows of ``image | truth | prediction``.

    Args:
        images: (N, H, W, C) float32 in 0..1; C = 1 (gray), 3 (RGB) or more (the middle channel is shown).
        truth: (N, H, W) class ids.
        pred: (N, H, W) class ids.
        palette: (num_classes, 3) uint8 RGB, row 0 black.

    Returns:
        (N*H, 3*W, 3) uint8 RGB grid.
    """
    rows = []
    for img, t, p in zip(images, truth, pred, strict=True):
        img = np.asarray(img, dtype=np.float32)
        if img.shape[-1] == 3:
            rgb = img
        else:
            mid = img[..., img.shape[-1] // 2]
            rgb = np.repeat(mid[..., None], 3, axis=-1)
        rgb8 = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        rows.append(np.concatenate([rgb8, encode_mask(t, palette), encode_mask(p, palette)], axis=1))
    return np.concatenate(rows, axis=0)


def titled_preview(grid: npt.NDArray[np.uint8], epoch: int, columns: int = 3,
                   min_tile: int = 160) -> npt.NDArray[np.uint8]:
    """``grid`` (``preview_grid``) enlarged (nearest neighbour, whole factor) until a tile is ``min_tile``
    pixels wide, under a header naming the epoch and the columns (``image``, ``truth``, ``prediction``)."""
    import cv2

    factor = max(1, -(-min_tile * columns // grid.shape[1]))
    big = np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)
    tile_w = big.shape[1] // columns
    header = np.full((28, big.shape[1], 3), 24, dtype=np.uint8)
    titles = ("image", "truth", f"prediction, epoch {epoch}")
    for c, title in enumerate(titles[:columns]):
        cv2.putText(header, title, (c * tile_w + 6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return np.concatenate([header, big], axis=0)


class EpochPreview(keras.callbacks.Callback):
    """Epoch-change inference: predictions for the same validation images after every epoch.

    Args:
        out_dir: folder of ``epoch_XXX.png`` (XXX = 1-based epoch).
        images: (N, H, W, C) float32 model inputs.
        truth: (N, H, W) uint8 class ids.
        palette: (num_classes, 3) uint8 RGB.
        target: the model to run, when it is not the one trained (deep supervision); None runs that one.
    """

    def __init__(
        self,
        out_dir: Path,
        images: npt.NDArray[np.float32],
        truth: npt.NDArray[np.uint8],
        palette: npt.NDArray[np.uint8],
        target: keras.Model | None = None,
    ) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.target = target
        self.images, self.truth, self.palette = images, truth, palette

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import cv2

        # a direct call, not predict_on_batch: under MirroredStrategy Keras 3's predict_on_batch returns the
        # batch once per replica
        model = self.target if self.target is not None else self.model
        probs = np.asarray(model(self.images, training=False))
        pred = probs.argmax(-1).astype(np.uint8)
        grid = titled_preview(preview_grid(self.images, self.truth, pred, self.palette), epoch + 1)
        path = self.out_dir / f"epoch_{epoch + 1:03d}.png"

        def _write(tmp: Path) -> None:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write {path}")

        write_with(path, _write)
