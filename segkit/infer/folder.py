"""A folder of PNG/JPG slices in -> colour masks, indexed masks, overlays (and panels with ground truth).

Layout written under ``out_dir``::

    masks/<stem>.png      RGB colour masks (class table colours, background black)
    labels/<stem>.png     indexed masks: 8-bit gray, pixel value = class id
    overlays/<stem>.png   image blended with the colour mask (opacity ``infer.alpha``)
    panels/<stem>.png     image | truth | prediction (titled), when ``<input>/../masks/<stem>.*`` exists

Safety: an output folder that would write into the input folder or into its sibling ground-truth folder
(``<input>/../masks``, e.g. ``--input data/test/images --output data/test``) is refused
(``check_output_dir``), and existing output files are refused unless ``overwrite`` (``segkit infer
--overwrite``); both checks run before anything is predicted or written.

Images keep their own size: an image larger (or smaller) than the model input goes through Gaussian-weighted
sliding windows (``segkit.predict.tiling``) instead of being resized.

Example:
    >>> res = infer_folder(model, Path("data/test/images"), cfg, Path("out"))
    >>> res.n_images
    36
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    import keras

    from segkit.config import Config
    from segkit.infer.options import InferSettings

logger = logging.getLogger(__name__)


@dataclass
class FolderResult:
    """What ``infer_folder`` wrote: counts and the output folders."""

    n_images: int
    out_dir: Path
    n_panels: int = 0
    tiled: int = 0
    outputs: dict[str, Path] = field(default_factory=dict)


def list_images(folder: Path) -> list[Path]:
    """PNG/JPG files of a folder, sorted by name.

    Raises:
        DataError: the folder holds no image.
    """
    from segkit.io.slices import IMAGE_SUFFIXES

    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError("no PNG/JPG images in the folder", path=folder,
                        hint="give a folder of slice images or a volume")
    return files


def image_input(path: Path, channels: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """Read an image at its own size (``segkit.io.slices``, ``"8bit"`` decoding: the decoder converts to gray
    or RGB; training data is decoded ``"stored"``, see ``segkit.io.slices.ImageDecoding``).

    Returns:
        ``(display, x)``: display (H, W) gray or (H, W, 3) RGB uint8 for overlays, and the model input
        (H, W, channels) float32 in 0..1 (gray replicated to 3 channels, or RGB converted to gray).
    """
    from segkit.io.slices import load_image, to_model_input

    display = load_image(path, channels, "8bit")
    return display, to_model_input(display, channels)


def truth_for(image_path: Path) -> Path | None:
    """The ground-truth mask beside an image: ``<images>/../masks/<stem>.{png,jpg,jpeg}``, or None.

    Unlike training pairs (``MASK_SUFFIXES``), a ``.jpeg`` mask counts here.
    """
    from segkit.io.slices import IMAGE_SUFFIXES

    masks = image_path.parent.parent / "masks"
    for sfx in IMAGE_SUFFIXES:
        p = masks / f"{image_path.stem}{sfx}"
        if p.is_file():
            return p
    return None


def read_truth(path: Path, cfg: Config) -> npt.NDArray[np.uint8]:
    """A ground-truth mask at its own size as (H, W) uint8 ids (colour or gray per ``data.mask_mode``), with
    ``io.png``'s read errors (``"8bit"`` decoding)."""
    from segkit.io.slices import decode_mask_file

    return decode_mask_file(path, cfg, "8bit")


