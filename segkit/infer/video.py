"""Overlay pictures a person can read: slice numbers and a class legend on overlays, and one video per volume.

- ``label_picture``: an RGB picture with a caption (e.g. ``slice 42/120``) in its top-left corner and, below
  it, the class legend (a colour box and the name of each class); the overlay montage of ``segkit infer``
  and every video frame use it.
- ``title_strip``: column titles over side-by-side pictures (the ``image | truth | prediction`` panels).
- ``write_overlay_video``: ``<case>_overlay.mp4`` (H.264, yuv420p, ``+faststart``: plays in a browser; the
  ffmpeg binary of the ``imageio-ffmpeg`` package) or ``<case>_overlay.gif``, one frame per slice of the
  volume along ``prepare.axis``, in the display orientation of ``segkit prepare``, the label volume blended
  over the image as in the overlay PNG.

Example:
    >>> write_overlay_video(Path("la_003.nii.gz"), Path("out/la_003_seg.nii.gz"), cfg,
    ...                     Path("out/la_003_overlay.mp4"))
    VideoResult(path=PosixPath('out/la_003_overlay.mp4'), frames=130)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.volumes import VolumeRef, load_volume

if TYPE_CHECKING:
    from segkit.config import ClassSpec, Config

VideoFormat = Literal["mp4", "gif"]
MIN_SIDE = 384  # frames are enlarged (nearest neighbour) until the shorter side reaches this
MAX_SIDE = 1024  # the longest side enlarge() makes (pixels)
_FONT_PX = 13  # cap height of the caption font at a 384-pixel wide picture


@dataclass(frozen=True)
class VideoResult:
    """What ``write_overlay_video`` wrote: the file and its number of frames (= slices)."""

    path: Path
    frames: int


def video_path(seg_path: Path, fmt: VideoFormat = "mp4") -> Path:
    """``<case>_overlay.<fmt>`` beside ``<case>_seg.nii.gz``."""
    name = Path(seg_path).name
    case = name[: -len("_seg.nii.gz")] if name.endswith("_seg.nii.gz") else Path(seg_path).stem
    return Path(seg_path).with_name(f"{case}_overlay.{fmt}")


def _text(img: npt.NDArray[np.uint8], text: str, xy: tuple[int, int], scale: float) -> None:
    """White text with a black outline (readable on any image), in place."""
    import cv2

    thick = max(1, round(scale * 1.5))
    cv2.putText(img, text, xy, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, xy, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def _scale(width: int) -> float:
    return max(0.35, _FONT_PX / 22.0 * width / 384)


def legend_strip(width: int, classes: Sequence[ClassSpec]) -> npt.NDArray[np.uint8]:
    """(h, width, 3) dark strip: a colour box and the name of each class, wrapped onto as many rows as
    needed."""
    import cv2

    scale = _scale(min(max(width, 256), 448))  # as large as a caption on a single picture, not more
    row_h = int(26 * scale / 0.6) // 2 * 2
    box = row_h // 2
    items: list[tuple[tuple[int, int, int], str, int]] = []
    for c in classes:
        (tw, _), _ = cv2.getTextSize(c.name, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(scale * 1.5)))
        items.append(((int(c.color[0]), int(c.color[1]), int(c.color[2])), c.name, box + 6 + tw + 14))
    rows: list[list[tuple[tuple[int, int, int], str, int]]] = [[]]
    used = 8
    for item in items:
        if rows[-1] and used + item[2] > width:
            rows.append([])
            used = 8
        rows[-1].append(item)
        used += item[2]
    strip = np.full((row_h * len(rows) + 4, width, 3), 24, dtype=np.uint8)
    for r, row in enumerate(rows):
        x, y = 8, r * row_h + 2
        for color, name, w in row:
            cv2.rectangle(strip, (x, y + box // 2), (x + box, y + box // 2 + box), color, -1)
            cv2.rectangle(strip, (x, y + box // 2), (x + box, y + box // 2 + box), (255, 255, 255), 1)
            _text(strip, name, (x + box + 6, y + box // 2 + box), scale)
            x += w
    return strip


def title_strip(widths: Sequence[int], titles: Sequence[str]) -> npt.NDArray[np.uint8]:
    """A dark (h, sum(widths), 3) strip naming side-by-side columns of the given widths, e.g. a panel's
    ``image | truth | prediction``; the font shrinks to fit the narrowest column (not below a legible
    minimum)."""
    import cv2

    scale = min(0.5, *(_fit(t, w) for t, w in zip(titles, widths, strict=True)))
    height = int(28 * scale / 0.5) // 2 * 2 + 4
    strip = np.full((height, int(sum(widths)), 3), 24, dtype=np.uint8)
    x = 0
    for title, w in zip(titles, widths, strict=True):
        cv2.putText(strip, title, (x + 3, height - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
        x += w
    return strip


def _fit(text: str, width: int) -> float:
    """The font scale (>= 0.3) at which ``text`` fits ``width`` pixels."""
    import cv2

    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
    return max(0.3, (width - 6) / max(tw, 1))


def label_picture(
    rgb: npt.NDArray[np.uint8], caption: str | None, classes: Sequence[ClassSpec] | None = None
) -> npt.NDArray[np.uint8]:
    """``rgb`` with ``caption`` in its top-left corner and, when ``classes`` is given, the legend below."""
    out = np.ascontiguousarray(rgb).copy()
    if caption:
        scale = _scale(out.shape[1])
        _text(out, caption, (6, 6 + int(22 * scale)), scale)
    if classes:
        out = np.concatenate([out, legend_strip(out.shape[1], classes)], axis=0)
    return out


def enlarge(img: npt.NDArray[np.uint8], min_side: int = MIN_SIDE, max_side: int = MAX_SIDE
            ) -> npt.NDArray[np.uint8]:
    """``img`` repeated by the smallest whole factor that makes its shorter side at least ``min_side``, but
    never so far that its longer side passes ``max_side`` (a thin slice of a few-slice series stays a strip
    instead of a frame tens of thousands of pixels long, which no video encoder takes)."""
    factor = max(1, -(-min_side // min(img.shape[:2])))
    factor = max(1, min(factor, max_side // max(img.shape[:2])))
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1) if factor > 1 else img


def overlay_frames(image_path: Path | VolumeRef, seg_path: Path, cfg: Config) -> list[npt.NDArray[np.uint8]]:
    """One labelled RGB frame per slice along ``cfg.prepare.axis``: the image (``prepare``'s intensity
    recipe for ``cfg.modality``) with the labels of ``seg_path`` blended in (``infer.alpha``).

    Raises:
        DataError: unreadable volumes, or labels of another shape than the image.
    """
    import nibabel as nib

    from segkit.infer.volume import overlay
    from segkit.prepare.normalize import apply_intensity, intensity_recipe
    from segkit.prepare.slicing import display_slices

    image = load_volume(image_path if isinstance(image_path, VolumeRef) else Path(image_path))
    seg = load_volume(Path(seg_path))
    if image.data.shape != seg.data.shape:
        raise DataError(f"labels of shape {seg.data.shape} for an image of shape {image.data.shape}",
                        path=seg_path, hint="give the label volume segkit infer wrote for this image")
    ornt = nib.orientations.io_orientation(image.affine)
    img_ras = nib.orientations.apply_orientation(np.asarray(image.data), ornt)
    seg_ras = nib.orientations.apply_orientation(np.asarray(seg.data), ornt)
    recipe = intensity_recipe(img_ras, cfg.modality, cfg.prepare.ct_window, cfg.prepare.mr_percentiles)
    axis = cfg.prepare.axis
    n = img_ras.shape[axis]
    colors = [c.color for c in cfg.effective_classes]
    labels = dict(display_slices(seg_ras, axis, range(n)))
    frames = []
    for k, gray in display_slices(img_ras, axis, range(n), lambda b: apply_intensity(b, recipe)):
        picture = enlarge(overlay(gray, labels[k].astype(np.uint8), colors, cfg.infer.alpha))
        frames.append(label_picture(picture, f"slice {k + 1}/{n}", cfg.effective_classes))
    return frames


def write_video(frames: Sequence[npt.NDArray[np.uint8]], path: Path, fps: float = 10.0) -> Path:
    """Write RGB ``frames`` (equal sizes) as an H.264 mp4 or a GIF (by ``path``'s suffix), atomically."""
    from segkit.io.atomic import atomic_path

    if not frames:
        raise DataError("no frames to write", path=path)
    path = Path(path)
    if path.suffix == ".gif":
        from PIL import Image

        pictures = [Image.fromarray(f) for f in frames]
        with atomic_path(path) as tmp:
            pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:],
                             duration=round(1000 / fps), loop=0)
        return path
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    ph, pw = -(-h // 16) * 16, -(-w // 16) * 16  # H.264 / yuv420p want even sizes; 16 avoids a rescale
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (pw, ph), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
            macro_block_size=16, output_params=["-movflags", "+faststart"], ffmpeg_log_level="error",
        )
        writer.send(None)
        for f in frames:
            padded = np.zeros((ph, pw, 3), dtype=np.uint8)
            padded[:h, :w] = f
            writer.send(padded.tobytes())
        writer.close()
    return path


def write_overlay_video(
    image_path: Path | VolumeRef, seg_path: Path, cfg: Config, out_path: Path | None = None,
    fps: float = 10.0
) -> VideoResult:
    """Write the overlay video of one inferred volume (see the module docs); ``out_path`` defaults to
    ``video_path(seg_path)`` (mp4; a ``.gif`` path writes a GIF)."""
    out = Path(out_path) if out_path is not None else video_path(seg_path)
    frames = overlay_frames(image_path, seg_path, cfg)
    write_video(frames, out, fps)
    return VideoResult(out, len(frames))


__all__ = ["VideoFormat", "VideoResult", "enlarge", "label_picture", "legend_strip", "overlay_frames",
           "title_strip", "video_path", "write_overlay_video", "write_video"]
