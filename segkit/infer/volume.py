"""A volume in (any ``segkit.io.volumes`` format, a DICOM series included) -> labels out, in the input's
exact shape and affine.

Steps of ``infer_volume``:

1. ``load_volume`` (a 2D or 4D file, or a DICOM series that is not one volume, is a one-line ``DataError``);
2. ``segkit.predict.volume.predict_volume`` with the recipe ``prepare`` applied to the model's training data:
   a ``segkit.prepare.record.Preprocessing`` read from the run's ``preprocessing.json`` or the dataset's
   ``dataset.json`` when one exists, else taken from the config (``preprocessing_spec``); flip TTA optional;
3. optional largest-connected-component clean-up per class (``segkit.postprocess.components``);
4. write ``<case>_seg.nii.gz`` (uint8 labels, the input's affine; ``.nrrd``, ``.mha``, ``.seg.nrrd`` or a
   DICOM-SEG ``.dcm`` with ``output_format``) and ``<case>_overlay.png`` (a montage); existing outputs are
   refused unless ``overwrite`` (``segkit infer --overwrite``).

Example:
    >>> res = infer_volume(model, Path("ct.nii.gz"), cfg, Path("out"))
    >>> res.seg_path
    PosixPath('out/ct_seg.nii.gz')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.predict.recipe import preprocessing_spec as preprocessing_spec  # re-exported: a run's recipe
from segkit.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    import keras

    from segkit.config import ClassSpec, Config
    from segkit.infer.options import InferSettings
    from segkit.io.segmentations import LabelOutput
    from segkit.io.volumes import Volume, VolumeRef
    from segkit.predict.volume import VolumePrediction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VolumeResult:
    """What ``infer_volume`` wrote.

    Attributes:
        case_id: input file name without its volume suffix (a DICOM series of a folder: its series number
            and description, ``s004_T1w``).
        seg_path: the label volume (uint8, input shape and affine; NIfTI unless another output format).
        montage_path: the overlay montage PNG.
        shape: (X, Y, Z) shape of the input and of the labels.
        affine: (4, 4) affine of the input and of the labels.
        voxels_per_class: ``{class_id: voxel count}`` of the written labels.
        seconds: wall time per stage ("preprocess", "predict", "reassemble", "write").
        probs_path: ``<case>_probs.nii.gz`` when probabilities were saved.
    """

    case_id: str
    seg_path: Path
    montage_path: Path
    shape: tuple[int, int, int]
    affine: npt.NDArray[np.float64]
    voxels_per_class: dict[int, int]
    seconds: dict[str, float]
    probs_path: Path | None = None


def volume_outputs(
    path: Path | VolumeRef, out_dir: Path, probabilities: bool = False, output_format: str = "nifti"
) -> list[Path]:
    """The files ``infer_volume`` writes for ``path``: ``<case>_seg.nii.gz`` (the ending of
    ``output_format``), ``<case>_overlay.png`` and, with ``probabilities``, ``<case>_probs.nii.gz``
    (``.nrrd``/``.mha`` when the output format is one of those)."""
    from segkit.io.segmentations import FLOAT_FORMATS, OUTPUT_FORMATS
    from segkit.io.volumes import VolumeRef

    ref = path if isinstance(path, VolumeRef) else VolumeRef(Path(path))
    case_id, out_dir = ref.case_id, Path(out_dir)
    out = [out_dir / f"{case_id}_seg{OUTPUT_FORMATS[output_format]}", out_dir / f"{case_id}_overlay.png"]
    probs_ext = OUTPUT_FORMATS[output_format if output_format in FLOAT_FORMATS else "nifti"]
    return out + ([out_dir / f"{case_id}_probs{probs_ext}"] if probabilities else [])


def refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    """Raise ``DataError`` naming the first existing file of ``paths`` unless ``overwrite``.

    Raises:
        DataError: ``"output file already exists (N of M)"``, hint ``--overwrite``.
    """
    if overwrite:
        return
    existing = [p for p in paths if Path(p).exists()]
    if existing:
        raise DataError(
            f"output file already exists ({len(existing)} of {len(paths)} outputs exist)",
            path=existing[0],
            hint="pass --overwrite to replace them, or choose another --output",
        )


def infer_volume(
    model: keras.Model,
    path: Path | VolumeRef,
    cfg: Config,
    out_dir: Path,
    settings: InferSettings | None = None,
    progress: Progress = NULL_PROGRESS,
) -> VolumeResult:
    """Segment one volume file and write its label NIfTI and overlay montage.

    Args:
        model: a loaded model (``segkit.predict.models.load_model``).
        path: a 3D volume file, a DICOM series folder, or a ``VolumeRef`` (one series of a folder).
        cfg: the config (preprocessing, channels, classes, infer options).
        out_dir: where ``<case>_seg.nii.gz`` and ``<case>_overlay.png`` go.
        settings: batch size, TTA, component filter, ``overwrite`` (replace existing outputs, else they are
            refused before anything is read) and ``save_probabilities`` (also write ``<case>_probs.nii.gz``:
            (X, Y, Z, K) float32 class probabilities in the input's geometry, background first, after TTA /
            ensemble averaging, before any component filter); default ``cfg.infer``'s
            (``InferOptions().resolve(cfg)``).
        progress: started once with the number of slices and the file name (e.g. ``ct.nii.gz``) before
            prediction, then advanced by the slices done after each batch.

    Returns:
        ``VolumeResult``.

    Raises:
        DataError: existing outputs without ``overwrite``, unreadable file, not 3D (2D or 4D), NaN
            intensities.
    """
    from segkit.infer.options import InferOptions
    from segkit.io.segmentations import LabelOutput, Segment
    from segkit.io.volumes import VolumeRef, load_volume
    from segkit.postprocess.components import keep_largest
    from segkit.predict.volume import VolumeSettings, predict_volume

    settings = settings if settings is not None else InferOptions().resolve(cfg)
    ref = path if isinstance(path, VolumeRef) else VolumeRef(Path(path))
    outputs = volume_outputs(ref, Path(out_dir), settings.save_probabilities, settings.output_format)
    refuse_existing(outputs, settings.overwrite)
    segments = tuple(Segment(c.id, c.name, (int(c.color[0]), int(c.color[1]), int(c.color[2])), c.concept)
                     for c in cfg.effective_classes)
    target = _Target(ref, outputs, LabelOutput(settings.output_format, segments, ref))
    t0 = time.perf_counter()
    vol = load_volume(ref)
    if vol.data.ndim != 3:
        raise DataError(f"expected a 3D volume, got shape {vol.data.shape}", path=ref.path,
                        hint="give one 3D image per file")
    t_load = time.perf_counter() - t0
    how = VolumeSettings(settings.batch_size, settings.tta, settings.save_probabilities)
    pred = predict_volume(model, vol, preprocessing_spec(cfg), cfg, how, progress)
    t = dict(pred.seconds)
    t["preprocess"] += t_load
    t0 = time.perf_counter()
    labels = keep_largest(pred.labels, settings.largest_component, cfg)
    t["reassemble"] += time.perf_counter() - t0
    return _write_volume(vol, labels, pred, target, cfg, t)


@dataclass(frozen=True)
class _Target:
    """Where one volume's outputs go: its reference (case id, DICOM source), ``volume_outputs`` and the label
    format."""

    ref: VolumeRef
    outputs: Sequence[Path]
    how: LabelOutput


def _write_volume(
    vol: Volume, labels: npt.NDArray[np.uint8], pred: VolumePrediction, target: _Target, cfg: Config,
    seconds: dict[str, float],
) -> VolumeResult:
    """Write the labels, the overlay montage and (a third output) the probabilities of one volume."""
    from segkit.io.png import write_png
    from segkit.io.segmentations import write_labels
    from segkit.io.volumes import save_volume

    case_id, affine, outputs = target.ref.case_id, vol.affine, target.outputs
    t0 = time.perf_counter()
    seg_path = write_labels(outputs[0], labels, affine, target.how)
    montage = overlay_montage(pred.display_stack(), pred.labels2d, [c.color for c in cfg.effective_classes],
                              cfg.infer.alpha, classes=cfg.effective_classes)
    montage_path = write_png(outputs[1], montage)
    probs_path = None
    if len(outputs) > 2:
        if pred.probabilities is None:  # cannot happen: VolumeSettings(probabilities=True) returns them
            raise RuntimeError("predict_volume returned no probabilities")
        probs_path = save_volume(outputs[2], pred.probabilities, affine)
    seconds["write"] = time.perf_counter() - t0
    counts = np.bincount(labels.ravel(), minlength=cfg.num_classes)
    logger.info("%s: wrote %s", case_id, seg_path)
    return VolumeResult(
        case_id=case_id,
        seg_path=seg_path,
        montage_path=montage_path,
        shape=tuple(int(s) for s in labels.shape),  # type: ignore[arg-type]
        affine=np.asarray(affine, dtype=np.float64),
        voxels_per_class={c.id: int(counts[c.id]) for c in cfg.effective_classes},
        seconds=seconds,
        probs_path=probs_path,
    )


def overlay(
    gray: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    colors: Sequence[Sequence[int]],
    alpha: float,
) -> npt.NDArray[np.uint8]:
    """(H, W) uint8 image + (H, W) ids -> (H, W, 3) uint8 RGB, class colours blended with opacity ``alpha``.

    Background pixels keep the image unchanged.
    """
    from segkit.io.palette import encode_mask, palette_array

    base = gray if gray.ndim == 3 else np.repeat(gray[..., None], 3, axis=-1)
    rgb = encode_mask(np.asarray(labels), palette_array(colors)).astype(np.float32)
    fg = (np.asarray(labels) > 0)[..., None]
    blended = base.astype(np.float32) * (1 - alpha) + rgb * alpha
    return np.where(fg, blended, base.astype(np.float32)).round().clip(0, 255).astype(np.uint8)


def overlay_montage(
    stack: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    colors: Sequence[Sequence[int]],
    alpha: float,
    n: int = 9,
    classes: Sequence[ClassSpec] | None = None,
) -> npt.NDArray[np.uint8]:
    """A grid of up to ``n`` overlays (evenly spaced over the slices with foreground, else over all slices).

    Args:
        stack: (N, H, W) uint8 display slices (resized to the labels' size when it differs).
        labels: (N, h, w) predicted ids.
        classes: when given, each tile is enlarged to at least 256 pixels, carries its slice number
            (``slice k/N``) and the grid gets the class legend below (``segkit.infer.video.label_picture``).

    Returns:
        (rows*H, cols*W, 3) uint8 RGB (plus the legend's rows).
    """
    fg = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(1))
    pool = fg if fg.size else np.arange(stack.shape[0])
    pick = np.unique(pool[np.linspace(0, pool.size - 1, min(n, pool.size)).round().astype(int)])
    from segkit.io.slices import resize_image

    h, w = labels.shape[1:3]  # the images follow the labels' (original slice) size
    tiles = [overlay(resize_image(stack[i], (h, w)), labels[i], colors, alpha) for i in pick]
    if classes is not None:
        from segkit.infer.video import enlarge, label_picture

        n_slices = stack.shape[0]
        tiles = [label_picture(enlarge(t, 256), f"slice {i + 1}/{n_slices}")
                 for t, i in zip(tiles, pick, strict=True)]
        h, w = tiles[0].shape[:2]
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    if classes is not None:
        from segkit.infer.video import legend_strip

        grid = np.concatenate([grid, legend_strip(grid.shape[1], classes)], axis=0)
    return grid
