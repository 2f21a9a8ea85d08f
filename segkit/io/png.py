"""8-bit PNG slices: fast encoding, atomic writes and RGB-order reads (OpenCV itself works in BGR).

Encoder settings (measured on 512 x 512 slices, see ``scripts/bench_prepare.py``): zlib level 1 with ONE
fixed row filter instead of libpng's per-row adaptive choice, which tries all five filters on every row and
costs more than the compression itself:

- grayscale images: ``FILTER_SUB`` (9.7 -> ~5.7 ms, files about as small as the adaptive default);
- colour masks: ``FILTER_NONE`` (9.4 -> ~2.2 ms, files as small: long runs of one colour compress anyway).

The files are ordinary 8-bit PNGs (gray, or 24-bit RGB), readable by any decoder.

Example:
    >>> write_png(Path("masks/case_000_0012.png"), encode_mask(labels, palette))  # (H, W, 3) RGB
    >>> read_rgb(Path("masks/case_000_0012.png")).shape
    (64, 64, 3)
    >>> write_bytes(Path("masks/case_000_0013.png"), encode_mask_png(labels, palette))  # same file, faster
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.atomic import write_bytes

# Level 1 is ~3x faster than OpenCV's default 3 and only a few percent larger on slices and colour masks.
PNG_COMPRESSION = 1
GRAY_PARAMS = (
    cv2.IMWRITE_PNG_COMPRESSION,
    PNG_COMPRESSION,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_SUB,
)
COLOR_PARAMS = (
    cv2.IMWRITE_PNG_COMPRESSION,
    PNG_COMPRESSION,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_NONE,
)


def encode_png(
    array: npt.NDArray[np.uint8],
    bgr: bool = False,
    path: Path | None = None,
    compression: int = PNG_COMPRESSION,
) -> bytes:
    """Encode an 8-bit image as PNG bytes.

    Args:
        array: (H, W) uint8 grayscale or (H, W, 3) uint8 colour.
        bgr: the colour channels are already in OpenCV's BGR order (else RGB, converted here).
        path: named in errors.
        compression: zlib level 0..9 (0 = stored: ~10x faster to encode, ~2.5x larger files).

    Returns:
        The PNG file content (8-bit gray or 24-bit RGB).

    Raises:
        DataError: wrong shape or dtype, or the encoder fails.
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise DataError(f"PNG slices must be uint8, got {arr.dtype}", path=path)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = (np.ascontiguousarray(arr) if bgr
               else cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR).astype(np.uint8, copy=False))
        params = COLOR_PARAMS
    elif arr.ndim == 2:
        arr = np.ascontiguousarray(arr)
        params = GRAY_PARAMS
    else:
        raise DataError(f"expected (H, W) or (H, W, 3) image, got shape {arr.shape}", path=path)
    params = (cv2.IMWRITE_PNG_COMPRESSION, int(compression), *params[2:])
    ok, buf = cv2.imencode(".png", arr, list(params))
    if not ok:
        raise DataError("PNG encoding failed", path=path)
    return buf.tobytes()


def write_png(path: Path, array: npt.NDArray[np.uint8], compression: int = PNG_COMPRESSION) -> Path:
    """Write an 8-bit image as PNG atomically.

    Args:
        path: destination (``.png``).
        array: (H, W) uint8 grayscale or (H, W, 3) uint8 RGB (RGB order, converted to BGR for OpenCV).
        compression: zlib level 0..9.

    Returns:
        ``path``.

    Raises:
        DataError: wrong shape or dtype, or the encoder fails.
    """
    path = Path(path)
    write_bytes(path, encode_png(array, path=path, compression=compression))
    return path


@lru_cache(maxsize=16)
def _channel_luts(palette_bytes: bytes) -> tuple[npt.NDArray[np.uint8], ...]:
    """Three (256, 1) uint8 ``cv2.LUT`` tables (B, G, R) from an RGB palette's bytes (unused ids black)."""
    pal = np.frombuffer(palette_bytes, dtype=np.uint8).reshape(-1, 3)
    luts = []
    for channel in (2, 1, 0):
        lut = np.zeros((256, 1), dtype=np.uint8)
        lut[: len(pal), 0] = pal[:, channel]
        luts.append(lut)
    return tuple(luts)


@lru_cache(maxsize=16)
def _empty_mask_png(shape: tuple[int, int]) -> bytes:
    """PNG bytes of an all-background (black) RGB mask of ``shape`` = (H, W), encoded once per shape."""
    return encode_png(np.zeros((*shape, 3), dtype=np.uint8), bgr=True)


