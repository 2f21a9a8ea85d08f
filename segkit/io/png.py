"""8-bit PNG slices: atomic writes and RGB-order reads (OpenCV itself works in BGR).

Example:
    >>> write_png(Path("masks/case_000_0012.png"), encode_mask(labels, palette))  # (H, W, 3) RGB
    >>> read_rgb(Path("masks/case_000_0012.png")).shape
    (64, 64, 3)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.atomic import write_bytes

# Level 1 is ~3x faster than OpenCV's default 3 and only a few percent larger on slices and colour masks.
PNG_COMPRESSION = 1


def write_png(path: Path, array: npt.NDArray[np.uint8]) -> Path:
    """Write an 8-bit image as PNG atomically.

    Args:
        path: destination (``.png``).
        array: (H, W) uint8 grayscale or (H, W, 3) uint8 RGB (RGB order, converted to BGR for OpenCV).

    Returns:
        ``path``.

    Raises:
        DataError: wrong shape or dtype, or the encoder fails.
    """
    path = Path(path)
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise DataError(f"PNG slices must be uint8, got {arr.dtype}", path=path)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    elif arr.ndim != 2:
        raise DataError(f"expected (H, W) or (H, W, 3) image, got shape {arr.shape}", path=path)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise DataError("PNG encoding failed", path=path)
    write_bytes(path, buf.tobytes())
    return path


def _decode(path: Path, flag: int) -> npt.NDArray[np.uint8]:
    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found", path=path)
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image: {e}", path=path) from e
    img = cv2.imdecode(raw, flag) if raw.size else None
    if img is None:
        raise DataError("cannot decode image (corrupt or not an image)", path=path, hint="re-export the file")
    if img.dtype != np.uint8:  # 16-bit PNGs: keep the high byte
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    return img


def read_gray(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image as (H, W) uint8 grayscale (colour images are converted by luminance).

    Raises:
        DataError: missing or undecodable file.
    """
    return _decode(path, cv2.IMREAD_GRAYSCALE)


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image as (H, W, 3) uint8 in RGB order (grayscale images are replicated to 3 channels).

    Raises:
        DataError: missing or undecodable file.
    """
    bgr = _decode(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
