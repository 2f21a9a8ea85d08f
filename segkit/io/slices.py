"""Slice files and slice arrays -> model input: the one owner of slice I/O.

Training and evaluation (``segkit.data.pipeline``), folder inference (``segkit.infer.folder``), volume
inference (``segkit.infer.volume``) and ``prepare`` (``segkit.prepare.slicing``, ``slices2d``) all read and
resize slices here:

- which files are slices: ``IMAGE_SUFFIXES``, ``MASK_SUFFIXES``;
- image file -> array: ``load_image`` (two decodings, see ``ImageDecoding``), then ``to_model_input``
  (channels, float32 0..1); ``decode_image`` / ``read_image`` do both for a config;
- mask file -> class ids: ``decode_mask_file`` / ``read_mask`` (colour masks by the class table, gray masks
  thresholded);
- resizing: ``resize_image`` (area when shrinking, linear otherwise), ``resize_label`` (nearest, pixel-centre
  aligned), ``fit_image`` / ``fit_mask`` (to ``data.image_size``, or kept with ``data.patches``);
- 2.5D: ``stack_context`` (a slice and its neighbours as channels, ordered -k..k; which neighbours is the
  caller's business: files by stem, volume slices clamped at the ends, or the slice itself).

Example:
    >>> x = read_image(Path("data/test/images/case_0012.png"), cfg)   # (H, W, C) float32 0..1, model size
    >>> y = read_mask(Path("data/test/masks/case_0012.png"), cfg)     # (H, W) uint8 class ids
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.palette import decode_mask, palette_array
from segkit.io.png import decode_8bit, decode_file, read_gray, read_rgb

if TYPE_CHECKING:  # pragma: no cover - typing only
    from segkit.config import Config

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MASK_SUFFIXES = (".png", ".jpg")  # training pairs ignore .jpeg masks (folder inference's truth_for does not)
LABEL_INTERPOLATION = cv2.INTER_NEAREST_EXACT  # the only interpolation ever applied to label maps

ImageDecoding = Literal["stored", "8bit"]
"""How an image file is decoded (the two callers differ; both are kept exactly):

- ``"stored"`` (training and evaluation data): as stored (``IMREAD_UNCHANGED``): 16-bit files keep their
  depth (scaled by 65535), alpha is dropped, colour -> gray by ``cv2.cvtColor``; any failure is one
  "cannot read image file (missing, empty or not PNG/JPEG)".
- ``"8bit"`` (folder inference): OpenCV's decoder delivers 8-bit gray (1 channel) or RGB (``io.png.read_gray``
  / ``read_rgb``: a 16-bit file keeps its high byte, colour -> gray inside the decoder), with ``io.png``'s
  errors ("image file not found", "cannot decode image (corrupt or not an image)").