def encode_mask_png(
    labels: npt.NDArray[np.uint8], palette: npt.NDArray[np.uint8], path: Path | None = None
) -> bytes:
    """(H, W) uint8 class ids -> PNG bytes of the RGB colour mask (same file as ``encode_mask`` +
    ``write_png``).

    The colours come from one ``cv2.LUT`` per channel, merged straight into BGR order (~3x faster than
    ``encode_mask`` then an RGB->BGR conversion); an all-background slice reuses PNG bytes encoded once per
    shape.

    Args:
        labels: (H, W) uint8 class ids, each below ``len(palette)``.
        palette: (N+1, 3) uint8 RGB palette from ``segkit.io.palette.palette_array`` (at most 256 rows).
        path: named in errors.

    Raises:
        DataError: not a 2D uint8 array, or a label value without a colour.
    """
    lbl = np.asarray(labels)
    if lbl.dtype != np.uint8 or lbl.ndim != 2:
        raise DataError(f"mask labels must be (H, W) uint8, got {lbl.dtype} {lbl.shape}", path=path)
    pal = np.ascontiguousarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= len(pal) <= 256:
        raise DataError(f"palette must be (N+1, 3) with N+1 <= 256, got {pal.shape}", path=path)
    if lbl.size == 0:
        return encode_png(np.zeros((*lbl.shape, 3), dtype=np.uint8), bgr=True, path=path)
    hi = int(lbl.max())
    if hi >= len(pal):
        raise DataError(f"label value {hi} has no colour (classes 0..{len(pal) - 1})", path=path)
    if hi == 0 and not pal[0].any():
        return _empty_mask_png((int(lbl.shape[0]), int(lbl.shape[1])))
    lbl = np.ascontiguousarray(lbl)
    bgr = cv2.merge([cv2.LUT(lbl, lut) for lut in _channel_luts(pal.tobytes())]).astype(np.uint8, copy=False)
    return encode_png(bgr, bgr=True, path=path)


def decode_file(path: Path, flags: int, *, messages: Literal["file", "slice"] = "file") -> npt.NDArray[Any]:
    """Decode an image file with ``cv2.imdecode`` (the one place segkit reads a PNG/JPEG file).

    Args:
        path: the file.
        flags: ``cv2.IMREAD_*`` flags (``IMREAD_UNCHANGED`` keeps 16-bit depth and alpha; ``IMREAD_GRAYSCALE``
            and ``IMREAD_COLOR`` always give 8 bits, in OpenCV's BGR order for colour).
        messages: the errors raised:

            - ``"file"`` (``read_gray``/``read_rgb``): "image file not found", "cannot read image: <OSError>",
              "cannot decode image (corrupt or not an image)";
            - ``"slice"`` (training data, ``segkit.io.slices``): one "cannot read image file (missing, empty
              or not PNG/JPEG)" for a missing, empty or undecodable file; an ``OSError`` while reading
              propagates.

    Returns:
        The array as decoded.

    Raises:
        DataError: missing, unreadable (``"file"``), empty or undecodable file.
    """
    path = Path(path)
    if messages == "slice":
        unreadable: tuple[str, str] = ("cannot read image file (missing, empty or not PNG/JPEG)",
                                       "re-export the file, or run segkit prepare again")
        missing = corrupt = unreadable
    else:
        missing = ("image file not found", "check the path")
        corrupt = ("cannot decode image (corrupt or not an image)", "re-export the file")
    if not path.is_file():
        raise DataError(missing[0], path=path, hint=missing[1])
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        if messages == "slice":
            raise
        raise DataError(
            f"cannot read image: {e}", path=path, hint="check that it is a readable PNG/JPEG"
        ) from e
    img: npt.NDArray[Any] | None = cv2.imdecode(raw, flags) if raw.size else None
    if img is None:
        raise DataError(corrupt[0], path=path, hint=corrupt[1])
    return img


def decode_8bit(
    path: Path, flags: int, *, messages: Literal["file", "slice"] = "file"
) -> npt.NDArray[np.uint8]:
    """``decode_file`` as uint8 (a 16-bit image keeps its high byte; only reachable with
    ``IMREAD_ANYDEPTH``)."""
    img = decode_file(path, flags, messages=messages)
    if img.dtype != np.uint8:  # 16-bit PNGs: keep the high byte
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    return img


def read_gray(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image as (H, W) uint8 grayscale (colour images are converted by luminance).

    Raises:
        DataError: missing or undecodable file.
    """
    return decode_8bit(path, cv2.IMREAD_GRAYSCALE)


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image as (H, W, 3) uint8 in RGB order (grayscale images are replicated to 3 channels).

    Raises:
        DataError: missing or undecodable file.
    """
    bgr = decode_8bit(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.uint8, copy=False)