OUTPUT_DIRS = ("masks", "labels", "overlays", "panels")


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies under it (both resolved)."""
    return path == folder or folder in path.parents


def check_output_dir(folder: Path, out_dir: Path, subs: Sequence[str] = OUTPUT_DIRS) -> None:
    """Refuse an output folder whose ``masks/``, ``labels/``, ``overlays/`` or ``panels/`` would lie in the
    input folder or in its sibling ground-truth folder ``<input>/../masks``.

    Args:
        folder: the input folder.
        out_dir: the output root.
        subs: the folders written under ``out_dir`` (``("",)``: ``out_dir`` itself, for volume outputs).

    Raises:
        DataError: naming the offending output folder, hint "choose another --output".
    """
    src = Path(folder).resolve()
    truth = (src.parent / "masks").resolve()
    for sub in subs:
        target = (Path(out_dir) / sub).resolve()
        for guarded, what in ((src, "the input folder"), (truth, "the ground-truth masks folder")):
            if _inside(target, guarded):
                raise DataError(
                    f"output would write into {what} {guarded}",
                    path=Path(out_dir) / sub,
                    hint="choose another --output",
                )


def folder_outputs(files: list[Path], out_dir: Path) -> list[Path]:
    """Every file ``infer_folder`` writes for ``files`` (panels only where ground truth exists)."""
    paths: list[Path] = []
    for f in files:
        subs = OUTPUT_DIRS if truth_for(f) is not None else OUTPUT_DIRS[:3]
        paths += [Path(out_dir) / sub / f"{f.stem}.png" for sub in subs]
    return paths


def infer_folder(
    model: keras.Model,
    folder: Path,
    cfg: Config,
    out_dir: Path,
    settings: InferSettings | None = None,
    progress: Progress = NULL_PROGRESS,
) -> FolderResult:
    """Predict every image of a folder and write masks, overlays and (with ground truth) panels.

    Args:
        model: a loaded model.
        folder: folder of PNG/JPG slices.
        cfg: the config (channels, classes, ``infer``).
        out_dir: output root.
        settings: batch size, TTA, component filter and ``overwrite`` (replace existing output files, else
            they are refused before anything is written); default ``cfg.infer``'s
            (``InferOptions().resolve(cfg)``).
        progress: started once with the number of images (description ``"infer"``), then advanced by 1 after
            each image.

    Returns:
        ``FolderResult``.

    Raises:
        DataError: an output folder inside the input or ground-truth folder, existing outputs without
            ``overwrite``, no images, an unreadable image, or a ground-truth mask with a colour that is no
            class colour.
    """
    from segkit.infer.options import InferOptions
    from segkit.infer.volume import refuse_existing
    from segkit.io.slices import stack_context
    from segkit.predict.models import model_input_size
    from segkit.predict.slices import make_predictor, predict_probs

    settings = settings if settings is not None else InferOptions().resolve(cfg)
    files = list_images(Path(folder))
    check_output_dir(Path(folder), Path(out_dir))
    refuse_existing(folder_outputs(files, Path(out_dir)), settings.overwrite)
    bs = settings.batch_size
    writer = _FolderWriter(cfg, Path(out_dir), settings, progress)
    result = writer.result
    result.n_images = len(files)
    roi = model_input_size(model)
    predictor = make_predictor(model, bs)
    progress.start(len(files), "infer")
    if cfg.data.context_slices:
        logger.warning("data.context_slices > 0: folder inference repeats each slice as its own neighbours")

    def flush(batch: list[tuple[Path, npt.NDArray[np.uint8], npt.NDArray[np.float32]]]) -> None:
        x = np.stack([x for _, _, x in batch])
        probs = predict_probs(model, x, bs, settings.tta, cfg.infer.overlap, predictor)
        for (path, display, _), p in zip(batch, probs, strict=True):
            writer.write(path, display, p.argmax(-1).astype(np.uint8))

    pending: list[tuple[Path, npt.NDArray[np.uint8], npt.NDArray[np.float32]]] = []
    for path in files:
        display, x = image_input(path, cfg.data.channels)
        if cfg.data.context_slices:
            x = stack_context([x] * (2 * cfg.data.context_slices + 1), cfg.data.channels)
        if roi is not None and tuple(x.shape[:2]) != roi:
            result.tiled += 1
        if pending and pending[0][2].shape != x.shape:
            flush(pending)
            pending = []
        pending.append((path, display, x))
        if len(pending) == bs:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    return result


class _FolderWriter:
    """Writes the outputs of one image of ``infer_folder`` (component filter first) and counts them."""

    def __init__(self, cfg: Config, out_dir: Path, settings: InferSettings, progress: Progress) -> None:
        from segkit.io.palette import palette_array

        self.cfg, self.out_dir, self.progress = cfg, out_dir, progress
        self.lcc = settings.largest_component
        self.colors = [c.color for c in cfg.effective_classes]
        self.palette = palette_array(self.colors)
        self.result = FolderResult(n_images=0, out_dir=out_dir)
        self.result.outputs = {k: out_dir / k for k in ("masks", "labels", "overlays")}

    def write(self, path: Path, display: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8]) -> None:
        """Masks, indexed labels, overlay and (with ground truth) the panel of one image."""
        from segkit.infer.video import title_strip
        from segkit.infer.volume import overlay
        from segkit.io.palette import encode_mask
        from segkit.io.png import write_png
        from segkit.postprocess.components import keep_largest

        out_dir = self.out_dir
        labels = keep_largest(labels, self.lcc, self.cfg)
        color = encode_mask(labels, self.palette)
        write_png(out_dir / "masks" / f"{path.stem}.png", color)
        write_png(out_dir / "labels" / f"{path.stem}.png", labels)
        over = overlay(display, labels, self.colors, self.cfg.infer.alpha)
        write_png(out_dir / "overlays" / f"{path.stem}.png", over)
        truth_path = truth_for(path)
        if truth_path is not None:
            truth = read_truth(truth_path, self.cfg)
            if truth.shape != labels.shape:
                from segkit.io.slices import resize_label

                truth = resize_label(truth, labels.shape)
            base = display if display.ndim == 3 else np.repeat(display[..., None], 3, axis=-1)
            panel = np.concatenate([base, encode_mask(truth, self.palette), color], axis=1)
            w = labels.shape[1]
            panel = np.concatenate([title_strip((w, w, w), ("image", "truth", "prediction")), panel], axis=0)
            write_png(out_dir / "panels" / f"{path.stem}.png", panel)
            self.result.n_panels += 1
            self.result.outputs["panels"] = out_dir / "panels"
        self.progress.advance(1)