For masks both decode to 8 bits with the same flags; the mode only picks the error messages.
"""


# === Images ===


def load_image(path: Path, channels: int, decoding: ImageDecoding = "stored") -> npt.NDArray[Any]:
    """Decode an image file, RGB channel order.

    Returns:
        ``"stored"``: (H, W) gray or (H, W, 3) RGB, uint8 or uint16 as stored (alpha dropped);
        ``"8bit"``: (H, W) uint8 gray when ``channels == 1``, else (H, W, 3) uint8 RGB.

    Raises:
        DataError: the file cannot be read (messages per ``ImageDecoding``).
    """
    if decoding == "8bit":
        return read_gray(path) if channels == 1 else read_rgb(path)
    img = decode_file(path, cv2.IMREAD_UNCHANGED, messages="slice")
    if img.ndim == 3:
        img = img[..., :3][..., ::-1]  # BGR(A) -> RGB
    return img


def to_model_channels(img: npt.NDArray[Any], channels: int) -> npt.NDArray[Any]:
    """(H, W) gray or (H, W, 3) RGB -> (H, W, ``channels``): RGB -> gray by ``cv2.cvtColor`` for 1 channel,
    gray replicated for 3; (H, W, C) with C == ``channels`` unchanged."""
    if img.ndim == 3 and img.shape[-1] == 3 and channels == 1:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    if img.ndim == 2:
        img = img[..., None]
        if channels == 3:
            img = np.repeat(img, 3, axis=-1)
    return img


def to_unit_float(img: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """uint8 (/ 255) or uint16 (/ 65535) -> float32 in 0..1, element-wise (any shape, e.g. a batch)."""
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(img).astype(np.float32) / np.float32(scale)


def to_model_input(img: npt.NDArray[Any], channels: int) -> npt.NDArray[np.float32]:
    """One slice as the model reads it: (H, W, ``channels``) float32 in 0..1 (``to_model_channels``, then
    ``to_unit_float``)."""
    return to_unit_float(to_model_channels(img, channels))


def stack_context(planes: Sequence[npt.NDArray[Any]], channels: int) -> npt.NDArray[Any]:
    """2.5D input: a slice and its neighbours (ordered -k..k) as one (H, W, ``channels`` * (2k + 1)) array,
    channels ordered slice by slice; the dtype is kept.

    Each plane goes through ``to_model_channels`` (gray (H, W) replicated, RGB -> gray for 1 channel); planes
    that are already (H, W, ``channels``) are only concatenated, and a single one is returned as it is.
    """
    if all(p.ndim == 2 for p in planes):  # gray slices (volume inference): the same, in one interleaving copy
        return np.stack([p for p in planes for _ in range(channels)], axis=-1)
    fitted = [to_model_channels(p, channels) for p in planes]
    return fitted[0] if len(fitted) == 1 else np.concatenate(fitted, axis=-1)


def decode_image(path: Path, cfg: Config) -> npt.NDArray[np.float32]:
    """``read_image`` at the file's own size (no resize)."""
    return to_model_input(load_image(path, cfg.data.channels), cfg.data.channels)


def read_image(path: Path, cfg: Config) -> npt.NDArray[np.float32]:
    """Read one slice image.

    Args:
        path: PNG or JPEG file (8- or 16-bit, gray, RGB or RGBA).
        cfg: uses ``data.image_size`` (height, width) and ``data.channels`` (1, or 3 with gray replicated).

    Returns:
        (H, W, C) float32 in 0..1, RGB channel order, resized to ``data.image_size`` with area (shrink) /
        linear (enlarge) interpolation; at the file's own size with ``data.patches``.

    Raises:
        DataError: the file cannot be read.
    """
    return fit_image(decode_image(path, cfg), cfg)


# === Masks ===


def decode_mask_file(path: Path, cfg: Config, decoding: ImageDecoding = "stored") -> npt.NDArray[np.uint8]:
    """``read_mask`` at the file's own size (no resize); ``decoding`` picks the error messages only."""
    messages: Literal["file", "slice"] = "slice" if decoding == "stored" else "file"
    if cfg.data.mask_mode == "gray":
        gray = decode_8bit(path, cv2.IMREAD_GRAYSCALE, messages=messages)
        return (gray >= cfg.data.gray_threshold).astype(np.uint8)
    img = decode_8bit(
        path, cv2.IMREAD_COLOR, messages=messages
    )  # gray masks are replicated to 3 channels, alpha dropped
    palette = palette_array([c.color for c in cfg.effective_classes])
    return _decode_colors(np.ascontiguousarray(img[..., ::-1]), palette, cfg.data.mask_tolerance, Path(path))


def read_mask(path: Path, cfg: Config) -> npt.NDArray[np.uint8]:
    """Read one mask as class ids.

    Colour masks (``data.mask_mode: color``) map every pixel to the nearest colour of
    ``cfg.effective_classes`` (background black = 0); a pixel farther than ``data.mask_tolerance`` from every
    colour is an error. Gray masks (``mask_mode: gray``) give 1 where the value >= ``data.gray_threshold``.
    Labels are resized with nearest neighbour only.

    Args:
        path: PNG or JPEG mask.
        cfg: the config (class table, mask mode, tolerance, image size).

    Returns:
        (H, W) uint8 class ids in 0..N, (H, W) = ``cfg.data.image_size``.

    Raises:
        DataError: unreadable file, or a colour that is no class colour (names the file and the colour).
    """
    return fit_mask(decode_mask_file(path, cfg), cfg)


def _decode_colors(
    rgb: npt.NDArray[np.uint8], palette: npt.NDArray[np.uint8], tolerance: float, path: Path
) -> npt.NDArray[np.uint8]:
    """``palette.decode_mask`` semantics, fast: exact class colours by comparison, only the others by
    distance.

    Colours are packed into one int32 each; pixels that are exactly a palette colour (nearly all) are labelled
    directly, the remaining distinct colours (JPEG noise) go through ``decode_mask``. On a bad colour the full
    mask goes through ``decode_mask`` so the error carries its exact pixel count. The result equals
    ``decode_mask``'s because a config's class colours are distinct and never black (``segkit.config``).
    """
    packed = (
        (rgb[..., 0].astype(np.int32) << 16)
        | (rgb[..., 1].astype(np.int32) << 8)
        | rgb[..., 2].astype(np.int32)
    )
    codes = (
        (palette[:, 0].astype(np.int32) << 16)
        | (palette[:, 1].astype(np.int32) << 8)
        | palette[:, 2].astype(np.int32)
    )
    ids = np.zeros(packed.shape, dtype=np.uint8)
    matched = packed == codes[0]
    for k in range(1, len(codes)):
        hit = packed == codes[k]
        ids[hit] = k
        matched |= hit
    rest = ~matched
    if rest.any():
        uniq, inverse = np.unique(packed[rest], return_inverse=True)
        colours = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=-1).astype(np.uint8)[
            :, None, :
        ]
        try:
            near = decode_mask(colours, palette, tolerance, path=path)[:, 0]
        except DataError:
            decode_mask(rgb, palette, tolerance, path=path)  # raises with the pixel count
            raise
        ids[rest] = near[inverse.ravel()]
    return ids


# === Resizing ===


def resize_image(img: npt.NDArray, size: Sequence[int]) -> npt.NDArray:
    """Resize an intensity image (H, W) or (H, W, C) to ``size`` = (H, W): INTER_AREA when shrinking,
    INTER_LINEAR otherwise. The dtype is kept (uint8 slices in ``prepare`` and volume inference, float32 in
    the training pipeline); unchanged (the same array) when already that size."""
    h, w = int(size[0]), int(size[1])
    if img.shape[:2] == (h, w):
        return img
    shrink = h <= img.shape[0] and w <= img.shape[1]
    flag = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    if (
        img.ndim == 3 and img.shape[2] > 4
    ):  # OpenCV's area resize takes at most 4 channels (2.5D stacks have more)
        return np.concatenate(
            [resize_image(img[..., c : c + 4], size) for c in range(0, img.shape[2], 4)], axis=-1
        )
    out = cv2.resize(img, (w, h), interpolation=flag)
    if img.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[..., None]
    return out


def resize_label(lbl: npt.NDArray[np.uint8], size: Sequence[int]) -> npt.NDArray[np.uint8]:
    """Resize a label map to ``size`` = (H, W) by nearest neighbour (``LABEL_INTERPOLATION``); never invents a
    class. Pixel centres are aligned, so ``resize_label(resize_label(x, bigger), x.shape)`` equals ``x``
    (plain ``INTER_NEAREST`` is shifted half a pixel against the AREA/LINEAR image resize)."""
    h, w = int(size[0]), int(size[1])
    if lbl.shape[:2] == (h, w):
        return lbl
    return cv2.resize(lbl, (w, h), interpolation=LABEL_INTERPOLATION).astype(np.uint8, copy=False)


def fit_image(img: npt.NDArray, cfg: Config) -> npt.NDArray:
    """An image resized to the model input ``data.image_size``; kept at its size with ``data.patches``
    (patches or a sliding window are cut from it)."""
    if cfg.data.patches:
        return img
    return resize_image(img, cfg.data.image_size)


def fit_mask(labels: npt.NDArray[np.uint8], cfg: Config) -> npt.NDArray[np.uint8]:
    """``fit_image`` for a label map (nearest neighbour)."""
    if cfg.data.patches:
        return labels
    return resize_label(labels, cfg.data.image_size)
